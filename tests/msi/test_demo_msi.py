"""The simulated paired MSI/H&E demo: real imzML files, known truth, determinism, size."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pyimzml.ImzMLParser import ImzMLParser
from scipy import ndimage

from mrihisto_kedro.demo.msi import (
    GROUND_TRUTH_COLUMNS,
    PEAK_COLUMNS,
    DemoSource,
    MsiDemo,
    MsiDemoParams,
    PeakKind,
    generate_msi_demo,
    load_histology_source,
    slide_path,
    stain_densities,
)
from mrihisto_kedro.msi.imzml import ImzMLMode, open_imzml
from mrihisto_kedro.msi.spectra import make_mz_axis, peak_stack
from mrihisto_kedro.params import ParameterError, parse_params

SMALL = {"n_regions": 2, "region_size_px": 256, "seed": 7}


@pytest.fixture(scope="module", params=[ImzMLMode.PROCESSED, ImzMLMode.CONTINUOUS])
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> MsiDemo:
    out = tmp_path_factory.mktemp(f"msi_demo_{request.param.value}")
    return generate_msi_demo(
        out, MsiDemoParams(**SMALL, imzml_mode=request.param), keep_spectra=True
    )


@pytest.fixture(scope="module")
def slide_rgb() -> np.ndarray:
    return load_histology_source(DemoSource.SLIDE).rgb


def test_demo_reads_the_packaged_slide() -> None:
    path = slide_path()
    assert path.is_file(), f"packaged demo slide missing: {path}"
    assert path.parts[-4:-1] == ("demo", "data", "cmu_small_region")
    assert (path.parent / "LICENSE").is_file() and (path.parent / "README.md").is_file()
    source = load_histology_source(DemoSource.SLIDE)
    assert source.name == "CMU-1-Small-Region.svs"
    assert source.rgb.shape == (2967, 2220, 3)
    assert source.mpp == pytest.approx((0.499, 0.499))


def test_files_and_tables(demo: MsiDemo, slide_rgb: np.ndarray) -> None:
    root = demo.root
    gt = pd.read_csv(root / "ground_truth.csv")
    assert tuple(gt.columns) == GROUND_TRUTH_COLUMNS
    assert len(gt) == 2 and gt["pair_id"].is_unique
    assert (gt["source"] == "CMU-1-Small-Region.svs").all()
    assert (gt["imzml_mode"] == demo.params.imzml_mode.value).all()
    assert (gt["tissue_fraction"] >= 0.3).all()
    peaks = pd.read_csv(root / "peaks.csv")
    assert tuple(peaks.columns) == PEAK_COLUMNS
    assert peaks["kind"].value_counts().to_dict() == {
        "haematoxylin": 3,
        "eosin": 3,
        "unrelated": 3,
        "background": 2,
    }
    # crops do not overlap (separate specimens)
    a, b = gt.iloc[0], gt.iloc[1]
    assert abs(a.crop_x - b.crop_x) >= a.crop_width or abs(a.crop_y - b.crop_y) >= a.crop_height
    for row, region in zip(gt.itertuples(), demo.regions, strict=True):
        assert (root / row.imzml).is_file() and (root / row.imzml).with_suffix(".ibd").is_file()
        crop = np.asarray(Image.open(root / row.histology))
        assert crop.shape == (row.crop_height, row.crop_width, 3) and crop.dtype == np.uint8
        np.testing.assert_array_equal(crop, region.histology)
        # the crop is the slide's pixels at the recorded level-0 box
        y, x = row.crop_y, row.crop_x
        np.testing.assert_array_equal(
            crop, slide_rgb[y : y + row.crop_height, x : x + row.crop_width]
        )
        np.testing.assert_allclose(
            region.affine_mm, [[row.a11, row.a12, row.tx], [row.a21, row.a22, row.ty]]
        )


def test_round_trip_through_pyimzml(demo: MsiDemo) -> None:
    for region in demo.regions:
        assert region.spectra is not None
        reference = ImzMLParser(str(region.imzml_path))
        with open_imzml(region.imzml_path) as reader:
            assert reader.mode is demo.params.imzml_mode
            assert reader.shape == region.msi_shape
            assert reader.pixel_size_um == (10.0, 10.0)
            assert reader.spectrum_type == "profile"
            height, width = region.msi_shape
            for spectrum in reader.iter_spectra():
                mz, intensity = region.spectra[spectrum.index]
                assert (spectrum.row, spectrum.col) == divmod(spectrum.index, width)
                np.testing.assert_allclose(spectrum.mz, mz, rtol=1e-7)
                np.testing.assert_array_equal(spectrum.intensity, intensity)
                ref_mz, ref_int = reference.getspectrum(spectrum.index)
                np.testing.assert_array_equal(spectrum.mz, ref_mz)
                np.testing.assert_array_equal(spectrum.intensity, ref_int)
        reference.m.close()


def _truth_from_files(
    root: Path, row: pd.Series, slide_rgb: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """H and E densities per MSI pixel from the written crop and the CSV affine only."""
    crop = np.asarray(Image.open(root / row.histology))
    _, _, scales = stain_densities(slide_rgb[::4, ::4])
    h, e, _ = stain_densities(crop, scales)
    # MSI (col, row) -> MSI mm -> crop mm -> crop px
    s = row.msi_pixel_size_um / 1000.0
    rows, cols = np.mgrid[0 : row.msi_height, 0 : row.msi_width]
    x_mm = row.a11 * cols * s + row.a12 * rows * s + row.tx
    y_mm = row.a21 * cols * s + row.a22 * rows * s + row.ty
    c, r = x_mm * 1000.0 / row.mpp_x, y_mm * 1000.0 / row.mpp_y
    footprint = round(row.msi_pixel_size_um / row.mpp_x)
    out = []
    for density in (h, e):
        smooth = ndimage.uniform_filter(density, footprint, mode="nearest")
        out.append(ndimage.map_coordinates(smooth, [r, c], order=1))
    return out[0], out[1]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_ion_images_follow_the_stains(demo: MsiDemo, slide_rgb: np.ndarray) -> None:
    gt = pd.read_csv(demo.root / "ground_truth.csv")
    for row, region in zip(gt.itertuples(), demo.regions, strict=True):
        h_truth, e_truth = _truth_from_files(demo.root, row, slide_rgb)
        np.testing.assert_allclose(h_truth, region.msi_haematoxylin, atol=1e-3)
        with open_imzml(demo.root / row.imzml) as reader:
            result = peak_stack(
                reader,
                bin_width=0.25,
                n_peaks=15,
                min_distance=1.0,
                distance_unit="da",
                normalisation="none",
                half_window_bins=2,
            )
        stains = {PeakKind.HAEMATOXYLIN: (h_truth, e_truth), PeakKind.EOSIN: (e_truth, h_truth)}
        for kind, (own, other) in stains.items():
            ks = []
            for peak in (p for p in demo.peaks if p.kind is kind):
                k = int(np.argmin(np.abs(result.peaks.mz - peak.mz)))
                assert abs(result.peaks.mz[k] - peak.mz) < 0.3, f"peak {peak.mz} not picked"
                assert _corr(result.images[k], own) > 0.5
                ks.append(k)
            summed = result.images[ks].sum(axis=0)
            assert _corr(summed, own) > 0.8
            assert _corr(summed, own) > _corr(summed, other)
        # misregistering the truth by 3 MSI pixels lowers the agreement: the affine is the truth
        h_peaks = [p for p in demo.peaks if p.kind is PeakKind.HAEMATOXYLIN]
        ks = [int(np.argmin(np.abs(result.peaks.mz - p.mz))) for p in h_peaks]
        h_image = result.images[ks].sum(axis=0)
        assert _corr(h_image, h_truth) > _corr(h_image[3:, 3:], h_truth[:-3, :-3]) + 0.1


def test_deterministic_and_seeded(tmp_path: Path) -> None:
    params = MsiDemoParams(**SMALL)
    first = generate_msi_demo(tmp_path / "a", params)
    generate_msi_demo(tmp_path / "b", params)
    for path in sorted(p for p in (tmp_path / "a").rglob("*") if p.is_file()):
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_bytes() == twin.read_bytes(), f"{path.name} differs"
    other = generate_msi_demo(tmp_path / "c", MsiDemoParams(**{**SMALL, "seed": 8}))
    assert not np.array_equal(
        first.regions[0].msi_to_histology_px, other.regions[0].msi_to_histology_px
    )


def test_default_demo_is_fast_and_small(tmp_path: Path) -> None:
    start = time.perf_counter()
    demo = generate_msi_demo(tmp_path / "demo")
    elapsed = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (tmp_path / "demo").rglob("*") if p.is_file())
    assert len(demo.regions) == 6
    assert demo.regions[0].msi_shape == (21, 21)
    assert size < 20e6, f"default demo takes {size / 1e6:.1f} MB"
    assert elapsed < 30.0


def test_skimage_fallback(tmp_path: Path) -> None:
    demo = generate_msi_demo(tmp_path, MsiDemoParams(**SMALL, source="skimage"))
    assert demo.source == "skimage.data.immunohistochemistry"
    assert demo.ground_truth["mpp_x"].eq(1.0).all()
    with open_imzml(demo.regions[0].imzml_path) as reader:
        axis = make_mz_axis(*demo.params.mz_range, 1.0)
        assert reader.mz_range[0] >= axis.mz_range[0]


@pytest.mark.parametrize(
    ("values", "key", "reason"),
    [
        ({"n_regions": 0}, "n_regions", "must be in [1, 32], got 0"),
        ({"msi_pixel_size_um": -1.0}, "msi_pixel_size_um", "must be in [1, 500], got -1.0"),
        ({"peak_counts": 0.0}, "peak_counts", "must be in [1e-06, 1e+09], got 0.0"),
        ({"n_eosin_peaks": 51}, "n_eosin_peaks", "must be in [0, 50], got 51"),
        ({"imzml_mode": "sparse"}, "imzml_mode", "= 'sparse' is not one of: continuous, processed"),
        ({"source": "scanner"}, "source", "= 'scanner' is not one of: auto, slide, skimage"),
        ({"mz_range": [100.0]}, "mz_range", "must have 2 items, got 1"),
        ({"mz_range": (0.0, 900.0)}, "mz_range", "must satisfy 0 < min < max <= 100000"),
        ({"mz_range": (500.0, 510.0)}, "mz_range", "is too narrow for 11 peaks (needs >= 76 Da)"),
        ({"mz_range": (1.0, 99_999.0), "mz_step": 0.001}, "mz_step", "too many m/z samples"),
        (
            {
                "n_haematoxylin_peaks": 0,
                "n_eosin_peaks": 0,
                "n_unrelated_peaks": 0,
                "n_background_peaks": 0,
            },
            "n_haematoxylin_peaks",
            "are all 0; simulate at least one peak",
        ),
    ],
)
def test_parameter_validation(values: dict, key: str, reason: str) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_params(MsiDemoParams, values, "demo_msi.simulation")
    assert caught.value.key == f"demo_msi.simulation.{key}"
    assert reason in caught.value.reason
    with pytest.raises(ParameterError, match=f"parameter '{key}' "):
        MsiDemoParams(**values)  # constructed in code: the same checks


def test_unknown_keys_are_named() -> None:
    with pytest.raises(
        ParameterError, match=r"'demo_msi\.simulation' has unknown key\(s\) 'colour'"
    ):
        parse_params(MsiDemoParams, {"colour": "red"}, "demo_msi.simulation")


def test_from_dict_accepts_lists() -> None:
    params = MsiDemoParams.from_dict({"mz_range": [200, 900], "imzml_mode": "continuous"})
    assert params.mz_range == (200.0, 900.0) and params.imzml_mode is ImzMLMode.CONTINUOUS
    assert MsiDemoParams.from_dict(params.to_dict()) == params


def test_too_many_regions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-overlapping regions"):
        generate_msi_demo(tmp_path, MsiDemoParams(n_regions=30, region_size_px=400))
