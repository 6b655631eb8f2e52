"""InputSpec: what a generator file records of its training input survives torch.save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mrihisto_kedro.imaging.input_spec import (
    InputKind,
    InputSpec,
    InputSpecError,
    generator_input_spec,
)

SPECS = [
    InputSpec(InputKind.SLICE_TO_SLIDE, (112.5, 112.5)),
    InputSpec(
        InputKind.VOLUME_TO_VOLUME,
        (2000.0, 2000.0),
        normalisation_scope="volume",
        plane="axial",
        pad_to=128,
        input_range=(0.0, 1.0),
    ),
    InputSpec(
        InputKind.MSI_TO_SLIDE,
        (8.0, 8.0),
        channels=3,
        lower_percentile=1.0,
        upper_percentile=99.0,
        normalisation_scope="dataset",
        embedding="umap",
    ),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind.value)
def test_round_trip_through_a_weights_only_file(spec: InputSpec, tmp_path: Path) -> None:
    torch.save({"input_spec": spec.to_dict()}, tmp_path / "g.pt")
    payload = torch.load(tmp_path / "g.pt", weights_only=True)
    assert generator_input_spec(payload, "g.pt") == spec


def test_files_written_before_input_specs_have_none() -> None:
    assert generator_input_spec({"state_dict": {}}, "old.pt") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "mri_to_cat"}, "g.pt: input_spec is incomplete or invalid"),
        ({"pixel_size_um": [0.0, 1.0]}, "pixel_size_um must be positive"),
        ({"normalisation_scope": "global"}, "'slice', 'volume' or 'dataset'"),
        ({"lower_percentile": 99.0, "upper_percentile": 1.0}, "bad percentiles"),
    ],
)
def test_impossible_specs_are_refused(change: dict, message: str) -> None:
    data = {**SPECS[2].to_dict(), **change}
    with pytest.raises(InputSpecError, match=message):
        InputSpec.from_dict(data, "g.pt")
