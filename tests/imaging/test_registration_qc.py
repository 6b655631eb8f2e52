"""Structure agreement inside the tissue, and tiling only the pairs that passed QC (issue 16)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from mrihisto_kedro.imaging.registration.qc import (
    gradient_agreement,
    qc_problems,
    select_registered_pairs,
)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """The real MNI152 T1 template (nilearn, offline), float in [0, 1], ``(x, y, z)``."""
    from nilearn.datasets import load_mni152_template

    data = np.asarray(load_mni152_template(resolution=2).get_fdata(), dtype=np.float64)
    return data / data.max()


@pytest.fixture(scope="module")
def slice_(volume: np.ndarray) -> np.ndarray:
    """Its mid-sagittal-adjacent slice (x = 30 of 99), ``(y, z)``."""
    return volume[30]


def test_agreement_is_one_for_the_same_structure_in_any_contrast(
    slice_: np.ndarray, volume: np.ndarray
) -> None:
    mask = ndimage.binary_erosion(slice_ > 0.1, iterations=5)
    assert gradient_agreement(slice_, slice_, mask, 1.0) == pytest.approx(1.0)
    inverted = 1.0 - slice_**0.5  # inverted, non-linear contrast: same edges
    assert gradient_agreement(slice_, inverted, mask, 1.0) > 0.97
    # unrelated structure: the template's axial slice through the ventricles, on this grid
    other = ndimage.zoom(volume[:, :, 45], np.divide(slice_.shape, volume[:, :, 45].shape), order=1)
    assert 0.4 < gradient_agreement(slice_, other, mask, 1.0) < 0.65
    # independent smooth noise: random directions, cos^2 averages 1/2
    rng = np.random.default_rng(0)
    noise = [ndimage.gaussian_filter(rng.standard_normal(slice_.shape), 3) for _ in range(2)]
    full = np.ones_like(mask)
    assert gradient_agreement(noise[0], noise[1], full, 0.0) == pytest.approx(0.5, abs=0.03)
    assert np.isnan(gradient_agreement(slice_, slice_, np.zeros_like(mask), 1.0))
    with pytest.raises(ValueError, match="one 2-D grid"):
        gradient_agreement(slice_, slice_[:-1], mask, 1.0)


def _report(flagged: list[bool], converged: list[bool]) -> pd.DataFrame:
    ids = [f"pair_{i:02d}" for i in range(1, len(flagged) + 1)]
    return pd.DataFrame({"pair_id": ids, "flagged": flagged, "converged": converged})


def test_only_pairs_that_passed_qc_are_tiled(caplog: pytest.LogCaptureFixture) -> None:
    report = _report([False, True, False, False], [True, True, False, True])
    pairs = report[["pair_id"]].assign(split="train")
    with caplog.at_level(logging.WARNING):
        kept = select_registered_pairs(pairs, report)
    assert kept["pair_id"].tolist() == ["pair_01", "pair_04"]
    assert "excluded 2 of 4 pairs from tiling" in caplog.text and "pair_02, pair_03" in caplog.text
    assert select_registered_pairs(pairs, report, include_flagged=True) is pairs
    with pytest.raises(ValueError, match="every pair .* is flagged"):
        select_registered_pairs(pairs.iloc[1:3], report)
    with pytest.raises(ValueError, match="pair_09 have no row in the registration report"):
        select_registered_pairs(pd.DataFrame({"pair_id": ["pair_09"]}), report)


def test_the_qc_verdict_names_each_failed_check() -> None:
    good = {"dice_after": 0.97, "structure_after": 0.95, "converged": True}
    assert qc_problems(good, 0.85, 0.8) == ""
    wrong = {**good, "structure_after": 0.602}
    assert qc_problems(wrong, 0.85, 0.8).startswith("structure agreement 0.602 is below 0.8")
    bad = {"dice_after": 0.5, "structure_after": float("nan"), "converged": False}
    assert (
        qc_problems(bad, 0.85, 0.8).split("; ")[0] == "Dice after registration 0.500 is below 0.85"
    )
    assert "nan is below 0.8" in qc_problems(bad, 0.85, 0.8)
    assert qc_problems(bad, 0.85, 0.8).endswith("the optimiser stopped at its iteration limit")
