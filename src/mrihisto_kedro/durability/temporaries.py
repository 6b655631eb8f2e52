"""Stale temporaries of this project's own naming, left by killed runs, and their removal.

Every writer here stages its output beside the destination under a hidden name and renames
it into place when complete; a ``kill -9`` in between leaves the staging file or folder
behind (8 kills during ``save_tileset`` left 4.3 GB). The names, by writer:

* ``.<stem>.tmp-<12 hex><extensions>`` -- every file written through
  :func:`mrihisto_kedro.durability.atomic.atomic_path` (checkpoints, SimpleITK images and
  transforms, tables, pyramidal TIFFs and the Aperio writer's scratch pyramid) and the staging
  folders of tile sets, staged partitions, DICOM series and detached-header images; also
  ``.<name>.tmp-<12 hex>``, the checkpoint name before ``atomic_path``;
* ``.<name>.old-<12 hex>`` -- the previous folder moved aside by ``replace_folder``;
* ``.<name>.<random>[.<tag>].tmp[.<ext>]`` and ``.<name>.tmp`` -- ``tempfile.mkstemp`` files of
  the weights cache, the writable probe, the imzML pair writer, and of earlier versions of the
  TIFF writer, the dataset writes and transforms;
* ``.<name>.<random>.stitch.tif`` -- the row spool of the stitcher and the demo.

Only entries matching these patterns are touched, and only while the run holds the output
root's lock (:mod:`mrihisto_kedro.durability.lock`): no other run can be writing them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

__all__ = ["is_stale_temporary", "remove_stale_temporaries", "stale_temporaries"]

_PATTERNS = (
    re.compile(r"^\..+\.(?:tmp|old)-[0-9a-f]{12}(?:\..+)?$"),
    re.compile(r"^\..+\.tmp(?:\.\w+)?$"),
    re.compile(r"^\..+\.stitch\.tif$"),
)


def is_stale_temporary(name: str) -> bool:
    """Whether a file or folder name is one of this project's staging names."""
    return any(p.match(name) for p in _PATTERNS)


def stale_temporaries(root: str | os.PathLike[str]) -> list[Path]:
    """Staging files and folders under ``root`` (a matching folder is not descended into)."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for name in list(dirs):
            if is_stale_temporary(name):
                found.append(here / name)
                dirs.remove(name)
        found += [here / name for name in files if is_stale_temporary(name)]
    return sorted(found)


def remove_stale_temporaries(root: str | os.PathLike[str]) -> tuple[list[Path], int]:
    """Remove :func:`stale_temporaries` of ``root``; return them and the bytes freed."""
    removed, freed = [], 0
    for path in stale_temporaries(root):
        if path.is_dir() and not path.is_symlink():
            freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path, ignore_errors=True)
        else:
            freed += path.lstat().st_size
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed, freed
