"""Registration channels of a stained RGB slide, and slides and masks as ``SimpleITK`` images.

A stained slide is RGB; intensity-based registration needs one channel in which tissue is
bright (:class:`TissueChannel`, :func:`tissue_channel`), on the slide's physical grid in mm
(:func:`fixed_image_from_rgb`, :func:`rgb_to_sitk`). :func:`mask_image` puts a boolean mask on an
image's grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np
import SimpleITK as sitk
from skimage.color import hed_from_rgb

from .geometry import check_origin, check_spacing

__all__ = [
    "TissueChannel",
    "fixed_image_from_rgb",
    "mask_image",
    "rgb_to_sitk",
    "tissue_channel",
]


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
_HED_COLUMN = {
    TissueChannel.HEMATOXYLIN: 0,
    TissueChannel.EOSIN: 1,
    TissueChannel.DAB: 2,
}
_GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)
_CHUNK_PIXELS = 1 << 21


def _channel_luts(
    channel: TissueChannel,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], bool]:
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
    image.SetSpacing(check_spacing(spacing_mm, "spacing_mm"))
    image.SetOrigin(check_origin(origin_mm, "origin_mm"))
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
    image.SetSpacing(check_spacing(spacing_mm, "spacing_mm"))
    image.SetOrigin(check_origin(origin_mm, "origin_mm"))
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
