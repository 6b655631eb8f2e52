"""demo pipeline: writes the demo slides, MRI volumes, pairs manifest and ground truth."""

from kedro.pipeline import Node, Pipeline

from .nodes import make_demo, place_icbm152_pair


def create_pipeline(**kwargs) -> Pipeline:
    """One node; its outputs are the raw inputs of data_engineering in the default run."""
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
