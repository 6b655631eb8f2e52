"""msi_whole_specimen pipeline: paper 003's own design, an option beside the tile table.

Paper 003 trained pix2pix on whole specimen images resized to one size (off-tissue glass and the
padding around the MSI included) and applied the patch-trained U-Net regression to the same
whole images. This pipeline does that on the registered MSI pairs of ``msi_data_engineering``:

1. ``msi_to_he_whole.build_whole_views``: one black-padded view per specimen
   (``msi_to_he_whole.tileset``, :mod:`mrihisto_kedro.msi.whole_views`);
2. ``msi_to_he_whole.train``: pix2pix on the training views (``params:msi_to_he_whole``);
3. ``msi_to_he_whole.evaluate`` and ``msi_unet_whole.evaluate``: both measured on the test views,
   the latter with ``msi_unet``'s generator (trained on tiles by the ``msi_to_he`` experiments);
4. ``combine_whole_design``: ``msi_whole_table.csv/.md`` with the paper's claim for this design.

It is left out of the default run (about 90 s more on 2 cores for a table over 2 test views)::

    kedro run                                      # or: kedro run --pipeline=msi
    kedro run --pipeline=msi_whole_specimen
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mrihisto_kedro.evaluation.report_tables import WHOLE_TABLE_EXPERIMENTS
from mrihisto_kedro.experiments import by_name
from mrihisto_kedro.pipelines.evaluation.nodes import whole_design_tables
from mrihisto_kedro.pipelines.evaluation.pipeline import evaluation_pipeline
from mrihisto_kedro.pipelines.modelling.pipeline import training_pipeline
from mrihisto_kedro.pipelines.msi_data_engineering.nodes import build_msi_whole_views

#: the experiment whose ``tileset`` holds the whole views and which trains pix2pix on them
WHOLE_EXPERIMENT = "msi_to_he_whole"
WHOLE_TILESET = f"{WHOLE_EXPERIMENT}.tileset"


def _views_pipeline() -> Pipeline:
    """``msi_to_he_whole.build_whole_views``: the black-padded registered pairs -> one view per
    specimen in ``msi_to_he_whole.tileset``."""
    inputs = ["msi_pairs_with_splits", "msi_histology_grid", "msi_registered_black", "msi_coverage"]
    params = ["params:msi_data_engineering.whole_views"]
    node = Node(build_msi_whole_views, [*inputs, *params], "tileset", name="build_whole_views")
    task = by_name(WHOLE_EXPERIMENT).task.value  # its tag, as the experiment's other nodes
    return Pipeline(
        [node],
        namespace=WHOLE_EXPERIMENT,
        inputs=set(inputs),
        parameters=set(params),
        tags=task,
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Whole views -> pix2pix -> both models measured on the test views -> the table.

    Free inputs: ``msi_pairs_with_splits``, ``msi_histology_grid``, ``msi_registered_black``,
    ``msi_coverage`` (``msi_data_engineering``) and ``msi_unet.generator`` /
    ``msi_unet.training_summary`` (the ``msi_to_he`` experiments of ``modelling``).
    """
    views = _views_pipeline()
    models = training_pipeline(by_name(WHOLE_EXPERIMENT)) + sum(
        (evaluation_pipeline(by_name(name)) for name in WHOLE_TABLE_EXPERIMENTS),
        start=Pipeline([]),
    )
    table = Node(
        whole_design_tables,
        [f"{name}.evaluation_metrics" for name in WHOLE_TABLE_EXPERIMENTS],
        ["msi_whole_table", "msi_whole_table_md"],
        name="combine_whole_design",
    )
    return views + models + Pipeline([table])
