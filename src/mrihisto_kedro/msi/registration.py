"""Affine registration of the reduced MSI (moving) to the working-grid H&E (fixed) (no Kedro).

From control points (least squares,
:func:`~mrihisto_kedro.imaging.registration.affine_from_control_points`: the paper's method) or
by Mattes mutual information on one channel of the padded MSI against a tissue channel of the H&E
(:func:`~mrihisto_kedro.imaging.registration.register_affine`, the padding masked out);
:func:`resample_msi` and :func:`msi_coverage` bring the padded MSI and its footprint onto the
working grid. Transforms map histology (fixed) mm to MSI (moving) mm, as in ITK and
:mod:`mrihisto_kedro.imaging.registration`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from mrihisto_kedro.imaging.registration import (
    ControlPoints,
    Interpolator,
    affine_from_control_points,
    fixed_image_from_rgb,
    matrix_to_affine,
    register_affine,
    resample_moving,
)
from mrihisto_kedro.msi.geometry import channel_image, image_to_array
from mrihisto_kedro.msi.padding import pad_value
from mrihisto_kedro.msi.params import MsiRegistrationParams, RegistrationMode
from mrihisto_kedro.msi.reduction import PadColour

__all__ = ["MsiRegistration", "msi_coverage", "register_msi", "resample_msi"]


@dataclass(frozen=True)
class MsiRegistration:
    """Result of :func:`register_msi`.

    Attributes:
        transform: histology (fixed) mm -> MSI (moving) mm.
        initial_transform: the centred start: the histology's centre onto the MSI's centre.
        mode: how it was found.
        seconds: wall time.
        converged: intensity mode: every stage stopped before its iteration limit; control
            points: ``True``.
        control_point_residuals_um: ``(N,)`` landmark residuals ``|T(fixed) - moving|`` in µm
            (control-point mode), else ``None``.
        notes: warnings of the optimiser, if any.
        start_offset_px: intensity mode: the entry of ``optimiser.initial_offsets_px`` (MSI
            pixels) whose start was kept; ``None`` for control points (on the demo's 10
            specimens 8 winners are off-centre, every TRE under 2 µm).
    """

    transform: sitk.AffineTransform
    initial_transform: sitk.AffineTransform
    mode: RegistrationMode
    seconds: float
    converged: bool
    control_point_residuals_um: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    start_offset_px: tuple[float, float] | None = None


def _centre_mm(image: sitk.Image) -> np.ndarray:
    size = np.asarray(image.GetSize(), dtype=np.float64)
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(tuple((size - 1) / 2.0)))


def _centred(histology: sitk.Image, msi: sitk.Image) -> sitk.AffineTransform:
    """Translation taking the histology's centre to the (unpadded) MSI's centre."""
    matrix = np.eye(3)
    matrix[:2, 2] = _centre_mm(msi) - _centre_mm(histology)
    return matrix_to_affine(matrix, center=tuple(_centre_mm(histology)))


def register_msi(
    histology: sitk.Image,
    msi: sitk.Image,
    canvas: sitk.Image,
    footprint: sitk.Image,
    params: MsiRegistrationParams,
    control_points: ControlPoints | None = None,
) -> MsiRegistration:
    """Affine registration of the reduced MSI (moving) to the working-grid H&E (fixed).

    Args:
        histology: vector uint8 image from :func:`histology_on_grid`.
        msi: the unpadded reduced MSI (:func:`msi_image`), for the centred start.
        canvas: the padded MSI (:func:`pad_to_histology`); intensity mode registers
            ``params.moving_channel`` of it, with the footprint as the moving mask (padding is
            never sampled).
        footprint: the canvas' MSI footprint.
        params: :class:`MsiRegistrationParams`.
        control_points: landmark pairs (histology mm, MSI mm); required in control-point mode.

    Returns:
        :class:`MsiRegistration`.

    Raises:
        ValueError: control-point mode without control points.
        ~mrihisto_kedro.imaging.registration.RegistrationError: the intensity optimisation
            failed (see :func:`~mrihisto_kedro.imaging.registration.register_affine`).
        ~mrihisto_kedro.imaging.registration.ControlPointError: unusable landmarks.
    """
    start = time.perf_counter()
    initial = _centred(histology, msi)
    if params.mode is RegistrationMode.CONTROL_POINTS:
        if control_points is None:
            raise ValueError("control-point registration needs control points")
        transform, residuals = affine_from_control_points(
            control_points.moving_mm, control_points.fixed_mm
        )
        return MsiRegistration(
            transform=transform,
            initial_transform=initial,
            mode=params.mode,
            seconds=time.perf_counter() - start,
            converged=True,
            control_point_residuals_um=residuals * 1000.0,
        )
    rgb = image_to_array(histology)
    fixed = fixed_image_from_rgb(
        rgb, histology.GetSpacing(), params.fixed_channel, histology.GetOrigin()
    )
    result = register_affine(
        fixed, channel_image(canvas, params.moving_channel), params.optimiser, moving_mask=footprint
    )
    return MsiRegistration(
        transform=result.transform,
        initial_transform=initial,
        mode=params.mode,
        seconds=time.perf_counter() - start,
        converged=result.converged,
        notes=result.warnings,
        start_offset_px=result.start_offset_px,
    )


def resample_msi(
    canvas: sitk.Image, grid: sitk.Image, transform: sitk.Transform, colour: PadColour | str
) -> np.ndarray:
    """The padded MSI on the working grid (linear interpolation), channels last.

    Grid pixels that map outside the canvas take the padding value too, so every pixel outside
    the MSI footprint is exactly 0 (black) or 1 (white); within half an MSI pixel of the
    footprint's edge the interpolation mixes MSI and padding.

    Returns:
        float32 ``(H, W, C)`` in [0, 1] on ``grid``.
    """
    value = pad_value(colour)
    channels = [
        sitk.GetArrayFromImage(
            resample_moving(
                sitk.VectorIndexSelectionCast(canvas, k, sitk.sitkFloat32),
                grid,
                transform,
                Interpolator.LINEAR,
                default=value,
            )
        )
        for k in range(canvas.GetNumberOfComponentsPerPixel())
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def msi_coverage(footprint: sitk.Image, grid: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """The MSI footprint on the working grid (nearest neighbour): uint8 0/1 image on ``grid``."""
    return sitk.Cast(
        resample_moving(footprint, grid, transform, Interpolator.NEAREST, default=0),
        sitk.sitkUInt8,
    )
