"""Every pair of an MSI study padded, registered, resampled and scored (no Kedro).

:func:`register_msi_study` is the per-pair loop of the ``register_msi_pairs`` node: for each pair
of the manifest the H&E is block-averaged to the working grid
(:func:`~mrihisto_kedro.msi.geometry.histology_on_grid`), the reduced MSI padded black and white
(:func:`~mrihisto_kedro.msi.padding.pad_to_histology`), registered ONCE on the black canvas (the
padding is masked out, so the transform does not depend on the colour;
:func:`~mrihisto_kedro.msi.registration.register_msi`) and both paddings resampled onto the grid
with that transform: the two tile sets differ only in the padding. Each pair gets a report row
(:data:`REPORT_COLUMNS`): mutual information at the centred start and registered, control-point
residuals, and the TRE against a known affine where a ground truth is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import SimpleITK as sitk
from PIL import Image

from mrihisto_kedro.imaging.bit_depth import pil_rgb8
from mrihisto_kedro.imaging.registration import ControlPoints, carry_records
from mrihisto_kedro.msi.geometry import histology_on_grid
from mrihisto_kedro.msi.manifest import pair_rows, require_pairs, validate_msi_pairs
from mrihisto_kedro.msi.padding import pad_to_histology
from mrihisto_kedro.msi.params import MsiRegistrationParams, RegistrationMode
from mrihisto_kedro.msi.reduction import PadColour
from mrihisto_kedro.msi.registration import (
    MsiRegistration,
    msi_coverage,
    register_msi,
    resample_msi,
)
from mrihisto_kedro.msi.registration_scores import (
    ground_truth_affines,
    registered_mutual_information,
    registration_tre_um,
)

__all__ = [
    "REPORT_COLUMNS",
    "ControlPointSource",
    "MsiRegistrationStudy",
    "RegisteredMsiPair",
    "register_msi_pair",
    "register_msi_study",
]

logger = logging.getLogger(__name__)

#: columns of the MSI registration report, in order (more may follow)
REPORT_COLUMNS: tuple[str, ...] = (
    "pair_id",
    "specimen_id",
    "split",
    "mode",
    "tre_mean_um",
    "tre_median_um",
    "tre_max_um",
    "tre_initial_um",
    "tre_msi_px",
    "cp_rms_um",
    "n_control_points",
    "mi_initial",
    "mi_registered",
    "msi_pixel_size_um",
    "grid_mpp_um",
    "msi_fraction",
    "seconds",
    "converged",
    "start_offset_x_px",
    "start_offset_y_px",
)


class ControlPointSource(Protocol):
    """A landmark file read once the image geometry is known (pixel columns need spacings).

    :class:`mrihisto_kedro.datasets.control_points_dataset.ControlPointsFile` is one.
    """

    def read(
        self,
        *,
        fixed_spacing_mm: Sequence[float] | None = None,
        moving_spacing_mm: Sequence[float] | None = None,
    ) -> ControlPoints:
        """The landmark pairs in mm (``fixed`` = histology, ``moving`` = MSI)."""
        ...


@dataclass(frozen=True)
class RegisteredMsiPair:
    """One pair registered to its H&E, on the working grid.

    Attributes:
        pair_id: from the manifest.
        transform: histology (fixed) mm -> MSI (moving) mm.
        histology_grid: the working-grid H&E, vector uint8 ``(H, W, 3)`` image in histology mm.
        registered: ``{colour: vector float32 (H, W, 3) image in [0, 1]}`` for black and white
            padding, on ``histology_grid``'s geometry.
        coverage: uint8 0/1 image on the grid: grid pixels covered by MSI pixels.
        record: the pair's report row (keys of :data:`REPORT_COLUMNS`; TRE keys only with a
            ground truth, control-point keys only in control-point mode).
        title: how the QC figure names the result (mode, TRE in µm where known).
    """

    pair_id: str
    transform: sitk.Transform
    histology_grid: sitk.Image
    registered: dict[PadColour, sitk.Image]
    coverage: sitk.Image
    record: dict[str, Any]
    title: str


@dataclass(frozen=True)
class MsiRegistrationStudy:
    """Every pair registered (manifest order) and the registration report.

    Attributes:
        pairs: one :class:`RegisteredMsiPair` per manifest row.
        report: one row per pair, :data:`REPORT_COLUMNS` first (TRE columns empty without a
            ground truth).
    """

    pairs: tuple[RegisteredMsiPair, ...]
    report: pd.DataFrame

    def transforms(self) -> dict[str, sitk.Transform]:
        """``{pair_id: histology mm -> MSI mm transform}``."""
        return {p.pair_id: p.transform for p in self.pairs}

    def histology_grids(self) -> dict[str, sitk.Image]:
        """``{pair_id: working-grid H&E}`` (vector uint8)."""
        return {p.pair_id: p.histology_grid for p in self.pairs}

    def registered(self, colour: PadColour | str) -> dict[str, sitk.Image]:
        """``{pair_id: padded, registered MSI on the grid}`` for one padding colour."""
        return {p.pair_id: p.registered[PadColour(colour)] for p in self.pairs}

    def coverages(self) -> dict[str, sitk.Image]:
        """``{pair_id: MSI footprint on the grid}`` (uint8 0/1)."""
        return {p.pair_id: p.coverage for p in self.pairs}


def _grid_image(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=array.ndim == 3)
    image.CopyInformation(grid)
    return image


def _mutual_information(
    grid: sitk.Image,
    canvas: sitk.Image,
    footprint: sitk.Image,
    result: MsiRegistration,
    params: MsiRegistrationParams,
) -> dict[str, float]:
    """MI (nats) of the H&E tissue channel and the MSI at the centred start and registered."""
    return {
        name: registered_mutual_information(
            grid, canvas, footprint, transform, params.fixed_channel, params.moving_channel
        )
        for name, transform in (
            ("mi_initial", result.initial_transform),
            ("mi_registered", result.transform),
        )
    }


def _tre_scores(
    result: MsiRegistration,
    truth: np.ndarray,
    coverage: sitk.Image,
    step_um: float,
    msi_pixel_um: float,
) -> dict[str, float]:
    """TRE (µm) of the registration and of the centred start against the known affine."""
    tre = registration_tre_um(result.transform, truth, coverage, step_um)
    initial = registration_tre_um(result.initial_transform, truth, coverage, step_um)
    return {
        "tre_mean_um": float(tre.mean()),
        "tre_median_um": float(np.median(tre)),
        "tre_max_um": float(tre.max()),
        "tre_initial_um": float(initial.mean()),
        "tre_msi_px": float(tre.mean()) / msi_pixel_um,
    }


def _result_record(result: MsiRegistration) -> dict[str, Any]:
    """The optimiser's part of a report row: time, convergence, winning start, residuals."""
    record: dict[str, Any] = {"seconds": result.seconds, "converged": result.converged}
    if result.start_offset_px is not None:
        record["start_offset_x_px"], record["start_offset_y_px"] = result.start_offset_px
    if result.control_point_residuals_um is not None:
        residuals = result.control_point_residuals_um
        record["cp_rms_um"] = float(np.sqrt(np.mean(residuals**2)))
        record["n_control_points"] = int(residuals.size)
    return record


