"""Affine multimodal registration of an MRI slice (moving) to a downsampled slide (fixed).

Pure functions on ``SimpleITK`` images and NumPy arrays (no Kedro imports); the ``registration``
pipeline's nodes call them.

Geometry and conventions
------------------------
* The **moving** image is a 2-D MRI slice as produced by :mod:`mrihisto_kedro.imaging.mri`:
  float32 in ``[0, 1]``, spacing ``(col_mm, row_mm)``, origin ``(0, 0)``, identity direction.
* The **fixed** image is one channel of a downsampled histology slide
  (:func:`tissue_channel`, :func:`fixed_image_from_rgb`): pixel size ``mpp * factor`` µm, i.e. a
  spacing of ``mpp * factor / 1000`` mm. Level-0 pixel ``(c, r)`` of the slide lies at
  ``(c * mpp_x / 1000, r * mpp_y / 1000)`` mm, so the centre of downsampled pixel ``(0, 0)`` (the
  mean of ``factor x factor`` level-0 pixels) lies at ``(factor - 1) / 2`` level-0 pixels:
  :func:`downsampled_origin_mm` gives that origin.
* Points are physical ``(x, y)`` millimetres (``x`` along columns, ``y`` along rows), arrays of
  points have shape ``(N, 2)``.
* A registration transform maps **fixed (histology) points to moving (MRI) points**, as in
  ITK: ``moving_point = T(fixed_point)``. Resampling the MRI onto the histology grid uses ``T``
  directly (:func:`resample_moving`). A ground truth given the other way round (MRI mm ->
  histology mm, as the built-in demo writes it) is turned into a fixed->moving transform by
  :func:`transform_from_moving_to_fixed_affine`.
* Affine transforms are handled as ``sitk.AffineTransform`` objects (centre, matrix,
  translation; ``T(p) = A (p - c) + t + c``) or as homogeneous ``(3, 3)`` matrices
  (:func:`affine_to_matrix`, :func:`matrix_to_affine`).

Intensity-based registration (:func:`register_affine`)
-------------------------------------------------------
Mattes mutual information, a multi-resolution pyramid, a centred initialisation (image moments or
geometric centres), then one optimisation per stage (by default a similarity stage and a full
affine stage, the order of the reproduced paper's MATLAB recipe). Optimizer scales are estimated
from physical shift (``SetOptimizerScalesFromPhysicalShift``). The fixed image is reduced
(block mean) before optimisation so that gigapixel-sized slides register in seconds. A failed
optimisation raises :class:`RegistrationError`; it never returns an identity transform silently.

Control points (:func:`affine_from_control_points`, :func:`read_control_points`)
--------------------------------------------------------------------------------
Least-squares affine from clicked landmarks (paper 003), with per-point residuals.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from skimage.color import hed_from_rgb

from mrihisto_kedro.imaging.downsample import downsampled_origin_mm
from mrihisto_kedro.metrics.mutual_information import mutual_information

__all__ = [
    "ControlPointError",
    "ControlPoints",
    "Initialization",
    "Interpolator",
    "LearningRateEstimation",
    "OptimizerKind",
    "RegistrationError",
    "RegistrationParams",
    "RegistrationResult",
    "SamplingStrategy",
    "StageResult",
    "TissueChannel",
    "TransformStage",
    "affine_from_control_points",
    "affine_to_matrix",
    "apply_transform",
    "dice",
    "downsampled_origin_mm",
    "fixed_image_from_rgb",
    "grid_points_in_mask",
    "invert",
    "mask_image",
    "matrix_to_affine",
    "read_control_points",
    "register_affine",
    "resample_moving",
    "rgb_to_sitk",
    "target_registration_error",
    "tissue_channel",
    "transform_from_moving_to_fixed_affine",
]


class RegistrationError(RuntimeError):
    """An intensity-based registration failed or produced an implausible transform.

    The message says what failed (optimizer exception, non-finite metric, degenerate matrix, too
    little overlap, no shared information); the caller prefixes the pair's name.
    """


class ControlPointError(ValueError):
    """Control points are unusable (too few, collinear, non-finite) or a CSV file is malformed."""


# ----------------------------------------------------------------------------------------------
# histology channels


class TissueChannel(StrEnum):
    """Single channel of a stained RGB slide used for registration (tissue is bright in all).

    * ``optical_density``: sum over R, G, B of ``-log10(max(I, 1) / 255)``; 0 on white glass,
      up to ``3 * log10(255) = 7.22`` on black.
    * ``hematoxylin``, ``eosin``, ``dab``: stain concentrations from Ruifrok-Johnston colour
      deconvolution with scikit-image's ``hed_from_rgb`` matrix, exactly as
      ``skimage.color.rgb2hed`` computes them (clipped at 0).
    * ``gray_inverted``: ``1 - Y / 255`` with ``Y = 0.2125 R + 0.7154 G + 0.0721 B`` (the
      weights of ``skimage.color.rgb2gray``), in ``[0, 1]``.
    """

    OPTICAL_DENSITY = "optical_density"
    HEMATOXYLIN = "hematoxylin"
    EOSIN = "eosin"
    DAB = "dab"
    GRAY_INVERTED = "gray_inverted"


_LEVELS = np.arange(256, dtype=np.float64)
# per-channel value of the optical density of an 8-bit intensity (log10, I0 = 255)
_OD_LUT = -np.log10(np.maximum(_LEVELS, 1.0) / 255.0)
# skimage.color.separate_stains: log(max(I / 255, 1e-6)) / log(1e-6), then @ hed_from_rgb
_HED_LOG_LUT = np.log(np.maximum(_LEVELS / 255.0, 1e-6)) / np.log(1e-6)
_HED_COLUMN = {TissueChannel.HEMATOXYLIN: 0, TissueChannel.EOSIN: 1, TissueChannel.DAB: 2}
_GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)
_CHUNK_PIXELS = 1 << 21


def _channel_luts(channel: TissueChannel) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], bool]:
    """Three per-channel lookup tables whose sum gives ``channel``, and whether to clip at 0."""
    if channel is TissueChannel.OPTICAL_DENSITY:
        return (_OD_LUT, _OD_LUT, _OD_LUT), False
    if channel is TissueChannel.GRAY_INVERTED:
        w = _GRAY_WEIGHTS
        return (
            1.0 / 3.0 - w[0] * _LEVELS / 255.0,
            1.0 / 3.0 - w[1] * _LEVELS / 255.0,
            1.0 / 3.0 - w[2] * _LEVELS / 255.0,
        ), False
    column = _HED_COLUMN[channel]
    matrix = np.asarray(hed_from_rgb, dtype=np.float64)
    luts = tuple(_HED_LOG_LUT * matrix[c, column] for c in range(3))
    return (luts[0], luts[1], luts[2]), True


def tissue_channel(rgb: np.ndarray, channel: TissueChannel | str) -> np.ndarray:
    """One registration channel of an RGB slide, computed in bounded memory.

    The slide is processed in row blocks of about two million pixels through per-intensity
    lookup tables, so a 6000 x 10000 image needs only its output (240 MB) plus ~50 MB.

    Args:
        rgb: RGB pixels, shape ``(H, W, 3)``, dtype uint8 (255 = white glass).
        channel: which channel (:class:`TissueChannel` or its string value).

    Returns:
        float32 array ``(H, W)``; tissue is bright, glass is ~0. Units: optical density
        (log10) for ``optical_density``, stain concentration for the deconvolved channels (same
        values as ``skimage.color.rgb2hed(rgb)[..., k]`` to float32 precision), unitless
        ``[0, 1]`` for ``gray_inverted``.

    Raises:
        ValueError: wrong shape or dtype, or an unknown channel name.
    """
    channel = TissueChannel(channel)
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB array of shape (H, W, 3), got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB pixels, got dtype {array.dtype}")
    (lut_r, lut_g, lut_b), clip = _channel_luts(channel)
    height, width = array.shape[:2]
    out = np.empty((height, width), dtype=np.float32)
    rows_per_chunk = max(1, _CHUNK_PIXELS // max(width, 1))
    for start in range(0, height, rows_per_chunk):
        block = array[start : start + rows_per_chunk]
        value = lut_r[block[..., 0]]
        value += lut_g[block[..., 1]]
        value += lut_b[block[..., 2]]
        if clip:
            np.maximum(value, 0.0, out=value)
        out[start : start + rows_per_chunk] = value
    return out


def _check_spacing(spacing_mm: Sequence[float], name: str) -> tuple[float, float]:
    values = tuple(float(s) for s in spacing_mm)
    if len(values) != 2 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"{name} must be two positive finite numbers (mm), got {spacing_mm}")
    return values[0], values[1]


def _check_origin(origin_mm: Sequence[float], name: str) -> tuple[float, float]:
    values = tuple(float(s) for s in origin_mm)
    if len(values) != 2 or not all(math.isfinite(s) for s in values):
        raise ValueError(f"{name} must be two finite numbers (mm), got {origin_mm}")
    return values[0], values[1]


def rgb_to_sitk(
    rgb: np.ndarray,
    spacing_mm: Sequence[float],
    origin_mm: Sequence[float] = (0.0, 0.0),
) -> sitk.Image:
    """An RGB slide as a 2-D vector ``SimpleITK`` image with explicit geometry.

    Args:
        rgb: uint8 pixels, shape ``(H, W, 3)``.
        spacing_mm: pixel size ``(x, y)`` in mm (``mpp * factor / 1000``).
        origin_mm: physical position of pixel ``(0, 0)``'s centre in mm; see
            :func:`downsampled_origin_mm`.

    Returns:
        ``sitkVectorUInt8`` image of size ``(W, H)`` with 3 components, identity direction.
    """
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB of shape (H, W, 3), got {array.dtype} {array.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=True)
    image.SetSpacing(_check_spacing(spacing_mm, "spacing_mm"))
    image.SetOrigin(_check_origin(origin_mm, "origin_mm"))
    return image


def fixed_image_from_rgb(
    rgb: np.ndarray,
    spacing_mm: Sequence[float],
    channel: TissueChannel | str = TissueChannel.OPTICAL_DENSITY,
    origin_mm: Sequence[float] = (0.0, 0.0),
) -> sitk.Image:
    """The fixed image for :func:`register_affine`: one tissue channel with slide geometry.

    Args:
        rgb: uint8 pixels of the downsampled slide, shape ``(H, W, 3)``.
        spacing_mm: pixel size ``(x, y)`` in mm (``mpp * factor / 1000``).
        channel: which :class:`TissueChannel` to register on.
        origin_mm: physical position of pixel ``(0, 0)``'s centre in mm (default ``(0, 0)``;
            :func:`downsampled_origin_mm` gives the exact value for a block-mean downsample).

    Returns:
        float32 ``SimpleITK`` image of size ``(W, H)``, identity direction.
    """
    image = sitk.GetImageFromArray(tissue_channel(rgb, channel))
    image.SetSpacing(_check_spacing(spacing_mm, "spacing_mm"))
    image.SetOrigin(_check_origin(origin_mm, "origin_mm"))
    return image


def mask_image(mask: np.ndarray | sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A boolean mask as a uint8 ``SimpleITK`` image (0/1) with ``reference``'s geometry.

    Args:
        mask: boolean-like array of shape ``(rows, cols)`` equal to ``reference``'s array shape,
            or a 2-D ``SimpleITK`` image (any geometry; non-zero = inside), returned as uint8.
        reference: the image the mask belongs to.

    Returns:
        ``sitkUInt8`` image with values 0/1.
    """
    if isinstance(mask, sitk.Image):
        if mask.GetDimension() != 2 or mask.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError("a mask image must be 2-D and scalar")
        return sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8)
    array = np.asarray(mask)
    expected = reference.GetSize()[::-1]
    if array.shape != tuple(expected):
        raise ValueError(f"mask shape {array.shape} differs from its image's shape {expected}")
    out = sitk.GetImageFromArray((array != 0).astype(np.uint8))
    out.CopyInformation(reference)
    return out


