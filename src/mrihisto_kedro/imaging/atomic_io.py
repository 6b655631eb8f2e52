"""Atomic replacement of a folder (used by the tile-set store and DICOM series writing)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def replace_folder(new: Path, dest: Path) -> None:
    """Rename folder ``new`` to ``dest``; an existing ``dest`` is removed only after success.

    The old folder is first renamed aside; if renaming ``new`` into place fails, it is put back,
    so readers see either the old or the new folder, never a half-written one.
    """
    if not dest.exists():
        os.replace(new, dest)
        return
    backup = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:12]}"
    os.replace(dest, backup)
    try:
        os.replace(new, dest)
    except OSError:
        os.replace(backup, dest)
        raise
    shutil.rmtree(backup, ignore_errors=True)
