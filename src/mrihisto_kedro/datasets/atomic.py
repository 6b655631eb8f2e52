"""Atomic writes for datasets: write a temporary file in the target folder, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pandas as pd


def _write_atomically(path: str | os.PathLike[str], write: Callable[[IO[str]], None]) -> Path:
    """Call ``write`` on a temporary text file beside ``path`` (UTF-8), then rename it over.

    A failure while writing leaves the old file untouched and no temporary file behind. The new
    file gets ordinary permissions (0644), not ``mkstemp``'s 0600.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            write(handle)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def write_csv_atomically(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` (no index) to ``path`` so that readers see the old file or the new one."""
    return _write_atomically(path, lambda handle: table.to_csv(handle, index=False))


def write_text_atomically(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` (UTF-8) to ``path`` the way :func:`write_csv_atomically` writes a table."""
    return _write_atomically(path, lambda handle: handle.write(text))
