"""Atomic text writes for datasets and hooks: tables and text files via ``atomic_path``."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from mrihisto_kedro.durability.atomic import atomic_path

__all__ = ["write_csv_atomically", "write_text_atomically"]


def write_csv_atomically(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` (no index, UTF-8) to ``path`` so that readers see the old file or the new.

    A failure while writing leaves the old file untouched and no temporary file behind; see
    :func:`mrihisto_kedro.durability.atomic.atomic_path` for permissions and fsync.
    """
    dest = Path(path)
    with atomic_path(dest) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        table.to_csv(handle, index=False)
    return dest


def write_text_atomically(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` the way tables are written."""
    dest = Path(path)
    with atomic_path(dest) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        handle.write(text)
    return dest
