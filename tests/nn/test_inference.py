"""Tests of :mod:`mrihisto_kedro.nn.inference` (a generator as the stitching ``predict``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mrihisto_kedro.imaging.stitching import StitchOptions, array_reader, stitch_to_array
from mrihisto_kedro.nn.generators import ResnetGenerator, build_generator
from mrihisto_kedro.nn.inference import GeneratorPredictor, load_predictor


def _randomise_batch_norm(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics, so eval-mode batch norm actually does something."""
    gen = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.copy_(torch.rand(layer.num_features, generator=gen) * 0.2 - 0.1)
            layer.running_var.copy_(torch.rand(layer.num_features, generator=gen) + 0.5)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    """A tiny CycleGAN ResNet generator 1 -> 3 (one block, ngf 4), seeded random weights."""
    torch.manual_seed(0)
    net = ResnetGenerator(1, 3, ngf=4, n_blocks=1)
    _randomise_batch_norm(net)
    return net


@pytest.fixture(scope="module")
def unet() -> nn.Module:
    """A tiny pix2pix U-Net 1 -> 3 (5 down-samplings, ngf 4), seeded random weights."""
    net = build_generator(
        "unet", 1, 3, ngf=4, num_downs=5, generator=torch.Generator().manual_seed(0)
    )
    _randomise_batch_norm(net, seed=1)
    return net


def _mri(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (1, height, width)).astype(np.float32)


def test_predictor_eval_mode_float32_and_batch_independent(unet: nn.Module) -> None:
    unet.train()
    predict = GeneratorPredictor(unet, device="cpu")
    assert not unet.training  # switched to eval explicitly: dropout off, running statistics
    assert predict.device == torch.device("cpu") and predict.precision == "fp32"
    assert (predict.in_channels, predict.out_channels) == (1, 3)
    batch = np.concatenate([_mri(40, 56, 1)[None], _mri(40, 56, 2)[None]]).astype(np.float64)
    out = predict(batch)
    assert out.shape == (2, 3, 40, 56) and out.dtype == np.float32 and out.flags.c_contiguous
    assert np.abs(out).max() <= 1.0  # tanh
    alone = predict(batch[1:])
    np.testing.assert_allclose(out[1:], alone, atol=1e-6)  # independent of the batch neighbours
    np.testing.assert_array_equal(predict(batch), out)  # deterministic (no dropout)


def test_predictor_errors(unet: nn.Module) -> None:
    predict = GeneratorPredictor(unet, device="cpu")
    with pytest.raises(ValueError, match=r"takes 1 input channel\(s\), got a batch of shape"):
        predict(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"shape \(N, C, h, w\)"):
        predict(np.zeros((32, 32), np.float32))
    unet.train()
    with pytest.raises(RuntimeError, match="training mode"):
        predict(np.zeros((1, 1, 32, 32), np.float32))
    unet.eval()
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        GeneratorPredictor(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device='tpu' is not valid"):
        GeneratorPredictor(unet, device="tpu")


def test_single_window_equals_whole_image_forward(unet: nn.Module) -> None:
    """One window covering the canvas: stitching adds nothing to the generator's forward."""
    predict = GeneratorPredictor(unet, device="cpu")
    mri = _mri(45, 70)
    whole = predict(mri[None])[0]
    stitched = stitch_to_array(array_reader(mri), predict, mri.shape, 3, StitchOptions(window=96))
    np.testing.assert_allclose(stitched, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("weights", ["constant", "hann"])
def test_windows_with_context_equal_one_forward_inside(resnet: nn.Module, weights: str) -> None:
    """Stitched = one forward pass over the whole image, away from the canvas border.

    The ResNet generator in eval mode is translation-equivariant for shifts by multiples of its
    stride (4) except near the border of what it sees: with window, overlap, margin and canvas
    all multiples of 4 and a margin larger than the receptive-field radius (about 20 px), every
    kept window pixel is what the full forward pass computes; only pixels near the canvas border
    differ (there the full pass pads differently from the windows' reflected context).
    """
    predict = GeneratorPredictor(resnet, device="cpu")
    mri = _mri(96, 128)
    whole = predict(mri[None])[0]
    options = StitchOptions(window=32, overlap=8, margin=24, weights=weights, batch_size=4)
    stitched = stitch_to_array(array_reader(mri), predict, mri.shape, 3, options)
    inside = (slice(None), slice(32, -32), slice(32, -32))
    np.testing.assert_allclose(stitched[inside], whole[inside], rtol=0, atol=1e-5)
    # without context the windows' own borders show: not equal to the full pass
    no_context = StitchOptions(window=32, overlap=8, margin=0, weights=weights)
    blind = stitch_to_array(array_reader(mri), predict, mri.shape, 3, no_context)
    assert np.abs(blind[inside] - whole[inside]).max() > 1e-3


def test_load_predictor_from_an_exported_generator(tmp_path) -> None:
    from mrihisto_kedro.nn.models import Pix2Pix, Pix2PixConfig
    from mrihisto_kedro.nn.training import export_generator

    torch.manual_seed(0)
    config = {"generator": "unet", "num_downs": 5, "ngf": 4, "ndf": 4, "device": "cpu"}
    model = Pix2Pix(Pix2PixConfig(**config, precision="fp32"))
    torch.save(export_generator(model), tmp_path / "g.pt")
    predictor = load_predictor(tmp_path / "g.pt", device="cpu")
    assert not predictor.module.training
    mri = _mri(40, 24)
    with torch.no_grad():
        expected = model.generate(torch.from_numpy(mri[None])).numpy()
    np.testing.assert_allclose(predictor(mri[None]), expected, atol=1e-6)
