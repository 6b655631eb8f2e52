"""Thin nodes of the modelling pipeline: build tile sets, train (with search), log to MLflow."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch

from mrihisto_kedro.imaging.downsample import recorded_downsample
from mrihisto_kedro.imaging.level_array import LevelArray
from mrihisto_kedro.imaging.registration_qc import select_registered_pairs
from mrihisto_kedro.imaging.slabs import (
    SliceLayout,
    brain_slices,
    volume_pair_tiles,
    volume_splits,
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
from mrihisto_kedro.nn.checkpoint_store import (
    CheckpointStore,
    ResumePolicy,
    fingerprint,
    tileset_fingerprint,
)
from mrihisto_kedro.nn.data import resolve_range
from mrihisto_kedro.nn.device import describe_numerics
from mrihisto_kedro.nn.experiment import DataParams, ModelType, run_training
from mrihisto_kedro.nn.input_spec import InputSpec
from mrihisto_kedro.nn.models import TranslationModel
from mrihisto_kedro.nn.training import TrainingResult, export_generator, generator_digest
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.pipelines.loaders import Loader
from mrihisto_kedro.tracking.mlflow_tracking import (
    EpochLogger,
    log_generator,
    log_numerics,
    training_run,
)
from mrihisto_kedro.tracking.search import SearchParams, apply_choices, run_search

logger = logging.getLogger(__name__)


class TileKind(StrEnum):
    """Tiles of a fixed size, or one whole-slide view per pair."""

    TILES = "tiles"
    WHOLE = "whole"


@dataclass(frozen=True)
class PairTilingParams:
    """``<experiment>.tiling`` for MRI -> histology experiments.

    ``include_flagged_pairs``: also tile the pairs whose registration was flagged by QC or
    did not converge (``registration_report.csv``); by default they are left out, by name.
    """

    kind: TileKind = TileKind.TILES
    tile_size: int = 256
    stride: int | None = None
    min_tissue_fraction: float = 0.5
    output_size: int | None = None
    load_size: int = 256  # whole views only
    include_flagged_pairs: bool = False


@dataclass(frozen=True)
class VolumeTilingParams:
    """``<experiment>.tiling`` for volume-pair experiments (T1 -> T2 on one template).

    ``layout``: ``interleaved`` (blocks of ``block`` slices spread along the axis) or ``slabs``
    (one contiguous slab per split); ``gap`` slices are dropped wherever two splits meet
    (:mod:`mrihisto_kedro.imaging.slabs`).
    """

    plane: str = "axial"
    min_brain_fraction: float = 0.15
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    layout: SliceLayout = SliceLayout.INTERLEAVED
    block: int = 8
    gap: int = 3
    pad_to: int = 128


@dataclass(frozen=True)
class TrainingParams:
    """``<experiment>.training``: model type and options, data feeding, search, logging.

    ``resume``: ``auto`` resumes a training (or search) from its checkpoint of the same
    parameters after a crash; ``never`` trains from epoch 0 (see
    :mod:`mrihisto_kedro.nn.checkpoint_store`).
    """

    name: str
    model_type: ModelType = ModelType.PIX2PIX
    model: dict[str, Any] = field(default_factory=dict)
    data: DataParams = field(default_factory=DataParams)
    search: SearchParams = field(default_factory=SearchParams)
    sample_every: int = 1
    resume: ResumePolicy = ResumePolicy.AUTO


def _tissue_on_grid(mask: sitk.Image, reference: sitk.Image) -> np.ndarray:
    resampled = sitk.Resample(
        mask, reference, sitk.Transform(2, sitk.sitkIdentity), sitk.sitkNearestNeighbor, 0
    )
    return sitk.GetArrayFromImage(resampled) != 0


def build_pair_tiles(
    pairs: pd.DataFrame,
    registration_report: pd.DataFrame,
    aligned_mri: dict[str, Loader],
    aligned_mri_masks: dict[str, Loader],
    downsampled_slides: dict[str, Loader],
    slide_masks: dict[str, Loader],
    tiling: dict[str, Any],
    data_engineering: dict[str, Any],
) -> TileSet | PairTilesJob:
    """Paired MRI/histology tiles (or whole views) of every registered pair, split by specimen.

    Pairs flagged by registration QC are left out (``tiling.include_flagged_pairs``).
    Tissue = the slide's tissue mask AND the registered MRI's coverage. Tiles are a
    :class:`PairTilesJob` that the tile-set dataset writes one pair at a time (bounded by one
    pair's grid, not by the whole set); whole views (one small image per pair) a TileSet.
    """
    p = parse_params(PairTilingParams, tiling, "tiling")
    pairs = select_registered_pairs(pairs, registration_report, p.include_flagged_pairs)
    loaders = [
        partial(
            _aligned_pair,
            row,
            aligned_mri[row.pair_id],
            aligned_mri_masks[row.pair_id],
            downsampled_slides[row.pair_id],
            slide_masks[row.pair_id],
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
) -> tuple[AlignedPair, tuple[float, float]]:
    """One registered pair on its downsampled grid, and the slide's level-0 mpp.

    The histology is a :class:`LevelArray` over the open downsampled slide: tiling reads the
    windows it keeps, by region, never the whole level. The downsampling factor is the one the
    slide records (:func:`~mrihisto_kedro.imaging.downsample.recorded_downsample`).
    """
    mri: sitk.Image = mri_loader()
    slide: Slide = slide_loader()
    factor = recorded_downsample(slide)
    tissue = _tissue_on_grid(slide_mask(), mri) & _tissue_on_grid(mri_mask(), mri)
    pair = AlignedPair(
        pair_id=row.pair_id,
        specimen_id=row.specimen_id,
        split=row.split,
        mri=np.asarray(sitk.GetArrayFromImage(mri), dtype=np.float32),
        histology=LevelArray(slide, 0),
        tissue=tissue,
        downsample=factor,
    )
    return pair, _level0_mpp(slide, factor)


def _level0_mpp(slide: Slide, factor: float) -> tuple[float, float]:
    if slide.mpp is None:
        raise ValueError(f"downsampled slide {slide.path} records no microns per pixel")
    return (slide.mpp[0] / factor, slide.mpp[1] / factor)


def build_volume_tiles(
    volume_a: sitk.Image, volume_b: sitk.Image, tiling: dict[str, Any]
) -> TileSet:
    """Slices of two voxel-aligned volumes dealt to train/val/test in blocks, with gaps."""
    p = parse_params(VolumeTilingParams, tiling, "tiling")
    indices = brain_slices(volume_a, p.plane, p.min_brain_fraction)
    splits = volume_splits(indices, p.layout, p.fractions, p.gap, p.block)
    logger.info("%s slices: %s", p.layout, {k: _runs(v) for k, v in splits.items() if v})
    tiles = volume_pair_tiles(volume_a, volume_b, p.plane, splits, pad_to=p.pad_to)
    tiles.attrs["input_spec"] = volume_tiles_input_spec(volume_a, p.plane, p.pad_to).to_dict()
    return tiles


def _runs(indices: list[int]) -> str:
    """``[0, 1, 2, 7, 8]`` -> ``"0-2, 7-8"``."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


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
    tileset: TileSet, training: dict[str, Any], checkpoints: CheckpointStore
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Train the experiment's model (after a search when ``search.n_trials`` > 0).

    Each training is an MLflow run (nested under kedro-mlflow's pipeline run): all parameters,
    per-epoch losses and validation L1/SSIM, sample grids (A | real B | generated B), and the
    generator as an MLflow model with its signature. A search is a parent run with one child
    run per trial; the best trial's choices are used for the final training.

    Trainings checkpoint every epoch into ``checkpoints`` (``<experiment>.checkpoints``): the
    same command after a crash resumes from the last complete epoch, skips completed trials
    and continues their MLflow runs (``training.resume: never`` starts again).

    Returns:
        ``(generator, history, summary)``: the exported generator (state dict + architecture),
        per-epoch history of the final training, and a one-row summary with validation metrics
        of the trained and untrained generator and of the mean-colour baseline (plus the search
        trials, if any, as extra rows).
    """
    p = parse_params(TrainingParams, training, "training")
    tags = {"experiment": p.name, "model_type": str(p.model_type)}
    params_for_log = {
        "model_type": str(p.model_type),
        "model": dict(p.model),
        "data": {k: getattr(p.data, k) for k in p.data.__dataclass_fields__},
        "tiles": len(tileset),
    }
    trials, search_info = pd.DataFrame(), {}
    if p.search.n_trials:
        best, trials, search_info = _search(tileset, p, params_for_log, tags, checkpoints)
        params_for_log["model"] = apply_choices(dict(p.model), best)
    generator, history, summary = _final_training(
        tileset, p, params_for_log, tags, checkpoints, search_info
    )
    table = pd.concat([pd.DataFrame([summary]), trials], ignore_index=True)
    return generator, history, table


def _described(tiles: TileSet, p: TrainingParams, log: dict[str, Any]) -> dict[str, Any]:
    """What decides a training's numbers: fingerprinted to key its checkpoint."""
    return {
        "model_type": log["model_type"],
        "model": log["model"],
        "data": log["data"],
        "tileset": tileset_fingerprint(tiles),
        "sample_every": p.sample_every,
    }


def _search(
    tileset: TileSet,
    p: TrainingParams,
    params_for_log: dict[str, Any],
    tags: dict[str, str],
    checkpoints: CheckpointStore,
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """Run the search, resuming at the trial level; return best choices, trials, search info."""
    search_tiles, search_info = _search_tileset(tileset, p)
    search_params = {
        "search_trials": p.search.n_trials,
        "trial_overrides": dict(p.search.trial_overrides),
        **search_info,
    }
    described = {
        **_described(search_tiles, p, params_for_log),
        "search": {k: getattr(p.search, k) for k in p.search.__dataclass_fields__},
    }
    store = checkpoints.search(fingerprint(described), described, p.resume)
    done = store.completed()
    with training_run(f"{p.name}-search", search_params, tags, run_id=store.run_id) as search_id:
        store.record_run(search_id)

        def objective(number: int, values: dict[str, Any]) -> float:
            if number in done and done[number]["values"] == values:
                logger.info(
                    "search %s: trial %d completed before: not trained again", p.name, number
                )
                return float(done[number]["value"])
            trial_model = apply_choices(dict(p.model), values, p.search.trial_overrides)
            trial_log = {**params_for_log, "model": trial_model}
            ckpt = store.trial(number, _described(search_tiles, p, trial_log), p.resume)
            with training_run(
                f"{p.name}-trial-{number}", trial_log, tags, run_id=ckpt.run_id
            ) as run_id:
                ckpt.record_run(run_id)
                _, result, _ = run_training(
                    search_tiles,
                    p.model_type,
                    trial_model,
                    p.data,
                    checkpoint_dir=ckpt.folder,
                    resume=ckpt.resume,
                    callback=EpochLogger(run_id),
                    sample_every=0,
                    on_start=lambda model: log_numerics(model.numerics()),
                )
            value = float(result.final[p.search.metric])
            store.record(number, values, value)
            return value

        best, trials = run_search(objective, p.search)
        mlflow.log_params({f"best.{k}": v for k, v in best.items()})
        metric = trials[p.search.metric]
        best_value = metric.min() if p.search.direction == "minimize" else metric.max()
        mlflow.log_metric(f"best_{p.search.metric}", float(best_value))
    logger.info("search %s: best %s", p.name, best)
    return best, trials, search_info


def _final_training(
    tileset: TileSet,
    p: TrainingParams,
    params_for_log: dict[str, Any],
    tags: dict[str, str],
    checkpoints: CheckpointStore,
    search_info: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """Train (or resume) the final model in its MLflow run; return the exported generator,
    its history and its summary row."""
    described = _described(tileset, p, params_for_log)
    ckpt = checkpoints.training(fingerprint(described), described, p.resume)
    with training_run(p.name, params_for_log, tags, run_id=ckpt.run_id) as run_id:
        ckpt.record_run(run_id)
        model, result, info = run_training(
            tileset,
            p.model_type,
            params_for_log["model"],
            p.data,
            checkpoint_dir=ckpt.folder,
            resume=ckpt.resume,
            callback=EpochLogger(run_id),
            sample_every=p.sample_every,
            on_start=lambda model: log_numerics(model.numerics()),
        )
        summary = _summary(p, run_id, model, result, info, search_info)
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, float | int)})
        lo, hi = resolve_range(p.data.a_range, tileset.a.dtype)
        a = torch.from_numpy(np.asarray(tileset.a[:1], dtype=np.float32)).permute(0, 3, 1, 2)
        payload = export_generator(model, _input_spec(tileset, p))
        summary["generator"] = generator_digest(payload)  # what the tables must have measured
        log_generator(payload, (a - lo) / (hi - lo) * 2.0 - 1.0)
    return payload, pd.DataFrame(result.history), summary


def _summary(
    p: TrainingParams,
    run_id: str,
    model: TranslationModel,
    result: TrainingResult,
    info: dict[str, Any],
    search_info: dict[str, Any],
) -> dict[str, Any]:
    """The one-row training summary: validation metrics of the model and of its baselines."""
    final = result.final
    summary = {
        "experiment": p.name,
        "model_type": str(p.model_type),
        "run_id": run_id,
        "val_split": info["val_split"],
        "n_train_tiles": info["n_train"],
        "n_val_tiles": info["n_val"],
        "epochs": result.epochs_completed,
        "resumed_from_epoch": result.resumed_from or 0,  # epochs trained before this run
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
        "mean_colour_val_SSIM": info["mean_colour"].get("val_SSIM"),
        "mean_colour_val_SSIM_fg": info["mean_colour"].get("val_SSIM_fg"),
    }
    for name, metrics in info["input"].items():
        summary[f"{name}_val_L1"] = metrics["val_L1"]
        summary[f"{name}_val_SSIM"] = metrics["val_SSIM"]
        summary[f"{name}_val_SSIM_fg"] = metrics["val_SSIM_fg"]
    return summary


def _input_spec(tileset: TileSet, p: TrainingParams) -> dict[str, Any] | None:
    """The tile set's input spec with the range the training mapped to [-1, 1]."""
    stored = tileset.attrs.get("input_spec")
    if stored is None:
        logger.warning("%s: the tile set records no input spec; generator.pt will not", p.name)
        return None
    lo, hi = resolve_range(p.data.a_range, tileset.a.dtype)
    return InputSpec.from_dict(stored, p.name).with_input_range((lo, hi)).to_dict()
