"""Tissue masks for slides (RGB brightfield) and MRI slices, with the thresholds used (no Kedro).

Slides: tissue absorbs light, glass does not. Pixels are converted to optical density
(Beer-Lambert, ``OD = -log10((I + 1) / 256)`` per channel, 0 for white glass, about 2.4 for
black) or to HSV saturation, Otsu's threshold is computed on that score, and the binary mask is
cleaned up by a morphological closing, hole filling and removal of small objects. Large inputs
are reduced to a thumbnail (at most ``working_max_side`` pixels along the longer side) by block
averaging first: the threshold and the mask are computed there and the mask is scaled back up by
nearest-neighbour, so its edges are accurate to one block (``MaskResult.downsample`` pixels).

MRI: background is near 0; Otsu (or a given threshold) on the intensities, then the same
clean-up with all holes filled (ventricles and sulci belong to the brain).

Every function returns a :class:`MaskResult` with the threshold actually used, so that reports
can state it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb2hsv
from skimage.morphology import disk, remove_small_holes, remove_small_objects

__all__ = [
    "MaskResult",
    "MriMaskMethod",
    "SlideMaskMethod",
    "mri_tissue_mask",
    "optical_density",
    "slide_tissue_mask",
]


_LOG_EPS = 1e-3  # OD offset before the logarithm of the log_od method


class SlideMaskMethod(StrEnum):
    """Score on which a slide is thresholded."""

    OD = "od"  # mean optical density over R, G, B
    LOG_OD = "log_od"  # the same score, Otsu on its logarithm: keeps pale tissue beside dark stain
    SATURATION = "saturation"  # HSV saturation in [0, 1]


class MriMaskMethod(StrEnum):
    """How an MRI slice is thresholded."""

    OTSU = "otsu"
    THRESHOLD = "threshold"


@dataclass(frozen=True)
class MaskResult:
    """A binary mask and how it was made.

    Attributes:
        mask: bool array ``(H, W)``, True on tissue, same shape as the input image.
        threshold: threshold applied to the score (tissue is ``score > threshold``), in the
            score's units: optical density (unitless, log10), saturation (0..1) or MRI intensity.
        method: how the threshold was chosen, e.g. ``"otsu(od)"``, ``"fixed(od)"``,
            ``"otsu(intensity)"``; ``"+floor"`` is appended when Otsu's value was below
            ``min_threshold`` and the floor was used instead.
        otsu_threshold: Otsu's threshold on the score, or ``None`` when a fixed threshold was
            given.
        downsample: integer factor between the input and the array the mask was computed on
            (1 = computed at full resolution).
        tissue_fraction: fraction of True pixels in ``mask`` (0..1).
    """

    mask: np.ndarray
    threshold: float
    method: str
    otsu_threshold: float | None
    downsample: int
    tissue_fraction: float


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Optical density of an 8-bit RGB image (Beer-Lambert law).

    Args:
        rgb: uint8 array ``(H, W, 3)`` (transmitted light, 255 = white glass).

    Returns:
        float32 array ``(H, W, 3)``: ``-log10((I + 1) / 256)`` per channel, from 0 (I = 255)
        to ``log10(256)`` ~ 2.408 (I = 0).

    Raises:
        ValueError: not a uint8 ``(H, W, 3)`` array.
    """
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB array, got {arr.dtype} {arr.shape}")
    lut = (-np.log10((np.arange(256, dtype=np.float64) + 1.0) / 256.0)).astype(np.float32)
    return lut[arr]


def _check_sizes(min_object_px: int, max_hole_px: int | None, closing_radius_px: int) -> None:
    if min_object_px < 0:
        raise ValueError(f"min_object_px must be >= 0, got {min_object_px}")
    if max_hole_px is not None and max_hole_px < 0:
        raise ValueError(f"max_hole_px must be >= 0 or None, got {max_hole_px}")
    if closing_radius_px < 0:
        raise ValueError(f"closing_radius_px must be >= 0, got {closing_radius_px}")


