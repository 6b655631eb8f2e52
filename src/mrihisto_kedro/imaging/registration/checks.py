"""What makes an intensity-based registration fail: :class:`RegistrationError` and the checks.

The engine checks its inputs (2-D, scalar, finite, not constant) and each result (finite,
not mirrored or collapsed, plausibly scaled, overlapping, sharing more information than chance);
a failed check raises :class:`RegistrationError` rather than returning a wrong transform.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from mrihisto_kedro.metrics.mutual_information import mutual_information

from .params import RegistrationParams
from .transforms import affine_to_matrix, resample_moving

__all__ = [
    "RegistrationError",
    "check_scalar_image",
    "check_transform",
    "information_check",
]


class RegistrationError(RuntimeError):
    """An intensity-based registration failed or produced an implausible transform.

    The message says what failed (optimizer exception, non-finite metric, degenerate matrix, too
    little overlap, no shared information); the caller prefixes the pair's name.
    """


def check_scalar_image(image: sitk.Image, name: str) -> sitk.Image:
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


def check_transform(transform: sitk.Transform, params: RegistrationParams, what: str) -> None:
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


def information_check(
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
