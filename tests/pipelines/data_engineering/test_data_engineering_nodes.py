"""Each node of the data_engineering pipeline, called directly on small in-memory inputs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from matplotlib.figure import Figure

from mrihisto_kedro.imaging.downsample import DownsampleRecordError, downsampled_origin_mm
from mrihisto_kedro.imaging.pair_masks import REPORT_COLUMNS, BlankSlideError, slide_mask_input
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import open_slide
from mrihisto_kedro.manifest import ManifestError
from mrihisto_kedro.params import ParameterError, parse_params
from mrihisto_kedro.pipelines.data_engineering.nodes import (
    DataEngineeringParams,
    downsample_slides,
    extract_mri_slices,
    qc_figures,
    split_by_specimen,
    tissue_masks,
    validate_manifest,
)

MPP = 0.5  # µm per level-0 pixel of the raw slides
FACTOR = 4.0  # downsampling of the "downsampled" slides written for tissue_masks


def _pairs(n: int = 2, **columns: list[Any]) -> pd.DataFrame:
    """A raw manifest of ``n`` pairs on slides ``s<k>.tiff`` and one MRI ``brain.nii.gz``."""
    rows = {
        "pair_id": [f"p{k}" for k in range(n)],
        "specimen_id": [f"spec_{k}" for k in range(n)],
        "slide": [f"s{k}.tiff" for k in range(n)],
        "mri": ["brain.nii.gz"] * n,
        "plane": ["axial"] * n,
        "slice_index": [str(4 + k) for k in range(n)],
        "split": ["train", "test", *[""] * (n - 2)][:n],
    }
    return pd.DataFrame({**rows, **columns})


def _refuse(name: str) -> Callable[[], Any]:
    def load() -> Any:
        raise AssertionError(f"{name} was read before the parameters were checked")

    return load


@pytest.fixture
def raw_inputs(
    write_slide: Callable[..., Path],
    tissue_rgb: Callable[..., np.ndarray],
    slide_loaders: Callable[..., Any],
    brain_volume: Callable[..., sitk.Image],
    memory_loaders: Callable[..., Any],
) -> tuple[dict[str, Callable[[], Any]], dict[str, Callable[[], Any]]]:
    """Two raw slides (240 x 320 px at 0.5 µm) and one MRI volume, as counting loaders."""
    paths = {f"s{k}.tiff": write_slide(f"s{k}.tiff", tissue_rgb(240, 320, k), MPP) for k in (0, 1)}
    return slide_loaders(paths), memory_loaders({"brain.nii.gz": brain_volume()})


# --------------------------------------------------------------------------- validate_manifest
def test_validate_manifest_settles_mpp_from_the_files(raw_inputs: tuple) -> None:
    slides, volumes = raw_inputs
    out = validate_manifest(_pairs(), slides, volumes, {})
    assert list(out.pair_id) == ["p0", "p1"] and out.slice_index.tolist() == [4, 5]
    assert out.slide_mpp_x_um.tolist() == pytest.approx([MPP, MPP])
    assert set(out.slide_mpp_source) == {"file"}


@pytest.mark.parametrize(
    ("parameters", "key"),
    [
        ({"slide_mask": {"method": "otsu"}}, "'data_engineering.slide_mask.method' = 'otsu'"),
        ({"mri_mask": {"method": "fixed"}}, "'data_engineering.mri_mask.method' = 'fixed'"),
        (
            {"mri_mask": {"method": "threshold"}},
            "'data_engineering.mri_mask.threshold' must be set with method 'threshold'",
        ),
        (
            {"mri_mask": {"threshold": 0.2}},
            "'data_engineering.mri_mask.threshold' must be set with method 'threshold' and only",
        ),
        ({"mri_mask": {"min_object_px": -1}}, "'data_engineering.mri_mask.min_object_px' must be"),
        ({"slide_mask": {"max_size": 8}}, "'data_engineering.slide_mask.max_size' must be >= 16"),
        ({"slide_mask": {"min_object_px": -1}}, "'data_engineering.slide_mask.min_object_px'"),
        ({"slide_mask": {"closing_radius_px": -1}}, "'data_engineering.slide_mask.closing_radius"),
        (
            {"slide_mask": {"min_tissue_fraction": 1.5}},
            "'data_engineering.slide_mask.min_tissue_fraction' must be in [0, 1], got 1.5",
        ),
        (
            {"mri_normalisation": {"lower_percentile": 99.9}},
            "'data_engineering.mri_normalisation.lower_percentile' must be below upper_percentile",
        ),
        (
            {"mri_normalisation": {"upper_percentile": 101}},
            "'data_engineering.mri_normalisation.upper_percentile' must be in (0, 100]",
        ),
        (
            {"mri_normalisation": {"lower_percentile": -1}},
            "'data_engineering.mri_normalisation.lower_percentile' must be in [0, 100)",
        ),
        ({"downsample_factor": 0.5}, "'data_engineering.downsample_factor' must be >= 1, got 0.5"),
        ({"slide_mpp": 0}, "'data_engineering.slide_mpp' must be > 0, got 0"),
        ({"splits": {"train": -0.1, "test": 1.1}}, "'data_engineering.splits.train' must be >= 0"),
        (
            {"splits": {"val": 0.2}},
            "parameter 'data_engineering.splits' fractions train, val, test",
        ),
    ],
)
def test_a_bad_parameter_stops_before_any_file_is_read(parameters: dict, key: str) -> None:
    slides = {"s0.tiff": _refuse("s0.tiff"), "s1.tiff": _refuse("s1.tiff")}
    with pytest.raises(ParameterError, match=re.escape(key)):
        validate_manifest(_pairs(), slides, {"brain.nii.gz": _refuse("brain")}, parameters)


def test_parameters_default_to_the_dataclasses_and_accept_their_edges() -> None:
    assert parse_params(DataEngineeringParams, {}, "data_engineering") == DataEngineeringParams()
    p = parse_params(
        DataEngineeringParams,
        {
            "downsample_factor": 1,
            "slide_mpp": 0.25,
            "mri_normalisation": {"lower_percentile": 0, "upper_percentile": 100},
            "slide_mask": {"max_size": 16, "min_object_px": 0, "min_tissue_fraction": 1.0},
            "splits": {"train": 1.0, "val": 0.0, "test": 0.0},
        },
        "data_engineering",
    )
    assert p.downsample_factor == 1.0 and type(p.downsample_factor) is float
    assert p.mri_normalisation.upper_percentile == 100.0 and p.splits.train == 1.0


def test_enums_are_coerced_once_at_parse_time() -> None:
    from mrihisto_kedro.imaging.masks import MriMaskMethod, SlideMaskMethod

    p = parse_params(
        DataEngineeringParams,
        {
            "slide_mask": {"method": "saturation"},
            "mri_mask": {"method": "threshold", "threshold": 0.2},
        },
        "data_engineering",
    )
    assert p.slide_mask.method is SlideMaskMethod.SATURATION
    assert p.mri_mask.method is MriMaskMethod.THRESHOLD


def test_validate_manifest_names_the_row_of_a_missing_slide(raw_inputs: tuple) -> None:
    slides, volumes = raw_inputs
    with pytest.raises(ManifestError, match="p1"):
        validate_manifest(_pairs(slide=["s0.tiff", "gone.tiff"]), slides, volumes, {})


# --------------------------------------------------------------------------- split_by_specimen
def test_split_by_specimen_fills_empty_splits_by_specimen(raw_inputs: tuple) -> None:
    slides, volumes = raw_inputs
    pairs = _pairs(4, specimen_id=["a", "a", "b", "c"], split=["", "", "", "test"])
    pairs["slide"] = ["s0.tiff", "s1.tiff", "s0.tiff", "s1.tiff"]
    out = split_by_specimen(validate_manifest(pairs, slides, volumes, {}), {"splits": {"seed": 1}})
    assert (out.split != "").all() and out.loc[3, "split"] == "test"
    assert out.groupby("specimen_id").split.nunique().max() == 1  # never split a specimen


# --------------------------------------------------------------------------- downsample_slides
def test_downsample_slides_is_lazy_and_records_factor_and_mpp(raw_inputs: tuple) -> None:
    slides, volumes = raw_inputs
    pairs = validate_manifest(_pairs(), slides, volumes, {})
    reads = dict(slides.calls)
    jobs = downsample_slides(pairs, slides, {"downsample_factor": 8})
    assert sorted(jobs) == ["p0", "p1"] and slides.calls == reads  # nothing opened yet
    image = jobs["p1"]()
    assert isinstance(image, SlideImage) and slides.calls["s1.tiff"] == reads["s1.tiff"] + 1
    assert (image.pixels.width, image.pixels.height) == (40, 30)
    assert image.mpp == pytest.approx((MPP * 8, MPP * 8))
    assert image.description["Downsample"] == "8"


def test_downsample_slides_needs_the_validated_manifest(raw_inputs: tuple) -> None:
    slides, _ = raw_inputs
    with pytest.raises(ValueError, match="slide_mpp_x_um"):
        downsample_slides(_pairs(), slides, {})


# --------------------------------------------------------------------------- extract_mri_slices
def test_extract_mri_slices_reads_each_volume_once(
    brain_volume: Callable[..., sitk.Image], memory_loaders: Callable[..., Any]
) -> None:
    volumes = memory_loaders(
        {"brain.nii.gz": brain_volume(), "dwi.nii.gz": brain_volume(volumes=3)}
    )
    pairs = _pairs(3, mri=["brain.nii.gz", "brain.nii.gz", "dwi.nii.gz"], mri_volume=[0, 0, 2])
    pairs["slice_index"] = [4, 6, 6]
    out = extract_mri_slices(pairs, volumes, {"mri_normalisation": {"upper_percentile": 99.0}})
    assert volumes.calls == {"brain.nii.gz": 1, "dwi.nii.gz": 1}
    assert sorted(out) == ["p0", "p1", "p2"]
    for image in out.values():
        values = sitk.GetArrayViewFromImage(image)
        assert image.GetPixelID() == sitk.sitkFloat32 and values.shape == (24, 20)
        assert image.GetSpacing() == pytest.approx((0.4, 0.4))
        assert values.min() == 0.0 and values.max() == 1.0
        assert image.GetMetaData("mrihisto_plane") == "axial"
        # the percentiles travel with the slice: modelling reads them from the files
        assert image.GetMetaData("mrihisto_lower_percentile") == "1.0"
        assert image.GetMetaData("mrihisto_upper_percentile") == "99.0"
    # volume 2 of the 4-D file is volume 0 scaled by 3: the same slice once normalised
    np.testing.assert_allclose(
        sitk.GetArrayViewFromImage(out["p2"]), sitk.GetArrayViewFromImage(out["p1"]), atol=1e-5
    )


def test_extract_mri_slices_names_an_index_out_of_range(
    brain_volume: Callable[..., sitk.Image], memory_loaders: Callable[..., Any]
) -> None:
    pairs = _pairs(1)
    pairs["slice_index"] = [12]
    with pytest.raises(ValueError, match="axial slice_index 12 out of range 0..11"):
        extract_mri_slices(pairs, memory_loaders({"brain.nii.gz": brain_volume()}), {})


# --------------------------------------------------------------------------- tissue_masks
@pytest.fixture
def downsampled(
    write_slide: Callable[..., Path], tissue_rgb: Callable[..., np.ndarray]
) -> Callable[..., dict[str, Callable[[], Any]]]:
    """``downsampled({pair_id: pixels}, mpp=MPP * FACTOR, factor=FACTOR)`` -> slide loaders."""

    def make(
        pixels: dict[str, np.ndarray],
        mpp: float | None = MPP * FACTOR,
        factor: float | None = FACTOR,
    ) -> dict[str, Callable[[], Any]]:
        paths = {k: write_slide(f"{k}.tiff", v, mpp, factor) for k, v in pixels.items()}
        return {k: (lambda p=p: open_slide(p)) for k, p in paths.items()}

    return make


def _mris(image: sitk.Image, *pair_ids: str) -> dict[str, Callable[[], sitk.Image]]:
    return {pid: (lambda: image) for pid in pair_ids}


@pytest.mark.parametrize("max_size", [2048, 64])  # level 0, or a thumbnail of a longer slide
def test_tissue_masks_masks_report_and_place_each_pair(
    downsampled: Callable[..., Any],
    tissue_rgb: Callable[..., np.ndarray],
    mri_slice_image: Callable[..., sitk.Image],
    max_size: int,
) -> None:
    slides = downsampled({"p0": tissue_rgb(90, 120), "p1": tissue_rgb(90, 120, 1.0)})
    parameters = {"slide_mask": {"max_size": max_size}}
    smasks, mmasks, report = tissue_masks(
        _pairs(), slides, _mris(mri_slice_image(), "p0", "p1"), parameters
    )
    assert list(report.columns) == list(REPORT_COLUMNS) and list(report.pair_id) == ["p0", "p1"]
    row = report.iloc[0]
    assert (row.slide_width_px, row.slide_height_px) == (120, 90)
    assert row.slide_mpp == pytest.approx(MPP * FACTOR)
    assert (
        row.slide_mask_method.startswith("otsu(log_od)")
        and row.mri_mask_method == "otsu(intensity)"
    )
    assert 0.05 < row.slide_tissue_fraction < 0.95 and 0.3 < row.mri_tissue_fraction < 0.7
    assert (row.mri_rows, row.mri_cols) == (24, 20)
    mask = smasks["p0"]
    cols = 120 if max_size >= 120 else 64
    assert mask.GetSize()[0] == cols and mask.GetPixelID() == sitk.sitkUInt8
    # the mask covers the slide's physical extent; its origin is its first pixel's centre in the
    # level-0 frame of the original slide (factor read from the file, not the parameter)
    assert mask.GetSize()[0] * mask.GetSpacing()[0] == pytest.approx(120 * MPP * FACTOR / 1000)
    level0_factor = mask.GetSpacing()[0] * 1000 / MPP
    assert mask.GetOrigin() == pytest.approx(downsampled_origin_mm(level0_factor, MPP))
    assert mmasks["p1"].GetSpacing() == pytest.approx((0.4, 0.4))
    assert sitk.GetArrayViewFromImage(mmasks["p1"]).mean() == pytest.approx(row.mri_tissue_fraction)


def test_tissue_masks_fixed_mri_threshold(
    downsampled: Callable[..., Any],
    tissue_rgb: Callable[..., np.ndarray],
    mri_slice_image: Callable[..., sitk.Image],
) -> None:
    parameters = {
        "mri_mask": {"method": "threshold", "threshold": 0.5},
        "slide_mask": {"method": "od", "threshold": 0.1},
    }
    _, _, report = tissue_masks(
        _pairs(1),
        downsampled({"p0": tissue_rgb(90, 120)}),
        _mris(mri_slice_image(), "p0"),
        parameters,
    )
    assert report.loc[0, "mri_mask_method"] == "fixed(intensity)"
    assert report.loc[0, "mri_mask_threshold"] == 0.5
    assert report.loc[0, "slide_mask_method"] == "fixed(od)"


def test_blank_glass_stops_before_registration_naming_the_pair_and_file(
    downsampled: Callable[..., Any],
    tissue_rgb: Callable[..., np.ndarray],
    mri_slice_image: Callable[..., sitk.Image],
) -> None:
    """Issue 15: blank glass gave tissue fraction 0.0 without a word, and registration then
    failed and took the good pairs' results with it."""
    slides = downsampled(
        {"good": tissue_rgb(150, 200), "glass": np.full((150, 200, 3), 244, np.uint8)}
    )
    pairs = pd.DataFrame(
        {
            "pair_id": ["good", "glass"],
            "specimen_id": ["a", "b"],
            "split": ["train", "test"],
            "slide": ["case_07_gfap.svs", "case_08_gfap.svs"],
        }
    )
    with pytest.raises(BlankSlideError) as refused:
        tissue_masks(pairs, slides, _mris(mri_slice_image(), "good", "glass"), {})
    message = str(refused.value)
    assert message.startswith("pair glass: slide case_08_gfap.svs shows tissue on 0.00 %")
    assert "data_engineering.slide_mask.min_tissue_fraction = 0.001" in message
    assert "pair good" not in message


