"""Refuse images with more than 8 bits per sample where the readers would crush them.

OpenSlide decodes every slide to 8-bit RGBA: a 16-bit single-channel TIFF opened as a
``generic-tiff`` keeps only the high byte (12-bit data 0..4095 becomes 0..15; measured with
openslide-python 1.4 / OpenSlide 4.0). Pillow's ``convert("RGB")`` of a 16-bit greyscale PNG
(mode ``I;16``/``I``) clips every value above 255 to white. Neither warns, and histology at more
than 8 bits (fluorescence, 16-bit brightfield exports) has no single right window to map it to
8 bits, so these functions refuse such files with a message that names the file, its bit depth
and how to convert it, before any pixel is read.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

__all__ = ["BitDepthError", "check_tiff_bit_depth", "pil_rgb8", "png_bit_depth"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_HIGH_DEPTH_PIL_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_CONVERT_HINT = (
    "convert it to 8-bit RGB with the intensity window you want first, e.g. "
    "`vips scale IN OUT.tif` (min..max to 0..255) or `vips cast` after your own scaling, and use "
    "that file"
)


class BitDepthError(ValueError):
    """An image stores more than 8 bits per sample and would be silently crushed to 8."""


def check_tiff_bit_depth(path: str | os.PathLike[str], what: str = "slide") -> None:
    """Refuse a TIFF whose pages hold more than 8 bits per sample (header only).

    Args:
        path: a file; files that are not TIFFs (MIRAX, DICOM, ...) are not checked.
        what: how to name the file in the message (``slide``, ``histology image``).

    Raises:
        BitDepthError: naming the file, the page, its bits and samples per pixel, and the fix.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
        if magic not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return
        with tifffile.TiffFile(p) as tif:
            for index, page in enumerate(tif.pages):
                if not isinstance(page, tifffile.TiffPage):
                    continue
                bits = int(np.max(np.atleast_1d(page.bitspersample)))
                if bits > 8:
                    raise BitDepthError(
                        f"{what} {p}: page {index} ({page.imagewidth}x{page.imagelength} px) "
                        f"stores {bits} bits per sample ({page.samplesperpixel} sample(s) per "
                        f"pixel, {np.dtype(page.dtype).name}); OpenSlide reads 8-bit RGB only "
                        f"and would keep the high byte of each sample; {_CONVERT_HINT}"
                    )
    except (OSError, tifffile.TiffFileError, struct.error):
        return  # unreadable headers are OpenSlide's to diagnose


def png_bit_depth(path: str | os.PathLike[str]) -> int | None:
    """Bits per sample recorded in a PNG's IHDR chunk, or ``None`` if ``path`` is not a PNG."""
    with Path(path).open("rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[:8] != _PNG_MAGIC or head[12:16] != b"IHDR":
        return None
    return int(head[24])


def pil_rgb8(image: Image.Image, name: str) -> np.ndarray:
    """An 8-bit RGB array of a Pillow image, refusing images with more than 8 bits per sample.

    Args:
        image: as ``kedro_datasets.pillow.ImageDataset`` loads it.
        name: how to name the image in errors (its file, or its pair id).

    Returns:
        ``(h, w, 3)`` uint8.

    Raises:
        BitDepthError: the image's mode holds 16/32-bit or float samples, or its PNG file records
            a 16-bit depth (Pillow opens 16-bit RGB PNGs as 8-bit ``RGB``).
    """
    filename = getattr(image, "filename", "") or ""
    where = filename or name
    if image.mode in _HIGH_DEPTH_PIL_MODES:
        raise BitDepthError(
            f"histology image {where}: mode {image.mode!r} holds more than 8 bits per sample; "
            f"an RGB conversion would clip every value above 255; {_CONVERT_HINT}"
        )
    if filename and Path(filename).is_file():
        depth = png_bit_depth(filename)
        if depth is not None and depth > 8:
            raise BitDepthError(
                f"histology image {filename}: the PNG stores {depth} bits per sample and "
                f"Pillow reads only the high 8; {_CONVERT_HINT}"
            )
    return np.asarray(image.convert("RGB"))
