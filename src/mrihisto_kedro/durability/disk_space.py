"""Free disk space checked before long writes, so a full disk stops the work before it starts.

A write whose size is known in advance (a tile set's memory-mapped arrays, the stitcher's row
spool) checks the free space of the folder it writes into first. Memory-mapped ``.npy`` files
are sparse: without the check a full disk surfaces only while the pages are written back, as a
``SIGBUS`` that kills the run with no message.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

__all__ = ["require_free_space"]


def require_free_space(
    folder: str | os.PathLike[str],
    needed: int,
    target: str | os.PathLike[str],
    what: str,
    hint: str = "",
) -> None:
    """Raise ``OSError(ENOSPC)`` naming ``target`` if ``folder`` has under ``needed`` bytes free.

    Args:
        folder: the folder that will hold the bytes (if it does not exist yet, its nearest
            existing parent, on whose file system it will be created).
        needed: bytes the write needs.
        target: what is being written (named in the message).
        what: the part of it that needs the space, e.g. ``"its 1200 tiles"``.
        hint: an optional remedy appended to the message.
    """
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"cannot write {target}: {what} needs {needed / 2**30:.2f} GiB in {folder}, only "
            f"{free / 2**30:.2f} GiB free" + (f" ({hint})" if hint else ""),
            str(folder),
        )