def register_msi_pair(
    pair_id: str,
    histology_rgb: np.ndarray,
    mpp: tuple[float, float],
    msi: sitk.Image,
    params: MsiRegistrationParams,
    control_points: ControlPoints | None = None,
    truth: np.ndarray | None = None,
) -> RegisteredMsiPair:
    """Pad one reduced MSI black and white, register it to its H&E, resample both paddings.

    Args:
        pair_id: names the pair in the record and the log.
        histology_rgb: uint8 ``(H, W, 3)`` level-0 H&E.
        mpp: ``(x, y)`` µm per level-0 H&E pixel.
        msi: the reduced MSI, a vector image in MSI mm
            (:func:`~mrihisto_kedro.msi.geometry.msi_image`).
        params: :class:`~mrihisto_kedro.msi.params.MsiRegistrationParams`.
        control_points: landmark pairs in mm; required in control-point mode.
        truth: ``(2, 3)`` known MSI mm -> histology mm affine, or ``None``: no TRE.

    Returns:
        :class:`RegisteredMsiPair` (its record without the manifest's ``specimen_id``/``split``).
    """
    grid = histology_on_grid(histology_rgb, mpp, params.downsample)
    black, footprint = pad_to_histology(msi, grid, PadColour.BLACK, params.canvas_margin_px)
    white, _ = pad_to_histology(msi, grid, PadColour.WHITE, params.canvas_margin_px)
    result = register_msi(grid, msi, black, footprint, params, control_points)
    coverage = msi_coverage(footprint, grid, result.transform)
    msi_pixel_um = float(msi.GetSpacing()[0]) * 1000.0
    record: dict[str, Any] = {
        "pair_id": pair_id,
        "mode": params.mode.value,
        **_mutual_information(grid, black, footprint, result, params),
        "msi_pixel_size_um": msi_pixel_um,
        "grid_mpp_um": float(grid.GetSpacing()[0]) * 1000.0,
        "msi_fraction": float(sitk.GetArrayViewFromImage(coverage).mean()),
        **_result_record(result),
    }
    title = f"({params.mode.value})"
    if truth is not None:
        record |= _tre_scores(result, truth, coverage, params.tre_grid_step_um, msi_pixel_um)
        title = (
            f"({params.mode.value}, TRE {record['tre_mean_um']:.1f} µm, "
            f"centred {record['tre_initial_um']:.1f} µm)"
        )
        logger.info(
            "MSI pair %s: TRE %.2f µm (%s)", pair_id, record["tre_mean_um"], params.mode.value
        )
    for note in result.notes:
        logger.warning("MSI pair %s: %s", pair_id, note)
    registered = {  # carrying the reduction the MSI image records (msi/joint_reduction.py)
        colour: carry_records(
            msi, _grid_image(resample_msi(canvas, grid, result.transform, colour), grid)
        )
        for colour, canvas in ((PadColour.BLACK, black), (PadColour.WHITE, white))
    }
    return RegisteredMsiPair(pair_id, result.transform, grid, registered, coverage, record, title)


