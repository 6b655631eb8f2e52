"""Scores of an MSI registration: TRE against a known affine, and mutual information (no Kedro).

:func:`registration_tre_um` compares a registration with a known MSI -> histology affine (the
demo's ground truth) over the registered footprint; :func:`registered_mutual_information` is the
registration report's before/after score; :func:`ground_truth_affines` reads the known affines
from a ground-truth table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.imaging.registration import (
    TissueChannel,
    grid_points_in_mask,
    resample_moving,
    target_registration_error,
    tissue_channel,
    transform_from_moving_to_fixed_affine,
)
from mrihisto_kedro.metrics.mutual_information import mutual_information
from mrihisto_kedro.msi.geometry import channel_image, image_to_array
from mrihisto_kedro.msi.registration import msi_coverage

__all__ = ["ground_truth_affines", "registered_mutual_information", "registration_tre_um"]


def ground_truth_affines(ground_truth: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """The known MSI mm -> histology mm affines of a ground-truth table, by ``pair_id``.

    Args:
        ground_truth: one row per pair with ``pair_id, a11, a12, tx, a21, a22, ty`` (the demo's
            ``ground_truth.csv``); ``None`` or empty: no ground truth.

    Returns:
        ``{pair_id: float64 (2, 3)}`` ``[[a11, a12, tx], [a21, a22, ty]]``; empty without a table.
    """
    if ground_truth is None or ground_truth.empty:
        return {}
    return {
        str(row.pair_id): np.array([[row.a11, row.a12, row.tx], [row.a21, row.a22, row.ty]])
        for row in ground_truth.itertuples()
    }


def registration_tre_um(
    transform: sitk.Transform,
    truth_msi_to_histology: np.ndarray,
    coverage: sitk.Image,
    step_um: float,
) -> np.ndarray:
    """Target registration error against a known affine, in µm, over the registered footprint.

    Args:
        transform: histology mm -> MSI mm (a registration result).
        truth_msi_to_histology: ``(2, 3)`` known MSI mm -> histology mm affine (the demo's).
        coverage: :func:`msi_coverage` (points are taken where it is 1).
        step_um: grid step of the points, µm.

    Returns:
        float64 ``(N,)`` distances in MSI space, µm; empty if the coverage is empty.
    """
    true = transform_from_moving_to_fixed_affine(np.asarray(truth_msi_to_histology, dtype=float))
    points = grid_points_in_mask(coverage, step_um / 1000.0)
    if points.shape[0] == 0:
        return np.zeros(0)
    return target_registration_error(transform, true, points) * 1000.0


def registered_mutual_information(
    histology: sitk.Image,
    canvas: sitk.Image,
    footprint: sitk.Image,
    transform: sitk.Transform,
    channel: TissueChannel,
    moving_channel: int | None,
    bins: int = 20,
) -> float:
    """MI (nats) of a histology tissue channel and an MSI channel resampled by ``transform``.

    Measured on the grid pixels inside the resampled footprint: the registration report's
    before/after score.
    """
    fixed = tissue_channel(image_to_array(histology), channel)
    moving = sitk.GetArrayFromImage(
        resample_moving(channel_image(canvas, moving_channel), histology, transform)
    )
    inside = sitk.GetArrayFromImage(msi_coverage(footprint, histology, transform)) > 0
    if inside.sum() < 2:
        return 0.0
    return mutual_information(fixed, moving, bins=bins, mask=inside)
