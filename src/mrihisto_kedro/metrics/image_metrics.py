"""Full-reference image metrics: L1, PSNR and SSIM (numpy/scipy, float64, no Kedro imports).

Every function takes an explicit, keyword-only ``data_range``: the span of values the images can
take (``1.0`` for images in ``[0, 1]``, ``255`` for 8-bit, ``65535`` for 16-bit). A wrong range is
an error rather than a silently wrong number: when the values actually observed in the two
images span more than ``data_range`` (``max(a.max(), b.max()) - min(a.min(), b.min()) >
data_range * (1 + 1e-6)``), a ``ValueError`` naming the observed range is raised. (A range that
is too *large* cannot be detected from the data and remains the caller's responsibility.)

SSIM uses the settings of Wang et al. (2004), identical to
``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=data_range)``: a Gaussian window with sigma 1.5
truncated at 3.5 sigma (an 11x11 window), K1 = 0.01, K2 = 0.03, population (co)variances,
reflect-mode borders, and the mean of the SSIM map after cropping the 5-pixel border.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["l1", "masked_l1", "masked_ssim", "psnr", "ssim", "check_data_range"]

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_RANGE_TOLERANCE = 1e-6


def check_data_range(a: np.ndarray, b: np.ndarray, data_range: float) -> tuple[float, float]:
    """Validate that two images fit into ``data_range`` and return their observed (min, max).

    Args:
        a: array of any shape and real dtype, finite values.
        b: array of the same shape as ``a``.
        data_range: positive finite span of possible values (e.g. 1.0, 255, 65535).

    Returns:
        ``(lo, hi)``: the minimum and maximum over both arrays.

    Raises:
        ValueError: shapes differ, ``data_range`` is not positive and finite, values are not
            finite, or ``hi - lo > data_range * (1 + 1e-6)``.
    """
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("images are empty")
    dr = float(data_range)
    if not math.isfinite(dr) or dr <= 0:
        raise ValueError(f"data_range must be positive and finite, got {data_range!r}")
    lo = float(min(a.min(), b.min()))
    hi = float(max(a.max(), b.max()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("images contain non-finite values (nan or inf)")
    if hi - lo > dr * (1 + _RANGE_TOLERANCE):
        raise ValueError(
            f"data_range={dr:g} is too small for these images: observed values span "
            f"[{lo:g}, {hi:g}] (range {hi - lo:g}); pass the range the images were scaled to "
            "(e.g. 1.0 for [0, 1], 255 for 8-bit, 65535 for 16-bit)"
        )
    return lo, hi


def _as_float_pair(a: np.ndarray, b: np.ndarray, data_range: float) -> tuple[np.ndarray, ...]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    check_data_range(x, y, data_range)
    return x, y


def l1(a: np.ndarray, b: np.ndarray, *, data_range: float) -> float:
    """Mean absolute error divided by ``data_range`` (0 = identical, at most 1).

    Args:
        a: image of any shape, e.g. ``(H, W)`` or ``(H, W, C)``, any real dtype, values within a
            span of ``data_range``.
        b: image of the same shape as ``a``.
        data_range: positive span of possible values (keyword only, required).

    Returns:
        ``mean(|a - b|) / data_range`` computed in float64, in ``[0, 1]``.

    Raises:
        ValueError: mismatched shapes, or values spanning more than ``data_range``.
    """
    x, y = _as_float_pair(a, b, data_range)
    return float(np.mean(np.abs(x - y)) / float(data_range))


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``.

    Equal to ``skimage.metrics.peak_signal_noise_ratio(a, b, data_range=data_range)``.

    Args:
        a: reference image of any shape, e.g. ``(H, W)`` or ``(H, W, C)``, any real dtype,
            values within a span of ``data_range``.
        b: test image of the same shape as ``a``.
        data_range: positive span of possible values (keyword only, required).

    Returns:
        PSNR in dB (float64); ``inf`` when the images are identical.

    Raises:
        ValueError: mismatched shapes, or values spanning more than ``data_range``.
    """
    x, y = _as_float_pair(a, b, data_range)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return float(10.0 * np.log10(float(data_range) ** 2 / mse))


