"""Landmark (control point) registration: reading landmark CSVs and the least-squares affine.

Paper 003's mode: a user clicks the same landmarks in both images; the affine is their
least-squares fit (:func:`affine_from_control_points`), with per-point residuals.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .geometry import check_origin, check_points, check_spacing

__all__ = [
    "ControlPointError",
    "ControlPoints",
    "affine_from_control_points",
    "read_control_points",
]


class ControlPointError(ValueError):
    """Control points are unusable (too few, collinear, non-finite) or a CSV file is malformed."""


def affine_from_control_points(
    moving_points: np.ndarray, fixed_points: np.ndarray
) -> tuple[sitk.AffineTransform, np.ndarray]:
    """Least-squares affine from corresponding landmarks.

    Solves ``moving ~ A fixed + t`` (six parameters) in the least-squares sense, on centred
    coordinates for numerical stability; exact for three non-collinear pairs.

    Args:
        moving_points: ``(N, 2)`` landmark positions in the moving (MRI) image, mm.
        fixed_points: ``(N, 2)`` the same landmarks in the fixed (histology) image, mm.

    Returns:
        ``(transform, residuals_mm)``: the fixed->moving ``AffineTransform`` (centre at the
        fixed points' centroid) and the ``(N,)`` distances ``|T(fixed_i) - moving_i|`` in mm.

    Raises:
        ControlPointError: shapes differ, fewer than three pairs, non-finite coordinates, or the
            fixed or moving points are (nearly) collinear.
    """
    try:
        moving = check_points(moving_points, "moving_points")
        fixed = check_points(fixed_points, "fixed_points")
    except ValueError as exc:
        raise ControlPointError(str(exc)) from exc
    if moving.shape != fixed.shape:
        raise ControlPointError(
            f"moving_points {moving.shape} and fixed_points {fixed.shape} differ in length"
        )
    n = moving.shape[0]
    if n < 3:
        raise ControlPointError(f"an affine needs at least 3 control point pairs, got {n}")
    for name, pts in (("fixed", fixed), ("moving", moving)):
        centred = pts - pts.mean(axis=0)
        singular = np.linalg.svd(centred, compute_uv=False)
        if singular[0] == 0 or singular[1] <= 1e-9 * singular[0]:
            raise ControlPointError(
                f"the {n} {name} control points are collinear (or coincide): an affine "
                "transform is undetermined; add points off that line"
            )
    f_mean = fixed.mean(axis=0)
    m_mean = moving.mean(axis=0)
    design = fixed - f_mean
    solution, *_ = np.linalg.lstsq(design, moving - m_mean, rcond=None)
    linear = solution.T  # moving - m_mean = A (fixed - f_mean)
    tx = sitk.AffineTransform(2)
    tx.SetCenter(tuple(float(v) for v in f_mean))
    tx.SetMatrix(tuple(float(v) for v in linear.ravel()))
    tx.SetTranslation(tuple(float(v) for v in m_mean - f_mean))
    predicted = design @ linear.T + m_mean
    residuals = np.sqrt(np.sum((predicted - moving) ** 2, axis=1))
    return tx, residuals


@dataclass(frozen=True)
class ControlPoints:
    """Landmark pairs read from a CSV file, in physical millimetres.

    Attributes:
        fixed_mm: ``(N, 2)`` positions in the fixed (histology) image, mm.
        moving_mm: ``(N, 2)`` positions in the moving (MRI) image, mm.
        labels: ``N`` point names (the ``label`` column, else ``"1" .. "N"``).
        source: the file they were read from.
    """

    fixed_mm: np.ndarray
    moving_mm: np.ndarray
    labels: tuple[str, ...]
    source: str


#: coordinate units of the columns; mm per unit of the physical ones (``px`` needs a spacing)
_UNITS = ("mm", "um", "px")
_UNIT_SCALE_TO_MM = {"mm": 1.0, "um": 1e-3}


def _coordinate_columns(header: list[str], side: str, path: Path) -> tuple[str, str, str]:
    """The ``x``/``y`` columns of one side and their unit (mm, um or px)."""
    found = [u for u in _UNITS if {f"{side}_x_{u}", f"{side}_y_{u}"} <= set(header)]
    if not found:
        raise ControlPointError(
            f"{path}: no {side} coordinate columns; expected {side}_x_mm/{side}_y_mm, "
            f"{side}_x_um/{side}_y_um or {side}_x_px/{side}_y_px; header is {header}"
        )
    if len(found) > 1:
        raise ControlPointError(
            f"{path}: {side} coordinates are given in several units ({', '.join(found)}); "
            "keep one pair of columns"
        )
    unit = found[0]
    return f"{side}_x_{unit}", f"{side}_y_{unit}", unit


def _number(text: str, column: str, where: str) -> float:
    """The finite float in a CSV cell; ``where`` (file and line) and the column in errors."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        raise ControlPointError(
            f"{where}: column {column!r} value {text!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise ControlPointError(f"{where}: column {column!r} value {text!r} is not finite")
    return value


def _to_mm(
    values: list[tuple[float, float]],
    unit: str,
    geometry: tuple[Sequence[float] | None, Sequence[float]],
    path: Path,
    side: str,
) -> np.ndarray:
    """``(N, 2)`` coordinates of one side in mm, from ``unit`` (``mm``, ``um`` or ``px``).

    Args:
        values: the side's ``(x, y)`` per row, in ``unit``.
        unit: the suffix of its columns.
        geometry: ``(spacing_mm, origin_mm)`` of the side's image, for ``px`` columns.
        path: the file, named in errors.
        side: ``fixed`` or ``moving``, named in errors.
    """
    array = np.asarray(values, dtype=np.float64)
    if unit != "px":
        return array * _UNIT_SCALE_TO_MM[unit]
    spacing_mm, origin_mm = geometry
    if spacing_mm is None:
        raise ControlPointError(
            f"{path}: {side} coordinates are in pixels (_px columns); pass "
            f"{side}_spacing_mm to convert them to mm"
        )
    spacing = np.asarray(check_spacing(spacing_mm, f"{side}_spacing_mm"))
    origin = np.asarray(check_origin(origin_mm, f"{side}_origin_mm"))
    return origin + array * spacing


def read_control_points(
    path: str | os.PathLike[str],
    *,
    fixed_spacing_mm: Sequence[float] | None = None,
    moving_spacing_mm: Sequence[float] | None = None,
    fixed_origin_mm: Sequence[float] = (0.0, 0.0),
    moving_origin_mm: Sequence[float] = (0.0, 0.0),
) -> ControlPoints:
    """Read landmark pairs from a CSV file.

    The file has a header row and one row per landmark. For each side (``fixed`` = histology,
    ``moving`` = MRI) exactly one pair of coordinate columns, whose suffix is its unit:

    * ``<side>_x_mm, <side>_y_mm``: physical millimetres;
    * ``<side>_x_um, <side>_y_um``: physical micrometres;
    * ``<side>_x_px, <side>_y_px``: 0-based pixel indices (column, row; fractional allowed; the
      centre of pixel ``(0, 0)`` is ``(0, 0)``), converted with
      ``origin_mm + index * spacing_mm``; then ``<side>_spacing_mm`` must be passed.

    The two sides may use different units. An optional ``label`` column names the points;
    other columns are ignored. Empty lines are skipped.

    Args:
        path: the CSV file (UTF-8, optional BOM, comma separated).
        fixed_spacing_mm: ``(x, y)`` pixel size of the fixed image for ``_px`` columns.
        moving_spacing_mm: ``(x, y)`` pixel size of the moving image for ``_px`` columns.
        fixed_origin_mm: physical position of fixed pixel ``(0, 0)`` for ``_px`` columns.
        moving_origin_mm: physical position of moving pixel ``(0, 0)`` for ``_px`` columns.

    Returns:
        :class:`ControlPoints` in mm.

    Raises:
        ControlPointError: missing file or columns, a non-numeric/non-finite value (the message
            names the file, the line and the column), pixel columns without a spacing, or no
            data rows.
    """
    p = Path(path)
    if not p.is_file():
        raise ControlPointError(f"{p}: control point file does not exist")
    with p.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            raw_header = next(reader)
        except StopIteration:
            raise ControlPointError(f"{p}: file is empty (expected a header row)") from None
        header = [h.strip() for h in raw_header]
        columns = {}
        for side in ("fixed", "moving"):
            columns[side] = _coordinate_columns(header, side, p)
        position = {name: i for i, name in enumerate(header)}
        label_index = position.get("label")
        values: dict[str, list[tuple[float, float]]] = {"fixed": [], "moving": []}
        labels: list[str] = []
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ControlPointError(
                    f"{p}, line {line}: {len(row)} fields but the header has {len(header)}"
                )
            for side in ("fixed", "moving"):
                x_col, y_col, _ = columns[side]
                x, y = (_number(row[position[c]], c, f"{p}, line {line}") for c in (x_col, y_col))
                values[side].append((x, y))
            label = row[label_index].strip() if label_index is not None else ""
            labels.append(label or str(len(labels) + 1))
    if not labels:
        raise ControlPointError(f"{p}: no control point rows after the header")
    geometry = {
        "fixed": (fixed_spacing_mm, fixed_origin_mm),
        "moving": (moving_spacing_mm, moving_origin_mm),
    }
    fixed_mm, moving_mm = (
        _to_mm(values[side], columns[side][2], geometry[side], p, side)
        for side in ("fixed", "moving")
    )
    return ControlPoints(
        fixed_mm=fixed_mm, moving_mm=moving_mm, labels=tuple(labels), source=str(p)
    )
