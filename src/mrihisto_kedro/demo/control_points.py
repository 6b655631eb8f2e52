"""Simulated landmark clicks for the demos' control-point registration mode: one simulator.

Both demos can be registered from landmark pairs as a user would click them: the MRI demo (the
MRI slice is the moving image, the virtual GFAP slide the fixed one) and the MSI demo of seed 003
(the MSI is moving, the H&E fixed). :func:`simulate_control_points` serves both: points spread
over a :class:`ClickRegion` of the moving image, mapped to the fixed image by the true affine,
with Gaussian click noise on the side that is hard to click (the MRI demo: the histology; the MSI
demo: the coarse MSI, whose H&E side is exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import numpy as np
import pandas as pd

from mrihisto_kedro.demo.virtual_histology import TissueMaps
from mrihisto_kedro.params import Params, Range

__all__ = [
    "CONTROL_POINT_COLUMNS",
    "ClickRegion",
    "ClickSide",
    "ControlPointSimulation",
    "simulate_control_points",
]

CONTROL_POINT_COLUMNS: tuple[str, ...] = (
    "label",
    "fixed_x_mm",
    "fixed_y_mm",
    "moving_x_mm",
    "moving_y_mm",
)
"""Columns of a simulated landmark file (``fixed`` = histology mm, ``moving`` = MRI/MSI mm)."""


class ClickSide(StrEnum):
    """The image whose landmark positions carry the click noise."""

    FIXED = "fixed"
    MOVING = "moving"


@dataclass(frozen=True)
class ClickRegion:
    """Where landmarks may be clicked on the moving image.

    Attributes:
        mask: bool ``(rows, cols)``: pixels of the moving image a landmark may lie on.
        spacing_mm: ``(x, y)`` pixel size of the moving image in mm; pixel ``(col, row)`` lies
            at ``(col * x, row * y)`` mm.
    """

    mask: np.ndarray
    spacing_mm: tuple[float, float]

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
        if len(self.spacing_mm) != 2 or min(self.spacing_mm) <= 0:
            raise ValueError(f"spacing_mm must be two positive values, got {self.spacing_mm}")
        object.__setattr__(self, "mask", mask)

    @classmethod
    def whole_image(cls, shape: tuple[int, int], spacing_mm: tuple[float, float]) -> ClickRegion:
        """Every pixel of a ``(rows, cols)`` image (the MSI demo: landmarks anywhere on the MSI)."""
        return cls(np.ones(shape, dtype=bool), spacing_mm)

    @classmethod
    def tissue(cls, maps: TissueMaps) -> ClickRegion:
        """The tissue of an MRI slice (``gm + wm > 0.5``), at the maps' spacing."""
        return cls((maps.gm + maps.wm) > 0.5, maps.spacing_mm)


@dataclass(frozen=True)
class ControlPointSimulation(Params):
    """Simulated landmark clicks of the MSI demo (``demo_msi.control_points``).

    Attributes:
        n_points: landmark pairs per specimen (>= 3).
        click_noise_um: standard deviation of the click error on the MSI side, µm (clicking on a
            coarse MSI image is the imprecise part; the H&E side is exact).
        seed: seed of the clicks (specimen ``k`` uses ``default_rng([seed, k])``).
    """

    n_points: Annotated[int, Range(ge=3)] = 8
    click_noise_um: Annotated[float, Range(ge=0.0)] = 3.0
    seed: int = 0


def _spread(region: ClickRegion, n_points: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_points, 2)`` moving mm: spread pixel centres of ``region`` (see
    :func:`simulate_control_points`)."""
    rows, cols = np.nonzero(region.mask)
    if len(rows) < n_points:
        raise ValueError(f"{len(rows)} clickable pixels cannot hold {n_points} landmarks")
    order = rng.permutation(len(rows))
    sx, sy = region.spacing_mm
    extent = min(region.mask.shape[1] * sx, region.mask.shape[0] * sy)
    min_gap = extent / (2.0 * np.sqrt(n_points))
    chosen: list[tuple[float, float]] = []
    for i in order:
        p = (cols[i] * sx, rows[i] * sy)
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= min_gap**2 for q in chosen):
            chosen.append(p)
            if len(chosen) == n_points:
                return np.asarray(chosen, dtype=np.float64)
    raise ValueError(
        f"could not spread {n_points} landmarks at least {min_gap:.3g} mm apart over the "
        f"{region.mask.shape[0]}x{region.mask.shape[1]} px region"
    )


def simulate_control_points(
    region: ClickRegion | TissueMaps,
    truth_moving_to_fixed: np.ndarray,
    rng: np.random.Generator,
    *,
    n_points: int = 8,
    click_noise_mm: float = 0.3,
    noisy_side: ClickSide | str = ClickSide.FIXED,
) -> pd.DataFrame:
    """Landmark pairs as a user would click them on the moving and the fixed image.

    Points are pixel centres of ``region`` taken in random order, each kept when it lies at
    least ``extent / (2 sqrt(n_points))`` from those kept before (``extent``: the shorter side
    of the moving image, mm); they are mapped to the fixed image by the true affine and
    displaced on ``noisy_side`` by isotropic Gaussian click noise. The random stream is used in
    that order (a permutation of the region's pixels, then the noise), so a seed picks the same
    points whatever the side or the noise level.

    Args:
        region: where to click on the moving image; :class:`TissueMaps` of an MRI slice stand
            for :meth:`ClickRegion.tissue` of them.
        truth_moving_to_fixed: ``[[a11, a12, tx], [a21, a22, ty]]`` moving mm -> fixed mm (the
            MRI demo: MRI -> histology; the MSI demo: MSI -> H&E).
        rng: random source.
        n_points: number of landmark pairs (>= 3).
        click_noise_mm: standard deviation of the click error, mm.
        noisy_side: :class:`ClickSide` whose positions carry the noise.

    Returns:
        Table with columns :data:`CONTROL_POINT_COLUMNS` (mm), one row per landmark.

    Raises:
        ValueError: fewer than 3 points asked, or the region cannot hold them spread out.
    """
    if n_points < 3:
        raise ValueError(f"n_points must be >= 3, got {n_points}")
    if isinstance(region, TissueMaps):
        region = ClickRegion.tissue(region)
    moving = _spread(region, n_points, rng)
    affine = np.asarray(truth_moving_to_fixed, dtype=np.float64)
    fixed = moving @ affine[:, :2].T + affine[:, 2]
    noise = rng.normal(0.0, click_noise_mm, size=moving.shape)
    if ClickSide(noisy_side) is ClickSide.FIXED:
        fixed = fixed + noise
    else:
        moving = moving + noise
    return pd.DataFrame(
        {
            "label": [f"L{k + 1}" for k in range(len(moving))],
            "fixed_x_mm": fixed[:, 0],
            "fixed_y_mm": fixed[:, 1],
            "moving_x_mm": moving[:, 0],
            "moving_y_mm": moving[:, 1],
        }
    )
