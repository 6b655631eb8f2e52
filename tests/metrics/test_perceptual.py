"""LPIPS: identical to ``lpips.LPIPS(net="alex", pnet_rand=True)`` given the same trunk; offline.

(b) runs with a random trunk; (f) checks the real converted trunk when ``mrihisto-weights`` has
been run, and skips with the reason otherwise.
"""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch

from mrihisto_kedro.metrics import weights as w
from mrihisto_kedro.metrics.perceptual import LPIPSMetric, features_to_lpips_net, lpips_distance


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def _random_alexnet_features(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    feats = w.torchvision_features_skeleton("alexnet")
    return {k: v.detach().clone() for k, v in feats.state_dict().items()}


def _images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size // 4, size // 4, generator=gen)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")


def _reference_lpips(features: dict[str, torch.Tensor]) -> torch.nn.Module:
    """lpips' own module with the trunk copied conv by conv (independent of our key mapping)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    convs = [m for m in ref.net.modules() if isinstance(m, torch.nn.Conv2d)]
    indices = sorted({int(k.split(".")[0]) for k in features})
    assert len(convs) == len(indices) == 5
    with torch.no_grad():
        for conv, i in zip(convs, indices, strict=True):
            conv.weight.copy_(features[f"{i}.weight"])
            conv.bias.copy_(features[f"{i}.bias"])
    return ref.eval()


def test_lpips_equals_lpips_package_with_same_trunk() -> None:
    feats = _random_alexnet_features(seed=1)
    ref = _reference_lpips(feats)
    x, y = _images(5, seed=2), _images(5, seed=3)
    y[2] = x[2]  # one identical pair
    with torch.inference_mode():
        expected = ref(2 * x - 1, 2 * y - 1).reshape(-1).double().numpy()

    metric = LPIPSMetric(state_dict=feats, batch_size=2)  # 3 batches
    got = metric(x, y)
    assert got.dtype == np.float64 and got.shape == (5,)
    assert expected.max() > 1e-3  # not a trivially zero comparison
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert got[2] == 0.0

    # grey images given with one channel == the same image with three equal channels
    gx, gy = x[:, :1], y[:, :1]
    np.testing.assert_allclose(
        lpips_distance(gx, gy, metric=metric),
        metric(gx.expand(-1, 3, -1, -1), gy.expand(-1, 3, -1, -1)),
        rtol=1e-6,
    )


def test_explicit_path_and_torchvision_full_layout(tmp_path: Path) -> None:
    feats = _random_alexnet_features(seed=4)
    full = {f"features.{k}": v for k, v in feats.items()}
    full["classifier.1.weight"] = torch.zeros(2, 2)  # ignored
    path = tmp_path / "alexnet_full.pth"
    torch.save(full, path)
    metric = LPIPSMetric(weights_path=path)
    assert metric.location is not None and metric.location.source == "explicit"
    x, y = _images(2, seed=5), _images(2, seed=6)
    np.testing.assert_allclose(metric(x, y), LPIPSMetric(state_dict=feats)(x, y), rtol=1e-6)


def test_features_to_lpips_net_keys() -> None:
    feats = _random_alexnet_features(seed=7)
    keys = set(features_to_lpips_net(feats, "alex"))
    assert keys == {
        f"slice{s}.{i}.{p}"
        for s, i in [(1, 0), (2, 3), (3, 6), (4, 8), (5, 10)]
        for p in ("weight", "bias")
    }
    vgg_keys = {f"{i}.weight" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}
    mapped = features_to_lpips_net(dict.fromkeys(vgg_keys, torch.zeros(1)), "vgg")
    assert {k.split(".")[0] for k in mapped} == {f"slice{s}" for s in range(1, 6)}
    assert "slice5.28.weight" in mapped and "slice1.2.weight" in mapped


def test_missing_weights_and_bad_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(w.WeightsUnavailable) as info:
        LPIPSMetric()
    assert info.value.name == "alexnet"
    assert "mrihisto-weights" in info.value.reason
    metric = LPIPSMetric(state_dict=_random_alexnet_features(seed=8))
    with pytest.raises(ValueError, match="same shape"):
        metric(_images(2), _images(3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metric(_images(1) * 2 - 1, _images(1))
    with pytest.raises(ValueError, match="net must be"):
        LPIPSMetric(state_dict={}, net="squeeze")


# --------------------------------------------------------------------------------------------
# (f) real weights, when present


@pytest.fixture(scope="module")
def real_metric() -> LPIPSMetric:
    loc = w.locate_weights("alexnet")
    if not loc.found:
        pytest.skip(f"real AlexNet trunk weights absent ({loc.reason})")
    return LPIPSMetric()


def test_real_weights_sanity(real_metric: LPIPSMetric) -> None:
    from skimage import data, transform

    names = ["astronaut", "chelsea", "coffee"]
    imgs = [transform.resize(getattr(data, n)(), (64, 64), anti_aliasing=True) for n in names]
    x = torch.tensor(np.stack(imgs), dtype=torch.float32).permute(0, 3, 1, 2)
    assert np.all(real_metric(x, x) == 0.0)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    levels = [0.02, 0.05, 0.1, 0.2]
    d = np.stack([real_metric(x, (x + s * noise).clamp(0, 1)) for s in levels])
    assert np.all(np.diff(d, axis=0) > 0)  # grows with the noise, for every image
    assert np.all(d[0] < 0.1) and np.all(d[-1] > 0.1)
    # two different natural images are further apart than an image and a lightly noisy copy
    other = real_metric(x, x[[1, 2, 0]])
    assert np.all(other > d[1])
    assert np.all((other > 0.2) & (other < 1.5))


def test_real_vgg_trunk_sanity() -> None:
    loc = w.locate_weights("vgg16")
    if not loc.found:
        pytest.skip(f"real VGG16 trunk weights absent ({loc.reason})")
    metric = LPIPSMetric(net="vgg")
    x = _images(1, size=48, seed=9)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert metric(x, x)[0] == 0.0
    assert 0.01 < metric(x, noisy)[0] < 1.5
