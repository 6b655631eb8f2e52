"""Tests for ``mrihisto_kedro.imaging.masks``: optical density, slide and MRI tissue masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from skimage import data
from skimage.color import rgb2hed
from skimage.draw import disk, ellipse

from mrihisto_kedro.imaging.masks import (
    MaskResult,
    mri_tissue_mask,
    optical_density,
    slide_tissue_mask,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT.parent / "shared" / "data"
ICBM_1MM = DATA / "mri" / "icbm152_2009c"
T1_1MM = ICBM_1MM / "mni_icbm152_t1_tal_nlin_sym_09c.nii.gz"
MASK_1MM = ICBM_1MM / "mni_icbm152_t1_tal_nlin_sym_09c_mask.nii.gz"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def _synthetic_slide(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A brightfield-like slide: noisy white glass, two stained tissue sections, dust specks.

    Returns the uint8 RGB image ``(H, W, 3)`` and the true tissue mask ``(H, W)`` (the sections
    including a small glass hole inside one, which a tissue mask is expected to fill).
    """
    rng = np.random.default_rng(seed)
    image = rng.normal(242, 4, size=(height, width, 3))
    truth = np.zeros((height, width), dtype=bool)
    sections = [
        ellipse(0.4 * height, 0.3 * width, 0.25 * height, 0.18 * width, (height, width)),
        ellipse(0.6 * height, 0.7 * width, 0.3 * height, 0.2 * width, (height, width), 0.5),
    ]
    for rr, cc in sections:
        truth[rr, cc] = True
    # H&E-like colours: pink eosin background with purple nuclei-like texture
    stain = np.array([200.0, 120.0, 170.0]) + rng.normal(0, 12, size=(height, width, 3))
    nuclei = rng.random((height, width)) < 0.05
    stain[nuclei] = [110.0, 60.0, 140.0]
    image[truth] = stain[truth]
    # a small glass hole inside a section (e.g. a vessel lumen): part of the tissue region
    hole_r, hole_c = disk(
        (0.4 * height, 0.3 * width), 0.015 * min(height, width), shape=truth.shape
    )
    image[hole_r, hole_c] = rng.normal(242, 4, size=(hole_r.size, 3))
    # dust specks on the glass: dark, tiny, not tissue
    for _ in range(12):
        r, c = rng.integers(0, height), rng.integers(0, int(0.12 * width))
        sr, sc = disk((r, c), 2, shape=truth.shape)
        image[sr, sc] = 60
    return np.clip(image, 0, 255).astype(np.uint8), truth


