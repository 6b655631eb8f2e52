"""FID Inception features: identical to pytorch-fid's InceptionV3 given the same weights; offline.

(a) runs with a random state dict (no real weights needed); (f) checks the real converted weights
when ``mrihisto-weights`` has been run, and skips with the reason otherwise.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_fid import inception as pfi

from mrihisto_kedro.metrics import weights as w
from mrihisto_kedro.metrics.frechet import frechet_distance_from_features
from mrihisto_kedro.metrics.inception import (
    InceptionFeatures,
    as_rgb_batch,
    build_fid_inception,
    inception_features,
)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture(scope="module")
def random_state() -> dict[str, torch.Tensor]:
    """A random but well-scaled FID Inception state dict (He-initialised convs, random BN
    statistics, random ``fc``) so that the 2048-d features are far from zero."""
    gen = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        skeleton = w.fid_inception_skeleton()
    state: dict[str, torch.Tensor] = {}
    for key, meta in skeleton.state_dict().items():
        shape = meta.shape
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif key.endswith("bn.weight"):
            state[key] = 0.8 + 0.4 * torch.rand(shape, generator=gen)
        elif key.endswith("bn.bias") or key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=gen)
        else:  # fc.weight, fc.bias
            state[key] = 0.01 * torch.randn(shape, generator=gen)
    return state


def _images(n: int, size: int = 75, seed: int = 1) -> torch.Tensor:
    """Smooth-ish random RGB images in [0, 1], (n, 3, size, size)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size // 5, size // 5, generator=gen)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")


def test_features_equal_pytorch_fid_inception(
    random_state: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytorch-fid's own InceptionV3, its "download" replaced by our random state dict
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: dict(random_state))
    reference = pfi.InceptionV3(
        [3], resize_input=True, normalize_input=True, use_fid_inception=True
    ).eval()

    x = _images(2)
    x[1] = x[1, :1]  # a grey image (three equal channels)
    with torch.inference_mode():
        expected = reference(x)[0].reshape(2, 2048).double().numpy()

    no_fc = {k: v for k, v in random_state.items() if not k.startswith("fc.")}
    extractor = InceptionFeatures(state_dict=no_fc, batch_size=2)
    got = extractor(x)
    assert got.dtype == np.float64 and got.shape == (2, 2048)
    assert expected.std() > 0.05  # the random network does not collapse to zeros
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # (one-channel input is repeated to these three equal channels: test_as_rgb_batch_validation)


def test_explicit_path_with_or_without_fc(
    random_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    path = tmp_path / "pt_inception_random.pth"
    torch.save(random_state, path)  # pytorch-fid's layout, fc included
    extractor = InceptionFeatures(weights_path=path)
    assert extractor.location is not None and extractor.location.source == "explicit"
    with pytest.raises(TypeError):
        inception_features([[0.0]], extractor=extractor)  # type: ignore[arg-type]
    model = build_fid_inception(random_state)
    assert isinstance(model, pfi.InceptionV3)
    params = dict(extractor.model.named_parameters())
    assert len(params) == len(dict(model.named_parameters())) > 0
    assert not any(p.requires_grad for p in params.values())


def test_missing_weights_raise_with_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(w.WeightsUnavailable) as info:
        InceptionFeatures()
    assert info.value.name == "fid"
    assert "mrihisto-weights" in info.value.reason
    assert "pt_inception-2015-12-05-6726825d.pth" in info.value.reason


def test_incomplete_state_dict_is_refused(random_state: dict[str, torch.Tensor]) -> None:
    partial = {k: v for k, v in random_state.items() if not k.startswith("Mixed_7c.")}
    with pytest.raises(w.WeightsUnavailable, match="missing"):
        build_fid_inception(partial)


def test_as_rgb_batch_validation() -> None:
    grey = np.random.default_rng(0).random((2, 1, 4, 5)).astype(np.float32)
    out = as_rgb_batch(grey)
    assert out.shape == (2, 3, 4, 5) and out.dtype == torch.float32
    assert all(np.array_equal(out[:, c].numpy(), grey[:, 0]) for c in range(3))
    assert as_rgb_batch(np.zeros((2, 4, 5))).shape == (2, 3, 4, 5)
    u8 = as_rgb_batch(np.full((1, 3, 2, 2), 255, dtype=np.uint8))
    assert float(u8.max()) == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_rgb_batch(torch.full((1, 3, 2, 2), -0.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_rgb_batch(torch.full((1, 3, 2, 2), 255.0))
    with pytest.raises(ValueError, match="must be"):
        as_rgb_batch(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        as_rgb_batch(torch.full((1, 3, 2, 2), float("nan")))


# --------------------------------------------------------------------------------------------
# (f) real weights, when present


@pytest.fixture(scope="module")
def real_extractor() -> InceptionFeatures:
    loc = w.locate_weights("fid")
    if not loc.found:
        pytest.skip(f"real FID Inception weights absent ({loc.reason})")
    return InceptionFeatures()


def test_real_weights_sanity(real_extractor: InceptionFeatures) -> None:
    from skimage import data, transform

    names = ["astronaut", "chelsea"]
    imgs = [transform.resize(getattr(data, n)(), (75, 75), anti_aliasing=True) for n in names]
    x = torch.tensor(np.stack(imgs), dtype=torch.float32).permute(0, 3, 1, 2)
    feats = real_extractor(x)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    assert feats.min() >= 0.0  # averages of ReLU outputs
    assert 0.05 < feats.mean() < 2.0  # pool3 activations of natural images are O(0.1-1)
    # different natural images have clearly different features
    assert np.abs(feats[0] - feats[1]).mean() > 0.05
    # FID of a set with itself is ~0; against a very noisy copy it is large
    assert abs(frechet_distance_from_features(feats, feats)) < 1e-6
    gen = torch.Generator().manual_seed(0)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    assert frechet_distance_from_features(feats, real_extractor(noisy)) > 10.0


def test_real_converted_weights_match_the_torchscript(real_extractor: InceptionFeatures) -> None:
    loc = real_extractor.location
    assert loc is not None
    if loc.source != "hub-converted":
        pytest.skip(f"weights come from {loc.source} ({loc.path}), not from the conversion")
    meta = json.loads(Path(f"{loc.path}.json").read_text())
    assert meta["source"]["sha256"] == w.WEIGHTS["fid"].member_sha256
    assert meta["fc_present"] is False
    assert meta["self_check_max_abs_diff_vs_torchscript"] < 1e-4