def _close(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary closing with a disk, padding by edge replication so borders are not eroded."""
    if radius <= 0:
        return mask
    footprint = disk(radius).astype(bool)
    padded = np.pad(mask, radius, mode="edge")
    closed = ndi.binary_erosion(ndi.binary_dilation(padded, footprint), footprint)
    return closed[radius:-radius, radius:-radius]


def _clean(
    mask: np.ndarray, min_object_px: int, max_hole_px: int | None, closing_radius_px: int
) -> np.ndarray:
    """Closing, then hole filling (all holes if ``max_hole_px`` is None), then small objects."""
    out = _close(mask, closing_radius_px)
    if max_hole_px is None:
        out = ndi.binary_fill_holes(out)
    elif max_hole_px > 0:
        out = remove_small_holes(out, max_size=max_hole_px)
    if min_object_px > 0:
        out = remove_small_objects(out, max_size=min_object_px - 1)
    return np.asarray(out, dtype=bool)


def _block_reduce(arr: np.ndarray, factor: int, how: str) -> np.ndarray:
    """Reduce ``(H, W[, C])`` by ``factor`` x ``factor`` blocks (edge-replicated to fit).

    ``how`` is ``"mean"`` (float32 result) or ``"min"`` (input dtype).
    """
    height, width = arr.shape[:2]
    pad_h, pad_w = (-height) % factor, (-width) % factor
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, pad_h), (0, pad_w)) + ((0, 0),) * (arr.ndim - 2), mode="edge")
    blocks = np.ascontiguousarray(arr).reshape(
        arr.shape[0] // factor, factor, arr.shape[1] // factor, factor, *arr.shape[2:]
    )
    if how == "mean":
        return blocks.mean(axis=(1, 3), dtype=np.float32)
    return blocks.min(axis=(1, 3))


def _upsample(mask: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    if factor == 1:
        return mask
    big = np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)
    return np.ascontiguousarray(big[: shape[0], : shape[1]])


def _otsu(values: np.ndarray, nbins: int = 256) -> float:
    """Otsu's threshold of ``values`` (tissue is ``values > threshold``).

    Same histogram criterion as ``skimage.filters.threshold_otsu``, but when several thresholds
    tie (classes separated by a gap of empty bins, e.g. clean glass vs tissue) the centre of
    the gap is returned instead of its lower edge, which sits right on top of the background
    noise.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return 0.0
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return hi  # Otsu is undefined on a constant image: everything is background
    hist, edges = np.histogram(values, bins=nbins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    hist = hist.astype(np.float64)
    weight1 = np.cumsum(hist)
    weight2 = np.cumsum(hist[::-1])[::-1]
    mean1 = np.cumsum(hist * centres) / np.maximum(weight1, 1e-300)
    mean2 = (np.cumsum((hist * centres)[::-1]) / np.maximum(weight2[::-1], 1e-300))[::-1]
    between = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    best = np.flatnonzero(between >= between.max() * (1 - 1e-12))
    # first run of tied maxima: its centre
    run_end = best[0]
    while run_end + 1 in best:
        run_end += 1
    return float((centres[best[0]] + centres[run_end]) / 2)


def slide_tissue_mask(
    rgb: np.ndarray,
    *,
    method: SlideMaskMethod | str = SlideMaskMethod.OD,
    threshold: float | None = None,
    min_threshold: float | None = 0.05,
    min_object_px: int = 500,
    max_hole_px: int | None = 500,
    closing_radius_px: int = 3,
    working_max_side: int = 2048,
) -> MaskResult:
    """Tissue mask of a brightfield slide image (tissue darker/more coloured than glass).

    Args:
        rgb: uint8 ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA image, typically a thumbnail of the
            slide. With RGBA, fully transparent pixels (alpha 0: outside the scanned area, as
            OpenSlide returns them) are never tissue.
        method: ``"od"`` (mean optical density of R, G, B), ``"log_od"`` (the same score with
            Otsu's threshold found on its logarithm, so pale tissue such as lightly stained
            grey matter is not split off from dark stain; threshold still in OD units) or
            ``"saturation"`` (HSV saturation, good for pale stains, blind to grey/black debris).
        threshold: fixed threshold on the score instead of Otsu's.
        min_threshold: floor for Otsu's threshold (score units): on a blank or nearly blank
            slide Otsu splits glass noise; ``None`` disables the floor. Default 0.05 is OD 0.05
            (transmission 89 %) or saturation 0.05.
        min_object_px: connected tissue regions smaller than this (pixels of the input image)
            are removed.
        max_hole_px: holes up to this area (input pixels) are filled; ``None`` fills all.
        closing_radius_px: radius (input pixels) of the disk used for the closing; 0 = none.
        working_max_side: the mask is computed on a block-averaged copy whose longer side is at
            most this many pixels.

    Returns:
        :class:`MaskResult` with a bool ``(H, W)`` mask.

    Raises:
        ValueError: wrong dtype/shape, unknown method or negative sizes.
    """
    method = SlideMaskMethod(method)
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected a uint8 (H, W, 3|4) image, got {arr.dtype} {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"empty image of shape {arr.shape}")
    _check_sizes(min_object_px, max_hole_px, closing_radius_px)
    if working_max_side < 16:
        raise ValueError(f"working_max_side must be >= 16, got {working_max_side}")
    height, width = arr.shape[:2]
    factor = max(1, math.ceil(max(height, width) / working_max_side))

    # thumbnail first (block means of the 8-bit intensities), then the score on the thumbnail
    rgb3 = arr[..., :3]
    if factor > 1:
        rgb3 = np.rint(_block_reduce(rgb3, factor, "mean")).astype(np.uint8)
    valid = None
    if arr.shape[2] == 4:
        valid = _block_reduce(arr[..., 3], factor, "min") > 0 if factor > 1 else arr[..., 3] > 0
    if method in (SlideMaskMethod.OD, SlideMaskMethod.LOG_OD):
        score = optical_density(rgb3).mean(axis=2)
    else:
        score = rgb2hsv(rgb3)[..., 1].astype(np.float32)
    values = score[valid] if valid is not None else score.ravel()

    if threshold is not None:
        otsu_value = None
        used = float(threshold)
        label = f"fixed({method})"
    else:
        if method is SlideMaskMethod.LOG_OD:
            # threshold reported in OD units like the others
            otsu_value = float(np.exp(_otsu(np.log(values + _LOG_EPS))) - _LOG_EPS)
        else:
            otsu_value = _otsu(values)
        used = otsu_value
        label = f"otsu({method})"
        if min_threshold is not None and used < min_threshold:
            used = float(min_threshold)
            label += "+floor"
    mask = score > used
    if valid is not None:
        mask &= valid
    area = factor * factor
    mask = _clean(
        mask,
        min_object_px=math.ceil(min_object_px / area),
        max_hole_px=None if max_hole_px is None else max_hole_px // area,
        closing_radius_px=round(closing_radius_px / factor),
    )
    if valid is not None:
        mask &= valid
    full = _upsample(mask, factor, (height, width))
    return MaskResult(
        mask=full,
        threshold=used,
        method=label,
        otsu_threshold=otsu_value,
        downsample=factor,
        tissue_fraction=float(full.mean()),
    )


def mri_tissue_mask(
    image: np.ndarray,
    *,
    method: MriMaskMethod | str = MriMaskMethod.OTSU,
    threshold: float | None = None,
    min_object_px: int = 50,
    max_hole_px: int | None = None,
    closing_radius_px: int = 1,
    keep_largest: bool = False,
) -> MaskResult:
    """Foreground mask of a 2-D MRI slice whose background is near 0.

    Args:
        image: 2-D array ``(H, W)`` of any real dtype (intensities in scanner units or
            normalised); must be finite.
        method: ``"otsu"`` (Otsu's threshold on the intensities) or ``"threshold"`` (use
            ``threshold``).
        threshold: intensity threshold (foreground is ``image > threshold``), required for
            ``method="threshold"``.
        min_object_px: connected regions smaller than this many pixels are removed.
        max_hole_px: holes up to this area are filled; ``None`` (default) fills all holes.
        closing_radius_px: radius in pixels of the disk used for the closing; 0 = none.
        keep_largest: keep only the largest connected region.

    Returns:
        :class:`MaskResult` with a bool ``(H, W)`` mask (``downsample`` is 1).

    Raises:
        ValueError: not 2-D, non-finite values, bad method/threshold combination.
    """
    method = MriMaskMethod(method)
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D slice, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("empty slice")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"expected a real numeric array, got {arr.dtype}")
    data = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(data)):
        raise ValueError(f"slice has {int(np.sum(~np.isfinite(data)))} non-finite values")
    _check_sizes(min_object_px, max_hole_px, closing_radius_px)
    if method is MriMaskMethod.THRESHOLD:
        if threshold is None:
            raise ValueError('method="threshold" needs a threshold')
        otsu_value = None
        used = float(threshold)
        label = "fixed(intensity)"
    else:
        if threshold is not None:
            raise ValueError('threshold is only used with method="threshold"')
        otsu_value = _otsu(data.ravel())
        used = otsu_value
        label = "otsu(intensity)"
    mask = _clean(data > used, min_object_px, max_hole_px, closing_radius_px)
    if keep_largest and mask.any():
        labels, n = ndi.label(mask)
        if n > 1:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            mask = labels == int(np.argmax(sizes))
    return MaskResult(
        mask=mask,
        threshold=used,
        method=label,
        otsu_threshold=otsu_value,
        downsample=1,
        tissue_fraction=float(mask.mean()),
    )