def test_optical_density_values() -> None:
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [127, 63, 255]]], dtype=np.uint8)
    od = optical_density(rgb)
    assert od.dtype == np.float32
    assert od.shape == (1, 3, 3)
    np.testing.assert_allclose(od[0, 0], 0.0, atol=1e-7)
    np.testing.assert_allclose(od[0, 1], np.log10(256.0), rtol=1e-6)
    np.testing.assert_allclose(od[0, 2], -np.log10((np.array([127, 63, 255]) + 1) / 256), rtol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        optical_density(rgb.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        optical_density(np.zeros((4, 4, 4), dtype=np.uint8))


def test_ihc_tissue_mask_is_plausible() -> None:
    """Real IHC field (DAB + haematoxylin): stained epithelium is tissue, white lumen is not."""
    ihc = data.immunohistochemistry()
    result = slide_tissue_mask(ihc)
    assert isinstance(result, MaskResult)
    assert result.mask.shape == ihc.shape[:2]
    assert result.mask.dtype == bool
    assert result.method == "otsu(od)"
    assert result.downsample == 1
    assert result.otsu_threshold == pytest.approx(result.threshold)
    assert 0.05 < result.threshold < 0.5
    assert 0.4 < result.tissue_fraction < 0.95
    assert result.tissue_fraction == pytest.approx(result.mask.mean())
    # the tissue is much denser than what is left out
    od = optical_density(ihc).mean(axis=2)
    assert od[result.mask].mean() > 2.5 * od[~result.mask].mean()
    # nearly all strongly DAB-stained pixels are inside the mask
    dab = rgb2hed(ihc)[..., 2]
    strong = dab > np.percentile(dab, 90)
    assert result.mask[strong].mean() > 0.95
    # the saturation score finds a similar region
    by_saturation = slide_tissue_mask(ihc, method="saturation")
    assert by_saturation.method == "otsu(saturation)"
    assert _iou(by_saturation.mask, result.mask) > 0.75


@pytest.mark.parametrize("method", ["od", "saturation"])
def test_synthetic_slide_mask_matches_truth(method: str) -> None:
    rgb, truth = _synthetic_slide(600, 800)
    result = slide_tissue_mask(rgb, method=method, min_object_px=200, max_hole_px=2000)
    assert _iou(result.mask, truth) > 0.95
    # dust specks are removed, the lumen inside a section is filled
    assert not result.mask[:, : int(0.08 * 800)].any()
    assert result.mask[240, 240]


def test_large_slide_is_masked_on_a_thumbnail() -> None:
    rgb, truth = _synthetic_slide(1800, 2400, seed=3)
    result = slide_tissue_mask(
        rgb, working_max_side=600, min_object_px=2000, max_hole_px=20000, closing_radius_px=8
    )
    assert result.downsample == 4
    assert result.mask.shape == truth.shape
    assert _iou(result.mask, truth) > 0.95


def test_rgba_transparent_area_is_not_tissue() -> None:
    rgb, truth = _synthetic_slide(300, 400)
    rgba = np.concatenate([rgb, np.full((300, 400, 1), 255, np.uint8)], axis=2)
    rgba[:, 300:] = 0  # outside the scanned area: transparent black, as OpenSlide returns it
    result = slide_tissue_mask(rgba, min_object_px=100)
    assert not result.mask[:, 300:].any()
    assert _iou(result.mask[:, :300], truth[:, :300]) > 0.9


def test_blank_slide_uses_the_floor_and_fixed_threshold_is_reported() -> None:
    rng = np.random.default_rng(5)
    blank = rng.normal(245, 3, size=(200, 300, 3)).clip(0, 255).astype(np.uint8)
    result = slide_tissue_mask(blank)
    assert result.method == "otsu(od)+floor"
    assert result.threshold == 0.05
    assert result.otsu_threshold is not None and result.otsu_threshold < 0.05
    assert result.tissue_fraction == 0.0
    rgb, truth = _synthetic_slide(300, 400)
    fixed = slide_tissue_mask(rgb, threshold=0.15, min_object_px=100)
    assert fixed.method == "fixed(od)"
    assert fixed.threshold == 0.15
    assert fixed.otsu_threshold is None
    assert _iou(fixed.mask, truth) > 0.9


def test_slide_mask_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        slide_tissue_mask(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="min_object_px"):
        slide_tissue_mask(np.zeros((10, 10, 3), dtype=np.uint8), min_object_px=-1)
    with pytest.raises(ValueError, match="not a valid SlideMaskMethod"):
        slide_tissue_mask(np.zeros((10, 10, 3), dtype=np.uint8), method="magic")


def test_mri_mask_on_synthetic_slice() -> None:
    rng = np.random.default_rng(2)
    image = rng.normal(0.0, 3.0, size=(128, 160)).clip(0, None)
    truth = np.zeros(image.shape, dtype=bool)
    rr, cc = ellipse(64, 80, 50, 60, image.shape)
    truth[rr, cc] = True
    image[truth] = rng.normal(300.0, 40.0, size=truth.sum())
    vr, vc = ellipse(64, 80, 8, 12, image.shape)  # dark "ventricle" inside: filled
    image[vr, vc] = 5.0
    result = mri_tissue_mask(image)
    assert result.method == "otsu(intensity)"
    assert 20 < result.threshold < 280
    assert _iou(result.mask, truth) > 0.98
    assert result.mask[64, 80]
    fixed = mri_tissue_mask(image.astype(np.uint16), method="threshold", threshold=100)
    assert fixed.method == "fixed(intensity)" and fixed.threshold == 100.0
    assert _iou(fixed.mask, truth) > 0.98
    image[0:3, 0:3] = 400.0  # a bright speck in the background
    assert mri_tissue_mask(image, min_object_px=0, keep_largest=True).mask[:3, :3].sum() == 0


def test_otsu_threshold_is_centred_in_a_gap() -> None:
    """Two separated classes: every threshold in the gap ties; the centre is reported."""
    image = np.zeros((40, 40))
    image[10:30, 10:30] = 100.0
    result = mri_tissue_mask(image, min_object_px=0)
    assert result.threshold == pytest.approx(50.0, abs=0.5)
    np.testing.assert_array_equal(result.mask, image > 0)


def test_mri_mask_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        mri_tissue_mask(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        mri_tissue_mask(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="needs a threshold"):
        mri_tissue_mask(np.zeros((4, 4)), method="threshold")
    with pytest.raises(ValueError, match="only used with"):
        mri_tissue_mask(np.zeros((4, 4)), threshold=1.0)


@pytest.mark.skipif(
    not (T1_1MM.is_file() and MASK_1MM.is_file()),
    reason=f"shared ICBM 2009c 1 mm T1 and brain mask not found under {ICBM_1MM}",
)
def test_mri_mask_on_icbm_axial_slice_contains_the_brain() -> None:
    t1 = sitk.GetArrayFromImage(sitk.ReadImage(str(T1_1MM)))  # (Z, Y, X)
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(MASK_1MM))) > 0.5
    z = 90  # axial slice through the lateral ventricles
    result = mri_tissue_mask(t1[z])
    # the head (brain, skull, scalp) is foreground: it contains the brain
    assert result.mask[brain[z]].mean() > 0.99
    assert 0.2 < result.tissue_fraction < 0.8
    assert result.mask.sum() > brain[z].sum()
