"""Thin nodes of the modelling pipeline: build tile sets, train (with search), log to MLflow."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch

from mrihisto_kedro.imaging.slabs import (
    brain_slices,
    slab_splits,
    volume_pair_tiles,
    volume_tiles_input_spec,
)
from mrihisto_kedro.imaging.slides import Slide
from mrihisto_kedro.imaging.tileset import TileSet, hold_out_specimens
from mrihisto_kedro.imaging.tiling import (
    AlignedPair,
    PairTilesJob,
    TilingParams,
    slide_tiles_input_spec,
    whole_views,
)
from mrihisto_kedro.nn.data import resolve_range
from mrihisto_kedro.nn.device import describe_numerics
from mrihisto_kedro.nn.experiment import DataParams, ModelType, run_training
from mrihisto_kedro.nn.input_spec import InputSpec
from mrihisto_kedro.nn.training import export_generator
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.tracking.mlflow_tracking import (
    EpochLogger,
    log_generator,
    log_numerics,
    training_run,
)
from mrihisto_kedro.tracking.search import SearchParams, apply_choices, run_search

logger = logging.getLogger(__name__)

Loader = Callable[[], Any]


class TileKind(StrEnum):
    """Tiles of a fixed size, or one whole-slide view per pair."""

    TILES = "tiles"
    WHOLE = "whole"


@dataclass(frozen=True)
class PairTilingParams:
    """``<experiment>.tiling`` for MRI -> histology experiments."""

    kind: TileKind = TileKind.TILES
    tile_size: int = 256
    stride: int | None = None
    min_tissue_fraction: float = 0.5
    output_size: int | None = None
    load_size: int = 256  # whole views only


@dataclass(frozen=True)
class VolumeTilingParams:
    """``<experiment>.tiling`` for volume-pair experiments (T1 -> T2 on one template)."""

    plane: str = "axial"
    min_brain_fraction: float = 0.15
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    gap: int = 4
    pad_to: int = 128


@dataclass(frozen=True)
class TrainingParams:
    """``<experiment>.training``: model type and options, data feeding, search, logging."""

    name: str
    model_type: ModelType = ModelType.PIX2PIX
    model: dict[str, Any] = field(default_factory=dict)
    data: DataParams = field(default_factory=DataParams)
    search: SearchParams = field(default_factory=SearchParams)
    sample_every: int = 1


def _tissue_on_grid(mask: sitk.Image, reference: sitk.Image) -> np.ndarray:
    resampled = sitk.Resample(
        mask, reference, sitk.Transform(2, sitk.sitkIdentity), sitk.sitkNearestNeighbor, 0
    )
    return sitk.GetArrayFromImage(resampled) != 0


def build_pair_tiles(
    pairs: pd.DataFrame,
    aligned_mri: dict[str, Loader],
    aligned_mri_masks: dict[str, Loader],
    downsampled_slides: dict[str, Loader],
    slide_masks: dict[str, Loader],
    tiling: dict[str, Any],
    data_engineering: dict[str, Any],
) -> TileSet | PairTilesJob:
    """Paired MRI/histology tiles (or whole views) of every registered pair, split by specimen.

    Tissue = the slide's tissue mask AND the registered MRI's coverage. Tiles are a
    :class:`PairTilesJob` that the tile-set dataset writes one pair at a time (bounded by one
    pair's grid, not by the whole set); whole views (one small image per pair) a TileSet.
    """
    p = parse_params(PairTilingParams, tiling, "tiling")
    factor = float(data_engineering.get("downsample_factor", 15.0))
    loaders = [
        partial(
            _aligned_pair,
            row,
            aligned_mri[row.pair_id],
            aligned_mri_masks[row.pair_id],
            downsampled_slides[row.pair_id],
            slide_masks[row.pair_id],
            factor,
        )
        for row in pairs.itertuples()
    ]
    norm = data_engineering.get("mri_normalisation", {})
    lower, upper = norm.get("lower_percentile", 1.0), norm.get("upper_percentile", 99.5)
    if p.kind is not TileKind.WHOLE:
        params = TilingParams(p.tile_size, p.stride, p.min_tissue_fraction, p.output_size)
        return PairTilesJob(loaders, params, lower, upper)
    loaded = [load() for load in loaders]
    tiles = whole_views([pair for pair, _ in loaded], p.load_size)
    mpp = {pair.pair_id: m for pair, m in loaded}
    spec = slide_tiles_input_spec(tiles.manifest, tiles.a.shape[-1], mpp, lower, upper)
    tiles.attrs["input_spec"] = spec.to_dict()
    counts = tiles.manifest.groupby("split").size().to_dict()
    logger.info("tile set: %d views %s, shape %s", len(tiles), counts, tiles.a.shape[1:])
    return tiles


def _aligned_pair(
    row: Any,
    mri_loader: Loader,
    mri_mask: Loader,
    slide_loader: Loader,
    slide_mask: Loader,
    factor: float,
) -> tuple[AlignedPair, tuple[float, float]]:
    """One registered pair on its downsampled grid, and the slide's level-0 mpp."""
    mri: sitk.Image = mri_loader()
    slide: Slide
    with slide_loader() as slide:
        width, height = slide.level_dimensions[0]
        rgb = slide.read_region((0, 0), 0, (width, height))
        level0 = _level0_mpp(slide, factor)
    tissue = _tissue_on_grid(slide_mask(), mri) & _tissue_on_grid(mri_mask(), mri)
    pair = AlignedPair(
        pair_id=row.pair_id,
        specimen_id=row.specimen_id,
        split=row.split,
        mri=sitk.GetArrayFromImage(mri).astype(np.float32),
        histology=rgb,
        tissue=tissue,
        downsample=factor,
    )
    return pair, level0


def _level0_mpp(slide: Slide, factor: float) -> tuple[float, float]:
    if slide.mpp is None:
        raise ValueError(f"downsampled slide {slide.path} records no microns per pixel")
    return (slide.mpp[0] / factor, slide.mpp[1] / factor)


def build_volume_tiles(
    volume_a: sitk.Image, volume_b: sitk.Image, tiling: dict[str, Any]
) -> TileSet:
    """Slices of two voxel-aligned volumes in contiguous train/val/test slabs with gaps."""
    p = parse_params(VolumeTilingParams, tiling, "tiling")
    indices = brain_slices(volume_a, p.plane, p.min_brain_fraction)
    splits = slab_splits(indices, p.fractions, p.gap)
    logger.info("slabs: %s", {k: (v[0], v[-1]) for k, v in splits.items() if v})
    tiles = volume_pair_tiles(volume_a, volume_b, p.plane, splits, pad_to=p.pad_to)
    tiles.attrs["input_spec"] = volume_tiles_input_spec(volume_a, p.plane, p.pad_to).to_dict()
    return tiles


def _search_tileset(tileset: TileSet, p: TrainingParams) -> tuple[TileSet, dict[str, Any]]:
    """The tiles a search's trials train and validate on, and what they validated on.

    With a validation split, the trials use it. Without one (the paper's 5/3 train/test
    design), whole training specimens are held out for the trials, so model selection never
    looks at the test split.
    """
    if p.data.val_split in tileset.splits:
        return tileset, {"search_val": p.data.val_split}
    held_tiles, held = hold_out_specimens(
        tileset, p.search.holdout_specimens, seed=p.search.seed, name=p.data.val_split
    )
    logger.info(
        "search %s: no %r split; trials validate on training specimens %s",
        p.name,
        p.data.val_split,
        held,
    )
    return held_tiles, {"search_val": "held-out training specimens: " + ", ".join(held)}


def train_experiment(
    tileset: TileSet, training: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Train the experiment's model (after a search when ``search.n_trials`` > 0).

    Each training is an MLflow run (nested under kedro-mlflow's pipeline run): all parameters,
    per-epoch losses and validation L1/SSIM, sample grids (A | real B | generated B), and the
    generator as an MLflow model with its signature. A search is a parent run with one child
    run per trial; the best trial's choices are used for the final training.

    Returns:
        ``(generator, history, summary)``: the exported generator (state dict + architecture),
        per-epoch history of the final training, and a one-row summary with validation metrics
        of the trained and untrained generator and of the mean-colour baseline (plus the search
        trials, if any, as extra rows).
    """
    p = parse_params(TrainingParams, training, "training")
    tags = {"experiment": p.name, "model_type": str(p.model_type)}
    trials = pd.DataFrame()
    model_values = dict(p.model)
    params_for_log = {
        "model_type": str(p.model_type),
        "model": model_values,
        "data": {k: getattr(p.data, k) for k in p.data.__dataclass_fields__},
        "tiles": len(tileset),
    }
    search_info: dict[str, Any] = {}
    if p.search.n_trials:
        search_tiles, search_info = _search_tileset(tileset, p)
        with training_run(
            f"{p.name}-search",
            {
                "search_trials": p.search.n_trials,
                "trial_overrides": dict(p.search.trial_overrides),
                **search_info,
            },
            tags,
        ):

            def objective(number: int, values: dict[str, Any]) -> float:
                trial_model = apply_choices(model_values, values, p.search.trial_overrides)
                with training_run(
                    f"{p.name}-trial-{number}", {**params_for_log, "model": trial_model}, tags
                ) as run_id:
                    _, result, _ = run_training(
                        search_tiles,
                        p.model_type,
                        trial_model,
                        p.data,
                        callback=EpochLogger(run_id),
                        sample_every=0,
                        on_start=lambda model: log_numerics(model.numerics()),
                    )
                return float(result.final[p.search.metric])

            best, trials = run_search(objective, p.search)
            mlflow.log_params({f"best.{k}": v for k, v in best.items()})
            mlflow.log_metric(
                f"best_{p.search.metric}",
                float(
                    trials[p.search.metric].min()
                    if p.search.direction == "minimize"
                    else trials[p.search.metric].max()
                ),
            )
        logger.info("search %s: best %s", p.name, best)
        model_values = apply_choices(model_values, best)
        params_for_log["model"] = model_values
    with training_run(p.name, params_for_log, tags) as run_id:
        with tempfile.TemporaryDirectory() as checkpoints:
            model, result, info = run_training(
                tileset,
                p.model_type,
                model_values,
                p.data,
                checkpoint_dir=checkpoints,
                callback=EpochLogger(run_id),
                sample_every=p.sample_every,
                on_start=lambda model: log_numerics(model.numerics()),
            )
        final = result.final
        summary = {
            "experiment": p.name,
            "model_type": str(p.model_type),
            "run_id": run_id,
            "val_split": info["val_split"],
            "n_train_tiles": info["n_train"],
            "n_val_tiles": info["n_val"],
            "epochs": result.epochs_completed,
            "seconds": result.seconds,
            "precision": model.precision.value,
            "trained_with": describe_numerics(model.numerics()),
            **search_info,
            "val_L1": final.get("val_L1"),
            "val_SSIM": final.get("val_SSIM"),
            "val_SSIM_fg": final.get("val_SSIM_fg"),
            "untrained_val_L1": info["untrained"]["val_L1"],
            "untrained_val_SSIM": info["untrained"]["val_SSIM"],
            "untrained_val_SSIM_fg": info["untrained"]["val_SSIM_fg"],
            "mean_colour_val_L1": info["mean_colour"]["val_L1"],
        }
        for name, metrics in info["input"].items():
            summary[f"{name}_val_L1"] = metrics["val_L1"]
            summary[f"{name}_val_SSIM"] = metrics["val_SSIM"]
            summary[f"{name}_val_SSIM_fg"] = metrics["val_SSIM_fg"]
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, float | int)})
        lo, hi = resolve_range(p.data.a_range, tileset.a.dtype)
        a = torch.from_numpy(np.asarray(tileset.a[:1], dtype=np.float32)).permute(0, 3, 1, 2)
        log_generator(model.generator, (a - lo) / (hi - lo) * 2.0 - 1.0)
    history = pd.DataFrame(result.history)
    table = pd.concat([pd.DataFrame([summary]), trials], ignore_index=True)
    return export_generator(model, _input_spec(tileset, p)), history, table


def _input_spec(tileset: TileSet, p: TrainingParams) -> dict[str, Any] | None:
    """The tile set's input spec with the range the training mapped to [-1, 1]."""
    stored = tileset.attrs.get("input_spec")
    if stored is None:
        logger.warning("%s: the tile set records no input spec; generator.pt will not", p.name)
        return None
    lo, hi = resolve_range(p.data.a_range, tileset.a.dtype)
    return InputSpec.from_dict(stored, p.name).with_input_range((lo, hi)).to_dict()
