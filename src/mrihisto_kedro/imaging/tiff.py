"""Write slides as tiled, pyramidal TIFF files that OpenSlide (and so QuPath) open with their mpp.

Two flavours, both written atomically (a temporary file in the destination folder, renamed over
the destination only once complete) and in bounded memory (libvips streams the pixels, whether they
come from a numpy array or from a lazy ``pyvips.Image`` pipeline):

``"generic"``
    libvips ``tiffsave(tile=True, pyramid=True)``: levels halve in size, the resolution tags carry
    the mpp (pixels per cm). OpenSlide reports vendor ``generic-tiff`` and the mpp.

``"aperio"``
    an Aperio SVS-style file: level 0, a stripped thumbnail, then levels reduced 4x each, with an
    ImageDescription ``Aperio Image Library ...|AppMag = 20|MPP = 0.499``. OpenSlide reports vendor
    ``aperio``, the mpp and the objective power; QuPath/Bio-Formats read it as SVS. libvips
    builds the pyramid once into a temporary generic TIFF, then tifffile copies the
    already-compressed tiles of every other level verbatim (no second JPEG generation) and writes
    the Aperio tags (``metadata=None``: no second, tifffile-made ImageDescription that would hide
    the Aperio one).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pyvips
import tifffile

from mrihisto_kedro.durability.atomic import atomic_path, staging_path
from mrihisto_kedro.imaging.slide_image import SlideImage

__all__ = ["Compression", "Flavour", "write_pyramidal_tiff"]

Compression = Literal["jpeg", "lzw", "deflate", "none"]
Flavour = Literal["aperio", "generic"]

_APERIO_HEADER = "Aperio Image Library v12.0.0 (written by mrihisto_kedro)"
_GENERIC_HEADER = "mrihisto_kedro pyramidal TIFF"
_THUMBNAIL_SIZE = 1024
_BIGTIFF_THRESHOLD = 3_800_000_000  # bytes; classic TIFF offsets stop at 4 GiB
_RESERVED_KEYS = {"mpp", "appmag"}


# ---------------------------------------------------------------------------------------- inputs
def _to_vips_rgb(pixels: Any) -> pyvips.Image:
    """Return ``pixels`` as a 3-band ``uchar`` sRGB ``pyvips.Image`` (lazy, no pixel copy).

    Accepts a numpy array ``(H, W)``, ``(H, W, 1|3|4)`` ``uint8`` or a ``pyvips.Image`` with 1-4
    ``uchar`` bands. Alpha is flattened onto white, grey is replicated to RGB. Metadata that would
    confuse readers (a source slide's ImageDescription) is dropped.
    """
    if isinstance(pixels, np.ndarray):
        if pixels.dtype != np.uint8:
            raise ValueError(f"slide pixels must be uint8, got numpy dtype {pixels.dtype}")
        if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 3, 4)):
            raise ValueError(
                f"slide pixels must have shape (H, W), (H, W, 3) or (H, W, 4), got {pixels.shape}"
            )
        if pixels.shape[0] == 0 or pixels.shape[1] == 0:
            raise ValueError(f"slide pixels are empty: shape {pixels.shape}")
        # zero-copy when already C-contiguous; pyvips keeps a reference to the buffer
        img = pyvips.Image.new_from_array(np.ascontiguousarray(pixels))
    elif isinstance(pixels, pyvips.Image):
        img = pixels
        if img.format != "uchar":
            raise ValueError(f"slide pixels must be 8-bit (uchar), got pyvips format {img.format}")
    else:
        raise TypeError(
            f"slide pixels must be a numpy array or a pyvips.Image, got {type(pixels).__name__}"
        )
    if img.bands in (2, 4):
        img = img.flatten(background=[255] * (img.bands - 1)).cast("uchar")
    if img.bands == 1:
        img = img.bandjoin([img, img])
    if img.bands != 3:
        raise ValueError(f"slide pixels must have 1-4 bands, got {img.bands}")
    img = img.copy(interpretation="srgb")
    if img.get_typeof("image-description"):
        img.remove("image-description")
    return img


def _check_mpp(mpp: tuple[float, float] | None) -> tuple[float, float] | None:
    if mpp is None:
        return None
    x, y = float(mpp[0]), float(mpp[1])
    if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
        raise ValueError(f"mpp must be two positive numbers (microns per pixel), got {mpp}")
    return (x, y)


def _description_pairs(image: SlideImage, mpp: tuple[float, float] | None) -> list[str]:
    """``key = value`` fields for the ImageDescription (AppMag, MPP, then user metadata)."""
    pairs: list[str] = []
    if image.app_mag is not None:
        if not (math.isfinite(image.app_mag) and image.app_mag > 0):
            raise ValueError(f"app_mag must be a positive number, got {image.app_mag}")
        pairs.append(f"AppMag = {format(float(image.app_mag), 'g')}")
    if mpp is not None:
        pairs.append(f"MPP = {format(mpp[0], '.10g')}")
    for key, value in image.description.items():
        k, v = str(key).strip(), str(value).strip()
        bad = ("|", "\r", "\n")
        if not k or "=" in k or any(c in k for c in bad) or any(c in v for c in bad):
            raise ValueError(
                f"description entry {key!r}: {value!r} cannot be stored: keys must be non-empty "
                "without '=', and neither key nor value may contain '|' or line breaks"
            )
        if k.replace(" ", "").lower() in _RESERVED_KEYS:
            raise ValueError(
                f"description key {key!r} is reserved: set SlideImage.mpp / SlideImage.app_mag"
            )
        pairs.append(f"{k} = {v}")
    return pairs


def _vips_pyramid(
    img: pyvips.Image,
    path: Path,
    *,
    mpp: tuple[float, float] | None,
    tile_size: int,
    compression: Compression,
    quality: int,
    bigtiff: bool,
) -> None:
    """libvips tiled pyramid (levels halving) with resolution tags in pixels per cm."""
    kwargs: dict[str, Any] = {
        "tile": True,
        "tile_width": tile_size,
        "tile_height": tile_size,
        "pyramid": True,
        "compression": compression,
        "bigtiff": bigtiff,
        "resunit": "cm",
        # libvips takes resolutions in pixels per millimetre: 1000 / (microns per pixel)
        "xres": 1000.0 / mpp[0] if mpp else 1.0,
        "yres": 1000.0 / mpp[1] if mpp else 1.0,
    }
    if compression == "jpeg":
        kwargs["Q"] = quality
    img.tiffsave(str(path), **kwargs)
    if mpp is None:
        # libvips cannot write "no unit"; without this OpenSlide would report mpp = 1000
        with tifffile.TiffFile(path, mode="r+") as tf:
            for page in _pages(tf):
                tag = page.tags.get("ResolutionUnit")
                if tag is not None:
                    tag.overwrite(1)


def _pages(tf: tifffile.TiffFile) -> list[tifffile.TiffPage]:
    """Every directory of ``tf`` as a full ``TiffPage`` (tifffile may hand out ``TiffFrame`` s)."""
    return [p if isinstance(p, tifffile.TiffPage) else p.aspage() for p in tf.pages]


def _raw_tiles(fh: Any, page: tifffile.TiffPage) -> Iterator[bytes]:
    """The compressed tiles of ``page`` exactly as stored, in TIFF order (row-major)."""
    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
        fh.seek(offset)
        yield fh.read(count)


def _thumbnail_from_pyramid(src: Path) -> np.ndarray:
    """RGB thumbnail ``(h, w, 3)`` uint8, longer side <= 1024 px, from the pyramid file ``src``.

    Decodes the smallest level that is still at least as large as the thumbnail (at most about
    2048 px a side), with tifffile, so no libvips loader keeps the temporary file open.
    """
    with tifffile.TiffFile(src) as tf:
        pages = _pages(tf)
        big_enough = [p for p in pages if max(p.imagewidth, p.imagelength) >= _THUMBNAIL_SIZE]
        page = big_enough[-1] if big_enough else pages[0]
        level = np.ascontiguousarray(page.asarray()[..., :3])
    img = pyvips.Image.new_from_array(level)
    scale = min(1.0, _THUMBNAIL_SIZE / max(img.width, img.height))
    if scale < 1.0:
        img = img.resize(scale, kernel="lanczos3")
    return np.ascontiguousarray(img.numpy())


def _aperio_from_pyramid(
    src: Path,
    dst: Path,
    *,
    pairs: list[str],
    mpp: tuple[float, float] | None,
    compression: Compression,
    quality: int,
) -> None:
    """Rewrite the libvips pyramid ``src`` as an Aperio SVS-style TIFF ``dst``.

    Levels 0, 2, 4, ... of ``src`` (downsamples 1, 4, 16, ...) are copied tile by tile without
    decoding; a JPEG thumbnail (longer side <= 1024 px) is inserted as the second directory, as in
    Aperio files, so OpenSlide lists it as the ``thumbnail`` associated image.
    """
    thumbnail = _thumbnail_from_pyramid(src)
    bigtiff = src.stat().st_size + thumbnail.nbytes > _BIGTIFF_THRESHOLD
    resolution = (1e4 / mpp[0], 1e4 / mpp[1]) if mpp else None
    res_kwargs: dict[str, Any] = (
        {"resolution": resolution, "resolutionunit": "CENTIMETER"} if resolution else {}
    )
    label = {
        "jpeg": f"JPEG/RGB Q={quality}",
        "lzw": "LZW/RGB",
        "deflate": "Deflate/RGB",
        "none": "Raw/RGB",
    }[compression]
    with tifffile.TiffFile(src) as tf, tifffile.TiffWriter(dst, bigtiff=bigtiff) as tw:
        pages = _pages(tf)[::2]
        base = pages[0]
        w0, h0 = base.imagewidth, base.imagelength
        tw0, th0 = base.tilewidth, base.tilelength
        header = f"{_APERIO_HEADER}\r\n{w0}x{h0} [0,0 {w0}x{h0}] ({tw0}x{th0}) {label}"
        fh = tf.filehandle
        for index, page in enumerate(pages):
            if index == 0:
                desc = "|".join([header, *pairs])
            else:
                desc = f"{header} -> {page.imagewidth}x{page.imagelength}"
            kwargs: dict[str, Any] = {}
            if page.compression == tifffile.COMPRESSION.JPEG:
                photometric = tifffile.PHOTOMETRIC(page.photometric)
                if "YCbCrSubSampling" in page.tags:
                    subsampling = tuple(page.tags["YCbCrSubSampling"].value)
                elif photometric == tifffile.PHOTOMETRIC.YCBCR:
                    subsampling = (2, 2)  # the TIFF default when the tag is absent
                else:
                    subsampling = (1, 1)
                kwargs = {
                    "jpegtables": page.jpegtables,
                    "subsampling": subsampling,
                    # keep the colour space the tiles were encoded in (RGB or YCbCr)
                    "compressionargs": {"outcolorspace": photometric.name},
                }
            tw.write(
                _raw_tiles(fh, page),
                shape=page.shape,
                dtype=np.uint8,
                tile=(page.tilelength, page.tilewidth),
                photometric="rgb",
                compression=page.compression,
                predictor=page.predictor,
                description=desc,
                metadata=None,
                subfiletype=0 if index == 0 else 1,
                **res_kwargs,
                **kwargs,
            )
            if index == 0:
                th, tw_ = thumbnail.shape[:2]
                tw.write(
                    thumbnail,
                    photometric="rgb",
                    compression="jpeg",
                    compressionargs={"level": 90},
                    rowsperstrip=th,
                    description=f"{_APERIO_HEADER}\r\n{w0}x{h0} -> {tw_}x{th} - ",
                    metadata=None,
                    subfiletype=1,
                )


# ---------------------------------------------------------------------------------------- API
def write_pyramidal_tiff(
    image: SlideImage,
    path: str | os.PathLike[str],
    *,
    tile_size: int = 256,
    compression: Compression = "jpeg",
    quality: int = 90,
    flavour: Flavour = "aperio",
    bigtiff: bool | None = None,
) -> Path:
    """Write ``image`` as a tiled pyramidal TIFF, atomically and in bounded memory.

    Args:
        image: level-0 pixels (numpy ``(H, W, 3)`` ``uint8`` or a lazy 3-band ``pyvips.Image``;
            grey and alpha are converted to RGB on white), ``mpp`` in microns per pixel (``None``:
            the file records no physical size), ``app_mag`` and free ``description`` fields.
        path: destination file (``.svs`` or ``.tif``/``.tiff`` by convention); parent folders are
            created. An existing file is replaced only once the new one is complete.
        tile_size: tile width and height in pixels, a multiple of 16.
        compression: ``"jpeg"`` (lossy, ``quality``), ``"lzw"``, ``"deflate"`` or ``"none"``.
        quality: JPEG quality 1-100 (at 90 and above libvips keeps full chroma resolution).
        flavour: ``"aperio"`` (SVS-style, levels 4x apart, OpenSlide vendor ``aperio``) or
            ``"generic"`` (libvips pyramid, levels 2x apart, OpenSlide vendor ``generic-tiff``).
        bigtiff: force (or forbid) BigTIFF; by default used when the file could exceed 4 GiB.

    Returns:
        The destination path.

    Raises:
        ValueError: invalid options or pixels (e.g. anisotropic mpp with the aperio flavour).
    """
    if flavour not in get_args(Flavour):
        raise ValueError(f"flavour must be one of {get_args(Flavour)}, got {flavour!r}")
    if compression not in get_args(Compression):
        raise ValueError(f"compression must be one of {get_args(Compression)}, got {compression!r}")
    if not isinstance(tile_size, int) or tile_size < 16 or tile_size % 16:
        raise ValueError(f"tile_size must be a positive multiple of 16, got {tile_size!r}")
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer in 1..100, got {quality!r}")
    if not isinstance(image, SlideImage):
        raise TypeError(f"expected a SlideImage, got {type(image).__name__}")
    mpp = _check_mpp(image.mpp)
    if flavour == "aperio" and mpp is not None and not math.isclose(mpp[0], mpp[1], rel_tol=1e-6):
        raise ValueError(
            f"the aperio flavour stores a single MPP but mpp is anisotropic {mpp}; "
            "use flavour='generic'"
        )
    pairs = _description_pairs(image, mpp)
    img = _to_vips_rgb(image.pixels)
    if bigtiff is None:
        bigtiff = img.width * img.height * 3 * 4 / 3 > _BIGTIFF_THRESHOLD

    path = Path(path)
    with atomic_path(path) as tmp:
        if flavour == "generic":
            img.set_type(
                pyvips.GValue.gstr_type, "image-description", "|".join([_GENERIC_HEADER, *pairs])
            )
            _vips_pyramid(
                img,
                tmp,
                mpp=mpp,
                tile_size=tile_size,
                compression=compression,
                quality=quality,
                bigtiff=bigtiff,
            )
        else:
            # a second staging name, never renamed into place: the generic pyramid whose
            # compressed tiles the Aperio file copies
            pyramid_tmp = staging_path(path)
            try:
                _vips_pyramid(
                    img,
                    pyramid_tmp,
                    mpp=mpp,
                    tile_size=tile_size,
                    compression=compression,
                    quality=quality,
                    bigtiff=bigtiff,
                )
                _aperio_from_pyramid(
                    pyramid_tmp,
                    tmp,
                    pairs=pairs,
                    mpp=mpp,
                    compression=compression,
                    quality=quality,
                )
            finally:
                pyramid_tmp.unlink(missing_ok=True)
    return path
