"""Thin nodes of the registration pipeline: unpack parameters, loop over pairs, call the library."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure

from mrihisto_kedro.datasets.control_points_dataset import ControlPointsFile
from mrihisto_kedro.imaging.downsample import recorded_downsample
from mrihisto_kedro.imaging.pair_registration import (
    FixedGrid,
    PairRegistration,
    PairScoring,
    fixed_grid,
    register_pair,
)
from mrihisto_kedro.imaging.registration import (
    Interpolator,
    RegistrationParams,
    TissueChannel,
    resample_moving,
)
from mrihisto_kedro.imaging.registration_qc import qc_problems
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.pipelines.loaders import Loader

logger = logging.getLogger(__name__)


REPORT_COLUMNS = (
    "pair_id",
    "specimen_id",
    "split",
    "dice_before",
    "dice_after",
    "mi_before",
    "mi_after",
    "tre_px",
    "tre_um",
    "seconds",
    "converged",
    "flagged",
    "flag_reason",
    "structure_after",
)


@dataclass(frozen=True)
class RegistrationPipelineParams:
    """Parameters of the registration pipeline (``conf/base/parameters_registration.yml``).

    Attributes:
        channel: tissue channel of the histology registered on (colour deconvolution or OD).
        scoring: Dice threshold for flagging, MI bins and log base, TRE grid step.
        optimiser: the SimpleITK registration settings (metric, pyramid, stages, seed, ...).
        max_grid_px: longest side (px) of the grid registration is scored on; a longer
            downsampled slide (slides above ~30,000 px at 15x) is area-averaged to it, and the
            aligned MRI is still written on the full grid (memory bounded as slides grow).
    """

    channel: TissueChannel = TissueChannel.OPTICAL_DENSITY
    scoring: PairScoring = field(default_factory=PairScoring)
    optimiser: RegistrationParams = field(default_factory=RegistrationParams)
    max_grid_px: int = 2048

    def __post_init__(self) -> None:
        if self.max_grid_px < 64:
            raise ValueError(f"max_grid_px must be >= 64, got {self.max_grid_px}")


def _params(parameters: dict[str, Any]) -> RegistrationPipelineParams:
    return parse_params(RegistrationPipelineParams, parameters, "registration")


def _aligned_outputs(
    result: PairRegistration, grid: FixedGrid, mri: sitk.Image, mri_mask: Loader
) -> tuple[sitk.Image | Loader, sitk.Image | Loader]:
    """The aligned MRI and mask on the full grid: lazy (resampled when saved) if reduced."""
    if not grid.reduced:
        return result.aligned_mri, result.aligned_mri_mask
    full, transform = grid.full, result.transform
    return (
        partial(resample_moving, mri, full, transform, Interpolator.LINEAR),
        lambda: resample_moving(
            sitk.Cast(sitk.NotEqual(mri_mask(), 0), sitk.sitkUInt8),
            full,
            transform,
            Interpolator.NEAREST,
        ),
    )


def _register_all(
    pairs: pd.DataFrame,
    downsampled_slides: dict[str, Loader],
    mri_slices: dict[str, Loader],
    slide_masks: dict[str, Loader],
    mri_masks: dict[str, Loader],
    ground_truth: pd.DataFrame,
    mask_report: pd.DataFrame,
    parameters: dict[str, Any],
    control_points: dict[str, Loader] | None,
) -> tuple[
    dict[str, sitk.Transform],
    dict[str, sitk.Image],
    dict[str, sitk.Image],
    pd.DataFrame,
    dict[str, Figure],
]:
    p = _params(parameters)
    truth = (
        ground_truth.set_index(ground_truth["pair_id"].astype(str)) if len(ground_truth) else None
    )
    if control_points is not None:
        missing = sorted(set(pairs["pair_id"]) - set(control_points))
        if missing:
            raise ValueError(f"no control point file for pair(s) {', '.join(missing)}")
    transforms, aligned, aligned_masks, figures = {}, {}, {}, {}
    rows = []
    for row in pairs.itertuples():
        with downsampled_slides[row.pair_id]() as slide:
            grid = fixed_grid(slide, recorded_downsample(slide), p.max_grid_px)
        rgb, spacing, origin = grid.rgb, grid.spacing_mm, grid.origin_mm
        if grid.reduced:
            logger.info(
                "pair %s: %dx%d px grid registered and scored on %dx%d px (max_grid_px)",
                row.pair_id,
                *grid.full.GetSize(),
                rgb.shape[1],
                rgb.shape[0],
            )
        mri: sitk.Image = mri_slices[row.pair_id]()
        points = None
        if control_points is not None:
            cp_file: ControlPointsFile = control_points[row.pair_id]()
            points = cp_file.read(
                fixed_spacing_mm=spacing,
                moving_spacing_mm=mri.GetSpacing(),
                fixed_origin_mm=origin,
            )
        gt = None
        if truth is not None and row.pair_id in truth.index:
            t = truth.loc[row.pair_id]
            gt = np.array([[t.a11, t.a12, t.tx], [t.a21, t.a22, t.ty]], dtype=float)
        result = register_pair(
            row.pair_id,
            rgb,
            spacing,
            origin,
            slide_masks[row.pair_id](),
            mri,
            mri_masks[row.pair_id](),
            channel=p.channel,
            params=p.optimiser,
            scoring=p.scoring,
            control_points=points,
            ground_truth_2x3=gt,
        )
        flagged = qc_problems(result.scores, p.scoring.dice_threshold, p.scoring.min_structure)
        if flagged:
            logger.warning("pair %s: %s; check its QC figure", row.pair_id, flagged)
        logger.info(
            "pair %s: Dice %.3f -> %.3f, TRE %.2f px, %.1f s",
            row.pair_id,
            result.scores["dice_before"],
            result.scores["dice_after"],
            result.scores["tre_px"],
            result.scores["seconds"],
        )
        transforms[row.pair_id] = result.transform
        aligned[row.pair_id], aligned_masks[row.pair_id] = _aligned_outputs(
            result, grid, mri, mri_masks[row.pair_id]
        )
        figures[f"{row.pair_id}.png"] = result.figure
        rows.append(
            {
                "pair_id": row.pair_id,
                "specimen_id": row.specimen_id,
                "split": row.split,
                **result.scores,
                "flagged": bool(flagged),
                "flag_reason": flagged,
                "dice_threshold": p.scoring.dice_threshold,
                "min_structure": p.scoring.min_structure,
            }
        )
    report = pd.DataFrame(rows)
    thresholds = [
        c
        for c in (
            "slide_mask_method",
            "slide_mask_threshold",
            "mri_mask_method",
            "mri_mask_threshold",
        )
        if c in mask_report.columns
    ]
    if thresholds:
        report = report.merge(mask_report[["pair_id", *thresholds]], on="pair_id", how="left")
    ordered = [c for c in REPORT_COLUMNS if c in report.columns]
    report = report[ordered + [c for c in report.columns if c not in ordered]]
    return transforms, aligned, aligned_masks, report, figures


def register_pairs(
    pairs: pd.DataFrame,
    downsampled_slides: dict[str, Loader],
    mri_slices: dict[str, Loader],
    slide_masks: dict[str, Loader],
    mri_masks: dict[str, Loader],
    ground_truth: pd.DataFrame,
    mask_report: pd.DataFrame,
    parameters: dict[str, Any],
) -> tuple[
    dict[str, sitk.Transform],
    dict[str, sitk.Image],
    dict[str, sitk.Image],
    pd.DataFrame,
    dict[str, Figure],
]:
    """Intensity-based affine registration of every pair (Mattes MI, similarity then affine).

    Returns:
        ``(transforms, aligned_mri, aligned_mri_masks, report, qc_figures)``: transforms map
        histology mm -> MRI mm; aligned images lie on the downsampled histology grid; the report
        has one row per pair (``dice_*``, ``mi_*``, ``tre_*``, ``seconds``, ``converged``,
        ``flagged`` and the mask thresholds used).
    """
    return _register_all(
        pairs,
        downsampled_slides,
        mri_slices,
        slide_masks,
        mri_masks,
        ground_truth,
        mask_report,
        parameters,
        None,
    )


def register_pairs_from_control_points(
    pairs: pd.DataFrame,
    downsampled_slides: dict[str, Loader],
    mri_slices: dict[str, Loader],
    slide_masks: dict[str, Loader],
    mri_masks: dict[str, Loader],
    ground_truth: pd.DataFrame,
    mask_report: pd.DataFrame,
    control_points: dict[str, Loader],
    parameters: dict[str, Any],
) -> tuple[
    dict[str, sitk.Transform],
    dict[str, sitk.Image],
    dict[str, sitk.Image],
    pd.DataFrame,
    dict[str, Figure],
]:
    """Least-squares affine from landmark pairs (one CSV per pair id); same outputs as above."""
    return _register_all(
        pairs,
        downsampled_slides,
        mri_slices,
        slide_masks,
        mri_masks,
        ground_truth,
        mask_report,
        parameters,
        control_points,
    )
