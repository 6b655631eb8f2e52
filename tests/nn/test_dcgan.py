"""Tests for ``mrihisto_kedro.nn.dcgan``: architecture, init, training, accuracy, augmentation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mrihisto_kedro.nn.dcgan import (
    DCGAN,
    DCGANConfig,
    DCGANDiscriminator,
    DCGANGenerator,
    GeneratorActivation,
    NoiseKind,
    augment_with_synthetic,
    discriminator_accuracy,
    train_dcgan,
)
from mrihisto_kedro.nn.dcgan.training import load_dcgan_checkpoint
from mrihisto_kedro.nn.device import Precision, cpu_has_fast_bf16

TINY = {"image_size": 32, "ngf": 8, "ndf": 8, "nz": 16, "batch_size": 8, "device": "cpu"}


def _disks(n: int = 32, size: int = 32, seed: int = 0) -> np.ndarray:
    """(n, size, size) float32 in [0, 1]: a bright disk of random centre/radius on black."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.4, size * 0.6, 2)
        r = rng.uniform(size * 0.2, size * 0.3)
        out[i] = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) * rng.uniform(0.7, 1.0)
    return out


def _n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------------------------
# architecture


@pytest.mark.parametrize("size", [64, 128])
def test_shapes(size: int) -> None:
    g = DCGANGenerator(nz=100, ngf=8, image_size=size, channels=1)
    d = DCGANDiscriminator(ndf=8, image_size=size, channels=1)
    z = torch.randn(3, 100)
    with torch.no_grad():
        x = g(z)
    assert x.shape == (3, 1, size, size)
    assert g(z[:, :, None, None]).shape == (3, 1, size, size)
    assert float(x.abs().max()) <= 1.0  # tanh
    assert d(x).shape == (3,)
    # log2(S) - 2 transposed convolutions + the 4x4 projection; as many strided convolutions
    n_up = sum(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    n_down = sum(isinstance(m, nn.Conv2d) for m in d.modules())
    assert n_up == n_down == int(np.log2(size)) - 1
    assert isinstance(g.main[-1], nn.Tanh)
    assert not isinstance(d.main[1], nn.BatchNorm2d)  # no batch norm on D's input layer


def test_widths_match_the_pytorch_dcgan_example_at_64() -> None:
    """At 64x64 the layers are those of the PyTorch DCGAN example (filters 8/4/2/1 x ngf).

    The example (nz 100, ngf = ndf = 64, 3 channels, no biases) has 3,576,704 (G) and 2,765,568
    (D) parameters; ours adds biases to G's output layer (3) and D's first (64) and last (1).
    """
    g = DCGANGenerator(nz=100, ngf=64, image_size=64, channels=3)
    d = DCGANDiscriminator(ndf=64, image_size=64, channels=3)
    widths = [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [512, 256, 128, 64, 3]
    assert [m.out_channels for m in d.modules() if isinstance(m, nn.Conv2d)] == [
        64,
        128,
        256,
        512,
        1,
    ]
    assert _n_params(g) == 3_576_704 + 3
    assert _n_params(d) == 2_765_568 + 64 + 1


def test_128_adds_one_block_and_max_mult_caps_widths() -> None:
    g = DCGANGenerator(nz=100, ngf=64, image_size=128)
    widths = [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [1024, 512, 256, 128, 64, 1]
    capped = DCGANGenerator(nz=100, ngf=64, image_size=128, max_mult=8)
    assert [m.out_channels for m in capped.modules() if isinstance(m, nn.ConvTranspose2d)] == [
        512,
        512,
        256,
        128,
        64,
        1,
    ]
    leaky = DCGANGenerator(image_size=64, ngf=8, activation="leaky_relu")
    assert any(isinstance(m, nn.LeakyReLU) for m in leaky.modules())


def test_init_is_normal_002() -> None:
    """128x128 model: conv weights N(0, 0.02), BN scales N(1, 0.02), zero biases."""
    model = DCGAN(DCGANConfig(ngf=32, ndf=32, device="cpu"))
    for net in (model.G, model.D):
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
        weights = torch.cat([m.weight.detach().reshape(-1) for m in convs])
        assert abs(float(weights.mean())) < 1e-3
        assert float(weights.std()) == pytest.approx(0.02, rel=0.02)
        for m in convs:
            if m.bias is not None:
                assert torch.count_nonzero(m.bias) == 0
        bn = torch.cat([m.weight.detach() for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
        assert float(bn.mean()) == pytest.approx(1.0, abs=2e-3)
        assert float(bn.std()) == pytest.approx(0.02, rel=0.1)
        shifts = [m.bias for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        assert all(torch.count_nonzero(b) == 0 for b in shifts)


def test_config_validation_names_the_key() -> None:
    with pytest.raises(ValueError, match="image_size"):
        DCGANConfig(image_size=100)
    with pytest.raises(ValueError, match="image_size"):
        DCGANConfig(image_size=16)
    with pytest.raises(ValueError, match="generator_activation"):
        DCGANConfig(generator_activation="gelu")
    with pytest.raises(ValueError, match="beta1"):
        DCGANConfig(beta1=1.0)
    with pytest.raises(ValueError, match=r"DCGANConfig has unknown key\(s\) 'lambda_L1'"):
        DCGANConfig.from_dict({"nz": 10, "lambda_L1": 3})
    cfg = DCGANConfig.from_dict({"noise": "uniform", "image_size": 256, "lr_D": 1e-4})
    assert cfg.noise is NoiseKind.UNIFORM
    assert cfg.generator_activation is GeneratorActivation.RELU
    assert cfg.lr_discriminator == 1e-4 and DCGANConfig().lr_discriminator == 2e-4
    assert DCGANConfig.from_dict(cfg.to_dict()) == cfg


def test_wrong_inputs_fail_clearly() -> None:
    model = DCGAN(DCGANConfig(**TINY))
    with pytest.raises(ValueError, match="real must be"):
        model.train_step(torch.zeros(4, 1, 64, 64))
    with pytest.raises(ValueError, match="real must be"):
        model.train_step(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_dcgan(np.full((4, 32, 32), 255.0), DCGANConfig(**TINY, epochs=1))
    with pytest.raises(ValueError, match="resize"):
        train_dcgan(np.zeros((4, 64, 64)), DCGANConfig(**TINY, epochs=1))


# ----------------------------------------------------------------------------------------------
# training


def _train_tiny(
    seed: int = 0, epochs: int = 40
) -> tuple[DCGAN, DCGAN, list[dict[str, float]], np.ndarray]:
    """An untrained and a trained tiny DCGAN (same seed) on 32 disk images (~7 s at 80)."""
    images = _disks(seed=seed)
    cfg = DCGANConfig(**TINY, epochs=epochs, seed=seed)
    model, history = train_dcgan(images, cfg)
    return DCGAN(cfg), model, history, images


def _sample_stats(m: DCGAN, target: np.ndarray) -> tuple[float, float]:
    """Correlation and mean absolute difference of the mean of 64 samples with ``target``."""
    mean_image = m.generate_images(64, seed=5).mean(axis=0)
    corr = float(np.corrcoef(mean_image.ravel(), target.ravel())[0, 1])
    return corr, float(np.abs(mean_image - target).mean())


def dcgan_trajectory(seed: int = 0, epochs: int = 80) -> dict[str, float]:
    """What the training test asserts, as numbers: the sample mean's correlation with the data's
    mean image before and after training, the drop of their difference, and D's confidence."""
    untrained, model, history, images = _train_tiny(seed, epochs)
    target = images.mean(axis=0)
    (corr0, mae0), (corr1, mae1) = _sample_stats(untrained, target), _sample_stats(model, target)
    return {
        "corr_untrained": corr0,
        "corr_trained": corr1,
        "mae_drop": mae0 - mae1,
        "D_real_gain": history[-1]["D_real"] - history[0]["D_real"],
    }


# thresholds with margin over CPUs, threads and seeds: benchmarks/trajectory_margins.py
# (40 epochs: corr_trained 0.36-0.84 and mae_drop 0.048-0.081 over seeds, on the threshold)
DCGAN_EPOCHS = 80
CORR_UNTRAINED_MAX = 0.3
CORR_TRAINED_MIN = 0.4
MAE_DROP_MIN = 0.05


@pytest.fixture(scope="module")
def trained() -> Iterator[tuple[DCGAN, DCGAN, list[dict[str, float]], np.ndarray]]:
    """:func:`_train_tiny` on one thread (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield _train_tiny(epochs=DCGAN_EPOCHS)
    torch.set_num_threads(threads)


def test_training_moves_samples_towards_the_data(trained) -> None:
    """The generator starts at grey noise (mean image unrelated to the data) and learns the
    disk: the mean of its samples correlates with the data's mean image and gets closer to it.
    """
    untrained, model, history, images = trained
    target = images.mean(axis=0)
    assert len(history) == DCGAN_EPOCHS and history[-1]["epoch"] == float(DCGAN_EPOCHS)
    for row in history:
        assert all(np.isfinite(v) for v in row.values())
    (corr0, mae0), (corr1, mae1) = _sample_stats(untrained, target), _sample_stats(model, target)
    assert corr0 < CORR_UNTRAINED_MAX
    assert corr1 > CORR_TRAINED_MIN
    assert mae1 < mae0 - MAE_DROP_MIN
    # the discriminator learned to separate: it is more confident on reals than at the start
    assert history[-1]["D_real"] > history[0]["D_real"]


def test_discriminator_accuracy_matches_its_definition(trained) -> None:
    _, model, _, _ = trained
    real = _disks(10, seed=9)  # held out
    fake = model.generate_images(6, seed=3)
    acc = discriminator_accuracy(model, real, fake)
    p_real = model.probability_real(torch.from_numpy(real[:, None]) * 2 - 1)
    p_fake = model.probability_real(torch.from_numpy(fake[:, None]) * 2 - 1)
    expected = ((p_real > 0.5).sum() + (p_fake <= 0.5).sum()) / 16
    assert acc == pytest.approx(expected)
    assert 0.0 <= acc <= 1.0
    # (N, 1, S, S) input is accepted as well and D's mode is restored
    model.D.train()
    assert discriminator_accuracy(model, real[:, None], fake[:, None]) == acc
    assert model.D.training


def test_discriminator_accuracy_with_a_constant_discriminator() -> None:
    """A D that calls everything real gets the reals right and the fakes wrong."""
    model = DCGAN(DCGANConfig(**TINY))
    last = model.D.main[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(5.0)  # sigmoid(5) > 0.5 for every image
    real, fake = _disks(6), _disks(2, seed=1)
    assert discriminator_accuracy(model, real, fake) == pytest.approx(6 / 8)
    assert discriminator_accuracy(model, real, fake, threshold=0.999) == pytest.approx(2 / 8)


def test_training_is_deterministic_with_the_seed() -> None:
    images = _disks(12)
    cfg = DCGANConfig(**TINY, epochs=2, seed=3)
    a, hist_a = train_dcgan(images, cfg)
    b, hist_b = train_dcgan(images, cfg)
    torch.manual_seed(1234)  # the global RNG does not matter
    np.random.seed(1234)  # noqa: NPY002 - legacy global state on purpose
    c, hist_c = train_dcgan(images, cfg)
    assert hist_a == hist_b == hist_c
    for key, value in a.G.state_dict().items():
        assert torch.equal(value, b.G.state_dict()[key])
        assert torch.equal(value, c.G.state_dict()[key])
    assert np.array_equal(a.generate_images(4), c.generate_images(4))
    other, hist_other = train_dcgan(images, DCGANConfig(**TINY, epochs=2, seed=4))
    assert hist_other != hist_a


def test_callback_sees_every_epoch_and_batches_skip_singletons() -> None:
    seen: list[tuple[int, float]] = []
    images = _disks(9)  # batches of 8 and a single image (skipped)
    _, history = train_dcgan(
        images,
        DCGANConfig(**TINY, epochs=2),
        callback=lambda epoch, means, model: seen.append((epoch, means["loss_D"])),
    )
    assert [e for e, _ in seen] == [0, 1]
    assert [loss for _, loss in seen] == [row["loss_D"] for row in history]


def test_sample_is_reproducible_and_in_range() -> None:
    model = DCGAN(DCGANConfig(**TINY))
    a = model.sample(5, torch.Generator().manual_seed(7), batch_size=2)
    b = model.sample(5, torch.Generator().manual_seed(7))
    assert a.shape == (5, 1, 32, 32)
    assert torch.allclose(a, b, atol=1e-6)  # eval mode: independent of the batch split
    assert float(a.min()) >= -1 and float(a.max()) <= 1
    assert model.sample(0).shape == (0, 1, 32, 32)
    assert model.G.training  # mode restored


def test_state_dict_round_trip(tmp_path) -> None:
    model, _ = train_dcgan(_disks(8), DCGANConfig(**TINY, epochs=1))
    torch.save(model.state_dict(), tmp_path / "dcgan.pt")
    state = torch.load(tmp_path / "dcgan.pt", weights_only=True)
    restored = DCGAN.from_state_dict(state)
    assert restored.config == model.config
    assert np.array_equal(restored.generate_images(3), model.generate_images(3))
    real = torch.from_numpy(_disks(8)[:, None]) * 2 - 1
    assert restored.train_step(real) == model.train_step(real)  # optimisers and noise RNG too


def test_augment_with_synthetic(trained) -> None:
    _, model, _, images = trained
    out = augment_with_synthetic(images, model, 5, seed=1)
    assert out.shape == (37, 32, 32) and out.dtype == np.float32
    assert np.array_equal(out[:32], images)
    assert out[32:].min() >= 0.0 and out[32:].max() <= 1.0
    assert np.array_equal(out, augment_with_synthetic(images, model, 5, seed=1))
    assert not np.array_equal(out[32:], augment_with_synthetic(images, model, 5, seed=2)[32:])
    assert augment_with_synthetic(images, model, 0).shape == images.shape
    with_channel = augment_with_synthetic(images[:, None], model, 2)
    assert with_channel.shape == (34, 1, 32, 32)
    with pytest.raises(ValueError, match="parameter .n. must be >= 0, got -1"):
        augment_with_synthetic(images, model, -1)


# ----------------------------------------------------------------------------------------------
# precision, memory format, optimiser (issue 18's GPU path)


def _step_before_the_gpu_path(model: DCGAN, real: torch.Tensor) -> dict[str, float]:
    """A copy of ``DCGAN.train_step`` as it was before precision, channels_last, the grad
    scaler and data-parallel noise existed: the fp32 reference the defaults must equal."""
    model.G.train()
    model.D.train()
    real = real.to(model.device, torch.float32)
    n = real.shape[0]
    ones = torch.ones(n, device=model.device)
    zeros = torch.zeros(n, device=model.device)
    fake = model.G(model.noise(n))
    model.opt_D.zero_grad(set_to_none=True)
    logit_real = model.D(real)
    logit_fake = model.D(fake.detach())
    loss_real = F.binary_cross_entropy_with_logits(logit_real, ones)
    loss_fake = F.binary_cross_entropy_with_logits(logit_fake, zeros)
    loss_d = loss_real + loss_fake
    loss_d.backward()
    model.opt_D.step()
    model.opt_G.zero_grad(set_to_none=True)
    for p in model.D.parameters():
        p.requires_grad_(False)
    logit_gen = model.D(fake)
    loss_g = F.binary_cross_entropy_with_logits(logit_gen, ones)
    loss_g.backward()
    for p in model.D.parameters():
        p.requires_grad_(True)
    model.opt_G.step()
    return {"loss_D": float(loss_d.detach()), "loss_G": float(loss_g.detach())}


def _state(model: DCGAN) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v for n, net in model.nets.items() for k, v in net.state_dict().items()}


def test_the_defaults_train_as_before_bit_for_bit() -> None:
    """fp32, ``foreach`` Adam, contiguous tensors: five steps of ``train_step`` leave every
    weight, running statistic and Adam moment exactly where the old step leaves them."""
    cfg = DCGANConfig(**TINY, seed=2)
    assert (cfg.precision, cfg.channels_last, cfg.fused_optimizer) == ("fp32", None, False)
    new, old = DCGAN(cfg), DCGAN(cfg)
    assert new.precision == "fp32" and not new.channels_last and not new.fused_optimizer
    assert not new.scaler.is_enabled()
    for step in range(5):
        real = torch.from_numpy(_disks(8, seed=step)[:, None]) * 2 - 1
        losses = new.train_step(real)
        reference = _step_before_the_gpu_path(old, real)
        assert {k: losses[k] for k in reference} == reference
    for key, value in _state(old).items():
        assert torch.equal(_state(new)[key], value), key
    for opt in ("opt_G", "opt_D"):
        for a, b in zip(
            getattr(new, opt).state.values(), getattr(old, opt).state.values(), strict=True
        ):
            assert torch.equal(a["exp_avg"], b["exp_avg"])
            assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_step_enters_autocast_once_and_backward_runs_without_it(precision: str) -> None:
    native = cpu_has_fast_bf16()
    with (
        pytest.warns(UserWarning, match="emulates")
        if precision == "bf16" and not native
        else contextlib.nullcontext()
    ):
        model = DCGAN(DCGANConfig(**TINY, precision=precision))
    assert model.precision == precision
    entered: list[int] = []
    original = model.autocast

    def counting() -> contextlib.AbstractContextManager[object]:
        entered.append(1)
        return original()

    model.autocast = counting  # type: ignore[method-assign]
    forward: list[bool] = []
    backward: list[bool] = []
    for net in model.nets.values():
        net.register_forward_hook(lambda *_: forward.append(torch.is_autocast_enabled("cpu")))
        next(net.parameters()).register_hook(
            lambda grad: backward.append(torch.is_autocast_enabled("cpu")) or grad
        )
    real = torch.from_numpy(_disks(4)[:, None]) * 2 - 1
    for _ in range(2):
        losses = model.train_step(real)
    assert len(entered) == 2
    assert all(np.isfinite(v) for v in losses.values())
    assert forward and all(on == (precision == "bf16") for on in forward)
    assert backward and not any(backward)
    assert model.sample(2).dtype == torch.float32


def test_fused_adam_and_channels_last_on_request() -> None:
    """``fused_optimizer: null`` is fused on CPU (as pix2pix); its weights stay within 1e-6 of
    the ``foreach`` path (measured here: 1.1e-8 after 10 steps). ``channels_last: true`` turns
    the weights to channels_last and changes no value beyond rounding."""
    base = DCGAN(DCGANConfig(**TINY))
    fused = DCGAN(DCGANConfig(**TINY, fused_optimizer=None))
    last = DCGAN(DCGANConfig(**TINY, channels_last=True))
    assert fused.fused_optimizer and fused.opt_G.param_groups[0]["fused"]
    assert not base.opt_G.param_groups[0]["fused"]
    conv = next(m for m in last.G.modules() if isinstance(m, nn.ConvTranspose2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    real = torch.from_numpy(_disks(8)[:, None]) * 2 - 1
    for _ in range(6):
        for model in (base, fused, last):
            model.train_step(real)
    for other in (fused, last):
        gap = max(
            float((a - b).abs().max())
            for a, b in zip(_state(base).values(), _state(other).values(), strict=True)
            if a.is_floating_point()
        )
        assert gap < 1e-6
    # a fused model's state loads back into a fused model, on the same optimiser path
    again = DCGAN.from_state_dict(fused.state_dict())
    assert again.opt_D.param_groups[0]["fused"] and again.config == fused.config


def test_config_precision_options_parse_and_name_the_key() -> None:
    cfg = DCGANConfig.from_dict({"precision": "auto", "channels_last": False})
    assert cfg.precision is Precision.AUTO and cfg.channels_last is False
    with pytest.raises(ValueError, match="precision"):
        DCGANConfig(precision="fp8")
    # a state saved before these fields existed loads with the defaults
    old = DCGAN(DCGANConfig(**TINY)).state_dict()
    for key in ("precision", "channels_last", "fused_optimizer"):
        old["config"].pop(key)
    del old["scaler"]
    assert DCGAN.from_state_dict(old).config == DCGANConfig(**TINY)


# ----------------------------------------------------------------------------------------------
# checkpoints and resume


def test_resume_from_the_checkpoint_ends_as_an_uninterrupted_run(tmp_path) -> None:
    images = _disks(10)
    cfg = DCGANConfig(**{**TINY, "batch_size": 4}, epochs=3, seed=1)
    straight, history = train_dcgan(images, cfg, checkpoint_dir=tmp_path / "straight")
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == ["last.pt"]
    saved = load_dcgan_checkpoint(tmp_path / "straight" / "last.pt")
    assert saved["epoch"] == 3 and saved["history"] == history
    seen: list[int] = []
    cut = DCGANConfig(**{**TINY, "batch_size": 4}, epochs=2, seed=1)
    train_dcgan(images, cut, checkpoint_dir=tmp_path / "cut")
    resumed, again = train_dcgan(
        images,
        cfg,
        lambda epoch, means, model: seen.append(epoch),
        checkpoint_dir=tmp_path / "cut",
        resume=True,
    )
    assert seen == [2] and again == history
    for key, value in _state(straight).items():
        assert torch.equal(_state(resumed)[key], value), key
    other = DCGANConfig(**{**TINY, "batch_size": 4}, epochs=3, seed=1, lr=1e-3)
    with pytest.raises(ValueError, match="lr: saved 0.0002 vs 0.001"):
        train_dcgan(images, other, checkpoint_dir=tmp_path / "cut", resume=True)
    with pytest.raises(ValueError, match="needs a checkpoint_dir"):
        train_dcgan(images, cfg, resume=True)
