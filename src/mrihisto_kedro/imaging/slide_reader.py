"""Pyramid levels of a TIFF-family slide read through libvips, for :class:`~.slides.Slide`.

libvips' ``Region.fetch`` reads 1.4-1.7x the 256 px tiles per second of OpenSlide's
``read_region`` on a JPEG pyramid, and the project's ``Slide.read_region`` through it 1.6-2.5x
its OpenSlide path (``benchmarks/bench_tile_reads.py``, docs/scaling.md), with identical pixels
when both decode the same TIFF page. :class:`VipsLevels` finds, for a slide whose levels are
whole TIFF pages (OpenSlide vendors ``aperio`` and ``generic-tiff``), the page of each level that
libvips decodes to the same pixels (tiled, 8-bit RGB, contiguous, a compression libvips reads),
and reads rectangles of it. Which rectangles are safe is decided by the caller
(:meth:`Slide.read_region`): only those whose level coordinates are whole numbers, since
OpenSlide interpolates at fractional ones.

The first read of each level is also read through OpenSlide and compared by the caller; a level
whose pixels differ is not read through libvips again (:meth:`VipsLevels.disable`).

Conventions: ``(x, y)`` and ``(width, height)`` are pixels of the level; arrays are
``(height, width, 3)`` ``uint8``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyvips
import tifffile

__all__ = ["VipsLevels", "vips_pages"]

# TIFF compressions libvips decodes: none, LZW, JPEG (old and new), deflate (two codes)
_VIPS_TIFF_COMPRESSIONS = {1, 5, 6, 7, 8, 32946}
_RGB_PHOTOMETRICS = {2, 6}  # RGB, YCbCr


def vips_pages(path: Path, level_dimensions: list[tuple[int, int]]) -> dict[int, int]:
    """``{level: TIFF page}`` for the levels libvips can read with OpenSlide's pixels.

    A level qualifies when a tiled page of exactly its size holds 3 contiguous 8-bit samples
    (RGB or YCbCr) in a compression libvips decodes. Levels without one are absent (OpenSlide
    reads them). An unreadable TIFF structure gives ``{}``.
    """
    pages: dict[int, int] = {}
    try:
        with tifffile.TiffFile(path) as tf:
            for index, page in enumerate(tf.pages):
                if not isinstance(page, tifffile.TiffPage) or not page.is_tiled:
                    continue
                if (
                    page.samplesperpixel != 3
                    or page.bitspersample != 8
                    or int(page.planarconfig) != 1
                    or int(page.photometric) not in _RGB_PHOTOMETRICS
                    or int(page.compression) not in _VIPS_TIFF_COMPRESSIONS
                ):
                    continue
                size = (page.imagewidth, page.imagelength)
                for level, dims in enumerate(level_dimensions):
                    if dims == size and level not in pages:
                        pages[level] = index
    except (OSError, ValueError, tifffile.TiffFileError):
        return {}
    return pages


class VipsLevels:
    """Rectangles of a slide's levels read through libvips' TIFF loader.

    Thread-safe: images are shared, one ``pyvips.Region`` per thread and level.

    Args:
        path: the slide file.
        pages: ``{level: TIFF page}`` from :func:`vips_pages`.
    """

    def __init__(self, path: Path, pages: dict[int, int]) -> None:
        """Remember the pages; nothing is opened until a level is read."""
        self._path = path
        self._pages = dict(pages)
        self._images: dict[int, pyvips.Image] = {}
        self._verified: set[int] = set()
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def levels(self) -> list[int]:
        """Levels read through libvips (ascending)."""
        return sorted(self._pages)

    def has(self, level: int) -> bool:
        """Whether ``level`` is read through libvips."""
        return level in self._pages

    def verified(self, level: int) -> bool:
        """Whether a read of ``level`` has been compared with OpenSlide's pixels."""
        return level in self._verified

    def mark_verified(self, level: int) -> None:
        """Record that ``level``'s pixels matched OpenSlide's."""
        self._verified.add(level)

    def disable(self, level: int) -> None:
        """Stop reading ``level`` through libvips (its pixels differ from OpenSlide's)."""
        with self._lock:
            self._pages.pop(level, None)
            self._images.pop(level, None)

    def _region(self, level: int) -> tuple[pyvips.Region, int, int]:
        regions: dict[int, tuple[pyvips.Region, int, int]] | None = getattr(
            self._local, "regions", None
        )
        if regions is None:
            regions = self._local.regions = {}
        if level not in regions:
            with self._lock:
                image = self._images.get(level)
                page = self._pages.get(level)
                if page is None:  # disabled by another thread meanwhile: OpenSlide reads it
                    raise pyvips.Error(f"level {level} of '{self._path}' is read by OpenSlide")
                if image is None:
                    image = pyvips.Image.tiffload(str(self._path), page=page, fail_on="error")
                    self._images[level] = image
            regions[level] = (pyvips.Region.new(image), image.width, image.height)
        return regions[level]

    def read(
        self,
        level: int,
        xy: tuple[int, int],
        wh: tuple[int, int],
        background: tuple[int, int, int],
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """The ``(h, w, 3)`` uint8 rectangle at level pixels ``xy``, ``background`` outside.

        Written into ``out`` (an ``(h, w, 3)`` uint8 array, returned) when given.

        Raises:
            pyvips.Error: libvips cannot decode the pixels (the caller falls back to OpenSlide).
        """
        region, lw, lh = self._region(level)
        (x, y), (w, h) = xy, wh
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, lw), min(y + h, lh)
        inside = x1 > x0 and y1 > y0
        if out is None:
            out = np.empty((h, w, 3), dtype=np.uint8)
        if inside and (x0, y0, x1, y1) == (x, y, x + w, y + h):
            out[...] = np.frombuffer(region.fetch(x, y, w, h), dtype=np.uint8).reshape(h, w, 3)
            return out
        out[...] = background
        if inside:
            buf = region.fetch(x0, y0, x1 - x0, y1 - y0)
            out[y0 - y : y1 - y, x0 - x : x1 - x] = np.frombuffer(buf, dtype=np.uint8).reshape(
                y1 - y0, x1 - x0, 3
            )
        return out

    def close(self) -> None:
        """Drop the libvips images (regions of other threads go with their threads)."""
        with self._lock:
            self._images.clear()
            self._pages.clear()
        self._local = threading.local()
