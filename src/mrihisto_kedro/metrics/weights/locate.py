"""Where the weights are: the hub cache, its verified files and sidecars, and loading them.

Lookup order (:func:`locate_weights`):

1. an explicit path (a parameter). When given it is authoritative: a missing or invalid file is
   reported as such, there is no silent fallback to another file;
2. the torch hub cache, ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``):
   first the upstream file under its upstream name, accepted only when its SHA-256 matches
   (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` by its full hash, torchvision's
   ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth`` by the hash prefix in the name, as
   torchvision itself checks), then the file converted by ``mrihisto-weights`` under our own
   name, accepted only when its SHA-256 matches the JSON sidecar written beside it
   (:func:`save_converted` writes both);
3. otherwise the weights are missing, with a reason that names the command to run once.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mrihisto_kedro.durability.atomic import atomic_path
from mrihisto_kedro.metrics.weights.architectures import normalize_state_dict
from mrihisto_kedro.metrics.weights.hashing import cached_sha256_file, sha256_bytes
from mrihisto_kedro.metrics.weights.registry import (
    COMMAND,
    WeightSpec,
    WeightsUnavailable,
    weight_spec,
)

__all__ = [
    "WeightsLocation",
    "check_converted",
    "check_upstream",
    "checkpoint_dir",
    "find_weights",
    "installed",
    "load_state_dict",
    "locate_weights",
    "require_weights",
    "save_converted",
    "sidecar_path",
]


def checkpoint_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding checkpoint files: ``cache_dir``, else the torch hub's.

    ``torch.hub.get_dir()`` is ``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``), evaluated at
    call time; checkpoints live in its ``checkpoints`` sub-directory.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints"


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


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar of a converted file: ``<file>.json`` beside it."""
    return path.with_name(path.name + ".json")


def check_upstream(spec: WeightSpec, path: Path) -> str | None:
    """``None`` if the upstream-named file is usable, else why not."""
    if not path.is_file():
        return f"{path} not found"
    digest = cached_sha256_file(path)
    if not digest.startswith(spec.upstream_sha256):
        return f"{path} has SHA-256 {digest}, expected {spec.upstream_sha256}..."
    return None


def check_converted(path: Path) -> str | None:
    """``None`` if our converted file matches its sidecar's SHA-256, else why not."""
    if not path.is_file():
        return f"{path} not found"
    side = sidecar_path(path)
    try:
        meta = json.loads(side.read_text())
        expected = str(meta["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{path}: unreadable sidecar {side.name} ({exc.__class__.__name__}: {exc})"
    digest = cached_sha256_file(path)
    if digest != expected:
        return f"{path} has SHA-256 {digest}, its sidecar says {expected} (corrupt or replaced)"
    return None


def installed(spec: WeightSpec, folder: Path) -> str | None:
    """Description of an already present, verified file for ``spec`` in ``folder``, or None."""
    if check_upstream(spec, folder / spec.upstream_filename) is None:
        return f"upstream file {folder / spec.upstream_filename} present and verified"
    if check_converted(folder / spec.filename) is None:
        return f"{folder / spec.filename} present and verified"
    return None


def save_converted(
    spec: WeightSpec, folder: Path, state: Mapping[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Save ``state`` with ``torch.save`` as ``folder/spec.filename``, then its JSON sidecar.

    Each file is written atomically (:func:`~mrihisto_kedro.durability.atomic.atomic_path`); the
    sidecar, written last, holds the SHA-256 and size in bytes of the saved file, its layout, its
    provenance and ``meta`` (the conversion's self-checks).

    Returns:
        The path of the saved weights file.
    """
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
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    with atomic_path(sidecar_path(out)) as tmp:
        tmp.write_bytes((json.dumps(sidecar, indent=2) + "\n").encode())
    return out


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
    spec = weight_spec(name)
    if explicit_path is not None and str(explicit_path) != "":
        p = Path(explicit_path).expanduser()
        if p.is_file():
            return WeightsLocation(name, p, "explicit", "")
        return WeightsLocation(name, None, None, f"explicit path {p} is not a file")

    folder = checkpoint_dir(cache_dir)
    notes: list[str] = []
    upstream = folder / spec.upstream_filename
    problem = check_upstream(spec, upstream)
    if problem is None:
        return WeightsLocation(name, upstream, "hub-upstream", "")
    notes.append(problem)
    converted = folder / spec.filename
    problem = check_converted(converted)
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


def load_state_dict(
    name: str,
    explicit_path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[dict[str, torch.Tensor], WeightsLocation]:
    """Locate, load (``torch.load(weights_only=True)``, CPU) and normalise the weights for ``name``.

    Returns:
        ``(state_dict, location)`` with the state dict in the canonical layout of
        :func:`~mrihisto_kedro.metrics.weights.architectures.normalize_state_dict`.

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
