"""Lazy, read-only access to whole-slide images through OpenSlide (and libvips where it is faster).

:func:`open_slide` returns a :class:`Slide`: a thin handle over ``openslide.OpenSlide`` that reads
only the file header when it is opened. Pixels are read on demand, always returned as RGB ``uint8``
arrays of shape ``(h, w, 3)`` with transparent areas composited onto the slide's background colour
(white unless the file says otherwise), as slide viewers display them.

Conventions used throughout:

* sizes are ``(width, height)`` in pixels, arrays are ``(height, width, 3)``;
* locations passed to :meth:`Slide.read_region` are level-0 pixel coordinates ``(x, y)``;
* ``mpp`` is microns per pixel ``(x, y)`` at level 0, ``None`` when the file does not record it.

Pixels of TIFF-family slides (OpenSlide vendors ``aperio`` and ``generic-tiff``) are read through
libvips' TIFF loader (:mod:`mrihisto_kedro.imaging.slide_reader`: 1.6-2.5x the tiles/s) where
its pixels are OpenSlide's: levels stored as tiled 8-bit RGB pages, at rectangles whose level
coordinates are whole numbers (OpenSlide interpolates at fractional ones); every other read goes
through OpenSlide. The first libvips read of each level is checked against OpenSlide.

Every failure to open or read a file is raised as :class:`SlideReadError`, whose message names the
file and says what is wrong with it.

Reductions of a whole slide (a downsampled copy, a thumbnail) are built on this reader by
:mod:`mrihisto_kedro.imaging.downsample` (``downsample_slide``, ``slide_thumbnail``), which
imports this module, never the other way round.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

import numpy as np
import openslide
import pyvips
from openslide import OpenSlideError, OpenSlideUnsupportedFormatError

from mrihisto_kedro.imaging.bit_depth import BitDepthError, check_tiff_bit_depth
from mrihisto_kedro.imaging.slide_reader import VipsLevels, vips_pages

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Slide",
    "SlideReadError",
    "composite_rgba",
    "open_slide",
]

DEFAULT_MAX_PIXELS = 200_000_000
"""Largest number of pixels (width x height) a single in-memory read may return (about 600 MB)."""

_LEVEL_TOLERANCE = 1e-3
"""Relative tolerance when comparing a level's downsample with a requested factor (Aperio levels
report downsamples such as 4.0003 for a nominal 4)."""

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class SlideReadError(ValueError):
    """A slide file cannot be opened or read; the message names the file and the problem."""


def composite_rgba(
    rgba: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)
) -> np.ndarray:
    """Composite non-premultiplied RGBA pixels onto an opaque background colour.

    Args:
        rgba: array of shape ``(h, w, 4)``, ``uint8``, non-premultiplied alpha (what
            openslide-python returns).
        background: RGB background colour, 0-255.

    Returns:
        ``(h, w, 3)`` ``uint8`` array. Opaque pixels are returned unchanged, fully transparent
        pixels take the background colour.
    """
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an (h, w, 4) RGBA array, got shape {rgba.shape}")
    alpha = rgba[..., 3]
    if alpha.size == 0 or alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    a = alpha.astype(np.uint16)[..., None]
    bg = np.asarray(background, dtype=np.uint16)
    out = (rgba[..., :3].astype(np.uint16) * a + bg * (255 - a) + 127) // 255
    return out.astype(np.uint8)


# TIFF field type -> item size in bytes (BYTE, ASCII, SHORT, LONG, RATIONAL, ..., LONG8, IFD8)
_TIFF_ITEM_SIZES = {
    1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
    16: 8, 17: 8, 18: 8,
}  # fmt: skip
_UNSIGNED = {3: "u2", 4: "u4", 16: "u8"}
_OFFSET_TAGS = {273: 279, 324: 325}  # StripOffsets -> StripByteCounts, TileOffsets -> ByteCounts
_CHECKED_VENDORS = {"aperio", "generic-tiff"}  # plain TIFF layout (NDPI bends the offsets)


def _tiff_extent(fh: BinaryIO, size: int) -> tuple[int, str]:
    """Walk a TIFF's directory chain; return the furthest byte it references and what it is.

    Every directory, every out-of-line tag value and every strip/tile must lie inside the file;
    the first one that does not is returned at once. At most 4096 directories are visited.
    """
    fh.seek(0)
    head = fh.read(16)
    e = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    off_fmt, off_size = ("Q", 8) if big else ("I", 4)
    count_fmt, count_size, entry_size = ("Q", 8, 20) if big else ("H", 2, 12)
    ifd = struct.unpack(e + off_fmt, head[8:16] if big else head[4:8])[0]
    furthest, what = 0, "header"
    for index in range(4096):
        if ifd == 0:
            break
        if ifd + count_size > size:
            return ifd + count_size, f"image directory #{index}"
        fh.seek(ifd)
        n = struct.unpack(e + count_fmt, fh.read(count_size))[0]
        end = ifd + count_size + n * entry_size + off_size
        if end > size:
            return end, f"image directory #{index}"
        raw = fh.read(n * entry_size + off_size)
        arrays: dict[int, np.ndarray] = {}
        for k in range(n):
            entry = raw[k * entry_size : (k + 1) * entry_size]
            tag, typ = struct.unpack(e + "HH", entry[:4])
            count = struct.unpack(e + off_fmt, entry[4 : 4 + off_size])[0]
            nbytes = count * _TIFF_ITEM_SIZES.get(typ, 1)
            value = entry[4 + off_size :]
            if nbytes > off_size:  # stored out of line
                where = struct.unpack(e + off_fmt, value)[0]
                if where + nbytes > size:
                    return where + nbytes, f"tag {tag} of image directory #{index}"
                if tag in _OFFSET_TAGS or tag in _OFFSET_TAGS.values():
                    fh.seek(where)
                    value = fh.read(nbytes)
            if typ in _UNSIGNED and (tag in _OFFSET_TAGS or tag in _OFFSET_TAGS.values()):
                arrays[tag] = np.frombuffer(value[:nbytes], dtype=e + _UNSIGNED[typ])
        for offsets_tag, counts_tag in _OFFSET_TAGS.items():
            offsets, counts = arrays.get(offsets_tag), arrays.get(counts_tag)
            if offsets is not None and counts is not None and len(offsets) == len(counts):
                ends = offsets.astype(np.uint64) + counts.astype(np.uint64)
                if ends.size and int(ends.max()) > furthest:
                    furthest, what = int(ends.max()), f"image data of directory #{index}"
        ifd = struct.unpack(e + off_fmt, raw[n * entry_size :])[0]
    return furthest, what


def _truncation(path: Path) -> str | None:
    """Why ``path`` looks truncated (a TIFF whose structure points past its end), else ``None``."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        if fh.read(4) not in _TIFF_MAGICS:
            return None
        try:
            furthest, what = _tiff_extent(fh, size)
        except (struct.error, OSError):
            return None
    if furthest <= size:
        return None
    return (
        f"the file is truncated: it starts like a TIFF but its {what} reaches byte {furthest} "
        f"and the file has only {size} bytes (incomplete copy or download?)"
    )


