"""Apply an MRI -> MRI generator (T1 -> T2) to a whole new volume, on the input's own grid.

The generator was trained on slices of one plane at one pixel size, normalised by robust
percentiles of their volume and zero-padded (its file's ``input_spec``). A new volume is:

1. resampled (linear) so that its in-plane pixels are square at the model's pixel size, its
   through-plane spacing kept and its field of view, origin and direction unchanged;
2. scaled to [0, 1] by the same percentiles of the whole volume;
3. cut into slices of the plane, each zero-padded (centred) to the training side (or to the
   next size the network's strides accept), translated, cropped back;
4. stacked into a volume and resampled (linear) back onto the input's grid.

The result is float32 in [0, 1]: target-contrast intensities in the normalised units the model
was trained on (there are no scanner units for a synthetic contrast). No Kedro imports.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import SimpleITK as sitk

from mrihisto_kedro.imaging.input_spec import InputKind, InputSpec
from mrihisto_kedro.imaging.mri import (
    Plane,
    extract_slice,
    select_volume,
    slice_layout,
    stack_slices,
)
from mrihisto_kedro.params import Params, Range

logger = logging.getLogger(__name__)

__all__ = ["NewVolumeParams", "resample_in_plane", "translate_volume"]

Predict = Callable[[np.ndarray], np.ndarray]
"""``(N, C, H, W)`` float32 in [-1, 1] -> ``(N, C_out, H, W)`` in the generator's output range."""


@dataclass(frozen=True)
class NewVolumeParams(Params):
    """``inference_volume.new_volume``: what the generator file does not know.

    Attributes:
        volume_index: 0-based volume of a 4-D input (``None``: the input must be 3-D).
        batch_size: slices per forward pass.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` or ``mps``.
    """

    volume_index: int | None = None
    batch_size: Annotated[int, Range(ge=1)] = 8
    device: str = "auto"


def resample_in_plane(volume: sitk.Image, plane: Plane | str, pixel_mm: float) -> sitk.Image:
    """``volume`` (3-D, float32) with square in-plane voxels of ``pixel_mm`` for ``plane``.

    The through-plane spacing, the direction and the physical field of view are kept: the new
    grid's first voxel centre is half a new voxel inside the old grid's first voxel's edge.
    """
    layout = slice_layout(volume, plane)
    spacing = list(volume.GetSpacing())
    size = list(volume.GetSize())
    new_spacing, new_size = list(spacing), list(size)
    for axis in (layout.col_axis, layout.row_axis):
        new_spacing[axis] = pixel_mm
        new_size[axis] = max(1, round(size[axis] * spacing[axis] / pixel_mm))
    direction = np.asarray(volume.GetDirection(), dtype=float).reshape(3, 3)
    shift = (np.asarray(new_spacing) - np.asarray(spacing)) / 2.0
    origin = np.asarray(volume.GetOrigin()) + direction @ shift
    return sitk.Resample(
        sitk.Cast(volume, sitk.sitkFloat32),
        new_size,
        sitk.Transform(3, sitk.sitkIdentity),
        sitk.sitkLinear,
        tuple(origin),
        tuple(new_spacing),
        volume.GetDirection(),
        0.0,
        sitk.sitkFloat32,
    )


def _padded_side(side: int, pad_to: int | None, multiple: int) -> int:
    target = max(side, pad_to or 0)
    return int(math.ceil(target / multiple) * multiple)


def translate_volume(
    volume: sitk.Image,
    predict: Predict,
    spec: InputSpec,
    *,
    output_range: tuple[float, float] = (-1.0, 1.0),
    multiple: int = 4,
    batch_size: int = 8,
    volume_index: int | None = None,
    source: str = "volume",
) -> sitk.Image:
    """Translate every ``spec.plane`` slice of ``volume`` and return a volume on its grid.

    Args:
        volume: 3-D (or 4-D with ``volume_index``) MRI, any pixel type, any spacing.
        predict: the generator, see :data:`Predict`.
        spec: the generator's input spec (kind ``volume_to_volume``).
        output_range: the generator's raw output range, mapped to [0, 1].
        multiple: padded slice sides are multiples of this (the network's total stride:
            4 for the ResNet generators, ``2 ** num_downs`` for a U-Net).
        batch_size: slices per call of ``predict``.
        volume_index: the volume of a 4-D input.
        source: the input's name, for errors.

    Returns:
        float32 volume in [0, 1] with ``volume``'s size, spacing, origin and direction.

    Raises:
        ValueError: a spec of another kind or without a plane, a 4-D input without
            ``volume_index``, a constant volume. Messages name ``source``.
    """
    if spec.kind is not InputKind.VOLUME_TO_VOLUME or spec.plane is None:
        raise ValueError(
            f"{source}: the generator translates {spec.kind.value} inputs, not MRI volumes"
        )
    if volume.GetDimension() == 4:
        if volume_index is None:
            raise ValueError(
                f"{source} is 4-D ({volume.GetSize()[3]} volumes): set "
                "inference_volume.new_volume.volume_index"
            )
        volume = select_volume(volume, volume_index)
    elif volume.GetDimension() != 3:
        raise ValueError(f"{source}: expected a 3-D volume, got {volume.GetDimension()}-D")
    if spec.pixel_size_um[0] != spec.pixel_size_um[1]:
        logger.warning("%s: the model's pixels are not square %s", source, spec.pixel_size_um)
    values = sitk.GetArrayViewFromImage(volume).astype(np.float64)
    lo, hi = np.percentile(values, [spec.lower_percentile, spec.upper_percentile])
    if not hi > lo:
        raise ValueError(f"{source}: the volume is constant between its percentiles")
    grid = resample_in_plane(volume, spec.plane, spec.pixel_size_um[0] / 1000.0)
    layout = slice_layout(grid, spec.plane)
    n = grid.GetSize()[layout.normal_axis]
    first = sitk.GetArrayViewFromImage(extract_slice(grid, spec.plane, 0))
    h, w = first.shape
    side_h = _padded_side(h, spec.pad_to, multiple)
    side_w = _padded_side(w, spec.pad_to, multiple)
    top, left = (side_h - h) // 2, (side_w - w) // 2
    in_lo, in_hi = spec.input_range
    out_lo, out_hi = output_range
    result = np.zeros((n, h, w), np.float32)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        batch = np.full((stop - start, 1, side_h, side_w), -1.0, np.float32)
        for k, i in enumerate(range(start, stop)):
            s = sitk.GetArrayViewFromImage(extract_slice(grid, spec.plane, i)).astype(np.float64)
            unit = np.clip((s - lo) / (hi - lo), 0.0, 1.0)
            batch[k, 0, top : top + h, left : left + w] = (unit - in_lo) * (
                2.0 / (in_hi - in_lo)
            ) - 1.0
        out = np.asarray(predict(batch), dtype=np.float32)[:, 0, top : top + h, left : left + w]
        result[start:stop] = np.clip((out - out_lo) / (out_hi - out_lo), 0.0, 1.0)
    translated = stack_slices(grid, spec.plane, result)
    logger.info(
        "%s: %d %s slices of %dx%d px at %.3g mm translated (padded to %dx%d)",
        source, n, spec.plane, w, h, spec.pixel_size_um[0] / 1000.0, side_w, side_h,
    )  # fmt: skip
    reference = sitk.Cast(volume, sitk.sitkFloat32)
    return sitk.Resample(
        translated,
        reference,
        sitk.Transform(3, sitk.sitkIdentity),
        sitk.sitkLinear,
        0.0,
        sitk.sitkFloat32,
    )
