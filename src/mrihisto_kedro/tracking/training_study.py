"""An experiment's training study: an optional search, the final training, its summary (no Kedro).

:func:`train_study` trains the experiment's model on its tile set, after a hyper-parameter
search when ``search.n_trials`` > 0. Each training is an MLflow run (nested under the active
run, e.g. kedro-mlflow's pipeline run): all parameters, per-epoch losses and validation
L1/SSIM, sample grids (A | real B | generated B) and the generator with its signature
(:mod:`mrihisto_kedro.tracking.mlflow_tracking`). A search is a parent run ``<name>-search``
with one child run ``<name>-trial-<n>`` per trial; the best trial's choices are used for the
final training, run ``<name>``.

Trainings checkpoint every epoch into the experiment's
:class:`~mrihisto_kedro.nn.checkpoint_store.CheckpointStore`: the same call after a crash
resumes from the last complete epoch, skips completed trials and continues their MLflow runs
(``training.resume: never`` starts again).

Data-parallel (``torchrun ... kedro run``, see ``docs/cluster.md``): with ``WORLD_SIZE`` > 1
in the environment :func:`train_study` joins the process group
(:func:`~mrihisto_kedro.nn.distributed.process_group`) for its trainings; every rank trains its
share of the tiles, rank 0 alone writes checkpoints and logs to MLflow, and every rank returns
the same result (rank 0's history and summary, the generator every rank holds).
``training.processes: N`` does the same on one machine without ``torchrun``: the calling
(Kedro) process is rank 0 and starts ranks 1 .. N-1, which run this function with the same
arguments and write nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from mrihisto_kedro.imaging.tileset import TileSet, hold_out_specimens
from mrihisto_kedro.nn.checkpoint_store import (
    CheckpointStore,
    SearchCheckpoint,
    TrainingCheckpoint,
    fingerprint,
    tileset_fingerprint,
)
from mrihisto_kedro.nn.distributed import (
    env_world,
    from_main,
    local_processes,
    process_group,
    world,
)
from mrihisto_kedro.nn.experiment import run_training
from mrihisto_kedro.nn.models import TranslationModel
from mrihisto_kedro.nn.trained_generator import example_input, export_trained_generator
from mrihisto_kedro.nn.training import TrainingResult, generator_digest
from mrihisto_kedro.nn.training_summary import training_summary
from mrihisto_kedro.tracking.mlflow_tracking import (
    EpochLogger,
    log_generator,
    log_numerics,
    log_search_best,
    log_summary_metrics,
    training_run,
)
from mrihisto_kedro.tracking.search import apply_choices, run_search
from mrihisto_kedro.tracking.training_params import TrainingParams

__all__ = ["TrainingStudyResult", "logged_params", "search_tileset", "train_study"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingStudyResult:
    """What :func:`train_study` returns.

    Attributes:
        generator: the exported generator
            (:func:`~mrihisto_kedro.nn.training.export_generator`: state dict, architecture,
            input spec), of the final training.
        history: the final training's per-epoch history (one row per epoch: ``epoch``, mean
            losses, validation metrics, learning rates, ``seconds``).
        summary: its summary row (:func:`~mrihisto_kedro.nn.training_summary.training_summary`
            plus ``generator``, the :func:`~mrihisto_kedro.nn.training.generator_digest`).
        trials: one row per search trial (``trial``, its choices, the metric, ``state``);
            empty without a search.
    """

    generator: dict[str, Any]
    history: pd.DataFrame
    summary: dict[str, Any]
    trials: pd.DataFrame

    @property
    def table(self) -> pd.DataFrame:
        """The summary row, then the search trials (if any) as extra rows."""
        return pd.concat([pd.DataFrame([self.summary]), self.trials], ignore_index=True)


@dataclass(frozen=True)
class _Study:
    """What every training of one study shares."""

    name: str
    params: TrainingParams
    checkpoints: CheckpointStore
    tags: dict[str, str]


def train_study(
    tileset: TileSet, params: TrainingParams, checkpoints: CheckpointStore, name: str
) -> TrainingStudyResult:
    """Train experiment ``name``'s model on ``tileset`` (after a search when
    ``params.search.n_trials`` > 0), each training in its MLflow run, resuming from
    ``checkpoints`` (see the module docstring)."""
    study = _Study(
        name, params, checkpoints, {"experiment": name, "model_type": str(params.model_type)}
    )
    logged = logged_params(tileset, params)
    trials, search_info = pd.DataFrame(), dict[str, Any]()
    spawn = 1 if env_world().distributed else params.processes  # torchrun decides under it
    with (
        local_processes(spawn, train_study, (tileset, params, checkpoints, name)),
        process_group(str(params.model.get("device", "auto"))),
    ):
        here = world()
        if here.distributed:  # logged: the global batch is data.batch_size x processes
            logged["distributed"] = {
                "processes": here.size,
                "global_batch": params.data.batch_size * here.size,
            }
        if params.search.n_trials:
            best, trials, search_info = _search(study, tileset, logged)
            logged["model"] = apply_choices(dict(params.model), best)
        generator, history, summary = _final_training(study, tileset, logged, search_info)
    return TrainingStudyResult(generator, history, summary, trials)


def logged_params(tileset: TileSet, params: TrainingParams) -> dict[str, Any]:
    """The parameters a training run logs: model type, model values, data feeding, tiles."""
    return {
        "model_type": str(params.model_type),
        "model": dict(params.model),
        "data": {k: getattr(params.data, k) for k in params.data.__dataclass_fields__},
        "tiles": len(tileset),
    }


def search_tileset(
    tileset: TileSet, params: TrainingParams, name: str
) -> tuple[TileSet, dict[str, Any]]:
    """The tiles a search's trials train and validate on, and what they validated on.

    With a validation split, the trials use it. Without one (the paper's 5/3 train/test
    design), ``search.holdout_specimens`` whole training specimens are held out for the
    trials, so model selection never looks at the test split.

    Returns:
        ``(tiles, {"search_val": description})``.
    """
    if params.data.val_split in tileset.splits:
        return tileset, {"search_val": params.data.val_split}
    held_tiles, held = hold_out_specimens(
        tileset,
        params.search.holdout_specimens,
        seed=params.search.seed,
        name=params.data.val_split,
    )
    logger.info(
        "search %s: no %r split; trials validate on training specimens %s",
        name,
        params.data.val_split,
        held,
    )
    return held_tiles, {"search_val": "held-out training specimens: " + ", ".join(held)}


def _described(tiles: TileSet, params: TrainingParams, logged: dict[str, Any]) -> dict[str, Any]:
    """What decides a training's numbers: fingerprinted to key its checkpoint."""
    return {
        "model_type": logged["model_type"],
        "model": logged["model"],
        "data": logged["data"],
        "tileset": tileset_fingerprint(tiles),
        "sample_every": params.sample_every,
    }


