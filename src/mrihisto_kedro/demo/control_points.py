"""Simulated landmark clicks for the demo's control-point registration mode (seed 003)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mrihisto_kedro.demo.virtual_histology import TissueMaps

CONTROL_POINT_COLUMNS = ("label", "fixed_x_mm", "fixed_y_mm", "moving_x_mm", "moving_y_mm")


def simulate_control_points(
    maps: TissueMaps,
    ground_truth_2x3: np.ndarray,
    rng: np.random.Generator,
    *,
    n_points: int = 8,
    click_noise_mm: float = 0.3,
) -> pd.DataFrame:
    """Landmark pairs as a user would click them: MRI tissue points and their histology match.

    Points are drawn spread over the MRI slice's tissue (one per cell of a coarse grid), mapped
    to the histology by the true affine (MRI mm -> histology mm) and displaced on the histology
    side by isotropic Gaussian click noise.

    Args:
        maps: tissue maps of the MRI slice (``gm + wm`` > 0.5 is tissue).
        ground_truth_2x3: ``[[a11, a12, tx], [a21, a22, ty]]`` MRI mm -> histology mm.
        rng: random source.
        n_points: number of landmark pairs (>= 3).
        click_noise_mm: standard deviation of the click error on the histology, mm.

    Returns:
        Table with columns :data:`CONTROL_POINT_COLUMNS` (mm), one row per landmark.
    """
    if n_points < 3:
        raise ValueError(f"n_points must be >= 3, got {n_points}")
    tissue = (maps.gm + maps.wm) > 0.5
    rows, cols = np.nonzero(tissue)
    if len(rows) < n_points:
        raise ValueError("too little tissue to place the landmarks")
    # spread: pick from a shuffled order, keeping points at least a few mm apart
    order = rng.permutation(len(rows))
    sx, sy = maps.spacing_mm
    extent = min(tissue.shape[1] * sx, tissue.shape[0] * sy)
    min_gap = extent / (2.0 * np.sqrt(n_points))
    chosen: list[tuple[float, float]] = []
    for i in order:
        p = (cols[i] * sx, rows[i] * sy)
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= min_gap**2 for q in chosen):
            chosen.append(p)
            if len(chosen) == n_points:
                break
    moving = np.asarray(chosen, dtype=np.float64)
    affine = np.asarray(ground_truth_2x3, dtype=np.float64)
    fixed = moving @ affine[:, :2].T + affine[:, 2]
    fixed = fixed + rng.normal(0.0, click_noise_mm, size=fixed.shape)
    return pd.DataFrame(
        {
            "label": [f"L{k + 1}" for k in range(len(moving))],
            "fixed_x_mm": fixed[:, 0],
            "fixed_y_mm": fixed[:, 1],
            "moving_x_mm": moving[:, 0],
            "moving_y_mm": moving[:, 1],
        }
    )
