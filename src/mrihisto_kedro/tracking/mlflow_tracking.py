"""MLflow logging of training runs: parameters, per-epoch metrics, sample grids, the generator.

Used by the modelling pipeline's nodes under kedro-mlflow, which sets the tracking URI
(``conf/base/mlflow.yml``: ``sqlite:///mlflow.db`` in the project) and opens the pipeline run;
each training is a nested run under it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature

from mrihisto_kedro.nn.device import describe_numerics
from mrihisto_kedro.nn.training import EpochReport


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
def training_run(name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> Iterator[str]:
    """A (nested, if a run is active) MLflow run with its parameters logged; yields its id.

    Parameters are logged flattened (``model.lr``) and, for the paper's search space, also
    under their short names (``gan_mode``, ``lr``, ``beta1``, ``lambda_L1``) so runs of all
    experiments compare in one table.
    """
    nested = mlflow.active_run() is not None
    with mlflow.start_run(run_name=name, nested=nested, tags=dict(tags)) as run:
        flat = flatten(params)
        short = {
            k.split(".")[-1]: v
            for k, v in flat.items()
            if k.split(".")[-1] in ("gan_mode", "lr", "beta1", "lambda_L1", "n_epochs")
        }
        mlflow.log_params({**flat, **short})
        yield run.info.run_id


def log_numerics(numerics: Mapping[str, str]) -> None:
    """Log what decided a training's numbers (device, resolved precision, torch, the CPU's SIMD
    level and native bf16, threads: :func:`~mrihisto_kedro.nn.device.numerics_report`) to the
    active run, as ``runtime.*`` parameters and as the tag ``numerics`` (one readable line)."""
    mlflow.log_params({f"runtime.{key}": value for key, value in numerics.items()})
    mlflow.set_tag("numerics", describe_numerics(dict(numerics)))


class EpochLogger:
    """Training callback: per-epoch losses/metrics/learning rates and sample grids to MLflow."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def __call__(self, report: EpochReport) -> None:
        client = mlflow.tracking.MlflowClient()
        for key, value in report.flat().items():
            client.log_metric(self.run_id, key, float(value), step=report.epoch)
        client.log_metric(self.run_id, "epoch_seconds", report.seconds, step=report.epoch)
        if report.sample is not None:
            grid = (np.clip(report.sample.grid(), 0.0, 1.0) * 255).round().astype(np.uint8)
            client.log_image(
                self.run_id, grid, artifact_file=f"samples/epoch_{report.epoch:04d}.png"
            )


def log_generator(generator: torch.nn.Module, example: torch.Tensor) -> None:
    """Log the generator as an MLflow PyTorch model with its input/output signature.

    Args:
        generator: the A -> B network (put in eval mode here).
        example: one input batch ``(1, Ca, H, W)`` in [-1, 1] for the signature.
    """
    generator = generator.eval().to("cpu")
    with torch.no_grad():
        output = generator(example.to("cpu", torch.float32))
    signature = infer_signature(example.numpy(), output.numpy())
    mlflow.pytorch.log_model(
        generator,
        name="generator",
        signature=signature,
        serialization_format="pickle",  # pt2 (torch.export) cannot export the any-size padding
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
    )
