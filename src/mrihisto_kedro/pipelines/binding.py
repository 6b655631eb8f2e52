"""How an experiment's nodes are bound to it: its name into the node functions (as Kedro and
kedro-viz should see them), its group as a tag of its nodes."""

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


def grouped(experiment: Experiment, pipeline: Pipeline) -> Pipeline:
    """``pipeline`` with every node tagged with the experiment's group (``msi_to_he``:
    ``kedro run --tags=msi_to_he`` runs the group), if it has one. The group is a tag, not a
    namespace: node, dataset and parameter names stay the experiment's own, and kedro-viz shows
    one namespace per experiment."""
    return pipeline if experiment.group is None else pipeline.tag(experiment.group)