# ----------------------------------------------------------------------------------------------
# affine helpers


def affine_to_matrix(transform: sitk.Transform) -> np.ndarray:
    """Homogeneous matrix of a 2-D linear transform.

    Args:
        transform: a 2-D ``AffineTransform``, ``Similarity2DTransform``, ``Euler2DTransform``,
            ``ScaleTransform``, ``TranslationTransform`` or a generic ``sitk.Transform`` holding
            one of them (a composite of them is composed).

    Returns:
        float64 ``(3, 3)`` matrix ``M`` with ``[x', y', 1] = M @ [x, y, 1]`` in mm.

    Raises:
        ValueError: not a 2-D transform, or a non-linear one (B-spline, displacement field).
    """
    if transform.GetDimension() != 2:
        raise ValueError(f"expected a 2-D transform, got a {transform.GetDimension()}-D one")
    tx = transform.Downcast() if type(transform) is sitk.Transform else transform
    if isinstance(tx, sitk.CompositeTransform):
        # ITK applies the most recently added transform first (a stack)
        matrix = np.eye(3)
        for k in range(tx.GetNumberOfTransforms()):
            matrix = matrix @ affine_to_matrix(tx.GetNthTransform(k))
        return matrix
    if isinstance(tx, sitk.TranslationTransform):
        matrix = np.eye(3)
        matrix[:2, 2] = tx.GetOffset()
        return matrix
    if not all(hasattr(tx, m) for m in ("GetMatrix", "GetTranslation", "GetCenter")):
        raise ValueError(f"{tx.GetName()} is not a linear (matrix + offset) transform")
    linear = np.asarray(tx.GetMatrix(), dtype=np.float64).reshape(2, 2)
    translation = np.asarray(tx.GetTranslation(), dtype=np.float64)
    centre = np.asarray(tx.GetCenter(), dtype=np.float64)
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = translation + centre - linear @ centre
    return matrix


