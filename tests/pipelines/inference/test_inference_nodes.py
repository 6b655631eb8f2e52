"""The inference nodes' parameters: parsed once, with defaults, errors naming the dotted key."""

from __future__ import annotations

import pytest

from mrihisto_kedro.imaging.mri import Plane
from mrihisto_kedro.imaging.stitching import WeightKind
from mrihisto_kedro.params import ParameterError, parse_params
from mrihisto_kedro.pipelines.inference.nodes import InferenceParams, VolumeInferenceParams


def test_inference_parameters_default_to_256_px_windows() -> None:
    empty = parse_params(InferenceParams, {}, "inference")
    assert empty.synthesis.window == 256 and empty.new_slice.plane is Plane.AXIAL
    # a given synthesis block starts from SynthesisParams' defaults (window: the node's 256)
    given = parse_params(InferenceParams, {"synthesis": {"weights": "constant"}}, "inference")
    assert given.synthesis.window is None and given.synthesis.weights is WeightKind.CONSTANT
    override = parse_params(
        InferenceParams, {"new_slice": {"slice_index": 90, "plane": "sagittal"}}, "inference"
    )
    assert override.new_slice.slice_index == 90 and override.new_slice.plane is Plane.SAGITTAL
    assert InferenceParams(new_slice={"plane": "coronal"}).new_slice.plane is Plane.CORONAL


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (InferenceParams, {"new_slice": {"slice": 3}}, "'p.new_slice' has unknown key(s) 'slice'"),
        (InferenceParams, {"new_slice": {"model_mpp": -1}}, "'p.new_slice.model_mpp' must be > 0"),
        (InferenceParams, {"synthesis": {"window": 8}}, "'p.synthesis.window' must be >= 16"),
        (
            InferenceParams,
            {"synthesis": {"overlap_fraction": 1}},
            "'p.synthesis.overlap_fraction' must be in [0, 1), got 1.0",
        ),
        (
            VolumeInferenceParams,
            {"new_volume": {"batch_size": 0}},
            "'p.new_volume.batch_size' must be >= 1, got 0",
        ),
    ],
)
def test_inference_parameters_name_the_dotted_key(
    cls: type, values: dict[str, object], message: str
) -> None:
    with pytest.raises(ParameterError) as error:
        parse_params(cls, values, "p")
    assert message in str(error.value)
