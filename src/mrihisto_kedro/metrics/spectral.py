"""Checkerboard artefacts as spectral power near the Nyquist frequency (numpy, no Kedro).

A transposed convolution whose kernel size is not a multiple of its stride (CycleGAN's 3x3 at
stride 2, Odena et al. 2016) adds a pattern of period 2 px: power at and around 0.5 cycles/px
on either axis, where natural and MR images have almost none. :func:`nyquist_fraction` is the
share of an image's (mean-removed) power within ``band`` cycles/px of the Nyquist frequency on
either axis; the artefact shows as a generated image's fraction far above the real images'.
Measured on the demo's T1 -> T2 test slices (ICBM152, 128 px): real T2 7.2e-05; CycleGAN with
the reference's transposed convolutions 40x that, with resize-convolutions 3x.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NYQUIST_BAND", "nyquist_fraction"]

#: half-width of the band around 0.5 cycles/px, in cycles/px
NYQUIST_BAND = 0.05


def nyquist_fraction(images: np.ndarray, band: float = NYQUIST_BAND) -> np.ndarray:
    """Per image, the fraction of its AC power within ``band`` of the Nyquist frequency.

    Args:
        images: ``(N, H, W)`` grey images (any real dtype and range; the ratio is scale-free).
        band: half-width of the band in cycles/px, in (0, 0.5].

    Returns:
        ``(N,)`` float64 in [0, 1]; 0 for a constant image (no AC power).
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {x.shape}")
    if not 0.0 < band <= 0.5:
        raise ValueError(f"band must be in (0, 0.5] cycles/px, got {band}")
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(x)) ** 2
    fy = np.abs(np.abs(np.fft.fftfreq(x.shape[1])) - 0.5) <= band
    fx = np.abs(np.abs(np.fft.fftfreq(x.shape[2])) - 0.5) <= band
    near = fy[:, None] | fx[None, :]
    total = power.sum(axis=(1, 2))
    out = np.zeros(x.shape[0])
    np.divide(power[:, near].sum(axis=1), total, out=out, where=total > 0)
    return out
