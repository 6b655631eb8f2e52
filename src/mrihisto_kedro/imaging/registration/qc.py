"""Registration QC that can fail: structure agreement inside the tissue, and who may be tiled.

Dice of the two tissue masks after an affine fit is no evidence of a correct registration: an
affine can lay any tissue blob onto any other (issue 16: a head-and-neck tumour slide passed
the Dice >= 0.85 gate against a brain MRI; on the demo, every slide registered to another
specimen's MRI reaches Dice 0.91-0.96). What a wrong pairing cannot fake is the structure
*inside* the outline: the grey/white matter boundaries of the MRI must run along the stain
boundaries of the section.

:func:`gradient_agreement` measures it as the gradient-magnitude weighted mean of
``cos^2`` of the angle between the two images' gradients (the normalised gradient field
measure of Haber & Modersitzki 2006, squared so that a contrast inversion, e.g. bright white
matter in T1 and pale white matter in GFAP optical density, agrees as well as a match). Both
images are first smoothed to the MRI's resolution, so histology's cell-level texture does not
count. Unrelated structure scores about 0.5 (random directions), perfectly parallel edges 1.

:func:`qc_problems` gives a registered pair's verdict (Dice, structure, convergence);
:func:`select_registered_pairs` keeps the pairs that passed QC (and converged) for tiling.
:class:`QcImages` (:func:`qc_images`) holds what a reviewer looks at: the histology channel
and the MRI before and after registration on one grid, reduced for display; ``reporting``
draws them (:mod:`mrihisto_kedro.reporting.registration_figures`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = [
    "QcImages",
    "block_mean",
    "gradient_agreement",
    "qc_images",
    "qc_problems",
    "select_registered_pairs",
]

logger = logging.getLogger(__name__)


def gradient_agreement(
    fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray, sigma_px: float
) -> float:
    """Weighted mean ``cos^2`` of the gradient angles of two images inside ``mask``.

    Args:
        fixed: 2-D image ``(H, W)`` (e.g. the histology channel registered on).
        moving: 2-D image on the same grid (e.g. the aligned MRI).
        mask: boolean ``(H, W)``, where to compare (e.g. both tissues, eroded).
        sigma_px: Gaussian smoothing of both images first, in pixels of this grid (the MRI's
            voxel size in grid pixels: structure finer than the MRI cannot agree).

    Returns:
        In [0, 1]: about 0.5 for unrelated structure, 1 for parallel (or anti-parallel)
        edges; ``nan`` when the mask is empty or neither image has a gradient in it.
    """
    if fixed.shape != moving.shape or fixed.shape != mask.shape or fixed.ndim != 2:
        raise ValueError(
            f"fixed {fixed.shape}, moving {moving.shape} and mask {mask.shape} must be one 2-D grid"
        )
    f = ndimage.gaussian_filter(np.asarray(fixed, dtype=np.float64), sigma_px)
    m = ndimage.gaussian_filter(np.asarray(moving, dtype=np.float64), sigma_px)
    fy, fx = (np.asarray(g) for g in np.gradient(f))
    my, mx = (np.asarray(g) for g in np.gradient(m))
    fy, fx, my, mx = fy[mask], fx[mask], my[mask], mx[mask]
    norm_f, norm_m = np.hypot(fx, fy), np.hypot(mx, my)
    weight = norm_f * norm_m
    total = weight.sum()
    if not mask.any() or total <= 0:
        return float("nan")
    # weight * cos^2 = (f . m)^2 / (|f| |m|)
    weighted_cos2 = np.where(
        weight > 0, (fx * mx + fy * my) ** 2 / np.where(weight > 0, weight, 1), 0
    )
    return float(weighted_cos2.sum() / total)


def qc_problems(scores: dict[str, object], dice_threshold: float, min_structure: float) -> str:
    """Why a registered pair fails QC ("" when it passes).

    Args:
        scores: the pair's report row (``dice_after``, ``structure_after``, ``converged``).
        dice_threshold: Dice after registration below this fails.
        min_structure: :func:`gradient_agreement` after registration below this fails (a
            ``nan``, no structure to compare, fails too).

    Returns:
        The failed checks with their values, joined by "; ".
    """
    problems = []
    dice_after = float(scores["dice_after"])  # type: ignore[arg-type]  # a report cell: a number
    structure = float(scores["structure_after"])  # type: ignore[arg-type]  # as dice_after
    if not dice_after >= dice_threshold:
        problems.append(f"Dice after registration {dice_after:.3f} is below {dice_threshold:g}")
    if not structure >= min_structure:
        problems.append(
            f"structure agreement {structure:.3f} is below {min_structure:g} (about 0.5: the "
            "MRI's structure does not match the section's; a wrong pairing?)"
        )
    if not scores["converged"]:
        problems.append("the optimiser stopped at its iteration limit")
    return "; ".join(problems)


def select_registered_pairs(
    pairs: pd.DataFrame, report: pd.DataFrame, include_flagged: bool = False
) -> pd.DataFrame:
    """The rows of ``pairs`` whose registration converged and was not flagged.

    Args:
        pairs: the manifest (``pair_id`` column).
        report: the registration report (``pair_id``, ``flagged``, ``converged``).
        include_flagged: keep flagged and non-converged pairs too (logged).

    Returns:
        The kept rows, in their order. The excluded pairs are logged by name, with the count.

    Raises:
        ValueError: a pair has no row in the report (registration did not run on it), or
            every pair is excluded.
    """
    status = report.set_index(report["pair_id"].astype(str))
    missing = sorted(set(pairs["pair_id"].astype(str)) - set(status.index))
    if missing:
        raise ValueError(
            f"pair(s) {', '.join(missing)} have no row in the registration report: run the "
            "registration pipeline first"
        )
    ids = pairs["pair_id"].astype(str)
    rows = status.loc[ids.tolist()]
    bad = rows["flagged"].astype(bool).to_numpy() | ~rows["converged"].astype(bool).to_numpy()
    excluded = ids[bad].tolist()
    if not excluded:
        return pairs
    if include_flagged:
        logger.warning(
            "tiling %d flagged or non-converged pair(s) because include_flagged_pairs is set: %s",
            len(excluded),
            ", ".join(excluded),
        )
        return pairs
    if len(excluded) == len(pairs):
        raise ValueError(
            f"every pair ({', '.join(excluded)}) is flagged or did not converge in registration; "
            "see registration_report.csv and the QC figures, or set "
            "tiling.include_flagged_pairs: true to tile them anyway"
        )
    logger.warning(
        "excluded %d of %d pairs from tiling (flagged or not converged in registration: %s); "
        "set tiling.include_flagged_pairs: true to keep them",
        len(excluded),
        len(pairs),
        ", ".join(excluded),
    )
    return pairs[~bad].reset_index(drop=True)


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks of a 2-D array (trailing partial blocks dropped).

    Args:
        image: 2-D array ``(H, W)``.
        factor: block side in pixels; ``<= 1`` returns ``image`` unchanged.

    Returns:
        float64 ``(H // factor, W // factor)`` (or ``image`` itself when ``factor <= 1``).
    """
    if factor <= 1:
        return image
    rows = (image.shape[0] // factor) * factor
    cols = (image.shape[1] // factor) * factor
    cropped = np.asarray(image[:rows, :cols], dtype=np.float64)
    return cropped.reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))


