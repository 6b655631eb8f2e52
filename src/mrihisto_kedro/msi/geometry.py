"""MSI and H&E images with physical geometry, as 2-D ``SimpleITK`` images (no Kedro).

Geometry: physical ``(x, y)`` millimetres throughout. MSI pixel ``(col, row)`` (0-based) lies at
``(col * sx, row * sy)`` mm with ``(sx, sy)`` the MSI pixel size; histology level-0 pixel
``(c, r)`` at ``(c * mpp_x / 1000, r * mpp_y / 1000)`` mm (the conventions of
:mod:`mrihisto_kedro.demo.msi`, whose ground-truth affine maps MSI mm to histology mm).
:func:`histology_on_grid` makes the working grid the tiles are cut on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from mrihisto_kedro.imaging.downsample import downsampled_origin_mm

__all__ = ["channel_image", "histology_on_grid", "image_to_array", "msi_image"]


def msi_image(array: np.ndarray, pixel_size_um: Sequence[float]) -> sitk.Image:
    """A channels-last MSI array as a 2-D vector ``SimpleITK`` image in MSI mm.

    Args:
        array: ``(h, w, C)`` (float32 for reduced images, any real dtype).
        pixel_size_um: ``(x, y)`` MSI pixel size in µm.

    Returns:
        Vector image (``C`` components), spacing ``pixel_size / 1000`` mm, origin ``(0, 0)``
        (pixel ``(0, 0)``'s centre), identity direction.
    """
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise ValueError(f"expected (h, w, C), got shape {arr.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=True)
    image.SetSpacing(tuple(float(s) / 1000.0 for s in pixel_size_um))
    image.SetOrigin((0.0, 0.0))
    return image


def image_to_array(image: sitk.Image) -> np.ndarray:
    """Pixels of a 2-D image, channels last: ``(H, W, C)`` for vector images, ``(H, W)`` else."""
    return sitk.GetArrayFromImage(image)


def histology_on_grid(rgb: np.ndarray, mpp: Sequence[float], downsample: int) -> sitk.Image:
    """The H&E block-averaged by ``downsample`` as a vector uint8 image in histology mm.

    Rows and columns beyond the last whole block are dropped. Pixel ``(0, 0)``'s centre lies at
    :func:`~mrihisto_kedro.imaging.downsample.downsampled_origin_mm` (the centre of its block).

    Args:
        rgb: uint8 ``(H, W, 3)`` level-0 pixels (an alpha channel is dropped).
        mpp: ``(x, y)`` level-0 µm per pixel.
        downsample: integer block size (>= 1).

    Returns:
        ``sitkVectorUInt8`` image of size ``(W // f, H // f)``, spacing ``mpp * f / 1000`` mm.
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"expected RGB (H, W, 3), got shape {arr.shape}")
    arr = arr[..., :3].astype(np.float64)
    f = int(downsample)
    h, w = arr.shape[0] // f, arr.shape[1] // f
    if h < 1 or w < 1:
        raise ValueError(f"image {arr.shape[:2]} is smaller than one {f}x{f} block")
    blocks = arr[: h * f, : w * f].reshape(h, f, w, f, 3).mean(axis=(1, 3))
    grid = np.clip(np.rint(blocks), 0, 255).astype(np.uint8)
    image = sitk.GetImageFromArray(grid, isVector=True)
    image.SetSpacing((mpp[0] * f / 1000.0, mpp[1] * f / 1000.0))
    image.SetOrigin(downsampled_origin_mm(float(f), (float(mpp[0]), float(mpp[1]))))
    return image


def channel_image(image: sitk.Image, channel: int | None) -> sitk.Image:
    """One component of a vector image (``None``: the mean of all), float32, same geometry."""
    arr = image_to_array(image).astype(np.float32)
    scalar = arr.mean(axis=-1) if channel is None else arr[..., channel]
    out = sitk.GetImageFromArray(np.ascontiguousarray(scalar))
    out.CopyInformation(image)
    return out
