"""evaluation pipeline: every trained experiment measured the same way, then Table 1.

One modular pipeline per experiment namespace (its tile set and generator come from the
modelling pipeline), then one node that joins the experiments' rows into the metric tables::

    kedro run --pipeline=evaluation
    kedro run --pipeline=evaluation --namespaces=tiles_256 \\
        --params="evaluation.tiles_256.tiles.max_tiles_per_slide=32"
    kedro run --pipeline=evaluation --namespaces=msi_to_he   # seed 003's three MSI models
"""

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from mrihisto_kedro.pipelines.modelling import msi

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

#: seed 003 (MSI -> H&E): experiment -> tile set, grouped under the node namespace
#: ``msi_to_he`` as in the modelling pipeline (the U-Net baseline uses the black-padded tiles)
MSI_EXPERIMENTS: dict[str, str] = dict(msi.MSI_EXPERIMENTS)
MSI_GROUP = msi.MSI_GROUP

#: evaluation entries that measure another experiment's trained model: entry -> experiment
#: (its ``generator`` and ``training_summary``); ``msi_unet_whole`` (pipeline
#: ``msi_whole_specimen``) is the patch-trained U-Net on paper 003's whole specimen views
MEASURED_MODEL: dict[str, str] = {"msi_unet_whole": "msi_unet"}
_OUTPUTS = ("evaluation_tiles", "evaluation_metrics", "evaluation_figure")

#: experiments whose generator is slid over whole aligned MRI slices (tile-trained pix2pix and
#: the U-Net regression baseline; whole_slide_4096 sees the whole slide in one view already)
SYNTHESISED = ("tiles_256", "tiles_1024", "unet_baseline")


def evaluate_node(entry: str) -> str:
    """The name of the node that evaluates ``entry`` (``msi_to_he.msi_unet.evaluate``)."""
    return f"{MSI_GROUP}.{entry}.evaluate" if entry in MSI_EXPERIMENTS else f"{entry}.evaluate"


def _bind(func, name: str):  # noqa: ANN001, ANN202
    """``func`` with ``experiment=name`` bound, keeping its name for Kedro and kedro-viz."""
    return update_wrapper(partial(func, experiment=name), func)


def evaluation_pipeline(name: str, tileset: str) -> Pipeline:
    """The evaluation of entry ``name`` on ``tileset`` (namespace ``name``: ``<name>.evaluate``;
    its model is :data:`MEASURED_MODEL`'s, or its own)."""
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
                ],
                ["synthetic_slides", "seam_report", "synthesis_figure"],
                name="synthesise_slides",
            )
        )
    inputs = {k: k for k in shared} if name in SYNTHESISED else {}
    if tileset != f"{name}.tileset":
        inputs["tileset"] = tileset
    if name in MEASURED_MODEL:
        model = MEASURED_MODEL[name]
        inputs |= {
            "generator": f"{model}.generator",
            "training_summary": f"{model}.training_summary",
        }
    return Pipeline(
        Pipeline(nodes),
        namespace=name,
        inputs=inputs or None,
        parameters={"params:evaluation": f"params:evaluation.{name}"}
        | ({"params:synthesis": "params:synthesis"} if name in SYNTHESISED else {}),
    )


def create_msi_evaluation() -> Pipeline:
    """The three seed-003 models measured on their tiles, under the namespace ``msi_to_he``."""
    experiments = sum(
        (evaluation_pipeline(name, tileset) for name, tileset in MSI_EXPERIMENTS.items()),
        start=Pipeline([]),
    )
    return Pipeline(
        experiments,
        namespace=MSI_GROUP,
        inputs=set(MSI_EXPERIMENTS.values())
        | {
            f"{MEASURED_MODEL.get(name, name)}.{d}"
            for name in MSI_EXPERIMENTS
            for d in ("generator", "training_summary")
        },
        outputs={f"{name}.{out}" for name in MSI_EXPERIMENTS for out in _OUTPUTS},
        parameters={f"params:evaluation.{name}" for name in MSI_EXPERIMENTS},
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Evaluate every experiment, then write Table 1, the pix2pix-vs-U-Net table (MRI) and
    seed 003's MSI table."""
    experiments = [evaluation_pipeline(name, tileset) for name, tileset in EXPERIMENTS.items()]
    everything = [*EXPERIMENTS, *MSI_EXPERIMENTS]
    tables = Pipeline(
        Pipeline(
            [
                Node(
                    combine_tables,
                    [f"metrics_of_{name}" for name in everything],
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
        ),
        inputs={f"metrics_of_{name}": f"{name}.evaluation_metrics" for name in everything},
    )
    return sum(experiments, start=Pipeline([])) + create_msi_evaluation() + tables