@dataclass(frozen=True)
class QcImages:
    """What a registration QC figure shows: one grid, before and after, reduced for display.

    Attributes:
        fixed: the fixed (histology) channel, float32 ``(h, w)``, its own units (e.g. optical
            density).
        before: the moving (MRI) image resampled onto the grid with the identity placement,
            float32 ``(h, w)``.
        after: the moving image resampled with the registration transform, float32 ``(h, w)``.
        spacing_mm: ``(x, y)`` mm per pixel of these arrays.
        title: heading of the figure (e.g. the pair id).
        notes: a line of scores under the title (Dice, MI, structure, TRE before -> after).
    """

    fixed: np.ndarray
    before: np.ndarray
    after: np.ndarray
    spacing_mm: tuple[float, float]
    title: str = ""
    notes: str = ""


def qc_images(
    fixed: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    *,
    spacing_mm: tuple[float, float],
    title: str = "",
    notes: str = "",
    max_size: int = 1024,
) -> QcImages:
    """The QC images of a registration, block-averaged to at most ``max_size`` px a side.

    Args:
        fixed: fixed (histology) channel on its grid, 2-D ``(H, W)``, finite.
        before: moving image on the same grid with the initial placement, ``(H, W)``.
        after: moving image on the same grid with the registration transform, ``(H, W)``.
        spacing_mm: ``(x, y)`` mm per pixel of the grid.
        title: figure heading (e.g. the pair id).
        notes: line of scores under the heading.
        max_size: the three arrays are block-averaged by ``ceil(max(H, W) / max_size)`` (a
            6000 x 10000 grid tenfold); the spacing grows by the same factor.

    Returns:
        :class:`QcImages` with float32 arrays of at most ``max_size`` px a side.

    Raises:
        ValueError: the arrays are not 2-D of one shape, or ``max_size < 16``.
    """
    arrays = [np.asarray(x) for x in (fixed, before, after)]
    if any(x.ndim != 2 for x in arrays) or len({x.shape for x in arrays}) != 1:
        raise ValueError(
            "fixed, before and after must be 2-D arrays of one shape, got "
            f"{[x.shape for x in arrays]}"
        )
    if max_size < 16:
        raise ValueError(f"max_size must be >= 16, got {max_size}")
    factor = max(1, math.ceil(max(arrays[0].shape) / max_size))
    reduced = [np.asarray(block_mean(x, factor), dtype=np.float32) for x in arrays]
    return QcImages(
        fixed=reduced[0],
        before=reduced[1],
        after=reduced[2],
        spacing_mm=(float(spacing_mm[0]) * factor, float(spacing_mm[1]) * factor),
        title=title,
        notes=notes,
    )