def test_a_downsampled_slide_without_mpp_or_factor_is_refused_by_name(
    downsampled: Callable[..., Any],
    tissue_rgb: Callable[..., np.ndarray],
    mri_slice_image: Callable[..., sitk.Image],
) -> None:
    mri = _mris(mri_slice_image(), "p0")
    no_mpp = downsampled({"p0": tissue_rgb(90, 120)}, mpp=None)
    with pytest.raises(ValueError, match=r"p0\.tiff records no microns per pixel"):
        tissue_masks(_pairs(1), no_mpp, mri, {})
    no_factor = downsampled({"p0": tissue_rgb(90, 120)}, factor=None)
    with pytest.raises(DownsampleRecordError, match=r"p0\.tiff: records no downsampling factor"):
        tissue_masks(_pairs(1), no_factor, mri, {})


def test_slide_longer_than_the_mask_size_is_masked_on_a_thumbnail(
    write_slide: Callable[..., Path], tissue_rgb: Callable[..., np.ndarray]
) -> None:
    """Issue 14: a 40x Aperio slide (35544 px wide) downsampled 15x is 2370 px wide, longer
    than ``slide_mask.max_size`` (2048): the mask input is a thumbnail, its mm per pixel
    scaled so that the physical extent stays the slide's (it crashed with a TypeError)."""
    width, height, mpp = 2370, 1902, 0.2527 * 15  # µm/px of the 15x-downsampled grid
    path = write_slide("pair_01.tiff", tissue_rgb(height, width), mpp, 15)
    max_size = DataEngineeringParams().slide_mask.max_size
    assert max(width, height) > max_size
    with open_slide(path) as slide:
        rgb, spacing_mm = slide_mask_input(slide, max_size)
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3
    assert max(rgb.shape[:2]) == pytest.approx(max_size, abs=1)
    # the same physical extent in mm as the slide (width x mpp), to within one pixel
    assert rgb.shape[1] * spacing_mm[0] == pytest.approx(width * mpp / 1000, abs=spacing_mm[0])
    assert rgb.shape[0] * spacing_mm[1] == pytest.approx(height * mpp / 1000, abs=spacing_mm[1])
    # a slide within the size is used at level 0, spacing = its mpp
    with open_slide(path) as slide:
        full, full_spacing = slide_mask_input(slide, 4096)
    assert full.shape[:2] == (height, width)
    assert full_spacing == pytest.approx((mpp / 1000, mpp / 1000), rel=1e-3)


# --------------------------------------------------------------------------- qc_figures
@pytest.mark.usefixtures("close_figures")
def test_qc_figures_one_per_pair_from_the_saved_masks(
    downsampled: Callable[..., Any],
    tissue_rgb: Callable[..., np.ndarray],
    mri_slice_image: Callable[..., sitk.Image],
    memory_loaders: Callable[..., Any],
) -> None:
    slides = downsampled({"p0": tissue_rgb(90, 120), "p1": tissue_rgb(90, 120, 1.0)})
    mris = _mris(mri_slice_image(), "p0", "p1")
    smasks, mmasks, _ = tissue_masks(_pairs(), slides, mris, {})
    figures = qc_figures(_pairs(), slides, mris, memory_loaders(smasks), memory_loaders(mmasks), {})
    assert sorted(figures) == ["p0.png", "p1.png"]
    assert all(isinstance(f, Figure) and len(f.axes) >= 2 for f in figures.values())
    title = figures["p1.png"].get_suptitle()
    assert title == "p1\nspecimen spec_1, split test, axial 5"
    assert figures["p0.png"].axes[1].get_title() == "downsampled slide 120x90 px, 2 um/px"
