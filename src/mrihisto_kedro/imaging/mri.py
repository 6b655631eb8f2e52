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

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import numpy as np
import SimpleITK as sitk

from mrihisto_kedro.params import Params, Range, fail


class Plane(StrEnum):
    """Anatomical plane of a slice (``sagittal``, ``coronal``, ``axial``)."""

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


@dataclass(frozen=True)
class SliceLayout:
    """How the 2-D slices of one plane sit in a volume's voxel array (see :func:`slice_layout`).

    Attributes:
        normal_axis: voxel axis (0 = x, 1 = y, 2 = z in ITK order) the slice index runs along.
        col_axis, row_axis: voxel axes of the slice's columns and rows.
        transpose: the ``(X, Y, Z)`` array's remaining axes come as (col, row) and must be
            transposed to (row, col).
        flip_rows, flip_cols: rows / columns are reversed to display radiologically.
    """

    normal_axis: int
    col_axis: int
    row_axis: int
    transpose: bool
    flip_rows: bool
    flip_cols: bool


def slice_layout(volume: sitk.Image, plane: Plane | str) -> SliceLayout:
    """The layout of ``plane`` slices in ``volume`` (3-D), from its direction cosines.

    Raises:
        ValueError: the image is not 3-D, or too oblique for the plane.
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
    remaining = [a for a in range(3) if a != normal_axis]
    return SliceLayout(
        normal_axis=normal_axis,
        col_axis=col_axis,
        row_axis=row_axis,
        transpose=remaining.index(row_axis) != 0,
        flip_rows=(row_sign > 0) != row_pos,
        flip_cols=(col_sign > 0) != col_pos,
    )


def _slice_of(xyz: np.ndarray, layout: SliceLayout, index: int) -> np.ndarray:
    """View of slice ``index`` of an ``(X, Y, Z)`` array as ``(rows, cols)``."""
    selector: list[slice | int] = [slice(None)] * 3
    selector[layout.normal_axis] = int(index)
    plane_array = xyz[tuple(selector)]
    if layout.transpose:
        plane_array = plane_array.T
    if layout.flip_rows:
        plane_array = plane_array[::-1, :]
    if layout.flip_cols:
        plane_array = plane_array[:, ::-1]
    return plane_array


def extract_slice(volume: sitk.Image, plane: Plane | str, slice_index: int) -> sitk.Image:
    """Extract one anatomical slice from a 3-D volume, keeping in-plane spacing.

    Args:
        volume: 3-D image (any pixel type, one component), size ``(X, Y, Z)`` voxels.
        plane: ``sagittal``, ``coronal`` or ``axial``.
        slice_index: voxel index along the axis closest to the plane normal.

    Returns:
        2-D image of the volume's pixel type, shape ``(rows, cols)`` as an array, spacing
        ``(col_mm, row_mm)`` (both kept: non-square pixels stay non-square), origin ``(0, 0)``,
        identity direction, oriented as described in the module docstring. Metadata keys
        ``mrihisto_plane`` and ``mrihisto_slice_index`` record where it came from.

    Raises:
        ValueError: the image is not 3-D or ``slice_index`` is out of range.
    """
    plane = Plane(plane)
    layout = slice_layout(volume, plane)
    n = volume.GetSize()[layout.normal_axis]
    if not 0 <= slice_index < n:
        raise ValueError(f"{plane} slice_index {slice_index} out of range 0..{n - 1}")
    array = sitk.GetArrayViewFromImage(volume).transpose(2, 1, 0)  # (X, Y, Z) voxel order
    plane_array = _slice_of(array, layout, slice_index)
    spacing = volume.GetSpacing()
    out = sitk.GetImageFromArray(np.ascontiguousarray(plane_array))
    out.SetSpacing((float(spacing[layout.col_axis]), float(spacing[layout.row_axis])))
    out.SetOrigin((0.0, 0.0))
    out.SetMetaData("mrihisto_plane", str(plane))
    out.SetMetaData("mrihisto_slice_index", str(int(slice_index)))
    return out


def stack_slices(volume: sitk.Image, plane: Plane | str, slices: np.ndarray) -> sitk.Image:
    """The inverse of :func:`extract_slice` for every slice: a volume on ``volume``'s grid.

    Args:
        volume: the 3-D grid (size, spacing, origin, direction) the slices came from.
        plane: their plane.
        slices: ``(n, rows, cols)`` array, slice ``i`` as :func:`extract_slice` ``(volume,
            plane, i)`` lays it out.

    Returns:
        A 3-D image of ``slices.dtype`` with ``volume``'s geometry.
    """
    layout = slice_layout(volume, plane)
    size = volume.GetSize()
    xyz = np.zeros(size, dtype=slices.dtype)
    if slices.shape[0] != size[layout.normal_axis]:
        raise ValueError(f"{slices.shape[0]} slices for {size[layout.normal_axis]} {plane} slices")
    for i in range(slices.shape[0]):
        view = _slice_of(xyz, layout, i)
        if view.shape != slices.shape[1:]:
            raise ValueError(f"slice shape {slices.shape[1:]} != the grid's {view.shape}")
        view[...] = slices[i]
    out = sitk.GetImageFromArray(np.ascontiguousarray(xyz.transpose(2, 1, 0)))
    out.CopyInformation(volume)
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


@dataclass(frozen=True)
class MriNormalisation(Params):
    """Robust percentile scaling of MRI slices to [0, 1] (see :func:`robust_normalise`).

    Attributes:
        lower_percentile: percentile (0..100) of the slice mapped to 0.
        upper_percentile: percentile (0..100, above ``lower_percentile``) mapped to 1.
    """

    lower_percentile: Annotated[float, Range(ge=0.0, lt=100.0)] = 1.0
    upper_percentile: Annotated[float, Range(gt=0.0, le=100.0)] = 99.5

    def validate(self) -> None:
        """The lower percentile is below the upper one."""
        if not self.lower_percentile < self.upper_percentile:
            fail(
                "lower_percentile",
                f"must be below upper_percentile ({self.upper_percentile:g}), got "
                f"{self.lower_percentile:g}",
            )


#: metadata keys of an MRI slice recording the percentiles it was normalised with
LOWER_PERCENTILE_KEY = "mrihisto_lower_percentile"
UPPER_PERCENTILE_KEY = "mrihisto_upper_percentile"


class NormalisationRecordError(ValueError):
    """An MRI slice does not record the percentiles it was normalised with."""


def record_normalisation(image: sitk.Image, normalisation: MriNormalisation) -> None:
    """Write ``normalisation`` into ``image``'s metadata (kept by ``.mha``/``.nrrd`` files)."""
    image.SetMetaData(LOWER_PERCENTILE_KEY, repr(float(normalisation.lower_percentile)))
    image.SetMetaData(UPPER_PERCENTILE_KEY, repr(float(normalisation.upper_percentile)))


