"""The demo pipeline's node, called directly on a miniature demo (two small specimens)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrihisto_kedro.params import ParameterError
from mrihisto_kedro.pipelines.demo.nodes import make_demo

SMALL = {"n_specimens": 2, "level0_height": 256, "level0_width": 320}


def test_make_demo_plans_every_output_of_each_pair() -> None:
    slides, volumes, pairs, truth, clicks = make_demo(SMALL)
    assert list(pairs.pair_id) == list(truth.pair_id) == sorted(clicks) == ["pair_01", "pair_02"]
    assert set(pairs.slide) == set(slides) and set(pairs.mri) == set(volumes)
    for table in clicks.values():
        assert list(table.columns) == [
            "label",
            "fixed_x_mm",
            "fixed_y_mm",
            "moving_x_mm",
            "moving_y_mm",
        ]
        assert len(table) >= 3 and np.isfinite(table.iloc[:, 1:].to_numpy()).all()


def test_make_demo_clicks_are_reproducible_and_follow_the_seed() -> None:
    first, again = make_demo(SMALL)[4], make_demo(SMALL)[4]
    other = make_demo({**SMALL, "seed": 7})[4]
    for pair_id, table in first.items():
        pd.testing.assert_frame_equal(table, again[pair_id])
    assert not first["pair_01"].equals(other["pair_01"])


def test_make_demo_names_a_bad_parameter() -> None:
    with pytest.raises(ParameterError, match=r"demo\.n_specimens|'demo'"):
        make_demo({"n_specimens": 0})
