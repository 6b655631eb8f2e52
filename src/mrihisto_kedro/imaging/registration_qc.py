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
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = ["gradient_agreement", "qc_problems", "select_registered_pairs"]

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
    fy, fx = np.gradient(f)
    my, mx = np.gradient(m)
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
    dice_after = float(scores["dice_after"])  # type: ignore[arg-type]
    structure = float(scores["structure_after"])  # type: ignore[arg-type]
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
    bad = (
        status.loc[ids, "flagged"].astype(bool).to_numpy()
        | ~status.loc[ids, "converged"].astype(bool).to_numpy()
    )
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
