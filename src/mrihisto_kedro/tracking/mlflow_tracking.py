"""MLflow logging of training runs: parameters, per-epoch metrics, sample grids, the generator.

Used by the training study (:mod:`mrihisto_kedro.tracking.training_study`) under kedro-mlflow,
which sets the tracking URI (``conf/base/mlflow.yml``: ``sqlite:///mlflow.db`` in the project)
and opens the pipeline run; each training is a nested run under it.

Data-parallel training (:mod:`mrihisto_kedro.nn.distributed`): only rank 0 talks to MLflow.
On ranks > 0 :func:`training_run` opens no run and yields ``None``, and every ``log_*``
function and :class:`EpochLogger` does nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from mrihisto_kedro.nn.device import describe_numerics
from mrihisto_kedro.nn.distributed import is_main
from mrihisto_kedro.nn.experiment import model_config
from mrihisto_kedro.nn.training import EpochReport
from mrihisto_kedro.tracking.experiment_view import prepare_experiment


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"lr": 1}}`` -> ``{"model.lr": 1}``; lists and tuples become strings."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = value
    return out


@contextmanager
def training_run(
    name: str, params: Mapping[str, Any], tags: Mapping[str, str], run_id: str | None = None
) -> Iterator[str | None]:
    """A (nested, if a run is active) MLflow run with its parameters logged; yields its id.

    Parameters are logged flattened (``model.lr``) and, for the paper's search space, also
    under their short names (``gan_mode``, ``lr``, ``beta1``, ``lambda_L1``) so runs of all
    experiments compare in one table, with ``total_epochs`` (:func:`total_epochs`: the epochs
    the run trains; ``model.n_epochs`` counts only those at the initial lr). The experiment is
    prepared for the MLflow UI on first use (:func:`~.experiment_view.prepare_experiment`).

    ``run_id`` continues that run (a training resumed from its checkpoint logs its remaining
    epochs into the run it started; the run is tagged ``resumed``). A run id the tracking store
    does not know (e.g. ``mlflow.db`` was deleted) starts a new run instead.

    On ranks > 0 of a process group: no run, yields ``None``.
    """
    if not is_main():
        yield None
        return
    nested = mlflow.active_run() is not None
    if run_id is not None and not _run_exists(run_id):
        run_id = None
    parent = mlflow.active_run()
    run_tags = {**_inherited_tags(parent), **tags}
    if run_id is not None:
        run_tags["resumed"] = "true"
        if parent is not None:
            run_tags["resumed_under"] = parent.info.run_id
    start_name = None if run_id is not None else name
    with mlflow.start_run(run_id=run_id, run_name=start_name, nested=nested, tags=run_tags) as run:
        prepare_experiment(run.info.experiment_id)
        flat = flatten(params)
        short = {
            k.split(".")[-1]: v
            for k, v in flat.items()
            if k.split(".")[-1] in ("gan_mode", "lr", "beta1", "lambda_L1")
        }
        epochs = total_epochs(params)
        if epochs is not None:
            short["total_epochs"] = epochs
        log_params_once({**flat, **short})
        yield run.info.run_id


def total_epochs(params: Mapping[str, Any]) -> int | None:
    """The epochs a training runs, ``n_epochs + n_epochs_decay`` of its model config (the
    model type's defaults included), from ``params`` with ``model_type`` and ``model``;
    ``None`` for other parameters (a search's parent run)."""
    model = params.get("model")
    if "model_type" not in params or not isinstance(model, Mapping):
        return None
    config = model_config(str(params["model_type"]), model)
    return int(config.n_epochs + config.n_epochs_decay)


def _inherited_tags(parent: mlflow.ActiveRun | None) -> dict[str, str]:
    """The parent's ``mrihisto.*`` tags (output root, host: see ``hooks.RunTagHooks``)."""
    if parent is None:
        return {}
    tags = mlflow.tracking.MlflowClient().get_run(parent.info.run_id).data.tags
    return {k: v for k, v in tags.items() if k.startswith("mrihisto.")}


def _run_exists(run_id: str) -> bool:
    try:
        mlflow.tracking.MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


def log_params_once(params: Mapping[str, Any]) -> None:
    """Log parameters to the active run, keeping values it already has.

    MLflow refuses to change a logged parameter. A resumed run logs its parameters again:
    equal values are skipped, and a value that differs (e.g. ``runtime.threads`` on another
    machine) is recorded as the tag ``changed.<key>`` instead of failing the training.
    """
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_params_once needs an active MLflow run")
    logged = mlflow.tracking.MlflowClient().get_run(run.info.run_id).data.params
    new = {k: v for k, v in params.items() if k not in logged}
    if new:
        mlflow.log_params(new)
    for key, value in params.items():
        if key in logged and logged[key] != str(value)[:6000]:
            mlflow.set_tag(f"changed.{key}", str(value))


def log_numerics(numerics: Mapping[str, str]) -> None:
    """Log what decided a training's numbers (device, resolved precision, torch, the CPU's SIMD
    level and native bf16, threads: :func:`~mrihisto_kedro.nn.device.numerics_report`) to the
    active run, as ``runtime.*`` parameters and as the tag ``numerics`` (one readable line)."""
    if not is_main():
        return
    log_params_once({f"runtime.{key}": value for key, value in numerics.items()})
    mlflow.set_tag("numerics", describe_numerics(dict(numerics)))


def log_search_best(best: Mapping[str, Any], metric: str, value: float) -> None:
    """Log a search's outcome to the active (search) run: the best trial's choices as
    ``best.<key>`` parameters and its metric as ``best_<metric>``."""
    if not is_main():
        return
    mlflow.log_params({f"best.{key}": choice for key, choice in best.items()})
    mlflow.log_metric(f"best_{metric}", float(value))


def log_step_metrics(values: Mapping[str, float], step: int) -> None:
    """Log ``values`` to the active run as metrics at ``step`` (e.g. a 1-based epoch)."""
    if not is_main():
        return
    mlflow.log_metrics({key: float(value) for key, value in values.items()}, step=step)


def log_summary_metrics(summary: Mapping[str, Any]) -> None:
    """Log the numeric values of a training's summary row (ints, floats and bools; ``None``,
    ids and text are skipped) to the active run as metrics."""
    if not is_main():
        return
    mlflow.log_metrics(
        {key: float(value) for key, value in summary.items() if isinstance(value, float | int)}
    )


class EpochLogger:
    """Training callback: per-epoch losses/metrics/learning rates and sample grids to MLflow."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def __call__(self, report: EpochReport) -> None:
        """Log ``report`` to the run (rank 0 only)."""
        if not is_main():
            return
        client = mlflow.tracking.MlflowClient()
        for key, value in report.flat().items():
            client.log_metric(self.run_id, key, float(value), step=report.epoch)
        client.log_metric(self.run_id, "epoch_seconds", report.seconds, step=report.epoch)
        if report.sample is not None:
            grid = (np.clip(report.sample.grid(), 0.0, 1.0) * 255).round().astype(np.uint8)
            client.log_image(
                self.run_id, grid, artifact_file=f"samples/epoch_{report.epoch:04d}.png"
            )


def log_generator(payload: Mapping[str, Any], example: torch.Tensor) -> None:
    """Log the exported generator to the active run as a weights-only file, with its signature.

    Artifacts under ``generator/``: ``generator.pt`` (the ``export_generator`` payload, the
    same as ``data/06_models/<experiment>/generator.pt``: tensors and plain data, read with
    ``torch.load(weights_only=True)``), ``signature.json`` (input/output shapes and dtypes)
    and ``HOW_TO_LOAD.txt``. Not an ``mlflow.pytorch`` model: those are pickled modules, and
    ``mlflow.pytorch.load_model`` on a shared tracking server would run whatever code a run
    stored. Load with::

        path = mlflow.artifacts.download_artifacts(
            run_id=..., artifact_path="generator/generator.pt"
        )
        generator = mrihisto_kedro.nn.training.load_generator(path)

    Args:
        payload: :func:`~mrihisto_kedro.nn.training.export_generator`'s dict.
        example: one input batch ``(1, Ca, H, W)`` in [-1, 1] for the signature.
    """
    from mrihisto_kedro.nn.training import load_generator

    if not is_main():
        return
    generator = load_generator(payload)
    with torch.no_grad():
        output = generator(example.to("cpu", torch.float32))
    signature = infer_signature(example.numpy(), output.numpy())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generator.pt"
        torch.save(dict(payload), path)
        mlflow.log_artifact(str(path), artifact_path="generator")
    mlflow.log_dict(signature.to_dict(), "generator/signature.json")
    mlflow.log_text(_HOW_TO_LOAD, "generator/HOW_TO_LOAD.txt")


_HOW_TO_LOAD = """\
generator.pt holds tensors and plain data only (no pickled code). Load it with:

    import mlflow
    from mrihisto_kedro.nn.training import load_generator
    path = mlflow.artifacts.download_artifacts(
        run_id="<run id>", artifact_path="generator/generator.pt"
    )
    generator = load_generator(path)   # torch.load(weights_only=True) inside

Inputs are (N, C, H, W) in [-1, 1]; see signature.json and the payload's input_spec.
"""