def register_msi_study(
    pairs: pd.DataFrame,
    reduced: Mapping[str, Callable[[], sitk.Image]],
    histology: Mapping[str, Callable[[], Image.Image]],
    control_points: Mapping[str, Callable[[], ControlPointSource]],
    ground_truth: pd.DataFrame | None,
    params: MsiRegistrationParams,
) -> MsiRegistrationStudy:
    """:func:`register_msi_pair` for every pair of the manifest, in manifest order.

    Each pair's inputs are loaded when its turn comes; every pair's results are kept (the node
    returns them all).

    Args:
        pairs: the MSI pairs manifest (``pair_id, specimen_id, mpp_x, mpp_y, split``).
        reduced: ``{pair_id: callable returning the reduced MSI}`` (vector image, MSI mm).
        histology: ``{pair_id: callable returning the level-0 H&E as a Pillow image}``.
        control_points: ``{pair_id: callable returning its landmark file}``; read in
            control-point mode only (``_px`` columns use the H&E's level-0 mpp and the MSI's
            pixel size).
        ground_truth: known affines (see
            :func:`~mrihisto_kedro.msi.registration_scores.ground_truth_affines`), or ``None``.
        params: :class:`~mrihisto_kedro.msi.params.MsiRegistrationParams`.

    Returns:
        :class:`MsiRegistrationStudy`.

    Raises:
        ValueError: a pair without its reduced MSI, its histology image or (control-point mode)
            its landmark file.
    """
    pairs = validate_msi_pairs(pairs)
    require_pairs("reduced MSI", pairs, reduced)
    require_pairs("histology image", pairs, histology)
    if params.mode is RegistrationMode.CONTROL_POINTS:
        require_pairs("control point file", pairs, control_points)
    truth = ground_truth_affines(ground_truth)
    registered, rows = [], []
    for row in pair_rows(pairs):
        rgb = pil_rgb8(histology[row.pair_id](), f"of pair {row.pair_id}")
        msi = reduced[row.pair_id]()
        points = None
        if params.mode is RegistrationMode.CONTROL_POINTS:
            points = control_points[row.pair_id]().read(
                fixed_spacing_mm=(row.mpp_x / 1000.0, row.mpp_y / 1000.0),
                moving_spacing_mm=msi.GetSpacing(),
            )
        pair = register_msi_pair(
            row.pair_id, rgb, (row.mpp_x, row.mpp_y), msi, params, points, truth.get(row.pair_id)
        )
        registered.append(pair)
        rows.append({**pair.record, "specimen_id": row.specimen_id, "split": row.split})
    report = pd.DataFrame(rows)
    extra = [c for c in report.columns if c not in REPORT_COLUMNS]
    return MsiRegistrationStudy(
        tuple(registered), report.reindex(columns=[*REPORT_COLUMNS, *extra])
    )