def _diagnose_unreadable(path: Path) -> str:
    """Explain why OpenSlide did not recognise ``path`` (which exists and is not empty)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
    if head[:4] not in _TIFF_MAGICS:
        return (
            f"not a slide format OpenSlide recognises ({size} bytes, first bytes {head!r}; "
            "expected e.g. a TIFF-based .svs/.tif, .ndpi, .mrxs, .scn or DICOM)"
        )
    return _truncation(path) or (
        f"the file starts like a TIFF ({size} bytes) but OpenSlide cannot parse it as a slide "
        "(corrupt, or a plain TIFF without the tiles/pyramid or vendor metadata OpenSlide needs)"
    )


def _parse_background(properties: Mapping[str, str]) -> tuple[int, int, int]:
    """Background colour from ``openslide.background-color`` (hex ``RRGGBB``), white by default."""
    value = properties.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR)
    if value and len(value) == 6:
        try:
            return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
        except ValueError:
            pass
    return (255, 255, 255)


class Slide:
    """Lazy read-only handle on a whole-slide image file (any format OpenSlide reads).

    Opening reads only the file header; pixels are decoded by the read methods. Use
    :func:`open_slide` to create one, and :meth:`close` it (or use it as a context manager) when
    done. A handle can be pickled: it is reopened from its path on unpickling (e.g. in Kedro's
    ParallelRunner workers).
    """

    def __init__(self, path: str | os.PathLike[str], *, libvips: bool = True) -> None:
        """Open ``path`` with OpenSlide; raise :class:`SlideReadError` if that is not possible.

        ``libvips=False`` reads every pixel through OpenSlide (the same pixels, slower).
        """
        self._path = Path(path)
        self._libvips = libvips
        self._osr: openslide.OpenSlide | None = None
        self._vips: VipsLevels | None = None
        self._open()

    # ------------------------------------------------------------------ opening and closing
    def _open(self) -> None:
        path = self._path
        if not path.exists():
            raise SlideReadError(f"cannot open slide '{path}': the file does not exist")
        if not path.is_file():
            raise SlideReadError(f"cannot open slide '{path}': not a regular file")
        if not os.access(path, os.R_OK):
            raise SlideReadError(f"cannot open slide '{path}': permission denied")
        if path.stat().st_size == 0:
            raise SlideReadError(f"cannot open slide '{path}': the file is empty (0 bytes)")
        try:
            self._osr = openslide.OpenSlide(path)
        except OpenSlideUnsupportedFormatError as exc:
            raise SlideReadError(
                f"cannot open slide '{path}': {_diagnose_unreadable(path)}"
            ) from exc
        except OpenSlideError as exc:
            reason = _truncation(path) or "OpenSlide reports the file is damaged or inconsistent"
            raise SlideReadError(f"cannot open slide '{path}': {reason}: {exc}") from exc
        if self._osr.properties.get(openslide.PROPERTY_NAME_VENDOR) in _CHECKED_VENDORS:
            # OpenSlide only touches the data it needs: a file cut inside tiles it has not read
            # would open and fail later, mid-pipeline. Refuse it now.
            truncated = _truncation(path)
            if truncated is not None:
                self.close()
                raise SlideReadError(f"cannot open slide '{path}': {truncated}")
            try:  # OpenSlide keeps the high byte of 16-bit samples: refuse rather than crush
                check_tiff_bit_depth(path)
            except BitDepthError as exc:
                self.close()
                raise SlideReadError(f"cannot open slide '{path}': {exc}") from exc
        # metadata is cached: after a decoding error OpenSlide refuses every further call
        osr = self._osr
        self._properties = dict(osr.properties)
        self._background = _parse_background(self._properties)
        self._level_dimensions = [(int(w), int(h)) for w, h in osr.level_dimensions]
        self._level_downsamples = [float(d) for d in osr.level_downsamples]
        self._associated_names = list(osr.associated_images.keys())
        if self._libvips and self.vendor in _CHECKED_VENDORS:
            pages = vips_pages(path, self._level_dimensions)
            self._vips = VipsLevels(path, pages) if pages else None

    def close(self) -> None:
        """Release the OpenSlide handle. Further reads raise :class:`SlideReadError`."""
        if self._vips is not None:
            self._vips.close()
            self._vips = None
        if self._osr is not None:
            self._osr.close()
            self._osr = None

    def __enter__(self) -> Self:
        """Return the handle itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the handle."""
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle by path only: an OpenSlide handle cannot cross processes."""
        return {"path": str(self._path), "libvips": self._libvips}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Reopen the file from its path."""
        self._path = Path(state["path"])
        self._libvips = bool(state.get("libvips", True))
        self._osr = None
        self._vips = None
        self._open()

    def __repr__(self) -> str:
        """Short description: path, vendor, level-0 size and mpp."""
        if self._osr is None:
            return f"Slide('{self._path}', closed)"
        w, h = self.dimensions
        return f"Slide('{self._path}', vendor={self.vendor!r}, {w}x{h} px, mpp={self.mpp})"

    @property
    def _handle(self) -> openslide.OpenSlide:
        if self._osr is None:
            raise SlideReadError(f"slide '{self._path}' is closed")
        return self._osr

    # ------------------------------------------------------------------ metadata
    @property
    def path(self) -> Path:
        """Path of the slide file."""
        return self._path

    @property
    def level_count(self) -> int:
        """Number of pyramid levels (1 for a flat image)."""
        return len(self._level_dimensions)

    @property
    def level_dimensions(self) -> list[tuple[int, int]]:
        """``(width, height)`` in pixels of every level, level 0 first."""
        return list(self._level_dimensions)

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 ``(width, height)`` in pixels."""
        return self.level_dimensions[0]

    @property
    def level_downsamples(self) -> list[float]:
        """Downsample factor of every level relative to level 0 (1.0 for level 0)."""
        return list(self._level_downsamples)

    @property
    def properties(self) -> dict[str, str]:
        """All OpenSlide properties (``openslide.*``, vendor and ``tiff.*`` keys), as a copy."""
        return dict(self._properties)

    @property
    def vendor(self) -> str | None:
        """OpenSlide's format name (``aperio``, ``generic-tiff``, ``hamamatsu``, ...)."""
        return self._properties.get(openslide.PROPERTY_NAME_VENDOR)

    @property
    def mpp(self) -> tuple[float, float] | None:
        """Level-0 microns per pixel ``(x, y)``, or ``None`` when the file does not record it."""
        mx = self._properties.get(openslide.PROPERTY_NAME_MPP_X)
        my = self._properties.get(openslide.PROPERTY_NAME_MPP_Y)
        if mx is None or my is None:
            return None
        try:
            x, y = float(mx), float(my)
        except ValueError:
            return None
        if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
            return None
        return (x, y)

    @property
    def objective_power(self) -> float | None:
        """Scanner objective magnification (e.g. 20.0), or ``None`` when unknown."""
        value = self._properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    @property
    def background_color(self) -> tuple[int, int, int]:
        """RGB colour transparent areas are composited onto (white unless the file sets one)."""
        return self._background

    @property
    def vips_levels(self) -> list[int]:
        """Levels whose whole-pixel reads go through libvips (``[]``: OpenSlide reads all)."""
        return self._vips.levels if self._vips is not None else []

    @property
    def associated_image_names(self) -> list[str]:
        """Names of the associated images (e.g. ``label``, ``macro``, ``thumbnail``)."""
        return list(self._associated_names)

    # ------------------------------------------------------------------ pixels
    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (label, macro, ...) as an ``(h, w, 3)`` ``uint8`` RGB array."""
        if name not in self._associated_names:
            raise KeyError(
                f"slide '{self._path}' has no associated image {name!r}; "
                f"available: {sorted(self._associated_names)}"
            )
        handle = self._handle
        try:
            pil = handle.associated_images[name]
        except OpenSlideError as exc:
            raise SlideReadError(
                f"cannot read associated image {name!r} of slide '{self._path}': {exc}"
            ) from exc
        return composite_rgba(np.asarray(pil.convert("RGBA")), self._background)

    def _check_level(self, level: int) -> None:
        if not 0 <= level < self.level_count:
            raise ValueError(
                f"level {level} out of range for slide '{self._path}' ({self.level_count} level(s))"
            )

    def read_region(
        self,
        location: tuple[int, int],
        level: int,
        size: tuple[int, int],
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> np.ndarray:
        """Read a rectangle of one level.

        Args:
            location: top-left corner ``(x, y)`` in level-0 pixel coordinates.
            level: pyramid level to read from.
            size: ``(width, height)`` in pixels of ``level``.
            max_pixels: refuse reads larger than this many pixels.

        Returns:
            ``(height, width, 3)`` ``uint8`` RGB array; areas outside the slide or transparent are
            filled with :attr:`background_color`.
        """
        w, h = self._check_region(level, size, max_pixels)
        x, y = int(location[0]), int(location[1])
        vips = self._vips
        if vips is not None and vips.has(level):
            pixels = self._read_vips(vips, (x, y), level, (w, h))
            if pixels is not None:
                return pixels
        return self._read_openslide((x, y), level, (w, h))

    def read_regions(
        self,
        locations: list[tuple[int, int]] | np.ndarray,
        level: int,
        size: tuple[int, int],
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        workers: int = 1,
    ) -> np.ndarray:
        """Read many rectangles of one size from one level in one call.

        Args:
            locations: ``N`` top-left corners ``(x, y)`` in level-0 pixel coordinates (a list
                or an ``(N, 2)`` integer array).
            level: pyramid level to read from.
            size: ``(width, height)`` in pixels of ``level``, the same for every rectangle.
            max_pixels: refuse a batch larger than this many pixels in total.
            workers: threads reading at once, each a contiguous share of the rectangles
                (libvips and OpenSlide decode without the GIL: 2 threads read about 1.8x the
                tiles per second of 1 on 2 free cores).

        Returns:
            ``(N, height, width, 3)`` ``uint8``: rectangle ``i`` is exactly what
            ``read_region(locations[i], level, size)`` returns.
        """
        corners = np.asarray(locations, dtype=np.int64).reshape(-1, 2)
        w, h = self._check_region(level, size, max_pixels)
        if len(corners) * w * h > max_pixels:
            raise ValueError(
                f"{len(corners)} regions of {w}x{h} px from slide '{self._path}' exceed the "
                f"in-memory budget of {max_pixels / 1e6:.0f} Mpx; read fewer at once"
            )
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        out = np.empty((len(corners), h, w, 3), dtype=np.uint8)

        def read(i: int, xy: list[int]) -> None:
            x, y = xy
            vips = self._vips
            if (
                vips is None
                or not vips.has(level)
                or (self._read_vips(vips, (x, y), level, (w, h), out[i]) is None)
            ):
                out[i] = self._read_openslide((x, y), level, (w, h))

        def read_chunk(indices: range) -> None:
            for i in indices:
                read(i, xy_list[i])

        xy_list = corners.tolist()
        threads = min(workers, len(corners))
        if threads < 2:
            read_chunk(range(len(corners)))
        else:  # one contiguous share per thread: no per-rectangle hand-off between threads
            shares = np.array_split(np.arange(len(corners)), threads)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(read_chunk, [range(int(s[0]), int(s[-1]) + 1) for s in shares]))
        return out

    def _check_region(self, level: int, size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
        """Validate a read's level and size; return ``(w, h)``."""
        self._check_level(level)
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise ValueError(f"region size must be positive, got {size}")
        if w * h > max_pixels:
            raise ValueError(
                f"region of {w}x{h} px ({w * h / 1e6:.0f} Mpx) from slide '{self._path}' exceeds "
                f"the in-memory budget of {max_pixels / 1e6:.0f} Mpx; read smaller regions or use "
                "downsample_slide()"
            )
        return w, h

    def _read_vips(
        self,
        vips: VipsLevels,
        xy: tuple[int, int],
        level: int,
        wh: tuple[int, int],
        out: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """The rectangle through libvips, or ``None`` where OpenSlide must read it.

        Written into ``out`` when given. ``None`` when the level coordinates are fractional
        (OpenSlide interpolates there) or libvips cannot decode the pixels. The first read of a
        level that touches its pixels is compared with OpenSlide's; on a difference the level is
        handed back to OpenSlide.
        """
        ds = self._level_downsamples[level]
        lx, ly = xy[0] / ds, xy[1] / ds  # OpenSlide's own level coordinates (C doubles)
        if not (lx.is_integer() and ly.is_integer()):
            return None
        try:
            pixels = vips.read(level, (int(lx), int(ly)), wh, self._background, out)
        except pyvips.Error:
            return None
        if not vips.verified(level):
            lw, lh = self._level_dimensions[level]
            if lx < lw and ly < lh and lx + wh[0] > 0 and ly + wh[1] > 0:
                reference = self._read_openslide(xy, level, wh)
                if np.array_equal(reference, pixels):
                    vips.mark_verified(level)
                else:
                    vips.disable(level)
                    if out is not None:
                        out[...] = reference
                    return reference
        return pixels

    def _read_openslide(self, xy: tuple[int, int], level: int, wh: tuple[int, int]) -> np.ndarray:
        """The rectangle through OpenSlide (any format), composited onto the background."""
        (x, y), (w, h) = xy, wh
        handle = self._handle
        try:
            pil = handle.read_region((x, y), level, (w, h))
        except OpenSlideError as exc:
            raise SlideReadError(
                f"cannot read region {w}x{h} at level-0 ({x}, {y}), level {level} of slide "
                f"'{self._path}' (damaged or truncated file?): {exc}"
            ) from exc
        return composite_rgba(np.asarray(pil), self._background)

    def read_level(self, level: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """Read a whole pyramid level into memory.

        Args:
            level: pyramid level.
            max_pixels: refuse levels larger than this many pixels (default 200 Mpx, ~600 MB).

        Returns:
            ``(height, width, 3)`` ``uint8`` RGB array of the level.
        """
        self._check_level(level)
        w, h = self.level_dimensions[level]
        if w * h > max_pixels:
            raise ValueError(
                f"level {level} of slide '{self._path}' is {w}x{h} px ({w * h / 1e6:.0f} Mpx), "
                f"above the in-memory budget of {max_pixels / 1e6:.0f} Mpx; use a coarser level, "
                "read_region(), or downsample_slide() which works in bounded memory"
            )
        return self.read_region((0, 0), level, (w, h), max_pixels=max_pixels)

    def best_level_for_downsample(self, factor: float) -> int:
        """The level whose downsample is nearest below or equal to ``factor``.

        A level counts as equal when within a relative 1e-3 of ``factor`` (Aperio reports 4.0003
        for a nominal 4x level). Factors below 1 give level 0.
        """
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"downsample factor must be a positive number, got {factor}")
        downsamples = self.level_downsamples
        limit = factor * (1 + _LEVEL_TOLERANCE)
        candidates = [i for i, ds in enumerate(downsamples) if ds <= limit]
        return max(candidates, key=lambda i: downsamples[i], default=0)


def open_slide(path: str | os.PathLike[str], *, libvips: bool = True) -> Slide:
    """Open a whole-slide image lazily (only the header is read).

    Args:
        path: a file in a format OpenSlide reads (Aperio .svs, generic tiled TIFF, .ndpi, ...).
        libvips: read TIFF-family levels through libvips where its pixels are OpenSlide's
            (``False``: OpenSlide reads everything).

    Returns:
        A :class:`Slide` handle; close it when done.

    Raises:
        SlideReadError: the file is missing, empty, truncated, corrupt or not a slide format; the
            message names the file and the problem.
    """
    return Slide(path, libvips=libvips)
