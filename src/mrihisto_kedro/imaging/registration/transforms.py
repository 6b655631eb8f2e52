"""2-D affine transforms: matrices, inverses, mapping points, resampling the moving image.

A registration transform maps **fixed (histology) points to moving (MRI) points**, as in ITK:
``moving_point = T(fixed_point)``, in physical ``(x, y)`` mm. Transforms are handled as
``sitk.AffineTransform`` objects (centre, matrix, translation; ``T(p) = A (p - c) + t + c``) or
as homogeneous ``(3, 3)`` matrices (:func:`affine_to_matrix`, :func:`matrix_to_affine`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, cast

import numpy as np
import SimpleITK as sitk

from .geometry import check_points
from .params import Interpolator

__all__ = [
    "LinearTransform",
    "affine_to_matrix",
    "apply_transform",
    "carry_records",
    "invert",
    "linear_transform",
    "matrix_to_affine",
    "resample_moving",
    "transform_from_moving_to_fixed_affine",
]


class LinearTransform(Protocol):
    """A 2-D transform ``T(p) = A (p - c) + t + c`` (affine, similarity, Euler, scale)."""

    def GetMatrix(self) -> tuple[float, ...]:
        """``A``, row-major ``(a11, a12, a21, a22)``."""
        ...

    def GetTranslation(self) -> tuple[float, ...]:
        """``t`` in mm."""
        ...

    def GetCenter(self) -> tuple[float, ...]:
        """``c`` in mm."""
        ...


def linear_transform(transform: sitk.Transform) -> LinearTransform:
    """``transform`` as its concrete linear type (a generic ``sitk.Transform`` is downcast).

    Raises:
        ValueError: a transform without matrix, translation and centre (B-spline, displacement
            field, composite, translation-only).
    """
    tx = transform.Downcast() if type(transform) is sitk.Transform else transform
    if not all(hasattr(tx, m) for m in ("GetMatrix", "GetTranslation", "GetCenter")):
        raise ValueError(f"{tx.GetName()} is not a linear (matrix + offset) transform")
    return cast(LinearTransform, tx)


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
    linear_tx = linear_transform(tx)
    linear = np.asarray(linear_tx.GetMatrix(), dtype=np.float64).reshape(2, 2)
    translation = np.asarray(linear_tx.GetTranslation(), dtype=np.float64)
    centre = np.asarray(linear_tx.GetCenter(), dtype=np.float64)
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
    points = check_points(points_mm, "points_mm")
    matrix = affine_to_matrix(transform)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


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
        2-D image on the reference grid, carrying the moving image's ``mrihisto_*`` metadata
        (what its values are, e.g. the MRI normalisation; ``sitk.Resample`` alone drops it).
    """
    interpolator = Interpolator(interpolator)
    if moving.GetDimension() != 2 or reference.GetDimension() != 2:
        raise ValueError("moving and reference must be 2-D images")
    linear = interpolator is Interpolator.LINEAR
    out = sitk.Resample(
        moving,
        reference,
        transform,
        sitk.sitkLinear if linear else sitk.sitkNearestNeighbor,
        float(default),
        sitk.sitkFloat32 if linear else moving.GetPixelID(),
    )
    carry_records(moving, out)
    return out


def carry_records(source: sitk.Image, target: sitk.Image) -> sitk.Image:
    """Copy ``source``'s ``mrihisto_*`` metadata (what the project records about the pixels:
    MRI normalisation, MSI reduction) onto ``target``, which is returned; ITK's own reader keys
    are left behind. Resampling and arrays rebuilt from pixels lose them otherwise."""
    for key in source.GetMetaDataKeys():
        if key.startswith("mrihisto_"):
            target.SetMetaData(key, source.GetMetaData(key))
    return target
