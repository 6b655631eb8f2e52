"""Thin nodes of the msi_data_engineering pipeline (seed 003: MSI -> H&E).

Each node parses its block of ``msi_data_engineering`` (``conf/base/parameters_msi.yml``), loops
over the pairs and calls :mod:`mrihisto_kedro.msi.pairs`.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure
from PIL import Image

from mrihisto_kedro.datasets.control_points_dataset import ControlPointsFile
from mrihisto_kedro.demo.msi import MsiDemoParams, generate_msi_demo
from mrihisto_kedro.imaging.bit_depth import pil_rgb8
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.manifest import SplitFractions
from mrihisto_kedro.msi.imzml import ImzMLReader
from mrihisto_kedro.msi.pairs import (
    ControlPointSimulation,
    ImzMLFiles,
    MsiAlignedPair,
    MsiRegistrationParams,
    MsiTilingParams,
    ReductionParams,
    RegistrationMode,
    SpectraParams,
    assign_specimen_splits,
    common_peak_stacks,
    histology_on_grid,
    image_to_array,
    msi_coverage,
    msi_image,
    msi_pair_tiles,
    msi_tiles_input_spec,
    pad_to_histology,
    reduce_jointly,
    register_msi,
    registered_mutual_information,
    registration_figure,
    registration_tre_um,
    resample_msi,
    simulate_control_points,
    validate_msi_pairs,
)
from mrihisto_kedro.msi.reduction import PadColour
from mrihisto_kedro.msi.whole_views import MsiWholeViewParams, whole_specimen_views
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.pipelines.loaders import Loader

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


@dataclass(frozen=True)
class MsiDemoNodeParams:
    """``msi_data_engineering.demo``.

    Attributes:
        simulation: :class:`~mrihisto_kedro.demo.msi.MsiDemoParams` keys (empty: defaults).
        control_points: simulated landmark clicks (:class:`ControlPointSimulation`).
    """

    simulation: dict[str, Any] = field(default_factory=dict)
    control_points: ControlPointSimulation = field(default_factory=ControlPointSimulation)


def make_msi_demo(
    parameters: dict[str, Any],
) -> tuple[
    dict[str, ImzMLFiles],
    dict[str, Image.Image],
    pd.DataFrame,
    pd.DataFrame,
    dict[str, pd.DataFrame],
]:
    """Simulate the paired MSI/H&E demo (known MSI -> H&E affine per specimen).

    Returns:
        ``(imzml, histology, ground_truth, peaks, control_points)``: ``{pair_id: imzML/ibd
        bytes}``, ``{pair_id: RGB crop}``, the ground truth (also the demo's pairs manifest:
        ``pair_id, specimen_id, mpp_x, mpp_y, msi_pixel_size_um``, the affine ``a11 .. ty`` in
        mm, ...), the simulated peaks, and ``{pair_id: landmark table}`` (mm).
    """
    p = parse_params(MsiDemoNodeParams, parameters, "msi_data_engineering.demo")
    sim = parse_params(MsiDemoParams, p.simulation, "msi_data_engineering.demo.simulation")
    with tempfile.TemporaryDirectory(prefix="msi_demo_") as tmp:
        demo = generate_msi_demo(tmp, sim)
        imzml = {r.region_id: ImzMLFiles.read(r.imzml_path) for r in demo.regions}
    histology = {r.region_id: Image.fromarray(r.histology) for r in demo.regions}
    control_points = {
        r.region_id: simulate_control_points(
            r.affine_mm,
            r.msi_shape,
            r.msi_pixel_size_um,
            np.random.default_rng([p.control_points.seed, k]),
            p.control_points,
        )
        for k, r in enumerate(demo.regions)
    }
    logger.info(
        "MSI demo: %d specimens of %s MSI pixels (%g µm), H&E crops %s px (%g µm/px)",
        len(demo.regions),
        demo.regions[0].msi_shape,
        sim.msi_pixel_size_um,
        demo.regions[0].histology.shape[:2],
        demo.regions[0].mpp[0],
    )
    return imzml, histology, demo.ground_truth, demo.peak_table, control_points


def assign_msi_splits(pairs: pd.DataFrame, parameters: dict[str, Any]) -> pd.DataFrame:
    """Validate the MSI pairs manifest and assign train/val/test by specimen where empty."""
    fractions = parse_params(SplitFractions, parameters, "msi_data_engineering.splits")
    out = assign_specimen_splits(pairs, fractions)
    logger.info("MSI splits: %s", out.groupby("split")["specimen_id"].nunique().to_dict())
    return out


def _missing(kind: str, pairs: pd.DataFrame, available: dict[str, Any]) -> None:
    missing = sorted(set(pairs["pair_id"]) - set(available))
    if missing:
        raise ValueError(
            f"no {kind} for pair(s) {', '.join(missing)} (expected files named after the "
            f"pair_id; found {sorted(available)[:10]})"
        )


def build_peak_stacks(
    pairs: pd.DataFrame, imzml: dict[str, Loader], parameters: dict[str, Any]
) -> tuple[dict[str, sitk.Image], pd.DataFrame]:
    """One common m/z axis, the study's top-N peaks, an ion image stack per specimen.

    Returns:
        ``(peak_stacks, peaks)``: ``{pair_id: vector float32 image}`` (one component per peak,
        spacing = MSI pixel size in mm) and the peak table (``peak, mz, summed_intensity``).
    """
    p = parse_params(SpectraParams, parameters, "msi_data_engineering.spectra")
    pairs = validate_msi_pairs(pairs)
    _missing("imzML file", pairs, imzml)
    fallback = (
        dict(zip(pairs["pair_id"], pd.to_numeric(pairs["msi_pixel_size_um"]), strict=True))
        if "msi_pixel_size_um" in pairs.columns
        else None
    )
    with contextlib.ExitStack() as stack:
        readers: dict[str, ImzMLReader] = {}
        for pair_id in pairs["pair_id"]:
            readers[pair_id] = stack.enter_context(imzml[pair_id]())
        stacks = common_peak_stacks(readers, p, fallback)
    logger.info(
        "MSI peaks: %d on a %d-bin axis %.1f-%.1f Da; %d specimens",
        len(stacks.peaks),
        stacks.axis.n_bins,
        *stacks.axis.mz_range,
        len(readers),
    )
    images = {
        pair_id: msi_image(np.moveaxis(array, 0, -1), stacks.pixel_size_um[pair_id])
        for pair_id, array in stacks.images.items()
    }
    return images, stacks.peak_table()


def reduce_peak_stacks(
    peak_stacks: dict[str, Loader], parameters: dict[str, Any]
) -> dict[str, sitk.Image]:
    """All specimens' peak stacks reduced together to 3 channels in [0, 1] (PCA/t-SNE/UMAP).

    Pixels whose ion images are all zero (never acquired) are left out of the embedding and
    set to 0.

    Returns:
        ``{pair_id: vector float32 image (3 components)}`` with the stacks' geometry.
    """
    p = parse_params(ReductionParams, parameters, "msi_data_engineering.reduction")
    images = {pair_id: load() for pair_id, load in sorted(peak_stacks.items())}
    stacks = {k: np.moveaxis(image_to_array(v), -1, 0) for k, v in images.items()}
    reduced = reduce_jointly(stacks, p)
    out = {}
    for pair_id, rgb in reduced.items():
        image = sitk.GetImageFromArray(rgb.astype(np.float32), isVector=True)
        image.CopyInformation(images[pair_id])
        out[pair_id] = image
    logger.info("MSI reduced to 3 channels by %s (%d specimens together)", p.method, len(out))
    return out


def _truth(ground_truth: pd.DataFrame) -> dict[str, np.ndarray]:
    if ground_truth is None or ground_truth.empty:
        return {}
    return {
        str(row.pair_id): np.array([[row.a11, row.a12, row.tx], [row.a21, row.a22, row.ty]])
        for row in ground_truth.itertuples()
    }


def _grid_image(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=array.ndim == 3)
    image.CopyInformation(grid)
    return image


def register_msi_pairs(
    pairs: pd.DataFrame,
    reduced: dict[str, Loader],
    histology: dict[str, Loader],
    control_points: dict[str, Loader],
    ground_truth: pd.DataFrame,
    parameters: dict[str, Any],
) -> tuple[
    dict[str, sitk.Transform],
    dict[str, sitk.Image],
    dict[str, sitk.Image],
    dict[str, sitk.Image],
    dict[str, sitk.Image],
    pd.DataFrame,
    dict[str, Figure],
]:
    """Pad each reduced MSI black and white, register it to its H&E, resample both paddings.

    One registration per pair (on the black-padded canvas; the padding is masked out, so the
    transform does not depend on the colour) is applied to both paddings: the two tile sets
    differ only in the padding.

    Returns:
        ``(transforms, histology_grid, registered_black, registered_white, coverage, report,
        qc)``: histology mm -> MSI mm transforms; the working-grid H&E (vector uint8); the
        padded MSI on that grid (vector float32 in [0, 1]); the MSI footprint on it (uint8);
        one report row per pair (:data:`REPORT_COLUMNS`; TRE columns empty without a ground
        truth); a QC figure per pair.
    """
    p = parse_params(MsiRegistrationParams, parameters, "msi_data_engineering.registration")
    pairs = validate_msi_pairs(pairs)
    _missing("reduced MSI", pairs, reduced)
    _missing("histology image", pairs, histology)
    if p.mode is RegistrationMode.CONTROL_POINTS:
        _missing("control point file", pairs, control_points)
    truth = _truth(ground_truth)
    outputs: dict[str, dict[str, Any]] = {
        k: {} for k in ("transforms", "grid", "black", "white", "coverage", "qc")
    }
    rows = []
    for row in pairs.itertuples():
        pair_id = str(row.pair_id)
        rgb = pil_rgb8(histology[pair_id](), f"of pair {pair_id}")
        grid = histology_on_grid(rgb, (row.mpp_x, row.mpp_y), p.downsample)
        msi: sitk.Image = reduced[pair_id]()
        black, footprint = pad_to_histology(msi, grid, PadColour.BLACK, p.canvas_margin_px)
        white, _ = pad_to_histology(msi, grid, PadColour.WHITE, p.canvas_margin_px)
        points = None
        if p.mode is RegistrationMode.CONTROL_POINTS:
            cp_file: ControlPointsFile = control_points[pair_id]()
            points = cp_file.read(
                fixed_spacing_mm=(row.mpp_x / 1000.0, row.mpp_y / 1000.0),
                moving_spacing_mm=msi.GetSpacing(),
            )
        result = register_msi(grid, msi, black, footprint, p, points)
        coverage = msi_coverage(footprint, grid, result.transform)
        registered = {
            colour: resample_msi(canvas, grid, result.transform, colour)
            for colour, canvas in ((PadColour.BLACK, black), (PadColour.WHITE, white))
        }
        mi = {
            name: registered_mutual_information(
                grid, black, footprint, tx, p.fixed_channel, p.moving_channel
            )
            for name, tx in (
                ("mi_initial", result.initial_transform),
                ("mi_registered", result.transform),
            )
        }
        msi_px = float(msi.GetSpacing()[0]) * 1000.0
        record: dict[str, Any] = {
            "pair_id": pair_id,
            "specimen_id": row.specimen_id,
            "split": row.split,
            "mode": p.mode.value,
            **mi,
            "msi_pixel_size_um": msi_px,
            "grid_mpp_um": float(grid.GetSpacing()[0]) * 1000.0,
            "msi_fraction": float(sitk.GetArrayViewFromImage(coverage).mean()),
            "seconds": result.seconds,
            "converged": result.converged,
        }
        if result.start_offset_px is not None:
            record["start_offset_x_px"], record["start_offset_y_px"] = result.start_offset_px
        if result.control_point_residuals_um is not None:
            res = result.control_point_residuals_um
            record["cp_rms_um"] = float(np.sqrt(np.mean(res**2)))
            record["n_control_points"] = int(res.size)
        title = f"({p.mode.value})"
        if pair_id in truth:
            tre = registration_tre_um(
                result.transform, truth[pair_id], coverage, p.tre_grid_step_um
            )
            tre0 = registration_tre_um(
                result.initial_transform, truth[pair_id], coverage, p.tre_grid_step_um
            )
            record.update(
                tre_mean_um=float(tre.mean()),
                tre_median_um=float(np.median(tre)),
                tre_max_um=float(tre.max()),
                tre_initial_um=float(tre0.mean()),
                tre_msi_px=float(tre.mean()) / msi_px,
            )
            title = f"({p.mode.value}, TRE {tre.mean():.1f} µm, centred {tre0.mean():.1f} µm)"
            logger.info("MSI pair %s: TRE %.2f µm (%s)", pair_id, tre.mean(), p.mode.value)
        for note in result.notes:
            logger.warning("MSI pair %s: %s", pair_id, note)
        rows.append(record)
        cover = sitk.GetArrayFromImage(coverage) > 0
        outputs["transforms"][pair_id] = result.transform
        outputs["grid"][pair_id] = grid
        outputs["black"][pair_id] = _grid_image(registered[PadColour.BLACK], grid)
        outputs["white"][pair_id] = _grid_image(registered[PadColour.WHITE], grid)
        outputs["coverage"][pair_id] = coverage
        outputs["qc"][f"{pair_id}.png"] = registration_figure(
            pair_id, image_to_array(grid), registered[PadColour.BLACK], cover, title
        )
    report = pd.DataFrame(rows)
    report = report.reindex(
        columns=[*REPORT_COLUMNS, *[c for c in report.columns if c not in REPORT_COLUMNS]]
    )
    return (
        outputs["transforms"],
        outputs["grid"],
        outputs["black"],
        outputs["white"],
        outputs["coverage"],
        report,
        outputs["qc"],
    )


def _aligned_pairs(
    pairs: pd.DataFrame,
    histology_grid: dict[str, Loader],
    registered: dict[str, Loader],
    coverage: dict[str, Loader],
) -> list[MsiAlignedPair]:
    """Every registered specimen on its working grid (the MSI, the H&E and the coverage)."""
    aligned = []
    for row in validate_msi_pairs(pairs).itertuples():
        pair_id = str(row.pair_id)
        grid: sitk.Image = histology_grid[pair_id]()
        grid_mpp = float(grid.GetSpacing()[0]) * 1000.0
        aligned.append(
            MsiAlignedPair(
                pair_id=pair_id,
                specimen_id=str(row.specimen_id),
                split=str(row.split),
                msi=image_to_array(registered[pair_id]()).astype(np.float32),
                histology=image_to_array(grid),
                coverage=image_to_array(coverage[pair_id]()) > 0,
                downsample=round(grid_mpp / float(row.mpp_x)),
                mpp=grid_mpp,
            )
        )
    return aligned


def _with_input_spec(tiles: TileSet, reduction: dict[str, Any], what: str) -> TileSet:
    """``tiles`` with its input spec recorded (stored by training in ``generator.pt``)."""
    spec = msi_tiles_input_spec(
        tiles.manifest, parse_params(ReductionParams, reduction, "msi_data_engineering.reduction")
    )
    tiles.attrs["input_spec"] = spec.to_dict()
    logger.info(
        "%s: %d of %s px %s",
        what,
        len(tiles),
        tiles.a.shape[1:3],
        tiles.manifest.groupby("split").size().to_dict(),
    )
    return tiles


def build_msi_tiles(
    pairs: pd.DataFrame,
    histology_grid: dict[str, Loader],
    registered: dict[str, Loader],
    coverage: dict[str, Loader],
    parameters: dict[str, Any],
    reduction: dict[str, Any],
    padding: PadColour | str = PadColour.BLACK,
) -> TileSet:
    """Paired tiles of every registered specimen (A = padded MSI, B = H&E), split by specimen.

    ``padding`` is bound per node (``black`` / ``white``): it only labels the tiles; the pixels
    come from ``registered``. The tile set records its input spec (µm per pixel, the
    embedding and its scaling), which training stores in ``generator.pt``.
    """
    p = parse_params(MsiTilingParams, parameters, "msi_data_engineering.tiling")
    aligned = _aligned_pairs(pairs, histology_grid, registered, coverage)
    tiles = msi_pair_tiles(aligned, p, padding)
    return _with_input_spec(tiles, reduction, f"MSI tiles ({PadColour(padding).value} padding)")


def build_msi_whole_views(
    pairs: pd.DataFrame,
    histology_grid: dict[str, Loader],
    registered: dict[str, Loader],
    coverage: dict[str, Loader],
    parameters: dict[str, Any],
    reduction: dict[str, Any],
) -> TileSet:
    """Paper 003's design: one whole view per specimen (black-padded MSI, H&E with its glass),
    padded to a square and resized to ``msi_data_engineering.whole_views.size`` px."""
    p = parse_params(MsiWholeViewParams, parameters, "msi_data_engineering.whole_views")
    aligned = _aligned_pairs(pairs, histology_grid, registered, coverage)
    views = whole_specimen_views(aligned, p, PadColour.BLACK)
    return _with_input_spec(views, reduction, "MSI whole-specimen views (black padding)")