def recorded_normalisation(image: sitk.Image, source: str) -> MriNormalisation:
    """The percentiles an MRI slice (or the MRI resampled from it) was normalised with.

    Read from the image itself (:func:`record_normalisation`), so that steps after
    data_engineering record what the pixels are, not today's
    ``data_engineering.mri_normalisation``.

    Args:
        image: as loaded from a file written by data_engineering or registration.
        source: names the file or pair in the error.

    Raises:
        NormalisationRecordError: the keys are missing or invalid (names ``source``).
    """
    try:
        return MriNormalisation(
            lower_percentile=float(image.GetMetaData(LOWER_PERCENTILE_KEY)),
            upper_percentile=float(image.GetMetaData(UPPER_PERCENTILE_KEY)),
        )
    except (RuntimeError, ValueError) as exc:  # RuntimeError: SimpleITK's missing key
        raise NormalisationRecordError(
            f"{source}: records no MRI normalisation ({LOWER_PERCENTILE_KEY!r}, "
            f"{UPPER_PERCENTILE_KEY!r} in its metadata); it was written by an older version: "
            "re-run `kedro run --pipeline=data_engineering` and then "
            "`kedro run --pipeline=registration`"
        ) from exc


def normalised_slice(
    volume: sitk.Image,
    plane: Plane | str,
    slice_index: int,
    normalisation: MriNormalisation | None = None,
    volume_index: int = 0,
) -> sitk.Image:
    """One anatomical slice of a 3-D or 4-D MRI, scaled to [0, 1] by robust percentiles.

    Args:
        volume: 3-D volume, or 4-D (time, echo, b-value) of which ``volume_index`` is used.
        plane: anatomical plane of the slice.
        slice_index: voxel index along the axis closest to the plane normal.
        normalisation: the percentiles (default 1 and 99.5).
        volume_index: 0-based volume of a 4-D image (only 0 for a 3-D one).

    Returns:
        float32 2-D image ``(rows, cols)`` in [0, 1] with the slice's spacing in mm, origin
        and direction (see :func:`extract_slice`) and its ``mrihisto_*`` metadata, the
        percentiles included (:func:`record_normalisation`).

    Raises:
        ValueError: volume index or slice index out of range, or a constant slice.
    """
    norm = normalisation or MriNormalisation()
    plane_image = extract_slice(select_volume(volume, volume_index), plane, slice_index)
    array = robust_normalise(
        sitk.GetArrayViewFromImage(plane_image), norm.lower_percentile, norm.upper_percentile
    )
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(plane_image)
    for key in plane_image.GetMetaDataKeys():
        image.SetMetaData(key, plane_image.GetMetaData(key))
    record_normalisation(image, norm)
    return image
