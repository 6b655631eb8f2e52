"""modelling pipeline: one modular pipeline per registered experiment, as a Kedro namespace.

The experiments come from :data:`mrihisto_kedro.experiments.EXPERIMENTS`; each one's nodes
are ``<name>.build_tiles`` (when it cuts its own tiles from the registered pairs or from two
volumes) and ``<name>.train``, with parameters ``params:<name>.tiling`` and
``params:<name>.training``. Run one experiment with one parameter overridden::

    kedro run --pipeline=modelling --namespaces=tiles_256 \
        --params="tiles_256.training.model.gan_mode=lsgan,tiles_256.training.search.n_trials=0"

(a searched key given alone is refused before any work: the search would replace it).
Every experiment's nodes are tagged with its task (``mri_to_histology``, ``mri_to_mri``,
``msi_to_he``) and the nodes of a group's experiments with the group (``msi_to_he``), so
``--tags=msi_to_he`` trains the three MSI models and kedro-viz filters by task.
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from mrihisto_kedro.experiments import Experiment, Task, TileSource, experiments
from mrihisto_kedro.pipelines.binding import bind_experiment, grouped

from .nodes import build_pair_tiles, build_volume_tiles, train_experiment

#: what one training writes (``<name>.generator`` ...)
TRAINING_OUTPUTS = ("generator", "training_history", "training_summary")
_PAIR_INPUTS = (
    "pairs_with_splits",
    "registration_report",
    "aligned_mri",
    "aligned_mri_masks",
    "downsampled_slides",
    "slide_masks",
)
_VOLUME_INPUTS = ("icbm152_t1", "icbm152_t2")


def _tiling_node(source: TileSource) -> Node | None:
    """The node that cuts the experiment's tile set, for the sources modelling owns."""
    if source is TileSource.PAIR_TILES:
        return Node(
            build_pair_tiles,
            [*_PAIR_INPUTS, "params:tiling"],
            "tileset",
            name="build_tiles",
        )
    if source is TileSource.VOLUME_SLICES:
        return Node(
            build_volume_tiles, [*_VOLUME_INPUTS, "params:tiling"], "tileset", name="build_tiles"
        )
    return None


def training_pipeline(experiment: Experiment) -> Pipeline:
    """``experiment``'s tiling (if modelling cuts its tiles) and training, in its namespace,
    tagged with its task (``mri_to_histology``, ``mri_to_mri``, ``msi_to_he``: a kedro-viz
    filter and ``kedro run --tags=...``)."""
    train = Node(
        bind_experiment(train_experiment, experiment.name),
        ["tileset", "params:training", "checkpoints"],
        list(TRAINING_OUTPUTS),
        name="train",
    )
    tiling = _tiling_node(experiment.tiles)
    free = {"tileset": experiment.tileset} if tiling is None else {}
    if experiment.tiles is TileSource.PAIR_TILES:
        free |= {k: k for k in _PAIR_INPUTS}
    elif experiment.tiles is TileSource.VOLUME_SLICES:
        free |= {k: k for k in _VOLUME_INPUTS}
    return Pipeline(
        [train] if tiling is None else [tiling, train],
        namespace=experiment.name,
        inputs=free or None,
        tags=experiment.task.value,
    )


def create_pipeline(task: Task | None = None, **kwargs: Any) -> Pipeline:
    """Every experiment of the default run that trains a model of its own (of ``task``, or
    of every task)."""
    return sum(
        (
            grouped(e, training_pipeline(e))
            for e in experiments(trains=True)
            if task is None or e.task is task
        ),
        start=Pipeline([]),
    )