def matrix_to_affine(
    matrix: np.ndarray, center: Sequence[float] = (0.0, 0.0)
) -> sitk.AffineTransform:
    """A ``sitk.AffineTransform`` from a ``(3, 3)`` homogeneous or ``(2, 3)`` matrix.

    Args:
        matrix: ``[[a11, a12, tx], [a21, a22, ty]]`` (optionally with the row ``[0, 0, 1]``),
            mapping ``(x, y)`` mm to ``(a11 x + a12 y + tx, a21 x + a22 y + ty)`` mm.
        center: centre of rotation to store in the transform (mm); the mapping is the same for
            any centre, only the optimizer's parametrisation differs.

    Returns:
        The equivalent 2-D affine transform.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape not in ((2, 3), (3, 3)):
        raise ValueError(f"expected a (2, 3) or (3, 3) matrix, got shape {m.shape}")
    if m.shape == (3, 3) and not np.allclose(m[2], (0.0, 0.0, 1.0)):
        raise ValueError(f"last row of a homogeneous 2-D affine must be [0, 0, 1], got {m[2]}")
    if not np.all(np.isfinite(m)):
        raise ValueError("matrix has non-finite entries")
    linear = m[:2, :2]
    offset = m[:2, 2]
    c = np.asarray(center, dtype=np.float64)
    tx = sitk.AffineTransform(2)
    tx.SetCenter(tuple(float(v) for v in c))
    tx.SetMatrix(tuple(float(v) for v in linear.ravel()))
    # T(p) = A (p - c) + t + c = A p + offset  =>  t = offset - c + A c
    tx.SetTranslation(tuple(float(v) for v in offset - c + linear @ c))
    return tx


def invert(transform: sitk.Transform) -> sitk.AffineTransform:
    """Inverse of a 2-D linear transform as an ``AffineTransform`` (same centre).

    Raises:
        ValueError: the linear part is singular (determinant ~ 0).
    """
    matrix = affine_to_matrix(transform)
    det = float(np.linalg.det(matrix[:2, :2]))
    scale = float(np.abs(matrix[:2, :2]).max())
    if not math.isfinite(det) or abs(det) <= 1e-12 * max(scale * scale, 1e-300):
        raise ValueError(f"transform is not invertible (determinant {det:.3g})")
    tx = transform.Downcast() if type(transform) is sitk.Transform else transform
    center = tx.GetCenter() if hasattr(tx, "GetCenter") else (0.0, 0.0)
    return matrix_to_affine(np.linalg.inv(matrix), center=center)


def transform_from_moving_to_fixed_affine(affine: np.ndarray) -> sitk.AffineTransform:
    """The fixed->moving registration transform for an affine given moving->fixed.

    The demo's ground truth is a ``(2, 3)`` affine ``[[a11, a12, tx], [a21, a22, ty]]`` mapping
    MRI-slice mm to histology mm; a registration transform maps histology mm to MRI mm, i.e. its
    inverse. Compare the result with :func:`register_affine`'s transform through
    :func:`target_registration_error`.

    Args:
        affine: ``(2, 3)`` or ``(3, 3)`` moving (MRI) mm -> fixed (histology) mm.

    Returns:
        ``AffineTransform`` fixed (histology) mm -> moving (MRI) mm.
    """
    return invert(matrix_to_affine(affine))


def apply_transform(transform: sitk.Transform, points_mm: np.ndarray) -> np.ndarray:
    """Map points through a 2-D linear transform (vectorised).

    Args:
        transform: any transform accepted by :func:`affine_to_matrix`.
        points_mm: ``(N, 2)`` physical points ``(x, y)`` in mm.

    Returns:
        ``(N, 2)`` float64 mapped points in mm.
    """
    points = _points(points_mm, "points_mm")
    matrix = affine_to_matrix(transform)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _points(points: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has non-finite coordinates")
    return array


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
    points = _points(points_fixed_mm, "points_fixed_mm")
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


# ----------------------------------------------------------------------------------------------
# control points


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
        moving = _points(moving_points, "moving_points")
        fixed = _points(fixed_points, "fixed_points")
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


_UNIT_SCALE_TO_MM = {"mm": 1.0, "um": 1e-3, "px": None}


def _coordinate_columns(header: list[str], side: str, path: Path) -> tuple[str, str, str]:
    """The ``x``/``y`` columns of one side and their unit (mm, um or px)."""
    found = [u for u in _UNIT_SCALE_TO_MM if {f"{side}_x_{u}", f"{side}_y_{u}"} <= set(header)]
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
                coords = []
                for col in (x_col, y_col):
                    text = row[position[col]].strip()
                    try:
                        value = float(text)
                    except ValueError:
                        raise ControlPointError(
                            f"{p}, line {line}: column {col!r} value {text!r} is not a number"
                        ) from None
                    if not math.isfinite(value):
                        raise ControlPointError(
                            f"{p}, line {line}: column {col!r} value {text!r} is not finite"
                        )
                    coords.append(value)
                values[side].append((coords[0], coords[1]))
            label = row[label_index].strip() if label_index is not None else ""
            labels.append(label or str(len(labels) + 1))
    if not labels:
        raise ControlPointError(f"{p}: no control point rows after the header")
    converted = {}
    geometry = {
        "fixed": (fixed_spacing_mm, fixed_origin_mm),
        "moving": (moving_spacing_mm, moving_origin_mm),
    }
    for side in ("fixed", "moving"):
        unit = columns[side][2]
        array = np.asarray(values[side], dtype=np.float64)
        if unit == "px":
            spacing, origin = geometry[side]
            if spacing is None:
                raise ControlPointError(
                    f"{p}: {side} coordinates are in pixels (_px columns); pass "
                    f"{side}_spacing_mm to convert them to mm"
                )
            sp = np.asarray(_check_spacing(spacing, f"{side}_spacing_mm"))
            org = np.asarray(_check_origin(origin, f"{side}_origin_mm"))
            array = org + array * sp
        else:
            array = array * _UNIT_SCALE_TO_MM[unit]
        converted[side] = array
    return ControlPoints(
        fixed_mm=converted["fixed"],
        moving_mm=converted["moving"],
        labels=tuple(labels),
        source=str(p),
    )


# ----------------------------------------------------------------------------------------------
# intensity-based registration: parameters and result


class SamplingStrategy(StrEnum):
    """Which fixed-image points the metric samples: random, a perturbed regular grid, or all."""

    RANDOM = "random"
    REGULAR = "regular"
    NONE = "none"


class Initialization(StrEnum):
    """Centred initialisation: align centres of mass (``moments``) or image centres."""

    MOMENTS = "moments"
    GEOMETRY = "geometry"


class TransformStage(StrEnum):
    """Transform optimised in one stage (degrees of freedom: 3, 4, 6)."""

    RIGID = "rigid"
    SIMILARITY = "similarity"
    AFFINE = "affine"


class OptimizerKind(StrEnum):
    """ITK v4 optimizer: plain gradient descent or regular-step gradient descent."""

    GRADIENT_DESCENT = "gradient_descent"
    REGULAR_STEP_GRADIENT_DESCENT = "regular_step_gradient_descent"


class LearningRateEstimation(StrEnum):
    """When ITK re-estimates the learning rate from the scales (``never``: use learning_rate)."""

    ONCE = "once"
    EACH_ITERATION = "each_iteration"
    NEVER = "never"


class Interpolator(StrEnum):
    """Interpolation of the moving image: ``linear`` for intensities, ``nearest`` for masks."""

    LINEAR = "linear"
    NEAREST = "nearest"


_STAGE_ORDER = {TransformStage.RIGID: 0, TransformStage.SIMILARITY: 1, TransformStage.AFFINE: 2}
_SAMPLING = {
    SamplingStrategy.RANDOM: sitk.ImageRegistrationMethod.RANDOM,
    SamplingStrategy.REGULAR: sitk.ImageRegistrationMethod.REGULAR,
    SamplingStrategy.NONE: sitk.ImageRegistrationMethod.NONE,
}
_ESTIMATE = {
    LearningRateEstimation.ONCE: sitk.ImageRegistrationMethod.Once,
    LearningRateEstimation.EACH_ITERATION: sitk.ImageRegistrationMethod.EachIteration,
    LearningRateEstimation.NEVER: sitk.ImageRegistrationMethod.Never,
}


@dataclass(frozen=True)
class RegistrationParams:
    """Parameters of :func:`register_affine` (all validated on construction).

    Attributes:
        metric_bins: histogram bins of the Mattes mutual information metric (>= 4).
        sampling_strategy: ``random``, ``regular`` (a grid with random jitter) or ``none``
            (every fixed pixel).
        sampling_percentage: fraction of fixed pixels sampled, in ``(0, 1]``.
        min_samples: at pyramid levels where that fraction gives fewer points, the fraction is
            raised (up to 1) to sample this many (a 50-bin joint histogram estimated from a
            few hundred points of a coarse, small level is noise and sends the optimizer
            astray).
        seed: seed of the metric's sampler and of the information check (>= 1; SimpleITK
            treats 0 as "seed from the wall clock", which would break reproducibility).
        shrink_factors: per pyramid level, how much the (reduced) fixed image is shrunk, e.g.
            ``(4, 2, 1)``; the last should be 1.
        smoothing_sigmas: per pyramid level, Gaussian sigma in units of the moving image's
            largest voxel size, applied to both images in mm (so both are smoothed alike
            whatever their pixel sizes), e.g. ``(2, 1, 0)``.
        iterations: maximum optimizer iterations per pyramid level, one value per stage (or a
            single value for all stages).
        optimizer: ``regular_step_gradient_descent`` (default: halves its step whenever the
            gradient turns, so it settles) or ``gradient_descent`` (a fixed step; with the
            estimated learning rate it was measured oscillating one voxel around the optimum
            and stopping 7 mm off on the synthetic test pair).
        learning_rate: optimizer learning rate; used as given only with
            ``learning_rate_estimation = never`` (otherwise ITK estimates it from the scales so
            that one step moves a point by at most ``maximum_step_mm``).
        learning_rate_estimation: ``once`` per level, ``each_iteration`` or ``never``.
        maximum_step_mm: largest physical shift of one step when the learning rate is
            estimated; ``None`` = the fixed image's voxel size at that pyramid level.
        moving_gradient_filter: let ITK precompute the moving image's gradient with a
            Gaussian-derivative filter (ITK's default) instead of taking finite differences of
            the interpolated moving image at each sample point. Off by default: with a moving
            image coarser than the fixed grid (an MRI slice against a slide) the precomputed
            gradient does not match the metric it is the derivative of, and the optimizer was
            measured walking uphill until its iteration limit (TRE 1.4-2.6 MRI pixels instead
            of 0.1-0.2 on the benchmark's haematoxylin and grey channels).
        min_step: regular-step optimizer only: stop when the step falls below this.
        relaxation_factor: regular-step optimizer only: step reduction on direction change.
        convergence_window: gradient descent: iterations over which convergence is checked.
        convergence_min_value: gradient descent: stop when the metric's normalised change over
            the window falls below this.
        initialization: ``moments`` (centres of mass; of the masks when masks are used) or
            ``geometry`` (image centres).
        initial_angles_deg: start rotations (degrees, about the centred initialisation) to try;
            the first stage is optimised from each and the one with the best (lowest) metric
            continues. Use e.g. ``(0, 90, 180, 270)`` when slides may be mounted at any angle:
            gradient descent only corrects rotations of a few tens of degrees.
        initial_offsets_px: start translations ``(x, y)`` in moving-image pixels, added to each
            start angle's initialisation; every (angle, offset) start's first stage is
            optimised and the lowest metric continues. Use a small grid (e.g. offsets of -1, 0,
            1 pixel) when the images hold so few moving pixels that Mattes MI has local optima
            a pixel or two away (a 21 x 21 MSI raster).
        stages: transforms optimised in turn, each starting from the previous result, in
            non-decreasing order of freedom (``rigid`` < ``similarity`` < ``affine``).
        fixed_max_size: before optimisation the fixed image is reduced (block mean, integer
            factor) to at most this many pixels on its long side; ``None`` = no limit.
        fixed_spacing_fraction: ... and reduced further while its pixels stay no larger than
            this fraction of the moving image's smallest voxel size (a finer fixed image
            carries nothing the MRI can match); ``None`` = no such reduction.
        use_masks: restrict the metric to the masks passed to :func:`register_affine` (fixed:
            samples; moving: mapped points). Pass masks with a margin around the tissue: the
            tissue border carries most of the signal.
        max_scale: the fixed->moving linear part's singular values must lie in
            ``[1 / max_scale, max_scale]`` (> 1); outside, the result is degenerate.
        min_overlap: fraction of fixed pixels (inside the fixed mask when masks are used) that
            must map inside the moving image, in ``[0, 1]``.
        min_information_gain: mutual information (nats, 32-bin histogram on the reduced fixed
            grid) of the registered pair must exceed that of the same pixels with the moving
            values shuffled by at least this much; otherwise the images share no information
            (noise, blank images) and the registration is an error.
        number_of_threads: ITK threads while optimising (set as ITK's process-wide default
            for the duration of the call, then restored); ``None`` = leave ITK's default (all
            cores). The default 1 makes results bit-identical run to run: with several threads
            ITK's Mattes metric adds per-thread partial sums in varying order. The optimisation
            runs on the reduced fixed image and takes well under a second to a few seconds, so
            one thread costs little.
    """

    metric_bins: int = 50
    sampling_strategy: SamplingStrategy = SamplingStrategy.RANDOM
    sampling_percentage: float = 0.2
    min_samples: int = 5000
    seed: int = 20240917
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)
    iterations: tuple[int, ...] = (300,)
    optimizer: OptimizerKind = OptimizerKind.REGULAR_STEP_GRADIENT_DESCENT
    learning_rate: float = 1.0
    learning_rate_estimation: LearningRateEstimation = LearningRateEstimation.ONCE
    maximum_step_mm: float | None = None
    moving_gradient_filter: bool = False
    min_step: float = 1e-4
    relaxation_factor: float = 0.5
    convergence_window: int = 10
    convergence_min_value: float = 1e-6
    initialization: Initialization = Initialization.MOMENTS
    initial_angles_deg: tuple[float, ...] = (0.0,)
    initial_offsets_px: tuple[tuple[float, float], ...] = ((0.0, 0.0),)
    stages: tuple[TransformStage, ...] = (TransformStage.SIMILARITY, TransformStage.AFFINE)
    fixed_max_size: int | None = 1024
    fixed_spacing_fraction: float | None = 0.5
    use_masks: bool = True
    max_scale: float = 4.0
    min_overlap: float = 0.5
    min_information_gain: float = 0.1
    number_of_threads: int | None = 1

    def __post_init__(self) -> None:
        def fix(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        try:
            fix("sampling_strategy", SamplingStrategy(self.sampling_strategy))
            fix("optimizer", OptimizerKind(self.optimizer))
            fix("learning_rate_estimation", LearningRateEstimation(self.learning_rate_estimation))
            fix("initialization", Initialization(self.initialization))
            fix("stages", tuple(TransformStage(s) for s in self.stages))
        except ValueError as exc:
            raise ValueError(f"RegistrationParams: {exc}") from None
        fix("shrink_factors", tuple(int(s) for s in self.shrink_factors))
        fix("smoothing_sigmas", tuple(float(s) for s in self.smoothing_sigmas))
        fix("iterations", tuple(int(i) for i in self.iterations))
        fix("initial_angles_deg", tuple(float(a) for a in self.initial_angles_deg))
        try:
            offsets = tuple((float(x), float(y)) for x, y in self.initial_offsets_px)
        except (TypeError, ValueError):
            raise ValueError(
                f"RegistrationParams: initial_offsets_px must be a list of (x, y) pixel pairs, "
                f"got {self.initial_offsets_px!r}"
            ) from None
        fix("initial_offsets_px", offsets)
        problems = []
        if self.metric_bins < 4:
            problems.append(f"metric_bins must be >= 4, got {self.metric_bins}")
        if not 0.0 < self.sampling_percentage <= 1.0:
            problems.append(
                f"sampling_percentage must be in (0, 1], got {self.sampling_percentage}"
            )
        if self.min_samples < 1:
            problems.append(f"min_samples must be >= 1, got {self.min_samples}")
        if self.seed < 1:
            problems.append(f"seed must be >= 1 (0 means wall-clock seeding), got {self.seed}")
        if not self.shrink_factors or any(s < 1 for s in self.shrink_factors):
            problems.append(f"shrink_factors must be >= 1, got {self.shrink_factors}")
        if len(self.smoothing_sigmas) != len(self.shrink_factors):
            problems.append(
                f"smoothing_sigmas ({len(self.smoothing_sigmas)} levels) and shrink_factors "
                f"({len(self.shrink_factors)} levels) must have the same length"
            )
        if any(not (math.isfinite(s) and s >= 0) for s in self.smoothing_sigmas):
            problems.append(f"smoothing_sigmas must be >= 0, got {self.smoothing_sigmas}")
        if not self.stages:
            problems.append("stages must name at least one transform")
        if not self.initial_angles_deg or not all(
            math.isfinite(a) for a in self.initial_angles_deg
        ):
            problems.append(
                f"initial_angles_deg must hold at least one finite angle, got "
                f"{self.initial_angles_deg}"
            )
        if not self.initial_offsets_px or not all(
            math.isfinite(v) for pair in self.initial_offsets_px for v in pair
        ):
            problems.append(
                f"initial_offsets_px must hold at least one finite (x, y) pair, got "
                f"{self.initial_offsets_px}"
            )
        order = [_STAGE_ORDER[s] for s in self.stages]
        if order != sorted(order):
            problems.append(
                f"stages must not lose degrees of freedom (rigid < similarity < affine), "
                f"got {[str(s) for s in self.stages]}"
            )
        if len(self.iterations) not in (1, len(self.stages)) or any(i < 1 for i in self.iterations):
            problems.append(
                f"iterations must hold one positive count per stage (or one for all), got "
                f"{self.iterations} for {len(self.stages)} stage(s)"
            )
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.maximum_step_mm is not None and not self.maximum_step_mm > 0:
            problems.append(f"maximum_step_mm must be > 0 or null, got {self.maximum_step_mm}")
        if not self.min_step > 0:
            problems.append(f"min_step must be > 0, got {self.min_step}")
        if not 0.0 < self.relaxation_factor < 1.0:
            problems.append(f"relaxation_factor must be in (0, 1), got {self.relaxation_factor}")
        if self.convergence_window < 2:
            problems.append(f"convergence_window must be >= 2, got {self.convergence_window}")
        if not self.convergence_min_value > 0:
            problems.append(f"convergence_min_value must be > 0, got {self.convergence_min_value}")
        if self.fixed_max_size is not None and self.fixed_max_size < 16:
            problems.append(f"fixed_max_size must be >= 16 or null, got {self.fixed_max_size}")
        if self.fixed_spacing_fraction is not None and not self.fixed_spacing_fraction > 0:
            problems.append(
                f"fixed_spacing_fraction must be > 0 or null, got {self.fixed_spacing_fraction}"
            )
        if not self.max_scale > 1.0:
            problems.append(f"max_scale must be > 1, got {self.max_scale}")
        if not 0.0 <= self.min_overlap <= 1.0:
            problems.append(f"min_overlap must be in [0, 1], got {self.min_overlap}")
        if not self.min_information_gain >= 0.0:
            problems.append(f"min_information_gain must be >= 0, got {self.min_information_gain}")
        if self.number_of_threads is not None and self.number_of_threads < 1:
            problems.append(f"number_of_threads must be >= 1 or null, got {self.number_of_threads}")
        if problems:
            raise ValueError("RegistrationParams: " + "; ".join(problems))

    def stage_iterations(self) -> tuple[int, ...]:
        """Maximum iterations per pyramid level for each stage (``iterations`` broadcast)."""
        if len(self.iterations) == 1:
            return self.iterations * len(self.stages)
        return self.iterations


@dataclass(frozen=True)
class StageResult:
    """Outcome of one optimisation stage.

    Attributes:
        stage: the transform optimised.
        metric_value: Mattes metric at the end (negative mutual information in nats, on the
            last level's samples; lower is better).
        iterations: iterations run at each pyramid level.
        stop_condition: ITK's description of why the optimizer stopped at the last level.
        converged: the last level stopped before its iteration limit.
    """

    stage: TransformStage
    metric_value: float
    iterations: tuple[int, ...]
    stop_condition: str
    converged: bool


@dataclass(frozen=True)
class RegistrationResult:
    """Result of :func:`register_affine`.

    Attributes:
        transform: optimised fixed (histology) mm -> moving (MRI) mm ``AffineTransform``.
        initial_transform: the start the kept result came from: the centred initialisation
            rotated by ``start_angle_deg`` and shifted by ``start_offset_px`` (fixed -> moving).
        start_angle_deg: the entry of ``initial_angles_deg`` whose first stage was kept.
        start_offset_px: the entry of ``initial_offsets_px`` whose first stage was kept.
        stages: one :class:`StageResult` per stage.
        converged: every stage's last pyramid level stopped before its iteration limit.
        seconds: wall time of the whole call (reduction, optimisation, checks).
        mutual_information: MI (nats, 32 bins) of fixed and resampled moving on the reduced
            fixed grid, where they overlap.
        mutual_information_shuffled: the same with the moving values shuffled (chance level).
        overlap_fraction: fraction of the fixed pixels (inside the fixed mask if used) that map
            inside the moving image.
        optimisation_spacing_mm: pixel size of the reduced fixed image the optimizer saw.
        warnings: human-readable notes on a result that is usable but worth a look (a stage
            that stopped at its iteration limit); empty when all is well.
    """

    transform: sitk.AffineTransform
    initial_transform: sitk.AffineTransform
    start_angle_deg: float
    stages: tuple[StageResult, ...]
    converged: bool
    seconds: float
    mutual_information: float
    mutual_information_shuffled: float
    overlap_fraction: float
    optimisation_spacing_mm: tuple[float, float]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    start_offset_px: tuple[float, float] = (0.0, 0.0)

    @property
    def metric_per_stage(self) -> tuple[float, ...]:
        """Final Mattes metric value of each stage (negative MI, nats)."""
        return tuple(s.metric_value for s in self.stages)

    @property
    def iterations_per_stage(self) -> tuple[int, ...]:
        """Total iterations (all pyramid levels) of each stage."""
        return tuple(sum(s.iterations) for s in self.stages)

    @property
    def stop_conditions(self) -> tuple[str, ...]:
        """ITK's stop condition description of each stage."""
        return tuple(s.stop_condition for s in self.stages)


# ----------------------------------------------------------------------------------------------
# intensity-based registration: implementation


def _itk_message(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("sitk::ERROR:", "ITK ERROR:", "ERROR:"):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    return " ".join(text.split())[:400]


def _check_scalar_image(image: sitk.Image, name: str) -> sitk.Image:
    """``image`` as float32 after checking it is 2-D, scalar, finite and not constant."""
    if not isinstance(image, sitk.Image):
        raise TypeError(f"{name} must be a SimpleITK.Image, got {type(image).__name__}")
    if image.GetDimension() != 2 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"{name} image must be 2-D and single-channel, got {image.GetDimension()}-D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s); use tissue_channel for RGB"
        )
    out = image if image.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(image, sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(out)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} image has non-finite (NaN/inf) pixel values")
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        raise RegistrationError(
            f"{name} image is constant (all pixels {lo:g}): it carries no information to "
            "register on"
        )
    return out


def _reduce_fixed(
    fixed: sitk.Image, moving: sitk.Image, params: RegistrationParams
) -> tuple[sitk.Image, tuple[int, int]]:
    """Block-mean reduction of the fixed image before optimisation, and the factors used."""
    size = fixed.GetSize()
    spacing = fixed.GetSpacing()
    factors = [1, 1]
    if params.fixed_max_size is not None:
        limit = math.ceil(max(size) / params.fixed_max_size)
        factors = [max(f, limit) for f in factors]
    if params.fixed_spacing_fraction is not None:
        target = params.fixed_spacing_fraction * min(moving.GetSpacing())
        factors = [max(f, int(target / s)) for f, s in zip(factors, spacing, strict=True)]
    factors = [max(1, min(f, n)) for f, n in zip(factors, size, strict=True)]
    if factors == [1, 1]:
        return fixed, (1, 1)
    return sitk.BinShrink(fixed, factors), (factors[0], factors[1])


def _stage_transform(stage: TransformStage, previous: sitk.Transform) -> sitk.Transform:
    """A transform of kind ``stage`` equal to (or best approximating) ``previous``."""
    matrix = affine_to_matrix(previous)
    tx_prev = previous.Downcast() if type(previous) is sitk.Transform else previous
    center = np.asarray(tx_prev.GetCenter(), dtype=np.float64)
    linear = matrix[:2, :2]
    translation = matrix[:2, 2] + linear @ center - center
    if stage is TransformStage.AFFINE:
        tx: sitk.Transform = sitk.AffineTransform(2)
        tx.SetMatrix(tuple(float(v) for v in linear.ravel()))
    else:
        angle = math.atan2(linear[1, 0] - linear[0, 1], linear[0, 0] + linear[1, 1])
        if stage is TransformStage.SIMILARITY:
            tx = sitk.Similarity2DTransform()
            tx.SetScale(float(math.sqrt(max(abs(np.linalg.det(linear)), 1e-12))))
        else:
            tx = sitk.Euler2DTransform()
        tx.SetAngle(angle)
    tx.SetCenter(tuple(float(v) for v in center))
    tx.SetTranslation(tuple(float(v) for v in translation))
    return tx


def _initial_transform(
    fixed: sitk.Image,
    moving: sitk.Image,
    params: RegistrationParams,
    fixed_mask: sitk.Image | None,
    moving_mask: sitk.Image | None,
) -> sitk.Transform:
    """Centred initial transform of the first stage's kind."""
    mode = (
        sitk.CenteredTransformInitializerFilter.MOMENTS
        if params.initialization is Initialization.MOMENTS
        else sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    f_img, m_img = fixed, moving
    if params.initialization is Initialization.MOMENTS:
        # image moments are only meaningful for non-negative "mass"; masks are better still
        f_img = sitk.Cast(fixed_mask, sitk.sitkFloat32) if fixed_mask is not None else fixed
        m_img = sitk.Cast(moving_mask, sitk.sitkFloat32) if moving_mask is not None else moving
    base: sitk.Transform = {
        TransformStage.RIGID: sitk.Euler2DTransform(),
        TransformStage.SIMILARITY: sitk.Similarity2DTransform(),
        TransformStage.AFFINE: sitk.AffineTransform(2),
    }[params.stages[0]]
    try:
        return sitk.CenteredTransformInitializer(f_img, m_img, base, mode)
    except RuntimeError as exc:
        raise RegistrationError(f"centred initialisation failed: {_itk_message(exc)}") from exc


def _sampling_per_level(
    fixed: sitk.Image, fixed_mask: sitk.Image | None, params: RegistrationParams
) -> list[float]:
    """Sampling fraction per pyramid level: ``sampling_percentage``, raised to reach
    ``min_samples`` points (inside the fixed mask) where a shrunk level has too few pixels."""
    size = fixed.GetSize()
    inside = 1.0
    if fixed_mask is not None:
        inside = float(np.count_nonzero(sitk.GetArrayViewFromImage(fixed_mask))) / math.prod(size)
    fractions = []
    for shrink in params.shrink_factors:
        n_pixels = math.prod(math.ceil(n / shrink) for n in size) * inside
        wanted = params.min_samples / max(n_pixels, 1.0)
        fractions.append(min(1.0, max(params.sampling_percentage, wanted)))
    return fractions


def _configure_method(
    params: RegistrationParams,
    iterations: int,
    smoothing_mm: Sequence[float],
    sampling_per_level: Sequence[float],
    fixed_mask: sitk.Image | None,
    moving_mask: sitk.Image | None,
) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=params.metric_bins)
    reg.SetMetricSamplingStrategy(_SAMPLING[params.sampling_strategy])
    if params.sampling_strategy is not SamplingStrategy.NONE:
        reg.SetMetricSamplingPercentagePerLevel(list(sampling_per_level), params.seed)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    # Mattes MI uses only the moving image's gradient; the fixed one would be computed for nothing
    reg.MetricUseFixedImageGradientFilterOff()
    if params.moving_gradient_filter:
        reg.MetricUseMovingImageGradientFilterOn()
    else:
        reg.MetricUseMovingImageGradientFilterOff()
    estimate = _ESTIMATE[params.learning_rate_estimation]
    max_step = params.maximum_step_mm or 0.0
    if params.optimizer is OptimizerKind.GRADIENT_DESCENT:
        reg.SetOptimizerAsGradientDescent(
            learningRate=params.learning_rate,
            numberOfIterations=iterations,
            convergenceMinimumValue=params.convergence_min_value,
            convergenceWindowSize=params.convergence_window,
            estimateLearningRate=estimate,
            maximumStepSizeInPhysicalUnits=max_step,
        )
    else:
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=params.learning_rate,
            minStep=params.min_step,
            numberOfIterations=iterations,
            relaxationFactor=params.relaxation_factor,
            estimateLearningRate=estimate,
            maximumStepSizeInPhysicalUnits=max_step,
        )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(params.shrink_factors))
    reg.SetSmoothingSigmasPerLevel([float(s) for s in smoothing_mm])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    if params.number_of_threads is not None:
        reg.SetNumberOfThreads(params.number_of_threads)
    return reg


