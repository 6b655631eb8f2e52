"""Thin node of the demo pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.demo.control_points import simulate_control_points
from mrihisto_kedro.demo.generate import DemoParams, StreamedSlide, plan_demo
from mrihisto_kedro.demo.icbm152 import read_icbm152_pair
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.params import parse_params

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
