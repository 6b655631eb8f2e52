"""MRI volumes: anatomical slice extraction and robust intensity normalisation (no Kedro).

Conventions (used by the demo, the data_engineering and registration pipelines):

* A volume is a 3-D ``SimpleITK.Image`` in its own voxel grid; its direction cosines say which
  voxel axis runs along which patient axis (ITK's LPS physical space: +x Left, +y Posterior,
  +z Superior).
* ``slice_index`` counts voxels along the voxel axis closest to the plane's normal (what a user
  reads in ITK-SNAP or 3D Slicer for that file).
* An extracted slice is a 2-D ``SimpleITK.Image`` displayed the radiological way: row 0 is the
  most superior row (sagittal, coronal) or the most anterior row (axial); column 0 is anterior
  (sagittal) or the patient's right (coronal, axial). Its spacing is the in-plane voxel spacing
  in mm, its origin is ``(0, 0)`` and its direction is identity, so physical coordinates of a
  pixel ``(col, row)`` are ``(col * spacing[0], row * spacing[1])`` mm.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import SimpleITK as sitk


class Plane(StrEnum):
    """Anatomical plane of a slice."""

    SAGITTAL = "sagittal"
    CORONAL = "coronal"
    AXIAL = "axial"


# physical (LPS) axis of the plane normal, the column axis and the row axis, and whether the
# column / row index must increase along +physical axis (True) or against it (False).
_PLANE_AXES: dict[Plane, tuple[int, int, int, bool, bool]] = {
    Plane.SAGITTAL: (0, 1, 2, True, False),  # cols anterior->posterior, rows superior->inferior
    Plane.CORONAL: (1, 0, 2, True, False),  # cols right->left, rows superior->inferior
    Plane.AXIAL: (2, 0, 1, True, True),  # cols right->left, rows anterior->posterior
}


def volume_count(image: sitk.Image) -> int:
    """Number of 3-D volumes in ``image``: 1 for a 3-D image, the 4th size for a 4-D one.

    Raises:
        ValueError: the image is neither 3-D nor 4-D.
    """
    if image.GetDimension() == 3:
        return 1
    if image.GetDimension() == 4:
        return int(image.GetSize()[3])
    raise ValueError(f"expected a 3-D or 4-D image, got a {image.GetDimension()}-D image")


def select_volume(image: sitk.Image, index: int) -> sitk.Image:
    """Volume ``index`` (0-based) of a 4-D image (time, echo, b-value), or a 3-D image itself.

    The 3-D result keeps the first three axes' origin, spacing (mm) and direction.

    Raises:
        ValueError: ``index`` out of range (for a 3-D image only 0 is valid).
    """
    n = volume_count(image)
    if not 0 <= index < n:
        raise ValueError(f"volume index {index} out of range 0..{n - 1}")
    if image.GetDimension() == 3:
        return image
    size = list(image.GetSize())
    return sitk.Extract(image, size=[*size[:3], 0], index=[0, 0, 0, int(index)])


def _voxel_axis_for(direction: np.ndarray, physical_axis: int) -> tuple[int, float]:
    """Voxel axis whose direction is closest to ``physical_axis`` and the sign of that cosine."""
    column = int(np.argmax(np.abs(direction[physical_axis, :])))
    return column, float(np.sign(direction[physical_axis, column]))


def slice_count(volume: sitk.Image, plane: Plane | str) -> int:
    """Number of slices of ``volume`` in ``plane`` (valid ``slice_index`` is ``0 .. n-1``)."""
    plane = Plane(plane)
    direction = np.asarray(volume.GetDirection(), dtype=float).reshape(3, 3)
    axis, _ = _voxel_axis_for(direction, _PLANE_AXES[plane][0])
    return int(volume.GetSize()[axis])


def extract_slice(volume: sitk.Image, plane: Plane | str, slice_index: int) -> sitk.Image:
    """Extract one anatomical slice from a 3-D volume, keeping in-plane spacing.

    Args:
        volume: 3-D image (any pixel type, one component), size ``(X, Y, Z)`` voxels.
        plane: ``sagittal``, ``coronal`` or ``axial``.
        slice_index: voxel index along the axis closest to the plane normal.

    Returns:
        2-D image of the volume's pixel type, shape ``(rows, cols)`` as an array, spacing
        ``(col_mm, row_mm)``, origin ``(0, 0)``, identity direction, oriented as described in the
        module docstring. Metadata keys ``mrihisto_plane`` and ``mrihisto_slice_index`` record
        where it came from.

    Raises:
        ValueError: the image is not 3-D or ``slice_index`` is out of range.
    """
    plane = Plane(plane)
    if volume.GetDimension() != 3:
        raise ValueError(f"expected a 3-D volume, got a {volume.GetDimension()}-D image")
    direction = np.asarray(volume.GetDirection(), dtype=float).reshape(3, 3)
    normal_phys, col_phys, row_phys, col_pos, row_pos = _PLANE_AXES[plane]
    normal_axis, _ = _voxel_axis_for(direction, normal_phys)
    col_axis, col_sign = _voxel_axis_for(direction, col_phys)
    row_axis, row_sign = _voxel_axis_for(direction, row_phys)
    if len({normal_axis, col_axis, row_axis}) != 3:
        raise ValueError(f"volume direction {direction.tolist()} is too oblique to slice {plane}")
    n = volume.GetSize()[normal_axis]
    if not 0 <= slice_index < n:
        raise ValueError(f"{plane} slice_index {slice_index} out of range 0..{n - 1}")

    array = sitk.GetArrayViewFromImage(volume).transpose(2, 1, 0)  # (X, Y, Z) voxel order
    index: list[slice | int] = [slice(None)] * 3
    index[normal_axis] = int(slice_index)
    plane_array = array[tuple(index)]
    remaining = [a for a in range(3) if a != normal_axis]
    # plane_array axes are `remaining` in order; arrange as (row, col)
    if remaining.index(row_axis) != 0:
        plane_array = plane_array.T
    if (row_sign > 0) != row_pos:
        plane_array = plane_array[::-1, :]
    if (col_sign > 0) != col_pos:
        plane_array = plane_array[:, ::-1]
    spacing = volume.GetSpacing()
    out = sitk.GetImageFromArray(np.ascontiguousarray(plane_array))
    out.SetSpacing((float(spacing[col_axis]), float(spacing[row_axis])))
    out.SetOrigin((0.0, 0.0))
    out.SetMetaData("mrihisto_plane", str(plane))
    out.SetMetaData("mrihisto_slice_index", str(int(slice_index)))
    return out


def robust_normalise(
    image: np.ndarray,
    lower_percentile: float = 1.0,
    upper_percentile: float = 99.5,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Scale intensities to ``[0, 1]`` by robust percentiles, clipping outside them.

    Works for any numeric dtype (uint16 and int16 included): percentiles are computed in float64
    so 16-bit data never overflows.

    Args:
        image: array of any shape and numeric dtype.
        lower_percentile: percentile mapped to 0 (0..100).
        upper_percentile: percentile mapped to 1 (0..100), greater than ``lower_percentile``.
        mask: optional boolean array of the same shape; percentiles are taken inside it.

    Returns:
        float32 array of the same shape in ``[0, 1]``.

    Raises:
        ValueError: bad percentiles, non-finite values, or a constant image.
    """
    if not 0.0 <= lower_percentile < upper_percentile <= 100.0:
        raise ValueError(
            f"need 0 <= lower_percentile < upper_percentile <= 100, got "
            f"{lower_percentile}, {upper_percentile}"
        )
    data = np.asarray(image, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise ValueError(f"image has {int(np.sum(~np.isfinite(data)))} non-finite values (NaN/inf)")
    sample = data[mask.astype(bool)] if mask is not None else data
    if sample.size == 0:
        raise ValueError("mask selects no pixels")
    lo, hi = np.percentile(sample, [lower_percentile, upper_percentile])
    if hi <= lo:
        raise ValueError(f"image is constant between percentiles ({lo} .. {hi})")
    return np.clip((data - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
