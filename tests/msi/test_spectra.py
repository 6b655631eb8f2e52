"""Spectra processing: m/z axes, count-preserving rebinning, summed spectrum, peaks, ion images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pyimzml.ImzMLWriter import ImzMLWriter

from mrihisto_kedro.msi.imzml import open_imzml
from mrihisto_kedro.msi.spectra import (
    BinUnit,
    DistanceUnit,
    Normalisation,
    RebinMethod,
    ion_images,
    make_mz_axis,
    normalise_spectrum,
    peak_stack,
    pick_peaks,
    rebin_spectrum,
    summed_spectrum,
)


def test_da_axis() -> None:
    axis = make_mz_axis(100.0, 200.0, 0.5)
    assert axis.n_bins == 200
    np.testing.assert_allclose(axis.widths, 0.5)
    assert axis.mz_range == (100.0, 200.0)
    assert axis.centres[0] == pytest.approx(100.25)
    np.testing.assert_array_equal(
        axis.index_of([99.9, 100.0, 100.49, 100.5, 200.0, 200.1]), [-1, 0, 0, 1, 199, -1]
    )


def test_ppm_axis() -> None:
    axis = make_mz_axis(100.0, 1000.0, 100.0, BinUnit.PPM)
    relative = axis.widths / axis.edges[:-1] * 1e6
    np.testing.assert_allclose(relative, 100.0, rtol=1e-6)
    assert axis.edges[-1] >= 1000.0 > axis.edges[-2]
    assert axis.n_bins == int(np.ceil(np.log(10.0) / np.log1p(1e-4)))


@pytest.mark.parametrize(
    ("lo", "hi", "width", "unit", "match"),
    [
        (200.0, 100.0, 1.0, "da", "mz_min < mz_max"),
        (100.0, 200.0, 0.0, "da", "bin_width"),
        (0.0, 200.0, 10.0, "ppm", "mz_min > 0"),
        (100.0, 200.0, 1.0, "furlong", "furlong"),
    ],
)
def test_axis_validation(lo: float, hi: float, width: float, unit: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_mz_axis(lo, hi, width, unit)


@pytest.mark.parametrize("method", list(RebinMethod))
@pytest.mark.parametrize(("width", "unit"), [(0.05, "da"), (1.0, "da"), (50.0, "ppm")])
def test_rebin_preserves_total_ion_count(method: RebinMethod, width: float, unit: str) -> None:
    rng = np.random.default_rng(0)
    # an irregular (processed-like) spectrum, profile peaks plus noise
    mz = np.sort(rng.uniform(150.0, 850.0, 5000))
    intensity = rng.exponential(1.0, mz.size) + 50.0 * np.exp(-0.5 * ((mz - 500.0) / 0.2) ** 2)
    axis = make_mz_axis(100.0, 900.0, width, unit)
    rebinned = rebin_spectrum(mz, intensity, axis, method)
    assert rebinned.shape == (axis.n_bins,)
    assert rebinned.min() >= 0.0
    assert rebinned.sum() == pytest.approx(intensity.sum(), rel=1e-9)


def test_rebin_drops_outside_and_keeps_centroid() -> None:
    axis = make_mz_axis(100.0, 110.0, 1.0)
    mz = np.array([99.0, 104.75, 111.0])
    intensity = np.array([5.0, 2.0, 7.0])
    linear = rebin_spectrum(mz, intensity, axis, RebinMethod.LINEAR)
    assert linear.sum() == pytest.approx(2.0)  # only the sample inside the axis
    # 104.75 lies between centres 104.5 and 105.5: 3/4 and 1/4, centroid unchanged
    assert linear[4] == pytest.approx(1.5) and linear[5] == pytest.approx(0.5)
    assert float((linear * axis.centres).sum() / linear.sum()) == pytest.approx(104.75)
    nearest = rebin_spectrum(mz, intensity, axis, RebinMethod.NEAREST)
    assert nearest[4] == 2.0 and nearest.sum() == 2.0


def test_normalisation() -> None:
    values = np.array([0.0, 1.0, 3.0])
    assert normalise_spectrum(values, "tic").sum() == pytest.approx(1.0)
    rms = normalise_spectrum(values, Normalisation.RMS)
    assert np.sqrt(np.mean(rms**2)) == pytest.approx(1.0)
    np.testing.assert_array_equal(normalise_spectrum(values, "none"), values)
    np.testing.assert_array_equal(normalise_spectrum(np.zeros(3), "tic"), np.zeros(3))
    with pytest.raises(ValueError, match="max"):
        normalise_spectrum(values, "max")


def _synthetic_spectrum(planted: list[float], axis_width: float = 0.1) -> tuple:
    axis = make_mz_axis(100.0, 1000.0, axis_width)
    x = axis.centres
    rng = np.random.default_rng(1)
    spectrum = rng.uniform(0.0, 0.5, x.size)  # noise with many small local maxima
    for k, mz in enumerate(planted):
        spectrum += (20.0 + k) * np.exp(-0.5 * ((x - mz) / 0.15) ** 2)
    return axis, spectrum


def test_pick_peaks_finds_planted_peaks() -> None:
    planted = [150.3, 222.2, 401.0, 402.5, 615.7, 870.05, 990.4]
    axis, spectrum = _synthetic_spectrum(planted)
    peaks = pick_peaks(spectrum, axis, n_peaks=len(planted), min_distance=0.5, distance_unit="da")
    assert len(peaks) == len(planted)
    assert np.all(np.diff(peaks.mz) > 0)
    np.testing.assert_allclose(peaks.mz, planted, atol=0.1)
    np.testing.assert_array_equal(peaks.intensity, spectrum[peaks.indices])


def test_pick_peaks_min_distance_and_default_n() -> None:
    planted = [300.0, 300.8, 500.0]
    axis, spectrum = _synthetic_spectrum(planted)
    # 0.8 Da apart: both with a 0.5 Da distance, only the higher one with 2 Da (or 20 bins)
    both = pick_peaks(spectrum, axis, n_peaks=3, min_distance=0.5, distance_unit=DistanceUnit.DA)
    np.testing.assert_allclose(both.mz, planted, atol=0.1)
    for distance, unit in [(2.0, "da"), (20, "bins")]:
        merged = pick_peaks(spectrum, axis, n_peaks=2, min_distance=distance, distance_unit=unit)
        np.testing.assert_allclose(merged.mz, [300.8, 500.0], atol=0.1)
    assert len(pick_peaks(spectrum, axis)) == 50  # the default N; noise maxima fill the rest
    with pytest.raises(ValueError, match="n_peaks"):
        pick_peaks(spectrum, axis, n_peaks=0)
    with pytest.raises(ValueError, match="does not match"):
        pick_peaks(spectrum[:-1], axis)


def _write_image(path: Path, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """A 4x5 image: peak 300 scales with the column, peak 600 with the row; (row, col) 3,4 absent.

    Returns the planted per-pixel amplitudes of both peaks, ``(2, 4, 5)``.
    """
    rng = np.random.default_rng(5)
    truth = np.zeros((2, 4, 5))
    with ImzMLWriter(str(path), mode=mode, mz_dtype=np.float64) as writer:
        for row in range(4):
            for col in range(5):
                if (row, col) == (3, 4):
                    continue
                if mode == "continuous":
                    mz = np.linspace(250.0, 650.0, 4001)
                else:
                    # per-pixel grids, shifted by a fraction of a step and of other lengths
                    n = int(rng.integers(3900, 4001))
                    mz = np.linspace(250.0, 650.0, n) + rng.uniform(0.0, 0.1)
                a300, a600 = 10.0 * (col + 1), 5.0 * (row + 1)
                truth[:, row, col] = a300, a600
                intensity = (
                    a300 * np.exp(-0.5 * ((mz - 300.0) / 0.2) ** 2)
                    + a600 * np.exp(-0.5 * ((mz - 600.0) / 0.2) ** 2)
                    + 0.01
                )
                writer.addSpectrum(mz, intensity.astype(np.float32), (col + 1, row + 1))
    return truth


@pytest.mark.parametrize("mode", ["continuous", "processed"])
def test_summed_spectrum_and_ion_images(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode}.imzML"
    truth = _write_image(path, mode)
    with open_imzml(path) as reader:
        axis = make_mz_axis(*reader.mz_range, 0.1)
        summed = summed_spectrum(reader, axis)
        assert summed.n_pixels == 19
        total = sum(float(s.intensity.sum()) for s in reader.iter_spectra())
        assert summed.total.sum() == pytest.approx(total, rel=1e-6)
        np.testing.assert_allclose(summed.mean, summed.total / 19)
        peaks = pick_peaks(summed.total, axis, n_peaks=2, min_distance=5.0, distance_unit="da")
        np.testing.assert_allclose(peaks.mz, [300.0, 600.0], atol=0.1)

        stack = ion_images(reader, axis, peaks, half_window_bins=5)
        assert stack.shape == (2, 4, 5) and stack.dtype == np.float32
        assert stack[:, 3, 4].tolist() == [0.0, 0.0]  # never acquired
        acquired = reader.acquired_mask()
        for k in range(2):
            r = np.corrcoef(stack[k][acquired], truth[k][acquired])[0, 1]
            assert r > 0.999
        # TIC normalisation: the two peaks' share of each pixel's total, below 1
        normalised = ion_images(reader, axis, peaks, normalisation="tic", half_window_bins=5)
        assert 0.0 < normalised[:, acquired].sum(axis=0).max() <= 1.0

        # masked: only the first row is summed and imaged
        mask = np.zeros(reader.shape, dtype=bool)
        mask[0] = True
        assert summed_spectrum(reader, axis, mask=mask).n_pixels == 5
        assert not ion_images(reader, axis, peaks, mask=mask)[:, 1:].any()
        with pytest.raises(ValueError, match="mask shape"):
            summed_spectrum(reader, axis, mask=np.ones((2, 2), dtype=bool))


def test_peak_stack_on_example(shared_data: Path) -> None:
    path = shared_data / "msi" / "Example_Processed.imzML"
    if not path.is_file():
        pytest.skip(f"imzML example {path} not found")
    with open_imzml(path) as reader:
        result = peak_stack(reader, bin_width=0.5, n_peaks=50)
        assert result.images.shape == (50, 3, 3)
        assert result.pixel_size_um == (100.0, 100.0)
        assert result.acquired.all()
        assert np.all(result.images >= 0)
        # TIC-normalised: every pixel's spectrum sums to 1, so the summed spectrum to 9
        assert result.summed.total.sum() == pytest.approx(9.0)
        ppm = peak_stack(reader, bin_width=500.0, bin_unit="ppm", n_peaks=10, normalisation="rms")
        assert ppm.images.shape == (10, 3, 3)
