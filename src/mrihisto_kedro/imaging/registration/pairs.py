"""Register one MRI slice to its downsampled histology section and score it (no Kedro imports).

This is the per-pair work of the ``registration`` pipeline: build the fixed image (one tissue
channel of the downsampled slide, in physical mm), register the MRI slice to it (intensity-based
or from control points), resample the MRI and its mask onto the histology grid, and measure Dice
of tissue masks, mutual information before and after, and, where a ground-truth transform is
known (the built-in demo), the target registration error on a grid of points in the tissue.
It returns the images of the QC figure (:class:`~.qc.QcImages`); ``reporting`` draws them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from mrihisto_kedro.imaging.downsample import downsampled_origin_mm, slide_thumbnail
from mrihisto_kedro.imaging.slides import Slide
from mrihisto_kedro.metrics.mutual_information import mutual_information
from mrihisto_kedro.params import Params, Range

from .channels import TissueChannel, fixed_image_from_rgb
from .checks import RegistrationError
from .control_points import ControlPoints, affine_from_control_points
from .engine import register_affine
from .params import Interpolator, RegistrationParams
from .qc import QcImages, gradient_agreement, qc_images
from .scores import dice, grid_points_in_mask, target_registration_error
from .transforms import resample_moving, transform_from_moving_to_fixed_affine

__all__ = ["FixedGrid", "PairRegistration", "PairScoring", "fixed_grid", "register_pair"]


@dataclass(frozen=True)
class PairScoring(Params):
    """How a registered pair is scored.

    Attributes:
        dice_threshold: a pair whose Dice after registration is below this is flagged.
        min_structure: a pair whose structure agreement after registration
            (:func:`~mrihisto_kedro.imaging.registration.qc.gradient_agreement`, inside both
            tissues eroded by 2 MRI voxels, at the MRI's resolution) is below this is flagged:
            about 0.5 is unrelated structure. Measured on the demo: its pairs 0.937-0.957,
            each slide against an unrelated specimen's MRI 0.54-0.68 (Dice 0.91-0.96 all).
        mi_bins: bins per axis of the joint histogram for mutual information.
        mi_base: logarithm base of mutual information (``e``: nats, 2: bits).
        tre_grid_step_mm: spacing of the grid of tissue points the TRE is measured on.
    """

    dice_threshold: Annotated[float, Range(gt=0.0, le=1.0)] = 0.85
    min_structure: Annotated[float, Range(ge=0.0, le=1.0)] = 0.8
    mi_bins: Annotated[int, Range(ge=2)] = 20
    mi_base: Annotated[float, Range(gt=1.0)] = math.e
    tre_grid_step_mm: Annotated[float, Range(gt=0.0)] = 2.0


@dataclass
class PairRegistration:
    """Everything the pipeline keeps of one registered pair.

    Attributes:
        transform: fixed (histology) mm -> moving (MRI) mm, as SimpleITK applies it.
        aligned_mri: the MRI slice resampled (linear) onto the fixed grid, float32.
        aligned_mri_mask: the MRI tissue mask resampled (nearest) onto the fixed grid, uint8.
        scores: one report row (see :func:`register_pair`).
        qc: the images of the pair's QC figure (histology channel, MRI before and after).
    """

    transform: sitk.Transform
    aligned_mri: sitk.Image
    aligned_mri_mask: sitk.Image
    qc: QcImages
    scores: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class FixedGrid:
    """A downsampled slide as registration sees it: the grid it scores on, and the full grid.

    Registration, Dice, MI and the QC figure need no more than a couple of thousand pixels
    along the slide (the optimiser already block-averages to ``fixed_max_size``), but the
    4000 x 3000 grid of a 60,000 px slide held as the fixed image, its mask, the MRI before
    and after, and their arrays costs about 0.9 GB (measured on the full-scale run). A slide
    grid longer than ``max_size`` is therefore scored on an area-averaged copy of it; the
    aligned MRI is still resampled onto the full grid (``resample_moving`` onto
    :attr:`full`), from the same physical transform.

    Attributes:
        rgb: pixels scored on, uint8 ``(h, w, 3)``: the grid itself or its reduction.
        spacing_mm: ``(x, y)`` mm per pixel of ``rgb``.
        origin_mm: physical centre of ``rgb``'s pixel ``(0, 0)``, mm.
        full: the downsampled grid's geometry (uint8 zeros ``(H, W)`` with its spacing and
            origin), the grid aligned outputs are resampled onto.
        reduced: ``True`` when ``rgb`` is a reduction of the grid.
    """

    rgb: np.ndarray
    spacing_mm: tuple[float, float]
    origin_mm: tuple[float, float]
    full: sitk.Image
    reduced: bool


def fixed_grid(slide: Slide, downsample_factor: float, max_size: int) -> FixedGrid:
    """Read a downsampled slide for registration (see :class:`FixedGrid`).

    Args:
        slide: the downsampled slide (its mpp is the grid's; level 0 is the grid).
        downsample_factor: level-0 pixels of the original slide per grid pixel (e.g. 15).
        max_size: longest side, px, scored on; a longer grid is area-averaged to it.

    Raises:
        ValueError: the slide records no mpp (naming it).
    """
    if slide.mpp is None:
        raise ValueError(
            f"downsampled slide {slide.path} has no mpp: registration needs physical units"
        )
    width, height = slide.level_dimensions[0]
    spacing = (slide.mpp[0] / 1000.0, slide.mpp[1] / 1000.0)
    level0 = (slide.mpp[0] / downsample_factor, slide.mpp[1] / downsample_factor)
    origin = downsampled_origin_mm(downsample_factor, level0)
    full = sitk.Image(width, height, sitk.sitkUInt8)
    full.SetSpacing(spacing)
    full.SetOrigin(origin)
    if max(width, height) <= max_size:
        rgb = slide.read_region((0, 0), 0, (width, height))
        return FixedGrid(rgb, spacing, origin, full, reduced=False)
    rgb = slide_thumbnail(slide, max_size)
    reduced_spacing = (spacing[0] * width / rgb.shape[1], spacing[1] * height / rgb.shape[0])
    factor = (reduced_spacing[0] * 1000.0 / level0[0], reduced_spacing[1] * 1000.0 / level0[1])
    return FixedGrid(
        rgb, reduced_spacing, downsampled_origin_mm(factor, level0), full, reduced=True
    )


def _binary(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image) != 0


def _fit(
    pair_id: str,
    fixed: sitk.Image,
    mri: sitk.Image,
    fixed_mask: sitk.Image,
    mri_mask: sitk.Image,
    params: RegistrationParams,
    control_points: ControlPoints | None,
) -> tuple[sitk.Transform, bool, str, float]:
    """The fixed->moving transform, whether it converged, the mode, and the landmarks' RMS (mm).

    From ``control_points`` (least squares; RMS of the residuals) when given, else by
    :func:`register_affine` (RMS ``nan``); a :class:`RegistrationError` is prefixed with the pair.
    """
    if control_points is not None:
        transform, residuals = affine_from_control_points(
            control_points.moving_mm, control_points.fixed_mm
        )
        return transform, True, "control_points", float(np.sqrt(np.mean(residuals**2)))
    try:
        result = register_affine(fixed, mri, params, fixed_mask, mri_mask)
    except RegistrationError as exc:
        raise RegistrationError(f"pair {pair_id}: {exc}") from exc
    return result.transform, result.converged, "intensity", float("nan")


def _tre_scores(
    transform: sitk.Transform,
    ground_truth_2x3: np.ndarray,
    fixed_mask: sitk.Image,
    mri: sitk.Image,
    step_mm: float,
) -> dict[str, object]:
    """``tre_px``, ``tre_um``, ``tre_max_px``, ``tre_points`` on a grid of tissue points.

    Errors are measured in the MRI (mm), reported in MRI voxels and µm; an empty dict when the
    fixed mask holds no grid point.
    """
    true = transform_from_moving_to_fixed_affine(np.asarray(ground_truth_2x3, dtype=float))
    points = grid_points_in_mask(fixed_mask, step_mm)
    if not len(points):
        return {}
    errors_mm = target_registration_error(transform, true, points)
    voxel_mm = float(np.mean(mri.GetSpacing()))
    return {
        "tre_px": float(np.mean(errors_mm) / voxel_mm),
        "tre_um": float(np.mean(errors_mm) * 1000.0),
        "tre_max_px": float(np.max(errors_mm) / voxel_mm),
        "tre_points": len(points),
    }


def _notes(scores: dict[str, object], scoring: PairScoring) -> str:
    """One line of a pair's scores for its QC figure (Dice, MI, structure, TRE if known)."""
    notes = (
        f"{scores['mode']} on {scores['channel']}: Dice {scores['dice_before']:.3f} -> "
        f"{scores['dice_after']:.3f}, MI ({scoring.mi_bins} bins, base {scores['mi_base']}) "
        f"{scores['mi_before']:.3f} -> {scores['mi_after']:.3f}, structure "
        f"{scores['structure_before']:.3f} -> {scores['structure_after']:.3f}"
    )
    tre_px = scores["tre_px"]
    if isinstance(tre_px, float) and not math.isnan(tre_px):
        notes += f", TRE {scores['tre_px']:.2f} MRI px ({scores['tre_um']:.0f} um)"
    return notes


def register_pair(
    pair_id: str,
    slide_rgb: np.ndarray,
    slide_spacing_mm: tuple[float, float],
    slide_origin_mm: tuple[float, float],
    slide_mask: sitk.Image,
    mri: sitk.Image,
    mri_mask: sitk.Image,
    *,
    channel: TissueChannel | str,
    params: RegistrationParams,
    scoring: PairScoring,
    control_points: ControlPoints | None = None,
    ground_truth_2x3: np.ndarray | None = None,
) -> PairRegistration:
    """Register ``mri`` (moving) to the downsampled slide (fixed) and score the result.

    Args:
        pair_id: named in errors and in the QC images' title.
        slide_rgb: downsampled slide pixels ``(H, W, 3)`` uint8.
        slide_spacing_mm: ``(x, y)`` pixel size of ``slide_rgb`` in mm.
        slide_origin_mm: physical centre of pixel ``(0, 0)`` in mm.
        slide_mask: tissue mask of the slide (any grid with physical geometry; non-zero = tissue).
        mri: MRI slice (2-D, float32 in [0, 1], spacing in mm).
        mri_mask: tissue mask on the MRI grid.
        channel: the tissue channel of the slide to register on.
        params: optimiser settings of :func:`register_affine`.
        scoring: Dice threshold, MI bins/base, TRE grid.
        control_points: when given, the transform is the least-squares affine of these landmark
            pairs (seed 003's mode) instead of intensity-based registration.
        ground_truth_2x3: the true MRI mm -> histology mm affine (the demo), for the TRE.

    Returns:
        :class:`PairRegistration`; ``scores`` holds ``mode, channel, dice_before, dice_after,
        mi_before, mi_after, structure_before, structure_after, mi_bins, mi_base, tre_px,
        tre_um, tre_max_px, tre_points, seconds, converged, cp_rms_mm``.

    Raises:
        RegistrationError: the optimisation failed or gave an implausible transform; the message
            starts with the pair id.
    """
    start = time.perf_counter()
    fixed = fixed_image_from_rgb(slide_rgb, slide_spacing_mm, channel, slide_origin_mm)
    mask_on_fixed = sitk.Resample(
        slide_mask, fixed, sitk.Transform(2, sitk.sitkIdentity), sitk.sitkNearestNeighbor, 0
    )
    mask_on_fixed = sitk.Cast(sitk.NotEqual(mask_on_fixed, 0), sitk.sitkUInt8)
    moving_mask = sitk.Cast(sitk.NotEqual(mri_mask, 0), sitk.sitkUInt8)
    transform, converged, mode, cp_rms = _fit(
        pair_id, fixed, mri, mask_on_fixed, moving_mask, params, control_points
    )
    seconds = time.perf_counter() - start

    identity = sitk.AffineTransform(2)
    fixed_array = sitk.GetArrayFromImage(fixed)
    tissue = _binary(mask_on_fixed)
    after = resample_moving(mri, fixed, transform, Interpolator.LINEAR)
    before_array = sitk.GetArrayFromImage(resample_moving(mri, fixed, identity))
    after_array = sitk.GetArrayFromImage(after)
    mask_before = resample_moving(moving_mask, fixed, identity, Interpolator.NEAREST)
    mask_after = resample_moving(moving_mask, fixed, transform, Interpolator.NEAREST)
    voxel_px = float(np.mean(mri.GetSpacing()) / np.mean(fixed.GetSpacing()))
    erode = max(1, round(2 * voxel_px))  # 2 MRI voxels: the outline is Dice's business

    def structure(mask: sitk.Image, moved: np.ndarray) -> float:
        region = ndimage.binary_erosion(tissue & _binary(mask), iterations=erode)
        return gradient_agreement(fixed_array, moved, region, voxel_px)

    def mi(moved: np.ndarray) -> float:
        return mutual_information(fixed_array, moved, bins=scoring.mi_bins, base=scoring.mi_base)

    scores: dict[str, object] = {
        "mode": mode,
        "channel": str(TissueChannel(channel)),
        "dice_before": dice(tissue, _binary(mask_before)),
        "dice_after": dice(tissue, _binary(mask_after)),
        "mi_before": mi(before_array),
        "mi_after": mi(after_array),
        "structure_before": structure(mask_before, before_array),
        "structure_after": structure(mask_after, after_array),
        "mi_bins": scoring.mi_bins,
        "mi_base": "e" if math.isclose(scoring.mi_base, math.e) else scoring.mi_base,
        "tre_px": float("nan"),
        "tre_um": float("nan"),
        "tre_max_px": float("nan"),
        "tre_points": 0,
        "seconds": seconds,
        "converged": bool(converged),
        "cp_rms_mm": cp_rms,
    }
    if ground_truth_2x3 is not None:
        scores.update(
            _tre_scores(transform, ground_truth_2x3, mask_on_fixed, mri, scoring.tre_grid_step_mm)
        )
    qc = qc_images(
        fixed_array,
        before_array,
        after_array,
        spacing_mm=slide_spacing_mm,
        title=pair_id,
        notes=_notes(scores, scoring),
    )
    return PairRegistration(
        transform=transform,
        aligned_mri=after,
        aligned_mri_mask=mask_after,
        qc=qc,
        scores=scores,
    )
