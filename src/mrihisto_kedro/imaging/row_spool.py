"""Rows of pixels produced one strip at a time, written as a pyramidal TIFF in bounded memory.

A producer that yields a large image top to bottom (the sliding-window stitcher, the demo's
virtual-slide renderer) cannot hand libvips a numpy array of the whole image: at 60,000 x 45,000
px that is 8 GB. :func:`spool_rows_to_pyramidal_tiff` writes the rows in order into an
uncompressed, contiguous strip TIFF on disk (``H * W * bands`` bytes, plain file writes, so the
pixels live in the page cache, not in the process), then libvips streams that file sequentially
into :func:`mrihisto_kedro.imaging.tiff.write_pyramidal_tiff` (atomic, bounded memory). The spool
file is a hidden ``.<destination name>.<random>.stitch.tif`` beside the destination (or in
``tmp_dir``) and is removed in every case; the destination appears only when complete.

Units: pixels; the physical pixel size travels in the :class:`SlideImage` the caller builds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyvips
import tifffile

from mrihisto_kedro.durability.disk_space import require_free_space

__all__ = [
    "check_free_space",
    "create_strip_tiff",
    "release_free_memory",
    "spool_rows_to_pyramidal_tiff",
    "temp_file",
    "writable_folder",
]

_STRIP_BYTES = 1 << 20  # target strip size of the spool TIFF (libtiff reads a strip whole)
_BIGTIFF_BYTES = 3_800_000_000
SPOOL_SUFFIX = "stitch.tif"


def writable_folder(folder: Path, what: str, target: Path) -> None:
    """Create ``folder`` (and parents) or fail with a message naming ``target``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            error.errno,
            f"cannot write {target}: the {what} {folder} cannot be created "
            f"({error.strerror or error})",
            str(folder),
        ) from error
    if not folder.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR, f"cannot write {target}: {folder} is not a folder", str(folder)
        )


def temp_file(folder: Path, target: Path, suffix: str) -> Path:
    """A new empty hidden file in ``folder`` named after ``target``; clear error if impossible."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".{suffix}", dir=folder)
    except OSError as error:
        raise OSError(
            error.errno,
            f"cannot write {target}: cannot create a file in {folder} ({error.strerror or error})",
            str(folder),
        ) from error
    os.close(fd)
    return Path(name)


def check_free_space(folder: Path, needed: int, target: Path, what: str) -> None:
    """Raise ``OSError(ENOSPC)`` naming ``target`` if ``folder`` has under ``needed`` bytes free."""
    require_free_space(folder, needed, target, what, hint="set tmp_dir")


def release_free_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    numpy buffers up to 32 MiB come from the glibc heap once large blocks have been freed, and
    glibc keeps such freed pages: without this, the buffers of the producing phase stay resident
    while libvips builds the pyramid, and the two peaks add up.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def create_strip_tiff(path: Path, height: int, width: int, channels: int) -> int:
    """Lay out an uncompressed, contiguous strip TIFF at ``path``; return its pixel offset."""
    rows_per_strip = max(1, min(height, _STRIP_BYTES // (width * channels)))
    tifffile.imwrite(
        path,
        shape=(height, width, channels) if channels > 1 else (height, width),
        dtype=np.uint8,
        photometric="rgb" if channels == 3 else "minisblack",
        rowsperstrip=rows_per_strip,
        bigtiff=height * width * channels > _BIGTIFF_BYTES,
        metadata=None,
    )
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        offsets, counts = page.dataoffsets, page.databytecounts
        contiguous = all(offsets[i] + counts[i] == offsets[i + 1] for i in range(len(offsets) - 1))
        if not contiguous or sum(counts) != height * width * channels:
            raise RuntimeError(f"tifffile did not lay out {path} contiguously")
        return int(offsets[0])


def spool_rows_to_pyramidal_tiff(
    rows: Iterable[np.ndarray],
    shape: tuple[int, int, int],
    out_path: Path,
    write: Callable[[pyvips.Image, Path], object],
    *,
    tmp_dir: Path | None = None,
) -> Path:
    """Write ``rows`` (top to bottom) through a spool file into ``write(image, out_path)``.

    Args:
        rows: uint8 blocks ``(rows, W, C)`` (or ``(rows, W)`` for ``C == 1``) in order, covering
            the image exactly; consumed once.
        shape: ``(H, W, C)`` of the whole image, ``C`` 1 or 3.
        out_path: the destination (named in errors and in the spool file's name).
        write: writes a lazy ``pyvips.Image`` (sequential access) at ``out_path``, e.g. a
            ``write_pyramidal_tiff`` call with the caller's metadata and options.
        tmp_dir: folder of the spool file (default: the destination folder).

    Returns:
        ``out_path``.

    Raises:
        OSError: the spool folder cannot be created or lacks ``H * W * C`` bytes (raised before
            the first row is produced).
        ValueError: a block of the wrong dtype or width.
        RuntimeError: the rows do not add up to ``H`` rows.
    """
    height, width, channels = shape
    scratch = Path(tmp_dir) if tmp_dir is not None else out_path.parent
    writable_folder(scratch, "temporary folder", out_path)
    needed = height * width * channels
    check_free_space(scratch, needed, out_path, f"the temporary {width}x{height}x{channels} image")
    spool = temp_file(scratch, out_path, SPOOL_SUFFIX)
    try:
        offset = create_strip_tiff(spool, height, width, channels)
        with open(spool, "r+b") as fh:
            fh.seek(offset)
            for block in rows:
                if block.dtype != np.uint8 or block.shape[1] != width:
                    raise ValueError(
                        f"{out_path}: rows must be uint8 of width {width}, got "
                        f"{block.dtype} {block.shape}"
                    )
                fh.write(np.ascontiguousarray(block).data)  # .data: the memoryview
            if fh.tell() != offset + needed:
                raise RuntimeError(
                    f"{out_path}: the rows hold {fh.tell() - offset} bytes, expected {needed}"
                )
        del rows
        release_free_memory()
        source = pyvips.Source.new_from_file(str(spool))  # source loads are not cached by libvips
        write(pyvips.Image.new_from_source(source, "", access="sequential"), out_path)
    finally:
        spool.unlink(missing_ok=True)
    return out_path