@contextlib.contextmanager
def _itk_threads(number: int | None) -> Iterator[None]:
    """Run ITK with ``number`` threads (process-wide default), restoring the previous default.

    ``ImageRegistrationMethod.SetNumberOfThreads`` does not reach the metric, whose threads
    come from ITK's global default; with more than one thread the Mattes metric's per-thread
    sums are combined in varying order and results differ run to run in the last digits, which
    the optimizer amplifies.
    """
    if number is None:
        yield
        return
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(number)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def _check_transform(transform: sitk.Transform, params: RegistrationParams, what: str) -> None:
    """Raise :class:`RegistrationError` for a non-finite, flipped or absurdly scaled result."""
    matrix = affine_to_matrix(transform)
    if not np.all(np.isfinite(matrix)):
        raise RegistrationError(f"{what}: transform has non-finite parameters")
    linear = matrix[:2, :2]
    det = float(np.linalg.det(linear))
    if det <= 0:
        raise RegistrationError(
            f"{what}: degenerate transform (determinant {det:.3g} <= 0: collapsed or mirrored); "
            "if the slide is mounted mirrored, flip it before registering"
        )
    singular = np.linalg.svd(linear, compute_uv=False)
    lo, hi = 1.0 / params.max_scale, params.max_scale
    if singular.min() < lo or singular.max() > hi:
        raise RegistrationError(
            f"{what}: implausible scale (singular values {singular.max():.3g}, "
            f"{singular.min():.3g} outside [{lo:.3g}, {hi:.3g}]; max_scale {params.max_scale})"
        )


