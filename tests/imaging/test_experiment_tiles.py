"""How the volume tiling logs which slices went where: runs of consecutive indices."""

from __future__ import annotations

from mrihisto_kedro.imaging.experiment_tiles import slice_runs


def test_slice_runs_join_consecutive_indices() -> None:
    assert slice_runs([0, 1, 2, 7, 8, 10]) == "0-2, 7-8, 10"
    assert slice_runs([5]) == "5" and slice_runs([]) == ""
