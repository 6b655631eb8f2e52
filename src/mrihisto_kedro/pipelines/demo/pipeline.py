"""demo pipeline: the built-in data, written where the user's raw inputs would be read from.

- :func:`create_mri_pipeline`: the demo slides, MRI volumes, pairs manifest, ground truth and
  landmark clicks (``data/01_raw/demo``), and the ICBM152 T1/T2 pair;
- :func:`create_msi_pipeline`: the simulated MSI/H&E demo of seed 003 (``data/01_raw/demo_msi``).

The analysis pipelines read the user's raw inputs (``slides``, ``msi_imzml``, ...); the default
run (and ``full_scale``, ``msi``) maps them onto these outputs
(:data:`mrihisto_kedro.pipeline_registry.DEMO_INPUTS`), so the demo never writes where a user's
data is read from.
"""

from kedro.pipeline import Node, Pipeline

from .nodes import make_demo, make_msi_demo, place_icbm152_pair


def create_mri_pipeline() -> Pipeline:
    """The MRI/histology demo and the ICBM152 pair (the raw inputs of data_engineering,
    registration and the ``t1_to_t2`` experiments in the default run)."""
    return Pipeline(
        [
            Node(
                make_demo,
                "params:demo",
                [
                    "demo_slides",
                    "demo_mri_volumes",
                    "demo_pairs",
                    "demo_ground_truth",
                    "demo_control_points",
                ],
                name="make_demo",
            ),
            Node(
                place_icbm152_pair,
                None,
                ["demo_icbm152_t1", "demo_icbm152_t2", "demo_icbm152_copying"],
                name="place_icbm152_pair",
            ),
        ]
    )


def create_msi_pipeline() -> Pipeline:
    """The simulated MSI/H&E demo (the raw inputs of msi_data_engineering in the default run
    and in ``msi``); its ground truth is also its pairs manifest."""
    return Pipeline(
        [
            Node(
                make_msi_demo,
                "params:demo_msi",
                [
                    "demo_msi_imzml",
                    "demo_msi_histology",
                    "demo_msi_ground_truth",
                    "demo_msi_peaks",
                    "demo_msi_control_points",
                ],
                name="make_msi_demo",
            )
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Both demos (``kedro run --pipeline=demo``)."""
    return create_mri_pipeline() + create_msi_pipeline()
