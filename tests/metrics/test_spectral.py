"""The Nyquist-band power fraction: a checkerboard shows, a smooth image does not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mrihisto_kedro.metrics.spectral import nyquist_fraction


def test_a_two_pixel_checkerboard_is_nyquist_power_and_a_smooth_image_is_not() -> None:
    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.random((128, 128)), 3.0, mode="wrap")  # periodic
    yy, xx = np.mgrid[:128, :128]
    board = ((yy + xx) % 2).astype(float)
    stripes = (xx % 2).astype(float)  # period 2 along one axis only
    out = nyquist_fraction(np.stack([smooth, board, stripes, smooth + 0.02 * board]))
    assert out[0] < 1e-6
    assert out[1] == pytest.approx(1.0) and out[2] == pytest.approx(1.0)
    # a faint checkerboard over the smooth image: most of the added power is at Nyquist
    assert out[3] > 1e3 * out[0]
    # scale-free, and a constant image has no AC power at all
    np.testing.assert_allclose(nyquist_fraction(7.0 * smooth[None]), out[:1])
    assert nyquist_fraction(np.ones((1, 16, 16)))[0] == 0.0
    with pytest.raises(ValueError, match="band"):
        nyquist_fraction(smooth[None], band=0.6)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        nyquist_fraction(smooth)
