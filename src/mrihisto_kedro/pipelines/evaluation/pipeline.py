"""evaluation pipeline: every trained experiment measured the same way, then Table 1.

One modular pipeline per experiment namespace (its tile set and generator come from the
modelling pipeline), then one node that joins the experiments' rows into the metric tables::

    kedro run --pipeline=evaluation
    kedro run --pipeline=evaluation --namespaces=tiles_256 \\
        --params="evaluation.tiles_256.tiles.max_tiles_per_slide=32"
"""

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from .nodes import combine_tables, evaluate_experiment, synthesise_slides

#: experiment -> the tile set it is evaluated on (the U-Net baseline shares tiles_256's tiles)
EXPERIMENTS: dict[str, str] = {
    "whole_slide_4096": "whole_slide_4096.tileset",
    "tiles_1024": "tiles_1024.tileset",
    "tiles_256": "tiles_256.tileset",
    "unet_baseline": "tiles_256.tileset",
    "t1_to_t2": "t1_to_t2.tileset",
    "t1_to_t2_pix2pix": "t1_to_t2.tileset",
}

#: experiments whose generator is slid over whole aligned MRI slices (tile-trained pix2pix and
#: the U-Net regression baseline; whole_slide_4096 sees the whole slide in one view already)
SYNTHESISED = ("tiles_256", "tiles_1024", "unet_baseline")


def _bind(func, name: str):  # noqa: ANN001, ANN202
    """``func`` with ``experiment=name`` bound, keeping its name for Kedro and kedro-viz."""
    return update_wrapper(partial(func, experiment=name), func)


def _experiment(name: str, tileset: str) -> Pipeline:
    nodes = [
        Node(
            _bind(evaluate_experiment, name),
            ["tileset", "generator", "training_summary", "params:evaluation"],
            ["evaluation_tiles", "evaluation_metrics", "evaluation_figure"],
            name="evaluate",
        )
    ]
    shared = {"pairs_with_splits", "aligned_mri", "downsampled_slides"}
    if name in SYNTHESISED:
        nodes.append(
            Node(
                _bind(synthesise_slides, name),
                [
                    "generator",
                    "tileset",
                    "pairs_with_splits",
                    "aligned_mri",
                    "downsampled_slides",
                    "params:synthesis",
                    "params:data_engineering",
                ],
                ["synthetic_slides", "seam_report", "synthesis_figure"],
                name="synthesise_slides",
            )
        )
    inputs: dict[str, str] | set[str] = shared if name in SYNTHESISED else set()
    if tileset != f"{name}.tileset":
        inputs = {**{k: k for k in inputs}, "tileset": tileset}
    return Pipeline(
        Pipeline(nodes),
        namespace=name,
        inputs=inputs or None,
        parameters={"params:evaluation": f"params:evaluation.{name}"}
        | (
            {k: k for k in ("params:synthesis", "params:data_engineering")}
            if name in SYNTHESISED
            else {}
        ),
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Evaluate every experiment, then write Table 1 and the pix2pix-vs-U-Net table."""
    experiments = [_experiment(name, tileset) for name, tileset in EXPERIMENTS.items()]
    tables = Pipeline(
        Pipeline(
            [
                Node(
                    combine_tables,
                    [f"metrics_of_{name}" for name in EXPERIMENTS],
                    ["metrics_table", "metrics_table_md", "baseline_table", "baseline_table_md"],
                    name="combine_tables",
                )
            ]
        ),
        inputs={f"metrics_of_{name}": f"{name}.evaluation_metrics" for name in EXPERIMENTS},
    )
    return sum(experiments, start=Pipeline([])) + tables
