"""evaluation pipeline: every registered experiment measured the same way, then the tables.

One modular pipeline per experiment of :data:`mrihisto_kedro.experiments.EXPERIMENTS` (its
tile set and generator come from the modelling pipeline; parameters
``params:<name>.evaluation``), then one node that joins the experiments' rows into the metric
tables::

    kedro run --pipeline=evaluation
    kedro run --pipeline=evaluation --namespaces=tiles_256 \\
        --params="tiles_256.evaluation.tiles.max_tiles_per_slide=32"
    kedro run --pipeline=evaluation --tags=msi_to_he         # seed 003's three MSI models
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from mrihisto_kedro.experiments import Experiment, Table, Task, experiments
from mrihisto_kedro.pipelines.binding import bind_experiment, grouped

from .nodes import combine_tables, evaluate_experiment, synthesise_slides

#: what one evaluation writes (``<name>.evaluation_metrics`` ...)
EVALUATION_OUTPUTS = ("evaluation_tiles", "evaluation_metrics", "evaluation_figure")
_SYNTHESIS_INPUTS = ("pairs_with_splits", "aligned_mri", "downsampled_slides")


def _synthesis_node(name: str) -> Node:
    return Node(
        bind_experiment(synthesise_slides, name),
        ["generator", "tileset", *_SYNTHESIS_INPUTS, "params:synthesis"],
        ["synthetic_slides", "seam_report", "synthesis_figure"],
        name="synthesise_slides",
    )


def evaluation_pipeline(experiment: Experiment) -> Pipeline:
    """The evaluation of ``experiment`` (namespace ``<name>``: ``<name>.evaluate``, and
    ``<name>.synthesise_slides`` for synthesised experiments) on its tile set, with the
    generator of :attr:`~mrihisto_kedro.experiments.Experiment.model`; tagged with its task
    and its group (kedro-viz filters, ``kedro run --tags=...``)."""
    name = experiment.name
    nodes = [
        Node(
            bind_experiment(evaluate_experiment, name),
            ["tileset", "generator", "training_summary", "params:evaluation"],
            list(EVALUATION_OUTPUTS),
            name="evaluate",
        )
    ]
    inputs = {
        "tileset": experiment.tileset,
        "generator": f"{experiment.model}.generator",
        "training_summary": f"{experiment.model}.training_summary",
    }
    parameters = {"params:evaluation": f"params:{name}.evaluation"}
    if experiment.synthesised:
        nodes.append(_synthesis_node(name))
        inputs |= {k: k for k in _SYNTHESIS_INPUTS}
        parameters["params:synthesis"] = "params:synthesis"
    tags = experiment.task.value
    evaluation = Pipeline(nodes, namespace=name, inputs=inputs, parameters=parameters, tags=tags)
    return grouped(experiment, evaluation)


def tables_pipeline() -> Pipeline:
    """Table 1, the pix2pix-vs-U-Net table (MRI) and seed 003's MSI table, from the rows of
    every experiment of the default run."""
    names = [e.name for e in experiments(table=Table.METRICS)]
    return Pipeline(
        [
            Node(
                combine_tables,
                [f"{name}.evaluation_metrics" for name in names],
                [
                    "metrics_table",
                    "metrics_table_md",
                    "baseline_table",
                    "baseline_table_md",
                    "msi_table",
                    "msi_table_md",
                ],
                name="combine_tables",
            )
        ]
    )


def measurement_pipeline(task: Task | None = None) -> Pipeline:
    """The evaluation of every experiment of the default run (of ``task``, or of all)."""
    return sum(
        (evaluation_pipeline(e) for e in experiments() if task is None or e.task is task),
        start=Pipeline([]),
    )


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Evaluate every experiment of the default run, then write the tables."""
    return measurement_pipeline() + tables_pipeline()