def _ssim_2d(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    ssim_map, radius = _ssim_map(x, y, data_range)
    return float(ssim_map[radius:-radius, radius:-radius].mean(dtype=np.float64))


def _ssim_map(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[np.ndarray, int]:
    """The SSIM map ``(H, W)`` (borders included) and the window radius to crop."""
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    win_size = 2 * radius + 1
    if min(x.shape) < win_size:
        raise ValueError(
            f"each spatial side must be at least {win_size} pixels for SSIM, got {x.shape}"
        )

    def blur(img: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(
            img, sigma=SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect"
        )

    ux = blur(x)
    uy = blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux**2 + uy**2 + c1) * (vx + vy + c2)
    return num / den, radius


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    *,
    data_range: float,
    channel_axis: int | None = None,
) -> float:
    """Mean structural similarity (Wang et al. 2004 settings), in float64.

    Equal to ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range, channel_axis=channel_axis)``.

    Args:
        a: grey image ``(H, W)``, or a multi-channel image with 3 dimensions whose channel axis
            is ``channel_axis`` (e.g. ``(H, W, 3)`` with ``channel_axis=-1``); any real dtype;
            H and W at least 11; values within a span of ``data_range``.
        b: image of the same shape as ``a``.
        data_range: positive span of possible values (keyword only, required), e.g. 1.0 for
            ``[0, 1]``, 255 for 8-bit, 65535 for 16-bit.
        channel_axis: axis of the channels, or ``None`` for a 2-D grey image. With channels,
            the result is the mean of the per-channel SSIMs.

    Returns:
        Mean SSIM, at most 1.0 (1.0 for identical images; can be negative).

    Raises:
        ValueError: mismatched shapes, wrong number of dimensions, an image side smaller than
            the 11-pixel window, or values spanning more than ``data_range``.
    """
    x, y = _as_float_pair(a, b, data_range)
    dr = float(data_range)
    if channel_axis is None:
        if x.ndim != 2:
            raise ValueError(
                f"expected a 2-D (H, W) image without channel_axis, got shape {x.shape}"
            )
        return _ssim_2d(x, y, dr)
    if x.ndim != 3:
        raise ValueError(f"expected a 3-D image with channel_axis, got shape {x.shape}")
    axis = channel_axis % x.ndim
    xs = np.moveaxis(x, axis, 0)
    ys = np.moveaxis(y, axis, 0)
    per_channel = np.array([_ssim_2d(xc, yc, dr) for xc, yc in zip(xs, ys, strict=True)])
    return float(per_channel.mean())


def _check_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise ValueError(f"mask must have the images' shape {shape}, got {m.shape}")
    return m


def masked_l1(a: np.ndarray, b: np.ndarray, mask: np.ndarray, *, data_range: float) -> float:
    """:func:`l1` over the pixels where ``mask`` is true (``nan`` for an empty mask).

    Args:
        a, b: grey images ``(H, W)`` (any real dtype, within a span of ``data_range``).
        mask: ``(H, W)`` bool, e.g. the head of an MRI slice.
        data_range: positive span of possible values (keyword only, required).
    """
    x, y = _as_float_pair(a, b, data_range)
    m = _check_mask(mask, x.shape)
    if not m.any():
        return math.nan
    return float(np.abs(x - y)[m].mean() / float(data_range))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray, *, data_range: float) -> float:
    """Mean of the SSIM map (:func:`ssim`'s settings) over the pixels where ``mask`` is true.

    The map is the one whose border-cropped mean is :func:`ssim` (equal to
    ``skimage.metrics.structural_similarity(..., full=True)[1]``); the mean is taken over the
    mask inside the 5-pixel crop, so each value still sees its full 11 x 11 window. ``nan``
    when the mask has no pixel inside the crop.

    Args:
        a, b: grey images ``(H, W)``, H and W at least 11.
        mask: ``(H, W)`` bool.
        data_range: positive span of possible values (keyword only, required).
    """
    x, y = _as_float_pair(a, b, data_range)
    if x.ndim != 2:
        raise ValueError(f"expected 2-D (H, W) images, got shape {x.shape}")
    m = _check_mask(mask, x.shape)
    ssim_map, r = _ssim_map(x, y, float(data_range))
    inner = m[r:-r, r:-r]
    if not inner.any():
        return math.nan
    return float(ssim_map[r:-r, r:-r][inner].mean(dtype=np.float64))
