"""How good a registration is: mask overlap (Dice) and target registration error (TRE).

TRE compares an estimated and a true fixed->moving transform on points of the fixed image
(:func:`grid_points_in_mask`), in mm of the moving image.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from .geometry import check_points
from .transforms import apply_transform

__all__ = ["dice", "grid_points_in_mask", "target_registration_error"]


def target_registration_error(
    estimated: sitk.Transform, true: sitk.Transform, points_fixed_mm: np.ndarray
) -> np.ndarray:
    """Distance between where an estimated and the true transform send the same fixed points.

    Both transforms map fixed (histology) mm to moving (MRI) mm, so the error is measured in the
    moving image's physical space: divide by the MRI voxel size to report it in MRI voxels,
    multiply by 1000 for micrometres.

    Args:
        estimated: fixed->moving transform from the registration.
        true: ground-truth fixed->moving transform.
        points_fixed_mm: ``(N, 2)`` points in the fixed image (e.g. :func:`grid_points_in_mask`).

    Returns:
        float64 ``(N,)`` Euclidean errors in mm.
    """
    points = check_points(points_fixed_mm, "points_fixed_mm")
    diff = apply_transform(estimated, points) - apply_transform(true, points)
    return np.sqrt(np.sum(diff * diff, axis=1))


def grid_points_in_mask(mask: sitk.Image, step_mm: float) -> np.ndarray:
    """Physical points of a regular grid (every ``step_mm``) whose pixels lie inside a mask.

    Args:
        mask: 2-D scalar ``SimpleITK`` image; non-zero pixels are inside. Its origin, spacing
            and direction give the physical coordinates.
        step_mm: grid step in mm (rounded to a whole number of pixels per axis, at least one).

    Returns:
        ``(N, 2)`` float64 points ``(x, y)`` in mm, the physical centres of the selected pixels,
        in row-major order. Empty ``(0, 2)`` when the mask is empty.
    """
    if mask.GetDimension() != 2 or mask.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("mask must be a 2-D scalar image")
    if not (math.isfinite(step_mm) and step_mm > 0):
        raise ValueError(f"step_mm must be a positive number, got {step_mm}")
    spacing = np.asarray(mask.GetSpacing(), dtype=np.float64)
    step = np.maximum(1, np.round(step_mm / spacing)).astype(int)
    inside = sitk.GetArrayViewFromImage(mask) != 0
    sub = inside[:: step[1], :: step[0]]
    rows, cols = np.nonzero(sub)
    index = np.stack([cols * step[0], rows * step[1]], axis=1).astype(np.float64)
    direction = np.asarray(mask.GetDirection(), dtype=np.float64).reshape(2, 2)
    origin = np.asarray(mask.GetOrigin(), dtype=np.float64)
    return origin + (index * spacing) @ direction.T


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap ``2 |A & B| / (|A| + |B|)`` of two boolean masks.

    Args:
        a: boolean-like array of any shape (non-zero = inside).
        b: array of the same shape.

    Returns:
        Dice coefficient in ``[0, 1]``.

    Raises:
        ValueError: shapes differ or both masks are empty (Dice undefined).
    """
    a_arr = np.asarray(a).astype(bool, copy=False)
    b_arr = np.asarray(b).astype(bool, copy=False)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"masks must have the same shape, got {a_arr.shape} and {b_arr.shape}")
    total = int(np.count_nonzero(a_arr)) + int(np.count_nonzero(b_arr))
    if total == 0:
        raise ValueError("both masks are empty: Dice is undefined")
    return 2.0 * int(np.count_nonzero(a_arr & b_arr)) / total
