"""The registration study: every pair of a manifest registered, scored, judged and reported.

For each row of the pairs manifest, :func:`register_all` reads the downsampled slide (the grid
it is scored on, :func:`~.pairs.fixed_grid`, placed by the downsampling factor the slide
records), the MRI slice and both tissue masks, registers the pair (:func:`~.pairs.register_pair`;
intensity-based, or from the pair's landmark file), judges it
(:func:`~.qc.qc_problems`: Dice, structure agreement, convergence) and collects the results in a
:class:`RegistrationStudy`: transforms, aligned MRI and masks on the full downsampled grid, one
report row per pair and the images of each pair's QC figure. Inputs are read one pair at a time
from zero-argument callables (a folder dataset's partitions), so a folder of slides is never in
memory at once. No Kedro imports: the ``registration`` pipeline's nodes call it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Protocol

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.imaging.downsample import recorded_downsample
from mrihisto_kedro.imaging.pair_executor import PairExecutorParams, map_pairs
from mrihisto_kedro.imaging.slides import Slide
from mrihisto_kedro.params import Params, Range

from .channels import TissueChannel
from .control_points import ControlPoints
from .pairs import FixedGrid, PairRegistration, PairScoring, fixed_grid, register_pair
from .params import Interpolator, RegistrationParams
from .qc import QcImages, qc_problems
from .transforms import resample_moving

__all__ = [
    "MASK_COLUMNS",
    "REPORT_COLUMNS",
    "ControlPointSource",
    "PairSources",
    "RegistrationStudy",
    "RegistrationStudyParams",
    "register_all",
]

logger = logging.getLogger(__name__)

#: the report's leading columns, in this order; the other columns follow
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
#: columns of data_engineering's report copied into the registration report (when present)
MASK_COLUMNS = (
    "slide_mask_method",
    "slide_mask_threshold",
    "mri_mask_method",
    "mri_mask_threshold",
)

#: an output image, or a callable that computes it when it is saved
LazyImage = sitk.Image | Callable[[], sitk.Image]


@dataclass(frozen=True)
class RegistrationStudyParams(Params):
    """Parameters of a registration study (``conf/base/parameters_registration.yml``).

    Attributes:
        channel: tissue channel of the histology registered on (colour deconvolution or OD).
        scoring: Dice threshold for flagging, MI bins and log base, TRE grid step.
        optimiser: the SimpleITK registration settings (metric, pyramid, stages, seed, ...).
        max_grid_px: longest side (px) of the grid registration is scored on; a longer
            downsampled slide (slides above ~30,000 px at 15x) is area-averaged to it, and the
            aligned MRI is still written on the full grid (memory bounded as slides grow: a
            60,000 px slide's 4000 x 3000 grid cost register_pairs 0.9 GB before this cap).
        executor: how the pairs are run (:mod:`~mrihisto_kedro.imaging.pair_executor`:
            ``sequential``, ``threads``, ``processes``; the results are the same).
    """

    channel: TissueChannel = TissueChannel.OPTICAL_DENSITY
    scoring: PairScoring = field(default_factory=PairScoring)
    optimiser: RegistrationParams = field(default_factory=RegistrationParams)
    max_grid_px: Annotated[int, Range(ge=64)] = 2048
    executor: PairExecutorParams = field(default_factory=PairExecutorParams)


class ControlPointSource(Protocol):
    """A landmark file, read once the image geometry is known (pixel columns need spacing)."""

    def read(
        self,
        *,
        fixed_spacing_mm: Sequence[float] | None = None,
        moving_spacing_mm: Sequence[float] | None = None,
        fixed_origin_mm: Sequence[float] = (0.0, 0.0),
    ) -> ControlPoints:
        """The landmark pairs in mm (see :func:`~.control_points.read_control_points`)."""
        ...


@dataclass(frozen=True)
class PairSources:
    """Readers of each pair's inputs, keyed by pair id; calling one reads that pair's input.

    Attributes:
        slides: the downsampled slides (a :class:`~mrihisto_kedro.imaging.slides.Slide`, used
            as a context manager and closed once its grid is read).
        mri_slices: the MRI slices (2-D float32 in ``[0, 1]``, spacing in mm).
        slide_masks: the slides' tissue masks (any grid with physical geometry).
        mri_masks: the MRI slices' tissue masks (on the MRI grid).
        control_points: the landmark files (control-point mode); ``None``: intensity-based.
    """

    slides: Mapping[str, Callable[[], Slide]]
    mri_slices: Mapping[str, Callable[[], sitk.Image]]
    slide_masks: Mapping[str, Callable[[], sitk.Image]]
    mri_masks: Mapping[str, Callable[[], sitk.Image]]
    control_points: Mapping[str, Callable[[], ControlPointSource]] | None = None


@dataclass(frozen=True)
class RegistrationStudy:
    """Everything a registration study produces, keyed by pair id.

    Attributes:
        transforms: histology mm -> MRI mm, as SimpleITK applies them.
        aligned_mri: the MRI slice resampled (linear, float32) onto the full downsampled grid;
            a callable computing it when the grid was scored on a reduction (resampled when
            saved, one pair at a time).
        aligned_mri_masks: the MRI mask resampled (nearest, uint8) onto that grid, likewise.
        report: one row per pair: :data:`REPORT_COLUMNS` first, then ``structure_before, mode,
            channel, mi_bins, mi_base, tre_max_px, tre_points, cp_rms_mm, dice_threshold,
            min_structure`` and the :data:`MASK_COLUMNS` of the mask report.
        qc: the images of each pair's QC figure.
    """

    transforms: dict[str, sitk.Transform]
    aligned_mri: dict[str, LazyImage]
    aligned_mri_masks: dict[str, LazyImage]
    report: pd.DataFrame
    qc: dict[str, QcImages]


def _ground_truth(truth: pd.DataFrame | None, pair_id: str) -> np.ndarray | None:
    """The pair's true MRI mm -> histology mm affine ``(2, 3)``, if the table has its row."""
    if truth is None or pair_id not in truth.index:
        return None
    t = truth.loc[pair_id]
    return np.array([[t.a11, t.a12, t.tx], [t.a21, t.a22, t.ty]], dtype=float)


def _read_grid(slide: Callable[[], Slide], max_px: int, pair_id: str) -> FixedGrid:
    """The pair's downsampled slide as a :class:`~.pairs.FixedGrid` (logged when reduced)."""
    with slide() as opened:
        grid = fixed_grid(opened, recorded_downsample(opened), max_px)
    if grid.reduced:
        logger.info(
            "pair %s: %dx%d px grid registered and scored on %dx%d px (max_grid_px)",
            pair_id,
            *grid.full.GetSize(),
            grid.rgb.shape[1],
            grid.rgb.shape[0],
        )
    return grid


def _register_one(
    pair_id: str,
    sources: PairSources,
    truth: pd.DataFrame | None,
    params: RegistrationStudyParams,
) -> tuple[PairRegistration, FixedGrid, sitk.Image]:
    """Read one pair's inputs and register it; also returns its grid and MRI slice."""
    grid = _read_grid(sources.slides[pair_id], params.max_grid_px, pair_id)
    mri: sitk.Image = sources.mri_slices[pair_id]()
    points = None
    if sources.control_points is not None:
        points = sources.control_points[pair_id]().read(
            fixed_spacing_mm=grid.spacing_mm,
            moving_spacing_mm=mri.GetSpacing(),
            fixed_origin_mm=grid.origin_mm,
        )
    ground_truth = _ground_truth(truth, pair_id)
    result = register_pair(
        pair_id,
        grid.rgb,
        grid.spacing_mm,
        grid.origin_mm,
        sources.slide_masks[pair_id](),
        mri,
        sources.mri_masks[pair_id](),
        channel=params.channel,
        params=params.optimiser,
        scoring=params.scoring,
        control_points=points,
        ground_truth_2x3=ground_truth,
    )
    return result, grid, mri


def _register_job(
    job: tuple[str, PairSources, pd.DataFrame | None, RegistrationStudyParams],
) -> tuple[PairRegistration, FixedGrid, sitk.Image]:
    """:func:`_register_one` of one ``(pair_id, sources, truth, params)`` (for ``map_pairs``)."""
    return _register_one(*job)


def _aligned_outputs(
    result: PairRegistration,
    grid: FixedGrid,
    mri: sitk.Image,
    mri_mask: Callable[[], sitk.Image],
) -> tuple[LazyImage, LazyImage]:
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


def _judge(pair_id: str, result: PairRegistration, scoring: PairScoring) -> str:
    """The pair's QC verdict ("" when it passes), logged with its scores."""
    flagged = qc_problems(result.scores, scoring.dice_threshold, scoring.min_structure)
    if flagged:
        logger.warning("pair %s: %s; check its QC figure", pair_id, flagged)
    logger.info(
        "pair %s: Dice %.3f -> %.3f, TRE %.2f px, %.1f s",
        pair_id,
        result.scores["dice_before"],
        result.scores["dice_after"],
        result.scores["tre_px"],
        result.scores["seconds"],
    )
    return flagged


def _report(rows: list[dict[str, Any]], mask_report: pd.DataFrame) -> pd.DataFrame:
    """The report table: the rows, the mask settings of each pair, leading columns first."""
    report = pd.DataFrame(rows)
    masks = [c for c in MASK_COLUMNS if c in mask_report.columns]
    if masks:
        report = report.merge(mask_report[["pair_id", *masks]], on="pair_id", how="left")
    ordered = [c for c in REPORT_COLUMNS if c in report.columns]
    return report[ordered + [c for c in report.columns if c not in ordered]]


def register_all(
    pairs: pd.DataFrame,
    sources: PairSources,
    ground_truth: pd.DataFrame,
    mask_report: pd.DataFrame,
    params: RegistrationStudyParams,
) -> RegistrationStudy:
    """Register, score and judge every pair of ``pairs`` (on ``params.executor``).

    Args:
        pairs: the manifest with splits (``pair_id``, ``specimen_id``, ``split``).
        sources: readers of each pair's slide, MRI slice, masks (and landmarks), by pair id.
        ground_truth: true MRI mm -> histology mm affines (``pair_id, a11, a12, a21, a22, tx,
            ty``; the demo), for the TRE; may be empty or lack pairs (``tre_*`` are then NaN).
        mask_report: data_engineering's report; its :data:`MASK_COLUMNS` enter the report.
        params: channel, scoring, optimiser settings and the scored grid's size.

    Returns:
        :class:`RegistrationStudy`. A pair that fails QC is flagged in the report (``flagged``,
        ``flag_reason``) and logged, not dropped.

    Raises:
        ValueError: control-point mode without a landmark file for some pair (naming them).
        RegistrationError: a pair's optimisation failed (the message starts with its id).
    """
    truth = (
        ground_truth.set_index(ground_truth["pair_id"].astype(str)) if len(ground_truth) else None
    )
    if sources.control_points is not None:
        missing = sorted(set(pairs["pair_id"]) - set(sources.control_points))
        if missing:
            raise ValueError(f"no control point file for pair(s) {', '.join(missing)}")
    transforms: dict[str, sitk.Transform] = {}
    aligned: dict[str, LazyImage] = {}
    aligned_masks: dict[str, LazyImage] = {}
    qc: dict[str, QcImages] = {}
    rows = []
    ids = [str(pair_id) for pair_id in pairs["pair_id"]]  # the manifest reads ids as strings
    jobs = [(pair_id, sources, truth, params) for pair_id in ids]
    done = map_pairs(_register_job, jobs, params.executor)
    for row, pair_id, (result, grid, mri) in zip(pairs.itertuples(), ids, done, strict=True):
        flagged = _judge(pair_id, result, params.scoring)
        transforms[pair_id] = result.transform
        aligned[pair_id], aligned_masks[pair_id] = _aligned_outputs(
            result, grid, mri, sources.mri_masks[pair_id]
        )
        qc[pair_id] = result.qc
        rows.append(
            {
                "pair_id": pair_id,
                "specimen_id": row.specimen_id,
                "split": row.split,
                **result.scores,
                "flagged": bool(flagged),
                "flag_reason": flagged,
                "dice_threshold": params.scoring.dice_threshold,
                "min_structure": params.scoring.min_structure,
            }
        )
    return RegistrationStudy(transforms, aligned, aligned_masks, _report(rows, mask_report), qc)
