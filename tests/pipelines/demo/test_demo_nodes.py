"""The demo pipeline's nodes, called directly on miniature demos (two small specimens each)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrihisto_kedro.demo.control_points import CONTROL_POINT_COLUMNS
from mrihisto_kedro.params import ParameterError
from mrihisto_kedro.pipelines.demo.nodes import make_demo, make_msi_demo

SMALL = {"n_specimens": 2, "level0_height": 256, "level0_width": 320}
#: ``demo_msi``: 2 specimens of 256 px H&E, a short m/z range (under a second)
SMALL_MSI = {
    "simulation": {"n_regions": 2, "region_size_px": 256, "mz_range": [100.0, 300.0]},
    "control_points": {"n_points": 6, "click_noise_um": 3.0, "seed": 0},
}
#: the MSI demo's pixel size (µm)
MSI_PIXEL_UM = 10.0


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


@pytest.fixture(scope="module")
def msi_demo() -> tuple:
    """``make_msi_demo(SMALL_MSI)``: ``(imzml, histology, ground_truth, peaks, control_points)``."""
    return make_msi_demo(SMALL_MSI)


def test_make_msi_demo_writes_one_specimen_per_region_with_its_truth(msi_demo: tuple) -> None:
    imzml, histology, truth, peaks, clicks = msi_demo
    ids = ["msi_region_00", "msi_region_01"]
    assert list(truth["pair_id"]) == ids  # the ground truth is also the pairs manifest
    assert {"specimen_id", "mpp_x", "mpp_y", "a11", "tx"} <= set(truth.columns)
    assert list(imzml) == list(histology) == sorted(clicks) == ids
    assert histology["msi_region_00"].size == (256, 256)
    assert len(peaks) > 0 and peaks["mz"].between(100.0, 300.0).all()


def test_make_msi_demo_clicks_landmarks_with_noise_on_the_msi_side(msi_demo: tuple) -> None:
    _, _, truth, _, clicks = msi_demo
    residuals = []
    for row in truth.itertuples():
        table = clicks[row.pair_id]
        assert tuple(table.columns) == CONTROL_POINT_COLUMNS and len(table) == 6
        affine = np.array([[row.a11, row.a12, row.tx], [row.a21, row.a22, row.ty]])
        fixed = table[["fixed_x_mm", "fixed_y_mm"]].to_numpy()
        moving = table[["moving_x_mm", "moving_y_mm"]].to_numpy()
        # the H&E side is exact: it maps back onto MSI pixel centres (multiples of 10 µm)
        back = np.linalg.solve(affine[:, :2], (fixed - affine[:, 2]).T).T
        pixels = back * 1000.0 / MSI_PIXEL_UM
        np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-6)
        residuals.append((moving - back) * 1000.0)  # the click noise, µm
    rms = float(np.sqrt(np.mean(np.concatenate(residuals) ** 2)))
    assert 1.0 < rms < 6.0  # click_noise_um 3, 12 clicks


def test_make_msi_demo_names_a_bad_key() -> None:
    with pytest.raises(ParameterError, match=r"demo_msi\.simulation"):
        make_msi_demo(SMALL_MSI | {"simulation": {"n_regions": 0}})
    with pytest.raises(ParameterError, match=r"demo_msi\.control_points"):
        make_msi_demo(SMALL_MSI | {"control_points": {"n_points": 2}})
