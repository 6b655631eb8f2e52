"""registration pipeline: data_engineering outputs -> aligned MRI on the histology grid + report."""

from typing import Any

from kedro.pipeline import Node, Pipeline

from .nodes import register_pairs, register_pairs_from_control_points

_INPUTS = [
    "pairs_with_splits",
    "downsampled_slides",
    "mri_slices",
    "slide_masks",
    "mri_masks",
    "registration_ground_truth",
    "data_engineering_report",
]
_OUTPUTS = [
    "registration_transforms",
    "aligned_mri",
    "aligned_mri_masks",
    "registration_report",
    "registration_qc",
]
_PARAMS = ["params:registration"]


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Intensity-based mode (the default run uses this one)."""
    return Pipeline([Node(register_pairs, _INPUTS + _PARAMS, _OUTPUTS, name="register_pairs")])


def create_control_point_pipeline(**kwargs: Any) -> Pipeline:
    """Control-point mode: ``kedro run --pipeline=registration_control_points``."""
    return Pipeline(
        [
            Node(
                register_pairs_from_control_points,
                [*_INPUTS, "control_points", *_PARAMS],
                _OUTPUTS,
                name="register_pairs_from_control_points",
            )
        ]
    )
