"""Downsample whole slides by any factor in bounded memory.

:func:`downsample_slide` starts from the pyramid level nearest below the requested factor and
reduces the rest of the way with an antialiased filter (Lanczos-3 after an integer box
pre-shrink). The result is a lazy ``pyvips.Image`` wrapped in a
:class:`~mrihisto_kedro.imaging.slide_image.SlideImage`: nothing is decoded until it is written
(e.g. by :func:`~mrihisto_kedro.imaging.tiff.write_pyramidal_tiff`) or converted with
``.numpy()``.

Two readers:

``"tiff"``
    for TIFF files whose pages are OpenSlide's levels exactly (vendors ``aperio`` and
    ``generic-tiff``), on a level stored as a page libvips decodes to OpenSlide's pixels (tiled,
    8-bit RGB/YCbCr: :func:`~mrihisto_kedro.imaging.slide_reader.vips_pages`): libvips
    ``tiffload(page=p)`` streams the level tile by tile, so memory stays bounded whatever the
    slide size. (The pyvips-binary wheel has no ``openslideload``.)
``"openslide"``
    for every other format (NDPI, MIRAX, SCN, DICOM, ...): the level is read through OpenSlide in
    horizontal strips of at most ``strip_pixels`` pixels. Each strip is box-shrunk by
    ``k = floor(r / 2)`` (``r``: the factor left after the level; libvips' ``resize`` does the
    same), reduced horizontally with Lanczos-3 and accumulated into the output rows it touches, so
    the result equals a whole-image separable reduction (no seams). Memory: one strip (about 15
    bytes per strip pixel while OpenSlide decodes it, ~60 MB at the 4 Mpx default) plus a float32
    accumulator of four times the output size; the output is then wrapped as a pyvips image.
    Strips shorter than the file's tiles make OpenSlide decode tiles more than once: raise
    ``strip_pixels`` for very wide levels.

Both use the pixel-centre convention (output pixel ``j`` is centred on level-0 coordinate
``(j + 0.5) * factor - 0.5``); on tissue they agree to about one grey level on average.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import numpy as np
import pyvips
from scipy import sparse

from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slide_reader import vips_pages
from mrihisto_kedro.imaging.slides import Slide, SlideReadError

__all__ = [
    "DownsampleRecordError",
    "Reader",
    "downsample_dimensions",
    "downsample_slide",
    "recorded_downsample",
    "slide_thumbnail",
]

Reader = Literal["auto", "tiff", "openslide"]

_TIFF_VENDORS = {"aperio", "generic-tiff"}
_DEFAULT_STRIP_PIXELS = 4_000_000


def downsample_dimensions(level0_wh: tuple[int, int], factor: float) -> tuple[int, int]:
    """Output ``(width, height)`` in pixels of a downsample of a ``level0_wh`` image by ``factor``.

    Each side is ``round(side / factor)`` (halves rounded up), at least 1 pixel.
    """
    _check_factor(factor)
    w, h = level0_wh
    return (max(1, math.floor(w / factor + 0.5)), max(1, math.floor(h / factor + 0.5)))


def _check_factor(factor: float) -> None:
    if (
        isinstance(factor, bool)
        or not isinstance(factor, numbers.Real)
        or not math.isfinite(factor)
        or factor < 1
    ):
        raise ValueError(f"downsample factor must be a finite number >= 1, got {factor!r}")


def _to_rgb(img: pyvips.Image, background: tuple[int, int, int]) -> pyvips.Image:
    """3-band uchar sRGB view of ``img``: alpha flattened onto ``background``, grey replicated."""
    if img.bands in (2, 4):
        bg = list(background) if img.bands == 4 else [sum(background) / 3]
        img = img.flatten(background=bg)
    if img.bands == 1:
        img = img.bandjoin([img, img])
    if img.format != "uchar":
        img = img.cast("uchar")
    return img.copy(interpretation="srgb")


def _load_level_tiff(slide: Slide, level: int) -> pyvips.Image | None:
    """Lazy pyvips image of one level through libvips' TIFF loader, or ``None`` if not possible.

    Only for vendors whose levels are whole TIFF pages, on the page
    :func:`~mrihisto_kedro.imaging.slide_reader.vips_pages` finds for the level (tiled, 8-bit
    RGB/YCbCr, a compression libvips decodes): the pages ``Slide.read_region`` reads.
    """
    if slide.vendor not in _TIFF_VENDORS:
        return None
    page = vips_pages(slide.path, slide.level_dimensions).get(level)
    if page is None:
        return None
    try:
        img = pyvips.Image.tiffload(str(slide.path), page=page)
        # decode one small patch now so an undecodable file falls back instead of failing later
        img.crop(0, 0, min(64, img.width), min(64, img.height)).numpy()
    except pyvips.Error:
        return None
    return _to_rgb(img, slide.background_color)


def _box_shrink(strip: np.ndarray, kx: int, ky: int) -> np.ndarray:
    """Mean over ``ky`` x ``kx`` blocks of an ``(h, w, 3)`` uint8 array (edges replicated).

    Returns ``(ceil(h / ky), ceil(w / kx), 3)`` uint8.
    """
    if kx == 1 and ky == 1:
        return strip
    h, w = strip.shape[:2]
    oh, ow = -(-h // ky), -(-w // kx)
    if oh * ky != h or ow * kx != w:
        strip = np.pad(strip, ((0, oh * ky - h), (0, ow * kx - w), (0, 0)), mode="edge")
    sums = strip.reshape(oh, ky, ow, kx, 3).sum(axis=(1, 3), dtype=np.uint32)
    n = kx * ky
    return ((sums + n // 2) // n).astype(np.uint8)


def _lanczos3_matrix(n_in: int, n_out: int, scale: float) -> sparse.csr_matrix:
    """Sparse ``(n_out, n_in)`` Lanczos-3 resampling matrix, ``scale`` input samples per output.

    Output sample ``j`` is centred on input coordinate ``(j + 0.5) * scale - 0.5`` (pixel-centre
    convention, as libvips and PIL); the kernel is widened by ``scale`` when reducing
    (antialiasing). Taps past the edges are clamped (edge replication). Rows sum to 1.
    """
    width = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    n_taps = int(math.ceil(6.0 * width)) + 1
    first = np.floor(centres - 3.0 * width).astype(np.int64) + 1
    indices = first[:, None] + np.arange(n_taps)[None, :]
    t = (indices - centres[:, None]) / width
    weights = np.sinc(t) * np.sinc(t / 3.0) * (np.abs(t) < 3.0)
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(n_out), n_taps)
    cols = np.clip(indices, 0, n_in - 1).ravel()
    # duplicate (row, col) pairs from clamping are summed by the constructor
    return sparse.csr_matrix(
        (weights.ravel().astype(np.float32), (rows, cols)), shape=(n_out, n_in)
    )


def _reduce_openslide(
    slide: Slide, level: int, out_wh: tuple[int, int], strip_pixels: int
) -> np.ndarray:
    """Downsample one level read through OpenSlide in strips; exact, no seams.

    Each strip of ``ky``-aligned rows is box-shrunk by ``(kx, ky)`` (half the remaining factor,
    like libvips' ``resize``), reduced horizontally with Lanczos-3 and accumulated into the output
    rows it contributes to, so the result equals a whole-image separable reduction.

    Returns:
        ``(out_h, out_w, 3)`` uint8. Memory: one strip plus a float32 accumulator (4x the output).
    """
    lw, lh = slide.level_dimensions[level]
    ds = slide.level_downsamples[level]
    out_w, out_h = out_wh
    strip_h0 = max(1, strip_pixels // lw)
    if (lw, lh) == (out_w, out_h):  # the level is the answer: copy it
        out = np.empty((lh, lw, 3), dtype=np.uint8)
        for y in range(0, lh, strip_h0):
            h = min(strip_h0, lh - y)
            out[y : y + h] = slide.read_region(
                (0, round(y * ds)), level, (lw, h), max_pixels=lw * h
            )
        return out
    kx = max(1, math.floor(lw / out_w / 2))
    ky = max(1, math.floor(lh / out_h / 2))
    iw, ih = -(-lw // kx), -(-lh // ky)  # box-shrunk size (partial edge blocks included)
    # box block i is centred on level coordinate i*k + (k-1)/2, so in shrunk coordinates output
    # pixel j is centred on (j + 0.5) * r / k - 0.5: exactly the matrices' convention
    wx_t = _lanczos3_matrix(iw, out_w, lw / out_w / kx).T.tocsr()  # (iw, out_w)
    wy = _lanczos3_matrix(ih, out_h, lh / out_h / ky).tocsc()  # (out_h, ih)
    acc = np.zeros((3, out_h, out_w), dtype=np.float32)
    strip_h = max(ky, (strip_h0 // ky) * ky)
    for y in range(0, lh, strip_h):
        h = min(strip_h, lh - y)
        strip = slide.read_region((0, round(y * ds)), level, (lw, h), max_pixels=lw * h)
        shrunk = _box_shrink(strip, kx, ky)
        del strip
        n = shrunk.shape[0]
        s0 = y // ky
        block = wy[:, s0 : s0 + n]  # output rows touched by these input rows
        touched = np.unique(block.nonzero()[0])
        if touched.size == 0:
            continue
        o0, o1 = int(touched[0]), int(touched[-1]) + 1
        rows_block = block[o0:o1].tocsr()
        for c in range(3):  # one channel at a time keeps the float32 copies small
            horiz = shrunk[:, :, c].astype(np.float32) @ wx_t  # (n, out_w)
            acc[c, o0:o1] += rows_block @ horiz
    return np.ascontiguousarray(np.clip(np.rint(acc), 0, 255).astype(np.uint8).transpose(1, 2, 0))


def downsample_slide(
    slide: Slide,
    factor: float,
    *,
    reader: Reader = "auto",
    strip_pixels: int = _DEFAULT_STRIP_PIXELS,
    mpp: tuple[float, float] | None = None,
) -> SlideImage:
    """Downsample a slide by ``factor`` (e.g. 15) in bounded memory.

    Args:
        slide: an open :class:`~mrihisto_kedro.imaging.slides.Slide`.
        factor: linear reduction factor >= 1 relative to level 0.
        reader: ``"tiff"`` (libvips TIFF loader; Aperio and generic TIFF only), ``"openslide"``
            (strips through OpenSlide; any format) or ``"auto"`` (TIFF loader when possible).
        strip_pixels: largest strip (width x height pixels) read at once by the OpenSlide
            reader (default 4 Mpx; at least one row, or ``k`` rows when box-shrinking by ``k``).
        mpp: level-0 microns per pixel ``(x, y)`` to use instead of the file's: a value the user
            supplied (manifest ``slide_mpp``) for a file that records none or a wrong one.

    Returns:
        A :class:`SlideImage` whose ``pixels`` is a lazy 3-band uchar ``pyvips.Image`` of size
        :func:`downsample_dimensions` ``(slide.dimensions, factor)``, ``mpp`` the level-0 mpp
        (``mpp`` or the file's) times ``factor`` (``None`` if neither exists), ``app_mag`` the
        objective power divided by ``factor`` (``None`` if the file has none), and
        ``description`` recording source file, factor, level, reader and the level-0 mpp.

    Raises:
        ValueError: ``factor`` < 1, or ``reader="tiff"`` on a file the TIFF loader cannot read.
        SlideReadError: the pixels OpenSlide reads cannot be decoded. (With the lazy TIFF reader,
            a damaged tile found later surfaces as ``pyvips.Error`` when the pixels are computed,
            e.g. inside ``write_pyramidal_tiff``.)
    """
    _check_factor(factor)
    if reader not in ("auto", "tiff", "openslide"):
        raise ValueError(f"reader must be 'auto', 'tiff' or 'openslide', got {reader!r}")
    out_w, out_h = downsample_dimensions(slide.dimensions, factor)
    level = slide.best_level_for_downsample(factor)
    lw, lh = slide.level_dimensions[level]

    img: pyvips.Image | None = None
    if reader in ("auto", "tiff"):
        img = _load_level_tiff(slide, level)
        if img is None and reader == "tiff":
            raise ValueError(
                f"slide '{slide.path}' (vendor {slide.vendor!r}) level {level} cannot be read "
                "with the libvips TIFF loader; use reader='openslide' or 'auto'"
            )
    if img is not None:
        used = "tiff"
        try:
            if (lw, lh) != (out_w, out_h):
                img = img.resize(out_w / lw, vscale=out_h / lh, kernel="lanczos3")
            if img.width != out_w or img.height != out_h:  # guard against rounding in resize
                img = img.embed(0, 0, out_w, out_h, extend="copy")
        except pyvips.Error as exc:
            raise SlideReadError(f"cannot downsample slide '{slide.path}': {exc}") from exc
    else:
        used = "openslide"
        reduced = _reduce_openslide(slide, level, (out_w, out_h), strip_pixels)
        img = pyvips.Image.new_from_array(reduced).copy(interpretation="srgb")

    source_mpp = mpp if mpp is not None else slide.mpp
    power = slide.objective_power
    description = {
        "SourceFile": slide.path.name.replace("|", "_"),
        "Downsample": format(float(factor), "g"),
        "SourceLevel": str(level),
        "Reader": used,
    }
    out_mpp: tuple[float, float] | None = None
    if source_mpp is not None:
        description["SourceMPP"] = f"{source_mpp[0]:.6g} x {source_mpp[1]:.6g}"
        description["SourceMPPOrigin"] = "supplied" if mpp is not None else "file"
        out_mpp = (source_mpp[0] * factor, source_mpp[1] * factor)
    return SlideImage(
        pixels=img,
        mpp=out_mpp,
        app_mag=power / factor if power is not None else None,
        description=description,
    )


def slide_thumbnail(slide: Slide, max_size: int = 1024) -> np.ndarray:
    """An RGB overview of ``slide`` whose longer side is ``max_size`` pixels (bounded memory).

    The slide is reduced by ``max(1, longer side / max_size)`` with :func:`downsample_slide`.

    Args:
        slide: an open slide.
        max_size: longer side of the result in pixels (> 0).

    Returns:
        ``(h, w, 3)`` ``uint8`` array, aspect ratio preserved; never larger than level 0.
    """
    if max_size <= 0:
        raise ValueError(f"max_size must be positive, got {max_size}")
    w, h = slide.dimensions
    factor = max(1.0, max(w, h) / max_size)
    return np.asarray(downsample_slide(slide, factor).pixels.numpy())


def downsampled_origin_mm(
    factor: float | tuple[float, float], level0_mpp: float | tuple[float, float]
) -> tuple[float, float]:
    """Physical position (mm) of the centre of pixel ``(0, 0)`` of a downsampled slide.

    A downsampled pixel averages ``factor x factor`` level-0 pixels; with level-0 pixel
    ``(c, r)`` at ``(c * mpp_x / 1000, r * mpp_y / 1000)`` mm its centre lies half a block minus
    half a level-0 pixel from the origin.

    Args:
        factor: downsampling factor ``(x, y)`` (or one number for both), e.g. 15.
        level0_mpp: level-0 microns per pixel ``(x, y)`` (or one number for both).

    Returns:
        ``((factor_x - 1) / 2 * mpp_x / 1000, (factor_y - 1) / 2 * mpp_y / 1000)`` in mm.
    """
    fx, fy = (factor, factor) if isinstance(factor, int | float) else factor
    mx, my = (level0_mpp, level0_mpp) if isinstance(level0_mpp, int | float) else level0_mpp
    if fx < 1 or fy < 1 or mx <= 0 or my <= 0:
        raise ValueError(f"need factor >= 1 and mpp > 0, got factor {factor}, mpp {level0_mpp}")
    return ((fx - 1.0) / 2.0 * mx / 1000.0, (fy - 1.0) / 2.0 * my / 1000.0)


class DownsampleRecordError(ValueError):
    """A downsampled slide does not record the factor it was downsampled by."""


def recorded_downsample(slide: Slide) -> float:
    """The factor a slide written by :func:`downsample_slide` was downsampled by.

    Read from the slide itself (``Downsample`` in its description: OpenSlide's ``aperio.*``
    properties or the generic TIFF's ``ImageDescription``), so that steps after
    data_engineering place pixels by what the file is, not by today's
    ``data_engineering.downsample_factor`` (changed without re-running data_engineering, it
    would move every origin).

    Raises:
        DownsampleRecordError: the file records no factor, or one below 1 (names the file).
    """
    props = slide.properties
    value = props.get("aperio.Downsample")
    if value is None:
        for part in props.get("tiff.ImageDescription", "").split("|"):
            key, sep, text = part.partition("=")
            if sep and key.strip() == "Downsample":
                value = text.strip()
    try:
        factor = float(value) if value is not None else math.nan
    except ValueError:
        factor = math.nan
    if not (math.isfinite(factor) and factor >= 1):
        raise DownsampleRecordError(
            f"{slide.path}: records no downsampling factor ('Downsample' in its description, "
            f"got {value!r}); it was not written by data_engineering: re-run "
            "`kedro run --pipeline=data_engineering`"
        )
    return factor
