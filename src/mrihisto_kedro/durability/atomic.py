"""One way to replace a file or a folder so that readers see the old one or the new one, never half.

:func:`atomic_path` hands out a staging path beside the destination (same folder, so the final
``os.replace`` is an atomic rename on one file system), under a hidden name that
:mod:`mrihisto_kedro.durability.temporaries` recognises (``.<stem>.tmp-<12 hex><suffix>``: the
destination's extension is kept, so writers that pick a format by extension, ITK and libvips,
write the same format). On a clean exit the file is fsynced, given the permissions of the file it
replaces (else ``0o666`` minus the umask; ``mkstemp`` would leave ``0o600``), renamed over the
destination and the folder fsynced; on any exception, ``KeyboardInterrupt`` included, the staging
file is removed and the destination is untouched.

:func:`replace_folder` is the folder variant (tile sets, DICOM series, staged partitions): a
folder cannot be renamed over a non-empty folder, so the old one is first moved aside
(``.<name>.old-<12 hex>``), the new one renamed into place, and the old one removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "final_mode", "fsync_folder", "replace_folder", "staging_path"]


def _umask() -> int:
    """The process umask, read without changing it where possible (thread-safe on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def final_mode(dest: Path) -> int:
    """Permissions for a new ``dest``: those of the file it replaces, else 0o666 minus the umask."""
    try:
        return stat.S_IMODE(dest.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where the OS refuses."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def staging_path(dest: Path) -> Path:
    """The hidden staging name for ``dest``: ``.<stem>.tmp-<12 hex><suffix>`` in its folder."""
    suffix = "".join(dest.suffixes)
    stem = dest.name[: len(dest.name) - len(suffix)] if suffix else dest.name
    return dest.parent / f".{stem}.tmp-{uuid.uuid4().hex[:12]}{suffix}"


@contextmanager
def atomic_path(dest: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Yield a staging path for ``dest``; rename it over ``dest`` when the block ends cleanly.

    Args:
        dest: the file to write; its folder is created if missing.
        fsync: flush the file and the folder to disk (off only for scratch files).

    Yields:
        The staging path (not yet created): the block writes the whole file there.

    Raises:
        FileNotFoundError: the block ended without writing the staging file.

    Example::

        with atomic_path("data/06_models/x/generator.pt") as tmp:
            torch.save(state, tmp)
    """
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_path(target)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{target}: nothing was written to its staging file {tmp}")
        os.chmod(tmp, final_mode(target))
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, target)
        if fsync:
            fsync_folder(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def replace_folder(new: Path, dest: Path) -> None:
    """Rename folder ``new`` to ``dest``; an existing ``dest`` is removed only after success.

    The old folder is first renamed aside; if renaming ``new`` into place fails, it is put back,
    so readers see either the old or the new folder, never a half-written one.

    Args:
        new: the complete staging folder, beside ``dest`` (same file system).
        dest: the folder to replace (may not exist yet).
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
