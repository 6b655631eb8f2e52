"""Thin nodes of the msi_data_engineering pipeline (seed 003: MSI -> H&E).

Each node parses its block of ``msi_data_engineering`` (``conf/base/parameters_msi.yml``) and
calls one library function: the manifest (:mod:`mrihisto_kedro.msi.manifest`), the peak stacks
(:mod:`mrihisto_kedro.msi.peaks`), the joint reduction (:mod:`mrihisto_kedro.msi.joint_reduction`),
the registration study (:mod:`mrihisto_kedro.msi.registration_study`, its figures
:mod:`mrihisto_kedro.reporting.msi_figures`), the tiles (:mod:`mrihisto_kedro.msi.tiles`) and the
whole views (:mod:`mrihisto_kedro.msi.whole_views`). The simulated demo they run on by default is
the demo pipeline's ``make_msi_demo``.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.manifest import SplitFractions
from mrihisto_kedro.msi.joint_reduction import reduce_images
from mrihisto_kedro.msi.manifest import assign_specimen_splits
from mrihisto_kedro.msi.params import (
    MsiRegistrationParams,
    MsiTilingParams,
    ReductionParams,
    SpectraParams,
)
from mrihisto_kedro.msi.peaks import pair_peak_stacks
from mrihisto_kedro.msi.reduction import PadColour
from mrihisto_kedro.msi.registration_study import register_msi_study
from mrihisto_kedro.msi.tiles import aligned_pairs, msi_pair_tiles, with_input_spec
from mrihisto_kedro.msi.whole_views import MsiWholeViewParams, whole_specimen_views
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.pipelines.loaders import Loader
from mrihisto_kedro.reporting.msi_figures import msi_registration_figures

__all__ = [
    "assign_msi_splits",
    "build_msi_tiles",
    "build_msi_whole_views",
    "build_peak_stacks",
    "reduce_peak_stacks",
    "register_msi_pairs",
]

logger = logging.getLogger(__name__)

#: what ``register_msi_pairs`` returns: transforms, H&E grids, MSI registered on them with black
#: and with white padding, MSI coverage, the report, one QC figure per pair
RegistrationOutputs = tuple[
    dict[str, sitk.Transform],
    dict[str, sitk.Image],
    dict[str, sitk.Image],
    dict[str, sitk.Image],
    dict[str, sitk.Image],
    pd.DataFrame,
    dict[str, Figure],
]


def assign_msi_splits(pairs: pd.DataFrame, parameters: dict[str, Any]) -> pd.DataFrame:
    """Validate the MSI pairs manifest and assign train/val/test by specimen where empty."""
    fractions = parse_params(SplitFractions, parameters, "msi_data_engineering.splits")
    out = assign_specimen_splits(pairs, fractions)
    logger.info("MSI splits: %s", out.groupby("split")["specimen_id"].nunique().to_dict())
    return out


def build_peak_stacks(
    pairs: pd.DataFrame, imzml: dict[str, Loader], parameters: dict[str, Any]
) -> tuple[dict[str, sitk.Image], pd.DataFrame]:
    """One common m/z axis, the study's top-N peaks, an ion image stack per specimen.

    Returns:
        ``(peak_stacks, peaks)``: ``{pair_id: vector float32 image}`` (one component per peak,
        spacing = MSI pixel size in mm) and the peak table (``peak, mz, summed_intensity``).
    """
    p = parse_params(SpectraParams, parameters, "msi_data_engineering.spectra")
    stacks = pair_peak_stacks(pairs, imzml, p)
    axis = stacks.axis
    logger.info(
        "MSI peaks: %d on a %d-bin axis %.1f-%.1f Da; %d specimens",
        len(stacks.peaks),
        axis.n_bins,
        *axis.mz_range,
        len(stacks.images),
    )
    return stacks.vector_images(), stacks.peak_table()


def reduce_peak_stacks(
    peak_stacks: dict[str, Loader], parameters: dict[str, Any]
) -> dict[str, sitk.Image]:
    """All specimens' peak stacks reduced together to 3 channels in [0, 1] (PCA/t-SNE/UMAP).

    Returns:
        ``{pair_id: vector float32 image (3 components)}`` with the stacks' geometry (see
        :func:`~mrihisto_kedro.msi.joint_reduction.reduce_images`), in pair id order.
    """
    p = parse_params(ReductionParams, parameters, "msi_data_engineering.reduction")
    out = reduce_images({pair_id: load() for pair_id, load in sorted(peak_stacks.items())}, p)
    logger.info("MSI reduced to 3 channels by %s (%d specimens together)", p.method, len(out))
    return out


def register_msi_pairs(
    pairs: pd.DataFrame,
    reduced: dict[str, Loader],
    histology: dict[str, Loader],
    control_points: dict[str, Loader],
    ground_truth: pd.DataFrame,
    parameters: dict[str, Any],
) -> RegistrationOutputs:
    """Pad each reduced MSI black and white, register it to its H&E, resample both paddings.

    Returns:
        ``(transforms, histology_grid, registered_black, registered_white, coverage, report,
        qc)``: see :func:`~mrihisto_kedro.msi.registration_study.register_msi_study`; ``qc``
        is one figure per pair (:func:`~mrihisto_kedro.reporting.msi_figures`).
    """
    p = parse_params(MsiRegistrationParams, parameters, "msi_data_engineering.registration")
    study = register_msi_study(pairs, reduced, histology, control_points, ground_truth, p)
    return (
        study.transforms(),
        study.histology_grids(),
        study.registered(PadColour.BLACK),
        study.registered(PadColour.WHITE),
        study.coverages(),
        study.report,
        msi_registration_figures(study),
    )


def _logged(tiles: TileSet, what: str) -> TileSet:
    counts = tiles.manifest.groupby("split").size().to_dict()
    logger.info("%s: %d of %s px %s", what, len(tiles), tiles.a.shape[1:3], counts)
    return tiles


def build_msi_tiles(
    pairs: pd.DataFrame,
    histology_grid: dict[str, Loader],
    registered: dict[str, Loader],
    coverage: dict[str, Loader],
    parameters: dict[str, Any],
    padding: PadColour | str = PadColour.BLACK,
) -> TileSet:
    """Paired tiles of every registered specimen (A = padded MSI, B = H&E), split by specimen.

    ``padding`` is bound per node (``black`` / ``white``): it only labels the tiles; the pixels
    come from ``registered``. The tile set records its input spec (µm per pixel, the
    embedding and its scaling), which training stores in ``generator.pt``.
    """
    p = parse_params(MsiTilingParams, parameters, "msi_data_engineering.tiling")
    aligned = aligned_pairs(pairs, histology_grid, registered, coverage)
    tiles = with_input_spec(msi_pair_tiles(aligned, p, padding), aligned)
    return _logged(tiles, f"MSI tiles ({PadColour(padding).value} padding)")


def build_msi_whole_views(
    pairs: pd.DataFrame,
    histology_grid: dict[str, Loader],
    registered: dict[str, Loader],
    coverage: dict[str, Loader],
    parameters: dict[str, Any],
) -> TileSet:
    """Paper 003's design: one whole view per specimen (black-padded MSI, H&E with its glass),
    padded to a square and resized to ``msi_data_engineering.whole_views.size`` px."""
    p = parse_params(MsiWholeViewParams, parameters, "msi_data_engineering.whole_views")
    aligned = aligned_pairs(pairs, histology_grid, registered, coverage)
    views = with_input_spec(whole_specimen_views(aligned, p, PadColour.BLACK), aligned)
    return _logged(views, "MSI whole-specimen views (black padding)")
