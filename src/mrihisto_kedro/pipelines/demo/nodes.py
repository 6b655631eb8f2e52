"""Thin nodes of the demo pipeline: the MRI/histology demo, the ICBM152 T1/T2 pair and the
MSI/H&E demo (seed 003)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
from PIL import Image

from mrihisto_kedro.demo.control_points import simulate_control_points
from mrihisto_kedro.demo.generate import DemoParams, StreamedSlide, plan_demo
from mrihisto_kedro.demo.icbm152 import read_icbm152_pair
from mrihisto_kedro.demo.msi_inputs import MsiDemoNodeParams, simulate_msi_demo_inputs
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.msi.imzml_files import ImzMLFiles
from mrihisto_kedro.params import parse_params

__all__ = ["MsiDemoNodeParams", "make_demo", "make_msi_demo", "place_icbm152_pair"]

#: offset of the random streams of the simulated landmark clicks (independent of the slides')
_CLICK_STREAM = 10_000


def make_demo(
    parameters: dict[str, Any],
) -> tuple[
    dict[str, Callable[[], SlideImage | StreamedSlide]],
    dict[str, sitk.Image],
    pd.DataFrame,
    pd.DataFrame,
    dict[str, pd.DataFrame],
]:
    """Plan the demo; slides are rendered lazily when Kedro saves each partition.

    Returns:
        ``(slides, mri_volumes, pairs, ground_truth, control_points)``; ``control_points`` maps
        each pair id to simulated landmark clicks (mm) for the control-point registration mode.
    """
    params = parse_params(DemoParams, parameters, "demo")
    plan = plan_demo(params)
    control_points: dict[str, pd.DataFrame] = {}
    for k, row in enumerate(plan.ground_truth.to_dict("records")):
        affine = np.array(
            [[row["a11"], row["a12"], row["tx"]], [row["a21"], row["a22"], row["ty"]]]
        )
        rng = np.random.default_rng([params.seed, _CLICK_STREAM + k])
        pair_id = str(row["pair_id"])
        control_points[pair_id] = simulate_control_points(plan.tissue_maps[pair_id], affine, rng)
    return plan.slides, plan.volumes, plan.pairs, plan.ground_truth, control_points


def place_icbm152_pair() -> tuple[sitk.Image, sitk.Image, str]:
    """The real, voxel-aligned ICBM152 2009c T1/T2 pair (2 mm) shipped with the package.

    Returns:
        ``(t1, t2, copying)``: the volumes and their licence notice, which travels with them.
    """
    return read_icbm152_pair()


def make_msi_demo(
    parameters: dict[str, Any],
) -> tuple[
    dict[str, ImzMLFiles],
    dict[str, Image.Image],
    pd.DataFrame,
    pd.DataFrame,
    dict[str, pd.DataFrame],
]:
    """Simulate the paired MSI/H&E demo (known MSI -> H&E affine per specimen).

    Returns:
        ``(imzml, histology, ground_truth, peaks, control_points)``: see
        :class:`~mrihisto_kedro.demo.msi_inputs.MsiDemoInputs`.
    """
    p = parse_params(MsiDemoNodeParams, parameters, "demo_msi")
    demo = simulate_msi_demo_inputs(p.simulation, p.control_points)
    return demo.imzml, demo.histology, demo.ground_truth, demo.peaks, demo.control_points
