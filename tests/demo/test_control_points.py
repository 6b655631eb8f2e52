"""The one landmark-click simulator of both demos (MRI -> histology, MSI -> H&E)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrihisto_kedro.demo.control_points import (
    CONTROL_POINT_COLUMNS,
    ClickRegion,
    ClickSide,
    ControlPointSimulation,
    simulate_control_points,
)
from mrihisto_kedro.demo.virtual_histology import TissueMaps
from mrihisto_kedro.params import ParameterError, parse_params

TRUTH = np.array([[2.0, 0.1, 1.0], [-0.1, 2.0, -3.0]])  # moving mm -> fixed mm


def _maps() -> TissueMaps:
    """An MRI slice of 30 x 40 px (0.4 x 0.5 mm) whose tissue is a centred ellipse."""
    y, x = np.mgrid[0:30, 0:40]
    gm = (((y - 15) / 12.0) ** 2 + ((x - 20) / 16.0) ** 2 < 1).astype(np.float32) * 0.7
    return TissueMaps(gm=gm, wm=np.zeros_like(gm), spacing_mm=(0.4, 0.5))


def _mapped(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(truth(moving), fixed)`` in mm."""
    moving = table[["moving_x_mm", "moving_y_mm"]].to_numpy()
    return moving @ TRUTH[:, :2].T + TRUTH[:, 2], table[["fixed_x_mm", "fixed_y_mm"]].to_numpy()


def test_the_mri_demo_clicks_are_those_of_its_former_simulator() -> None:
    """Pinned: the MRI demo's call (tissue maps, defaults: noise on the histology) draws the
    clicks its own simulator drew before the MSI demo's was merged into it."""
    table = simulate_control_points(
        _maps(), TRUTH, np.random.default_rng(7), n_points=5, click_noise_mm=0.3
    )
    assert tuple(table.columns) == CONTROL_POINT_COLUMNS
    assert list(table["label"]) == ["L1", "L2", "L3", "L4", "L5"]
    np.testing.assert_allclose(table["moving_x_mm"], [11.2, 7.2, 2.0, 6.4, 12.0], atol=1e-12)
    np.testing.assert_allclose(table["moving_y_mm"], [3.5, 10.0, 9.0, 2.0, 11.5], atol=1e-12)
    np.testing.assert_allclose(
        table["fixed_x_mm"],
        [23.456856368859597, 16.2445490932728, 5.666048190756082, 13.931815098032839,
         26.326302512773324],
        rtol=0, atol=1e-12,
    )  # fmt: skip
    np.testing.assert_allclose(
        table["fixed_y_mm"],
        [3.1360312958143854, 16.729490504919465, 14.91595059808775, 0.13379345726209094,
         18.753505228077557],
        rtol=0, atol=1e-12,
    )  # fmt: skip


def test_points_are_spread_tissue_pixel_centres() -> None:
    maps = _maps()
    table = simulate_control_points(maps, TRUTH, np.random.default_rng(3), n_points=8)
    cols = table["moving_x_mm"].to_numpy() / 0.4
    rows = table["moving_y_mm"].to_numpy() / 0.5
    np.testing.assert_allclose(cols, np.round(cols), atol=1e-9)
    np.testing.assert_allclose(rows, np.round(rows), atol=1e-9)
    assert (maps.gm[np.round(rows).astype(int), np.round(cols).astype(int)] > 0.5).all()
    points = table[["moving_x_mm", "moving_y_mm"]].to_numpy()
    gaps = np.hypot(*(points[:, None] - points[None]).transpose(2, 0, 1))
    min_gap = min(30 * 0.5, 40 * 0.4) / (2 * np.sqrt(8))
    assert gaps[~np.eye(8, dtype=bool)].min() >= min_gap


@pytest.mark.parametrize("side", [ClickSide.FIXED, ClickSide.MOVING])
def test_the_noise_is_on_one_side_only(side: ClickSide) -> None:
    region = ClickRegion.whole_image((21, 21), (0.01, 0.01))
    noisy = simulate_control_points(
        region, TRUTH, np.random.default_rng(5), click_noise_mm=0.003, noisy_side=side
    )
    clean = simulate_control_points(
        region, TRUTH, np.random.default_rng(5), click_noise_mm=0.0, noisy_side=side
    )
    exact, noisy_side = ("moving", "fixed") if side is ClickSide.FIXED else ("fixed", "moving")
    for axis in ("x", "y"):  # the same points, noise added on one side only
        np.testing.assert_array_equal(noisy[f"{exact}_{axis}_mm"], clean[f"{exact}_{axis}_mm"])
    columns = [f"{noisy_side}_x_mm", f"{noisy_side}_y_mm"]
    delta = noisy[columns].to_numpy() - clean[columns].to_numpy()
    assert 0.0015 < float(np.sqrt(np.mean(delta**2))) < 0.005  # click_noise 3 µm
    mapped, fixed = _mapped(clean)
    np.testing.assert_allclose(mapped, fixed, atol=1e-12)  # without noise: the true affine


def test_impossible_requests_are_refused() -> None:
    region = ClickRegion.whole_image((20, 20), (0.1, 0.1))
    with pytest.raises(ValueError, match="n_points must be >= 3"):
        simulate_control_points(region, TRUTH, np.random.default_rng(0), n_points=2)
    few = np.zeros((20, 20), bool)
    few[5, 5:7] = True
    with pytest.raises(ValueError, match="2 clickable pixels cannot hold 3 landmarks"):
        simulate_control_points(
            ClickRegion(few, (0.1, 0.1)), TRUTH, np.random.default_rng(0), n_points=3
        )
    clustered = np.zeros((20, 20), bool)
    clustered[5:7, 5:7] = True  # 4 neighbours, but landmarks must lie 0.5 mm apart
    with pytest.raises(ValueError, match="could not spread 4 landmarks"):
        simulate_control_points(
            ClickRegion(clustered, (0.1, 0.1)), TRUTH, np.random.default_rng(0), n_points=4
        )
    with pytest.raises(ValueError, match="spacing_mm"):
        ClickRegion(few, (0.1, 0.0))


@pytest.mark.parametrize(
    ("values", "key", "reason"),
    [
        ({"n_points": 2}, "n_points", "must be >= 3, got 2"),
        ({"click_noise_um": -0.5}, "click_noise_um", "must be >= 0, got -0.5"),
        ({"click_noise_um": float("inf")}, "click_noise_um", "must be >= 0, got inf"),
        ({"seed": "zero"}, "seed", "must be an integer, got 'zero'"),
    ],
)
def test_click_simulation_parameters_are_checked(values: dict, key: str, reason: str) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_params(ControlPointSimulation, values, "demo_msi.control_points")
    assert caught.value.key == f"demo_msi.control_points.{key}"
    assert caught.value.reason == reason
    clicks = ControlPointSimulation(n_points=3, click_noise_um=0)  # type: ignore[arg-type]
    assert clicks.click_noise_um == 0.0 and isinstance(clicks.click_noise_um, float)