def _train(
    study: _Study,
    tiles: TileSet,
    model_values: dict[str, Any],
    ckpt: TrainingCheckpoint,
    run_id: str | None,
    sample_every: int,
) -> tuple[TranslationModel, TrainingResult, dict[str, Any]]:
    """One training (or its resumption from ``ckpt``) logging to the open run ``run_id``."""
    ckpt.record_run(run_id)
    return run_training(
        tiles,
        study.params.model_type,
        model_values,
        study.params.data,
        checkpoint_dir=ckpt.folder,
        resume=ckpt.resume,
        callback=EpochLogger(run_id) if run_id is not None else None,
        sample_every=sample_every,
        on_start=lambda model: log_numerics(model.numerics()),
    )


def _search(
    study: _Study, tileset: TileSet, logged: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """Run the search, resuming at the trial level; return best choices, trials, search info."""
    p, name = study.params, study.name
    search_tiles, search_info = search_tileset(tileset, p, name)
    search_params = {
        "search_trials": p.search.n_trials,
        "trial_overrides": dict(p.search.trial_overrides),
        **search_info,
    }
    described = {
        **_described(search_tiles, p, logged),
        "search": {k: getattr(p.search, k) for k in p.search.__dataclass_fields__},
    }
    store = study.checkpoints.search(fingerprint(described), described, p.resume)
    objective = partial(_trial, study, store, store.completed(), search_tiles, logged)
    with training_run(f"{name}-search", search_params, study.tags, run_id=store.run_id) as run_id:
        store.record_run(run_id)
        best, trials = run_search(objective, p.search)
        metric = trials[p.search.metric]
        best_value = metric.min() if p.search.direction == "minimize" else metric.max()
        log_search_best(best, p.search.metric, float(best_value))
    logger.info("search %s: best %s", name, best)
    return best, trials, search_info


def _trial(
    study: _Study,
    store: SearchCheckpoint,
    done: dict[int, dict[str, Any]],
    tiles: TileSet,
    logged: dict[str, Any],
    number: int,
    values: dict[str, Any],
) -> float:
    """Search trial ``number`` with the choices ``values``: its validation metric, trained in
    its own run (or read back when the same trial completed before)."""
    p = study.params
    if number in done and done[number]["values"] == values:
        logger.info("search %s: trial %d completed before: not trained again", study.name, number)
        return float(done[number]["value"])
    trial_model = apply_choices(dict(p.model), values, p.search.trial_overrides)
    trial_log = {**logged, "model": trial_model}
    ckpt = store.trial(number, _described(tiles, p, trial_log), p.resume)
    run_name = f"{study.name}-trial-{number}"
    with training_run(run_name, trial_log, study.tags, run_id=ckpt.run_id) as run_id:
        _, result, _ = _train(study, tiles, trial_model, ckpt, run_id, sample_every=0)
    value = float(result.final[p.search.metric])
    store.record(number, values, value)
    return value


def _final_training(
    study: _Study, tileset: TileSet, logged: dict[str, Any], search_info: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """Train (or resume) the final model in its MLflow run; return the exported generator,
    its history and its summary row."""
    p, name = study.params, study.name
    described = _described(tileset, p, logged)
    ckpt = study.checkpoints.training(fingerprint(described), described, p.resume)
    with training_run(name, logged, study.tags, run_id=ckpt.run_id) as run_id:
        model, result, info = _train(study, tileset, logged["model"], ckpt, run_id, p.sample_every)
        payload = export_trained_generator(model, tileset, p.data.a_range, name)

        def summarise() -> dict[str, Any]:  # rank 0 (the ranks' weights are equal)
            assert run_id is not None  # rank 0 always has a run
            model_type = str(p.model_type)
            summary = training_summary(name, model_type, run_id, model, result, info, search_info)
            log_summary_metrics(summary)
            summary["generator"] = generator_digest(payload)  # what the tables measured
            log_generator(payload, example_input(tileset, p.data.a_range))
            return summary

        summary = from_main(summarise)
    return payload, pd.DataFrame(result.history), summary
