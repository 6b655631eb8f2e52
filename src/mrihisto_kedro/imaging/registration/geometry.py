"""Checks of the physical geometry registration works in: spacings, origins and point arrays.

Spacings and origins are ``(x, y)`` millimetres (``x`` along columns, ``y`` along rows); point
arrays have shape ``(N, 2)`` of ``(x, y)`` mm. Each check returns the value in canonical form
(floats, float64 array) or raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["check_origin", "check_points", "check_spacing"]


def check_spacing(spacing_mm: Sequence[float], name: str) -> tuple[float, float]:
    """``spacing_mm`` as two positive finite floats ``(x, y)`` in mm (``name`` in the error)."""
    values = tuple(float(s) for s in spacing_mm)
    if len(values) != 2 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"{name} must be two positive finite numbers (mm), got {spacing_mm}")
    return values[0], values[1]


def check_origin(origin_mm: Sequence[float], name: str) -> tuple[float, float]:
    """``origin_mm`` as two finite floats ``(x, y)`` in mm (``name`` in the error)."""
    values = tuple(float(s) for s in origin_mm)
    if len(values) != 2 or not all(math.isfinite(s) for s in values):
        raise ValueError(f"{name} must be two finite numbers (mm), got {origin_mm}")
    return values[0], values[1]


def check_points(points: np.ndarray, name: str) -> np.ndarray:
    """``points`` as a finite float64 ``(N, 2)`` array of ``(x, y)`` mm (``name`` in the error)."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has non-finite coordinates")
    return array
