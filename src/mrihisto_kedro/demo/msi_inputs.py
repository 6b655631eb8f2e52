"""The simulated MSI demo as the ``msi_data_engineering`` analysis reads it (seed 003).

:func:`simulate_msi_demo_inputs` runs :func:`~mrihisto_kedro.demo.msi.generate_msi_demo` in a
temporary folder and returns what the pipeline's raw MSI datasets store: the imzML/ibd bytes,
the H&E crops, the ground truth (which is also the demo's pairs manifest), the simulated peaks
and one table of simulated landmark clicks per specimen
(:func:`~mrihisto_kedro.demo.control_points.simulate_control_points`, noise on the MSI side).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image

from mrihisto_kedro.demo.control_points import (
    ClickRegion,
    ClickSide,
    ControlPointSimulation,
    simulate_control_points,
)
from mrihisto_kedro.demo.msi import MsiDemoParams, MsiDemoRegion, generate_msi_demo
from mrihisto_kedro.msi.imzml_files import ImzMLFiles
from mrihisto_kedro.params import Params

__all__ = [
    "MsiDemoInputs",
    "MsiDemoNodeParams",
    "region_control_points",
    "simulate_msi_demo_inputs",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MsiDemoNodeParams(Params):
    """``demo_msi``: the simulated MSI/H&E study and its landmark clicks.

    Attributes:
        simulation: the simulated study (:class:`~mrihisto_kedro.demo.msi.MsiDemoParams`).
        control_points: simulated landmark clicks
            (:class:`~mrihisto_kedro.demo.control_points.ControlPointSimulation`).
    """

    simulation: MsiDemoParams = field(default_factory=MsiDemoParams)
    control_points: ControlPointSimulation = field(default_factory=ControlPointSimulation)


@dataclass(frozen=True)
class MsiDemoInputs:
    """The simulated demo, keyed by pair id (= the region id, ``msi_region_XX``).

    Attributes:
        imzml: ``{pair_id: imzML/ibd bytes}``.
        histology: ``{pair_id: RGB H&E crop}``.
        ground_truth: the demo's ground truth, also its pairs manifest (``pair_id, specimen_id,
            mpp_x, mpp_y, msi_pixel_size_um``, the MSI mm -> H&E mm affine ``a11 .. ty``, ...).
        peaks: the simulated peaks (one row per peak).
        control_points: ``{pair_id: landmark table}`` in mm (``fixed`` = H&E, ``moving`` = MSI).
    """

    imzml: dict[str, ImzMLFiles]
    histology: dict[str, Image.Image]
    ground_truth: pd.DataFrame
    peaks: pd.DataFrame
    control_points: dict[str, pd.DataFrame]


def region_control_points(
    region: MsiDemoRegion, clicks: ControlPointSimulation, index: int
) -> pd.DataFrame:
    """Simulated landmark clicks on one specimen: anywhere on its MSI, noise on the MSI side.

    Args:
        region: the simulated specimen (its MSI shape, pixel size and true affine in mm).
        clicks: number of points, click noise (µm) and seed.
        index: the specimen's position in the demo: it draws from
            ``default_rng([clicks.seed, index])``.

    Returns:
        The landmark table in mm (see
        :func:`~mrihisto_kedro.demo.control_points.simulate_control_points`).
    """
    size_mm = region.msi_pixel_size_um / 1000.0
    return simulate_control_points(
        ClickRegion.whole_image(region.msi_shape, (size_mm, size_mm)),
        region.affine_mm,
        np.random.default_rng([clicks.seed, index]),
        n_points=clicks.n_points,
        click_noise_mm=clicks.click_noise_um / 1000.0,
        noisy_side=ClickSide.MOVING,
    )


def simulate_msi_demo_inputs(
    simulation: MsiDemoParams, clicks: ControlPointSimulation
) -> MsiDemoInputs:
    """Simulate the paired MSI/H&E demo (a known MSI -> H&E affine per specimen) in memory.

    Args:
        simulation: :class:`~mrihisto_kedro.demo.msi.MsiDemoParams`.
        clicks: the simulated landmark clicks.

    Returns:
        :class:`MsiDemoInputs` (the files are written to a temporary folder, read back and
        removed).
    """
    with tempfile.TemporaryDirectory(prefix="msi_demo_") as tmp:
        demo = generate_msi_demo(tmp, simulation)
        imzml = {r.region_id: ImzMLFiles.read(r.imzml_path) for r in demo.regions}
    first = demo.regions[0]
    logger.info(
        "MSI demo: %d specimens of %s MSI pixels (%g µm), H&E crops %s px (%g µm/px)",
        len(demo.regions),
        first.msi_shape,
        simulation.msi_pixel_size_um,
        first.histology.shape[:2],
        first.mpp[0],
    )
    return MsiDemoInputs(
        imzml=imzml,
        histology={r.region_id: Image.fromarray(r.histology) for r in demo.regions},
        ground_truth=demo.ground_truth,
        peaks=demo.peak_table,
        control_points={
            r.region_id: region_control_points(r, clicks, k) for k, r in enumerate(demo.regions)
        },
    )
