"""Nucleus sizes on the real H&E of CMU-1-Small-Region (0.499 µm/px) and on its reductions."""

from __future__ import annotations

import numpy as np
import pytest

from mrihisto_kedro.demo.msi import DemoSource, load_histology_source
from mrihisto_kedro.imaging.nuclei import nucleus_diameters_um


def test_real_nuclei_measure_the_same_in_um_at_two_resolutions() -> None:
    source = load_histology_source(DemoSource.SLIDE)
    rgb = source.rgb[:1500, :1500]
    true = float(np.median(nucleus_diameters_um(rgb, source.mpp[0])))
    assert 3.5 <= true <= 10.0, true  # measured 4.1 µm: the dense core of each nucleus
    # block-averaged 2x, at the right mpp, the nuclei keep their size in µm (measured 4.1, 4.1)
    half = rgb.reshape(750, 2, 750, 2, 3).mean(axis=(1, 3)).astype(np.uint8)
    reduced = float(np.median(nucleus_diameters_um(half, source.mpp[0] * 2)))
    assert abs(reduced - true) / true < 0.2, (true, reduced)


def test_glass_and_bad_mpp_are_refused() -> None:
    glass = np.full((64, 64, 3), 245, np.uint8)
    with pytest.raises(ValueError, match="no tissue"):
        nucleus_diameters_um(glass, 0.5)
    with pytest.raises(ValueError, match="mpp must be > 0"):
        nucleus_diameters_um(glass, 0.0)
