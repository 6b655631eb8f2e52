"""The reduced MSI padded black or white to the histology's physical extent (no Kedro).

Paper 003 compared both paddings: :func:`pad_to_histology` places the MSI on a canvas of either
colour (its pixels keep their physical positions) with the footprint of the MSI pixels, which the
registration masks and the tiles' MSI fraction counts.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from mrihisto_kedro.msi.geometry import image_to_array
from mrihisto_kedro.msi.reduction import PadColour, pad_to_shape

__all__ = ["pad_to_histology", "pad_value"]


def pad_value(colour: PadColour | str) -> float:
    """Value of a padding colour for float images in [0, 1]: black 0.0, white 1.0."""
    return 0.0 if PadColour(colour) is PadColour.BLACK else 1.0


def pad_to_histology(
    msi: sitk.Image, histology: sitk.Image, colour: PadColour | str, margin_px: int = 2
) -> tuple[sitk.Image, sitk.Image]:
    """Place the MSI on a black or white canvas covering the histology's physical extent.

    The canvas keeps the MSI pixel size; it is at least the histology's extent (in MSI pixels)
    plus ``margin_px`` on every side, with the MSI centred on it
    (:func:`~mrihisto_kedro.msi.reduction.pad_to_shape`). Its origin is shifted so that every MSI
    pixel keeps its physical position: the canvas is the same MSI, padded.

    Args:
        msi: vector image from :func:`msi_image` (float in [0, 1]).
        histology: the working-grid histology (only its physical extent is used).
        colour: :class:`~mrihisto_kedro.msi.reduction.PadColour`.
        margin_px: MSI pixels beyond the histology's extent on every side.

    Returns:
        ``(canvas, footprint)``: the padded vector image and a uint8 image (1 on MSI pixels,
        0 on padding) of the same geometry.
    """
    spacing = np.asarray(msi.GetSpacing(), dtype=np.float64)
    extent = np.asarray(histology.GetSize(), dtype=np.float64) * np.asarray(histology.GetSpacing())
    size = np.asarray(msi.GetSize())
    canvas_wh = np.maximum(np.ceil(extent / spacing).astype(int), size) + 2 * int(margin_px)
    array = image_to_array(msi)
    canvas, placement = pad_to_shape(
        array, (int(canvas_wh[1]), int(canvas_wh[0])), colour=PadColour(colour)
    )
    footprint, _ = pad_to_shape(
        np.ones(array.shape[:2], dtype=np.uint8),
        (int(canvas_wh[1]), int(canvas_wh[0])),
        colour=PadColour.BLACK,
    )
    origin = tuple(
        float(o - k * s)
        for o, k, s in zip(msi.GetOrigin(), (placement.left, placement.top), spacing, strict=True)
    )
    out = sitk.GetImageFromArray(canvas, isVector=True)
    mask = sitk.GetImageFromArray(footprint)
    for image in (out, mask):
        image.SetSpacing(tuple(float(s) for s in spacing))
        image.SetOrigin(origin)
    return out, mask
