"""Thin nodes of the modelling pipeline: build an experiment's tile set, train its model.

Each node parses its parameters and calls library code: tiling in
:mod:`mrihisto_kedro.imaging.experiment_tiles` (pairs loaded by
:mod:`mrihisto_kedro.imaging.aligned_pairs`), training, search and MLflow tracking in
:mod:`mrihisto_kedro.tracking.training_study`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.datasets.sitk_dataset import SimpleITKImageDataset
from mrihisto_kedro.imaging.aligned_pairs import (
    aligned_pair_loaders,
    image_metadata,
    recorded_pair_normalisation,
)
from mrihisto_kedro.imaging.experiment_tiles import pair_tile_set, volume_tile_set
from mrihisto_kedro.imaging.registration.qc import select_registered_pairs
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.imaging.tiling import PairTilesJob
from mrihisto_kedro.imaging.tiling_params import PairTilingParams, VolumeTilingParams
from mrihisto_kedro.nn.checkpoint_store import CheckpointStore
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.pipelines.loaders import Loader
from mrihisto_kedro.tracking.training_params import TrainingParams
from mrihisto_kedro.tracking.training_study import train_study

__all__ = ["build_pair_tiles", "build_volume_tiles", "train_experiment"]


def build_pair_tiles(
    pairs: pd.DataFrame,
    registration_report: pd.DataFrame,
    aligned_mri: dict[str, Loader],
    aligned_mri_masks: dict[str, Loader],
    downsampled_slides: dict[str, Loader],
    slide_masks: dict[str, Loader],
    tiling: dict[str, Any],
) -> TileSet | PairTilesJob:
    """Paired MRI/histology tiles (or whole views) of every registered pair, split by specimen.

    Pairs flagged by registration QC are left out (``tiling.include_flagged_pairs``).
    Tissue = the slide's tissue mask AND the registered MRI's coverage. Tiles are a
    :class:`PairTilesJob` that the tile-set dataset writes one pair at a time (bounded by one
    pair's grid, not by the whole set); whole views (one small image per pair) a TileSet.
    The MRI normalisation recorded in the input spec is the one the aligned MRI files record
    (data_engineering's when it cut the slices), not today's parameters: read from the files'
    headers, so tiling alone reads their pixels.
    """
    p = parse_params(PairTilingParams, tiling, "tiling")
    kept = select_registered_pairs(pairs, registration_report, p.include_flagged_pairs)
    headers = {str(k): _header_loader(aligned_mri[str(k)]) for k in kept["pair_id"]}
    norm = recorded_pair_normalisation(kept, headers)
    loaders = aligned_pair_loaders(
        kept, aligned_mri, aligned_mri_masks, downsampled_slides, slide_masks
    )
    return pair_tile_set(loaders, p, norm)


def _header_loader(loader: Loader) -> Loader:
    """A loader of the metadata alone of the image file that ``loader`` reads, when it is a
    ``SimpleITKImageDataset`` partition (``PartitionedDataset`` hands out ``dataset.load``);
    else ``loader`` itself (partitions held in memory)."""
    dataset = getattr(loader, "__self__", None)
    if isinstance(dataset, SimpleITKImageDataset):
        return partial(image_metadata, dataset.filepath)
    return loader


def build_volume_tiles(
    volume_a: sitk.Image, volume_b: sitk.Image, tiling: dict[str, Any]
) -> TileSet:
    """Slices of two voxel-aligned volumes dealt to train/val/test in blocks, with gaps."""
    return volume_tile_set(volume_a, volume_b, parse_params(VolumeTilingParams, tiling, "tiling"))


def train_experiment(
    tileset: TileSet, training: dict[str, Any], checkpoints: CheckpointStore, experiment: str
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Train the experiment's model (after a search when ``search.n_trials`` > 0).

    Each training is an MLflow run (nested under kedro-mlflow's pipeline run); trainings
    checkpoint every epoch into ``checkpoints`` (``<experiment>.checkpoints``) and resume
    after a crash (:mod:`mrihisto_kedro.tracking.training_study`).

    Returns:
        ``(generator, history, summary)``: the exported generator (state dict + architecture),
        per-epoch history of the final training, and a one-row summary with validation metrics
        of the trained and untrained generator and of the mean-colour baseline (plus the search
        trials, if any, as extra rows).
    """
    params = parse_params(TrainingParams, training, f"{experiment}.training")
    result = train_study(tileset, params, checkpoints, experiment)
    return result.generator, result.history, result.table
