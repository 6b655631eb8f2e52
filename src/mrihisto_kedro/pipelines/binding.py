"""How an experiment's nodes are bound to it: its name into the node functions (as Kedro and
kedro-viz should see them), its group's namespace around its own."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, update_wrapper
from typing import Any

from kedro.pipeline import Pipeline

from mrihisto_kedro.experiments import Experiment

__all__ = ["bind_experiment", "grouped"]


def bind_experiment(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``func`` with ``experiment=name`` bound, keeping its name and docstring for Kedro and
    kedro-viz (a ``functools.partial``: picklable, so ``ParallelRunner`` can ship it)."""
    return update_wrapper(partial(func, experiment=name), func)


def grouped(experiment: Experiment, pipeline: Pipeline, outputs: tuple[str, ...]) -> Pipeline:
    """``pipeline`` under the experiment's group namespace (``msi_to_he``), if it has one;
    dataset and parameter names stay the experiment's own."""
    if experiment.group is None:
        return pipeline
    return Pipeline(
        pipeline,
        namespace=experiment.group,
        inputs=pipeline.inputs() - {d for d in pipeline.inputs() if d.startswith("params:")},
        outputs={f"{experiment.name}.{out}" for out in outputs},
        parameters={d for d in pipeline.inputs() if d.startswith("params:")},
    )
