"""Thin node of the demo pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.demo.generate import DemoParams, plan_demo
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.params import parse_params


def make_demo(
    parameters: dict[str, Any],
) -> tuple[dict[str, Callable[[], SlideImage]], dict[str, sitk.Image], pd.DataFrame, pd.DataFrame]:
    """Plan the demo; slides are rendered lazily when Kedro saves each partition.

    Returns:
        ``(slides, mri_volumes, pairs, ground_truth)``.
    """
    plan = plan_demo(parse_params(DemoParams, parameters, "demo"))
    return plan.slides, plan.volumes, plan.pairs, plan.ground_truth
