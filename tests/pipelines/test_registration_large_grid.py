"""A downsampled slide longer than ``registration.max_grid_px`` is registered and scored on an
area-averaged copy, and its aligned MRI is still written on the full grid (issue 14: memory
bounded as slides grow). Real anatomy: nilearn's MNI152 template (bundled, no download)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from mrihisto_kedro.imaging import registration as reg
from mrihisto_kedro.imaging.downsample import downsampled_origin_mm
from mrihisto_kedro.imaging.mri import extract_slice, robust_normalise
from mrihisto_kedro.imaging.registration.pairs import fixed_grid
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import open_slide
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff
from mrihisto_kedro.pipelines.registration.nodes import register_pairs

GRID_MPP = 120.0  # um per pixel of the downsampled slide: level 0 at 8 um, reduced 15x
FACTOR = 15.0
HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])


class LargePair:
    """An MRI slice and a histology-like downsampled slide made from it through a known
    affine, written as data_engineering writes downsampled slides (about 1900 x 1600 px)."""

    def __init__(self, folder: Path) -> None:
        from nilearn import datasets

        path = folder / "mni152_2mm.nii.gz"
        datasets.load_mni152_template(resolution=2).to_filename(path)
        volume = sitk.ReadImage(str(path), sitk.sitkFloat32)
        raw = extract_slice(volume, "sagittal", volume.GetSize()[0] // 2 + 8)
        self.mri = sitk.GetImageFromArray(robust_normalise(sitk.GetArrayFromImage(raw)))
        self.mri.SetSpacing(raw.GetSpacing())
        t = math.radians(8.0)
        linear = 1.05 * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        linear = linear @ np.array([[1.0, 0.06], [0.0, 1.0]])
        extent = np.array(self.mri.GetSize()) * np.array(self.mri.GetSpacing())
        corners = np.array([[0, 0], [extent[0], 0], [0, extent[1]], extent]) @ linear.T
        shift = 5.0 - corners.min(axis=0)  # 5 mm of glass around the section
        self.ground_truth = np.hstack([linear, shift[:, None]])
        spacing = GRID_MPP / 1000.0
        size = np.ceil((corners.max(axis=0) + shift + 5.0) / spacing).astype(int)
        grid = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
        grid.SetSpacing((spacing, spacing))
        grid.SetOrigin(downsampled_origin_mm(FACTOR, GRID_MPP / FACTOR))
        true = reg.transform_from_moving_to_fixed_affine(self.ground_truth)
        anatomy = sitk.GetArrayFromImage(reg.resample_moving(self.mri, grid, true))
        rng = np.random.default_rng(5)
        tissue = anatomy > 0.05
        concentration = np.where(tissue, 0.25 + 0.9 * (1.0 - anatomy), 0.0)
        od = concentration[..., None] * HEMATOXYLIN_OD
        rgb = 255.0 * np.power(10.0, -od) + 3.0 * rng.standard_normal(od.shape)
        self.slide = folder / "down.tiff"
        write_pyramidal_tiff(
            SlideImage(
                np.clip(np.round(rgb), 0, 255).astype(np.uint8),
                mpp=(GRID_MPP, GRID_MPP),
                description={"Downsample": format(FACTOR, "g")},  # as downsample_slide records
            ),
            self.slide,
            flavour="generic",
        )
        self.grid = grid
        self.slide_mask = reg.mask_image(tissue, grid)
        self.mri_mask = reg.mask_image(sitk.GetArrayFromImage(self.mri) > 0.05, self.mri)

    def register(self, max_grid_px: int) -> tuple:
        pairs = pd.DataFrame({"pair_id": ["p"], "specimen_id": ["s"], "split": ["train"]})
        truth = pd.DataFrame(
            [
                dict(
                    zip(
                        ["a11", "a12", "tx", "a21", "a22", "ty"],
                        self.ground_truth.ravel(),
                        strict=True,
                    )
                )
            ]
        ).assign(pair_id="p")
        return register_pairs(
            pairs,
            {"p": lambda: open_slide(self.slide)},
            {"p": lambda: self.mri},
            {"p": lambda: self.slide_mask},
            {"p": lambda: self.mri_mask},
            truth,
            pd.DataFrame({"pair_id": ["p"]}),
            {"max_grid_px": max_grid_px},
        )


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> LargePair:
    return LargePair(tmp_path_factory.mktemp("large_grid"))


def test_reduced_grid_has_the_pixel_centres_of_its_reduction(large: LargePair) -> None:
    with open_slide(large.slide) as slide:
        full = fixed_grid(slide, FACTOR, 4096)
        small = fixed_grid(slide, FACTOR, 512)
    w, h = large.grid.GetSize()
    assert not full.reduced and full.rgb.shape == (h, w, 3)
    assert small.reduced and max(small.rgb.shape[:2]) == 512
    for g in (full, small):  # the full grid's geometry, whichever grid is scored on
        assert g.full.GetSize() == (w, h)
        assert g.full.GetSpacing() == pytest.approx(large.grid.GetSpacing())
        assert g.full.GetOrigin() == pytest.approx(large.grid.GetOrigin())
    k = (w / small.rgb.shape[1], h / small.rgb.shape[0])  # grid pixels per reduced pixel
    assert small.spacing_mm == pytest.approx((k[0] * 0.12, k[1] * 0.12))
    # a reduced pixel averages k grid pixels: its centre is (k - 1) / 2 grid pixels further in
    expected = [o + (ki - 1) / 2 * 0.12 for o, ki in zip(large.grid.GetOrigin(), k, strict=True)]
    assert small.origin_mm == pytest.approx(expected, abs=1e-6)  # 1 nm (TIFF float32 mpp)


def test_large_grid_registered_on_its_reduction_gives_the_full_result(large: LargePair) -> None:
    full_t, full_aligned, full_masks, full_report, _ = large.register(4096)
    t, aligned, masks, report, figures = large.register(512)
    # outputs of a reduced grid are resampled onto the full grid when saved (lazy values)
    assert callable(aligned["p"]) and callable(masks["p"])
    assert isinstance(full_aligned["p"], sitk.Image)
    mri, mask = aligned["p"](), masks["p"]()
    for image in (mri, mask):
        assert image.GetSize() == large.grid.GetSize()
        assert image.GetSpacing() == pytest.approx(large.grid.GetSpacing())
        assert image.GetOrigin() == pytest.approx(large.grid.GetOrigin())
    assert mask.GetPixelID() == sitk.sitkUInt8
    a, b = sitk.GetArrayFromImage(mri), sitk.GetArrayFromImage(full_aligned["p"])
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.995
    overlap = reg.dice(
        sitk.GetArrayFromImage(mask) > 0, sitk.GetArrayFromImage(full_masks["p"]) > 0
    )
    assert overlap > 0.99
    # both recover the known affine; the reduced one within half an MRI voxel (2 mm) of it
    assert report["tre_px"].item() < 0.5 and full_report["tre_px"].item() < 0.5
    assert report["dice_after"].item() > 0.95
    assert report["dice_after"].item() == pytest.approx(full_report["dice_after"].item(), abs=0.01)
    points = reg.grid_points_in_mask(large.slide_mask, 2.0)
    between = reg.target_registration_error(t["p"], full_t["p"], points)
    assert np.mean(between) < 0.5  # mm between the two results, on tissue points
    assert figures["p.png"] is not None


def test_registration_places_the_grid_by_the_factor_the_slide_records(
    large: LargePair, tmp_path: Path
) -> None:
    """Issue 17: the factor comes from the downsampled slide, not ``params:data_engineering``
    (changing that parameter without re-running data_engineering used to move the origin)."""
    with open_slide(large.slide) as slide:
        pixels = slide.read_region((0, 0), 0, slide.dimensions)
    other = tmp_path / "down_7.5.tiff"
    write_pyramidal_tiff(
        SlideImage(pixels, mpp=(GRID_MPP, GRID_MPP), description={"Downsample": "7.5"}),
        other,
        flavour="generic",
    )
    original = large.slide
    try:
        large.slide = other
        _, aligned, _, _, _ = large.register(4096)  # register_pairs: no factor is passed
    finally:
        large.slide = original
    expected = downsampled_origin_mm(7.5, GRID_MPP / 7.5)
    assert aligned["p"].GetOrigin() == pytest.approx(expected, abs=1e-6)
    assert aligned["p"].GetOrigin() != pytest.approx(large.grid.GetOrigin(), abs=1e-6)