def _information_check(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
    fixed_mask: sitk.Image | None,
    params: RegistrationParams,
) -> tuple[float, float, float]:
    """Overlap fraction, MI of the registered pair and MI with shuffled moving values."""
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    inside = sitk.GetArrayFromImage(
        sitk.Resample(ones, fixed, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    ).astype(bool)
    reference = (
        sitk.GetArrayViewFromImage(fixed_mask).astype(bool)
        if fixed_mask is not None
        else np.ones(inside.shape, dtype=bool)
    )
    n_reference = int(np.count_nonzero(reference))
    if n_reference == 0:
        raise RegistrationError("the fixed mask is empty on the registration grid")
    region = inside & reference
    overlap = int(np.count_nonzero(region)) / n_reference
    if overlap < params.min_overlap or np.count_nonzero(region) < 64:
        raise RegistrationError(
            f"only {overlap:.1%} of the fixed image maps inside the moving image "
            f"(min_overlap {params.min_overlap:.0%}): the optimizer drifted off the image"
        )
    warped = sitk.GetArrayFromImage(resample_moving(moving, fixed, transform))
    a = sitk.GetArrayViewFromImage(fixed)[region]
    b = warped[region]
    rng = np.random.default_rng(params.seed)
    if a.size > 200_000:
        keep = rng.choice(a.size, size=200_000, replace=False)
        a, b = a[keep], b[keep]
    mi = mutual_information(a, b, bins=32)
    shuffled = float(
        np.mean([mutual_information(a, rng.permutation(b), bins=32) for _ in range(3)])
    )
    return overlap, mi, shuffled


@dataclass(frozen=True)
class _StageContext:
    """What every optimisation stage of one registration shares."""

    fixed: sitk.Image
    moving: sitk.Image
    params: RegistrationParams
    smoothing_mm: list[float]
    sampling: list[float]
    fixed_mask: sitk.Image | None
    moving_mask: sitk.Image | None


def _rotated(transform: sitk.Transform, angle_deg: float) -> sitk.AffineTransform:
    """``transform`` preceded by a rotation of ``angle_deg`` about its centre.

    The centre of rotation still maps where it did, so a centred initialisation keeps its
    translation; the fixed->moving linear part becomes ``A @ R(angle)``.
    """
    tx = transform.Downcast() if type(transform) is sitk.Transform else transform
    centre = np.asarray(tx.GetCenter(), dtype=np.float64)
    matrix = affine_to_matrix(tx)
    t = math.radians(angle_deg)
    rotation = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    linear = matrix[:2, :2] @ rotation
    mapped_centre = matrix[:2, :2] @ centre + matrix[:2, 2]
    out = np.eye(3)
    out[:2, :2] = linear
    out[:2, 2] = mapped_centre - linear @ centre
    return matrix_to_affine(out, center=tuple(float(v) for v in centre))


def _shifted(
    transform: sitk.Transform, offset_px: tuple[float, float], spacing: Sequence[float]
) -> sitk.AffineTransform:
    """``transform`` followed by a shift of ``offset_px`` moving pixels (of ``spacing`` mm)."""
    tx = transform.Downcast() if type(transform) is sitk.Transform else transform
    matrix = affine_to_matrix(tx)
    matrix[:2, 2] += np.asarray(offset_px, dtype=np.float64) * np.asarray(spacing[:2])
    return matrix_to_affine(matrix, center=tuple(float(v) for v in tx.GetCenter()))


def _run_stage(
    context: _StageContext, stage: TransformStage, start: sitk.Transform, max_iterations: int
) -> tuple[sitk.Transform, StageResult]:
    """Optimise a ``stage`` transform starting from ``start``; checks the result."""
    tx = _stage_transform(stage, start)
    reg = _configure_method(
        context.params,
        max_iterations,
        context.smoothing_mm,
        context.sampling,
        context.fixed_mask,
        context.moving_mask,
    )
    reg.SetInitialTransform(tx, inPlace=True)
    per_level: list[int] = []
    reg.AddCommand(sitk.sitkMultiResolutionIterationEvent, lambda: per_level.append(0))

    def count() -> None:
        per_level[-1] += 1

    reg.AddCommand(sitk.sitkIterationEvent, count)
    try:
        with _itk_threads(context.params.number_of_threads):
            reg.Execute(context.fixed, context.moving)
    except RuntimeError as exc:
        raise RegistrationError(
            f"{stage} stage: the optimizer failed: {_itk_message(exc)}"
        ) from exc
    metric = float(reg.GetMetricValue())
    if not math.isfinite(metric):
        raise RegistrationError(f"{stage} stage: metric value is {metric}")
    _check_transform(tx, context.params, f"{stage} stage")
    iterations = tuple(per_level) if per_level else (int(reg.GetOptimizerIteration()),)
    return tx, StageResult(
        stage=stage,
        metric_value=metric,
        iterations=iterations,
        stop_condition=reg.GetOptimizerStopConditionDescription(),
        converged=iterations[-1] < max_iterations,
    )


def register_affine(
    fixed: sitk.Image,
    moving: sitk.Image,
    params: RegistrationParams | None = None,
    fixed_mask: np.ndarray | sitk.Image | None = None,
    moving_mask: np.ndarray | sitk.Image | None = None,
) -> RegistrationResult:
    """Affine multimodal registration of ``moving`` (MRI) to ``fixed`` (histology channel).

    Steps: check the images; reduce the fixed image (block mean; ``fixed_max_size``,
    ``fixed_spacing_fraction``); centred initialisation (rotated by each of
    ``initial_angles_deg``; the best first stage is kept); for each stage, Mattes MI with a
    ``shrink_factors`` / ``smoothing_sigmas`` pyramid and the chosen gradient-descent optimizer
    with scales from physical shift; then plausibility checks on the result (finite metric,
    determinant > 0, scale within ``max_scale``, overlap, information above chance).

    Runs with the same inputs and parameters give bit-identical transforms (fixed sampling
    seed, one ITK thread while optimising; see ``number_of_threads``). A wrong local optimum
    (a slide turned by more than a few tens of degrees, too few samples for the bins) is not
    detectable here: check Dice/MI of the result (the registration report flags low Dice).

    Args:
        fixed: 2-D single-channel image (e.g. :func:`fixed_image_from_rgb`), any pixel type,
            physical geometry in mm; typically thousands of pixels a side.
        moving: 2-D single-channel MRI slice (float32 in ``[0, 1]``, spacing in mm).
        params: :class:`RegistrationParams` (defaults if ``None``).
        fixed_mask: optional tissue mask of the fixed image: a boolean array of the fixed
            image's array shape ``(rows, cols)`` or a 2-D ``SimpleITK`` image (non-zero inside).
        moving_mask: optional mask of the moving image, same conventions.

    Returns:
        :class:`RegistrationResult`; ``transform`` maps fixed mm to moving mm.

    Raises:
        RegistrationError: a constant image, an ITK exception during optimisation, a non-finite
            metric value, a degenerate transform (determinant <= 0, scale outside
            ``max_scale``), too little overlap, or no more mutual information than chance.
        ValueError: images that are not 2-D scalar, non-finite pixels, masks of the wrong shape.
    """
    params = params or RegistrationParams()
    start = time.perf_counter()
    fixed_f = _check_scalar_image(fixed, "fixed")
    moving_f = _check_scalar_image(moving, "moving")
    use_fixed_mask = fixed_mask is not None and params.use_masks
    use_moving_mask = moving_mask is not None and params.use_masks
    fixed_mask_full = mask_image(fixed_mask, fixed_f) if use_fixed_mask else None
    moving_mask_img = mask_image(moving_mask, moving_f) if use_moving_mask else None

    fixed_opt, _ = _reduce_fixed(fixed_f, moving_f, params)
    fixed_mask_opt = None
    if fixed_mask_full is not None:
        fixed_mask_opt = sitk.Resample(
            fixed_mask_full, fixed_opt, sitk.Transform(), sitk.sitkNearestNeighbor, 0
        )
        if not np.any(sitk.GetArrayViewFromImage(fixed_mask_opt)):
            raise RegistrationError("the fixed mask is empty")
    if moving_mask_img is not None and not np.any(sitk.GetArrayViewFromImage(moving_mask_img)):
        raise RegistrationError("the moving mask is empty")

    initial = _initial_transform(fixed_opt, moving_f, params, fixed_mask_opt, moving_mask_img)
    voxel = max(moving_f.GetSpacing())
    smoothing_mm = [s * voxel for s in params.smoothing_sigmas]

    sampling = _sampling_per_level(fixed_opt, fixed_mask_opt, params)
    context = _StageContext(
        fixed=fixed_opt,
        moving=moving_f,
        params=params,
        smoothing_mm=smoothing_mm,
        sampling=sampling,
        fixed_mask=fixed_mask_opt,
        moving_mask=moving_mask_img,
    )
    stage_iterations = params.stage_iterations()
    # first stage from every candidate start (angle, offset); keep the lowest metric
    starts = [
        (angle, offset, _shifted(_rotated(initial, angle), offset, moving_f.GetSpacing()))
        for angle in params.initial_angles_deg
        for offset in params.initial_offsets_px
    ]
    candidates: list[tuple[float, tuple[float, float], sitk.Transform, StageResult]] = []
    failures: list[str] = []
    for angle, offset, start_tx in starts:
        try:
            tx, result = _run_stage(context, params.stages[0], start_tx, stage_iterations[0])
        except RegistrationError as exc:
            if len(starts) == 1:
                raise
            failures.append(f"start angle {angle:g} deg, offset {offset} px: {exc}")
            continue
        candidates.append((angle, offset, tx, result))
    if not candidates:
        raise RegistrationError("every start failed: " + "; ".join(failures))
    start_angle, start_offset, current, first = min(candidates, key=lambda c: c[3].metric_value)
    stage_results = [first]
    for stage, max_iterations in zip(params.stages[1:], stage_iterations[1:], strict=True):
        current, result = _run_stage(context, stage, current, max_iterations)
        stage_results.append(result)

    notes = tuple(
        f"{s.stage} stage stopped at its iteration limit ({s.iterations[-1]}) at the finest "
        f"level: {s.stop_condition}"
        for s in stage_results
        if not s.converged
    )
    final = matrix_to_affine(affine_to_matrix(current), center=current.GetCenter())
    overlap, mi, shuffled = _information_check(fixed_opt, moving_f, final, fixed_mask_opt, params)
    if mi - shuffled < params.min_information_gain:
        raise RegistrationError(
            f"registered images share no more information than chance: mutual information "
            f"{mi:.3f} nats vs {shuffled:.3f} with shuffled pixels (min_information_gain "
            f"{params.min_information_gain}); is one image blank or noise?"
        )
    return RegistrationResult(
        transform=final,
        initial_transform=_shifted(
            _rotated(initial, start_angle), start_offset, moving_f.GetSpacing()
        ),
        start_angle_deg=start_angle,
        start_offset_px=start_offset,
        stages=tuple(stage_results),
        converged=all(s.converged for s in stage_results),
        seconds=time.perf_counter() - start,
        mutual_information=mi,
        mutual_information_shuffled=shuffled,
        overlap_fraction=overlap,
        optimisation_spacing_mm=(fixed_opt.GetSpacing()[0], fixed_opt.GetSpacing()[1]),
        warnings=notes,
    )


def resample_moving(
    moving: sitk.Image,
    reference: sitk.Image,
    transform: sitk.Transform,
    interpolator: Interpolator | str = Interpolator.LINEAR,
    default: float = 0.0,
) -> sitk.Image:
    """Resample the moving image (MRI) onto the reference (histology) grid.

    Args:
        moving: 2-D image (scalar; a mask for ``nearest``).
        reference: image whose grid (size, spacing, origin, direction) the output takes; may be
            an RGB vector image (only its geometry is used).
        transform: fixed (reference) mm -> moving mm, e.g. ``RegistrationResult.transform``.
        interpolator: ``linear`` (output float32) for intensities, ``nearest`` (output keeps
            the moving pixel type) for masks and labels.
        default: value of reference pixels that map outside the moving image.

    Returns:
        2-D image on the reference grid.
    """
    interpolator = Interpolator(interpolator)
    if moving.GetDimension() != 2 or reference.GetDimension() != 2:
        raise ValueError("moving and reference must be 2-D images")
    if interpolator is Interpolator.LINEAR:
        return sitk.Resample(
            moving, reference, transform, sitk.sitkLinear, float(default), sitk.sitkFloat32
        )
    return sitk.Resample(
        moving, reference, transform, sitk.sitkNearestNeighbor, float(default), moving.GetPixelID()
    )
