"""Tests of :mod:`mrihisto_kedro.imaging.stitching` (sliding-window inference, stitched slides)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import openslide
import pytest
import pyvips
from scipy import ndimage

from mrihisto_kedro.imaging.stitching import (
    BorderMode,
    StitchOptions,
    WeightKind,
    array_reader,
    iter_stitched_rows,
    stitch_to_array,
    stitch_to_tiff,
    to_uint8,
    vips_reader,
    weight_map,
    weight_profile,
    window_grid,
    window_starts,
)
from mrihisto_kedro.metrics.seam import seam_score
from mrihisto_kedro.params import ParameterError


def identity(batch: np.ndarray) -> np.ndarray:
    return batch


def _smooth_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture ``(1, H, W)`` float32 in about [-0.6, 0.6]."""
    noise = np.random.default_rng(seed).normal(size=(height, width))
    texture = ndimage.gaussian_filter(noise, 2.0)
    return (0.6 * texture / np.abs(texture).max()).astype(np.float32)[None]


def _drifting(seed: int, amplitude: float = 0.3):
    """A predictor adding one random brightness offset per window (a generator's tile drift)."""
    rng = np.random.default_rng(seed)

    def predict(batch: np.ndarray) -> np.ndarray:
        offsets = rng.uniform(-amplitude, amplitude, (batch.shape[0], 1, 1, 1))
        return batch + offsets.astype(np.float32)

    return predict


def _folder_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ------------------------------------------------------------------------------------------ grid
def test_window_starts_cover_with_last_flush() -> None:
    assert window_starts(256, 64, 16) == [0, 48, 96, 144, 192]
    assert window_starts(250, 64, 16) == [0, 48, 96, 144, 186]  # last flush with the edge
    assert window_starts(256, 64, 0) == [0, 64, 128, 192]
    assert window_starts(40, 64, 16) == [0]
    for length in range(1, 200, 7):
        for window, overlap in ((16, 0), (16, 5), (33, 32)):
            starts = window_starts(length, window, overlap)
            covered = np.zeros(length, bool)
            for s in starts:
                covered[s : s + window] = True
                assert s + min(window, length) <= length
            assert covered.all()
            assert starts[-1] == max(0, length - window)


def test_window_grid_clips_to_small_canvas_and_lists_borders() -> None:
    grid = window_grid((30, 100), 64, 16, margin=8)
    assert grid.window == (30, 64)
    assert grid.rows == (0,) and grid.cols == (0, 36)
    assert grid.input_window == (46, 80)
    assert len(grid) == 2 and grid.positions() == [(0, 0), (0, 36)]
    assert grid.border_lines() == ([], [36, 64])
    assert window_grid((128, 128), 64, 0).border_lines() == ([64], [64])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"window": 32, "overlap": 40},
            r"'overlap' must be smaller than the window \(32, 32\) px, got \(40, 40\) px",
        ),
        ({"window": (32, 16), "overlap": (8, 16)}, "'overlap' must be smaller than the window"),
        ({"window": 0}, "'window' must be >= 1, got 0"),
        ({"window": (32, 0)}, "'window' must be >= 1, got 0"),
        ({"overlap": -1}, "'overlap' must be >= 0, got -1"),
        ({"margin": -2}, "'margin' must be >= 0, got -2"),
        ({"margin": 1.5}, "'margin' must be an integer"),
        ({"batch_size": 0}, "'batch_size' must be >= 1, got 0"),
        ({"weights": "triangle"}, "'weights' = 'triangle' is not one of: gaussian, hann, constant"),
        ({"border": "wrap"}, "'border' = 'wrap' is not one of: reflect, constant"),
        ({"sigma_scale": 0.0}, "'sigma_scale' must be > 0, got 0.0"),
        ({"min_weight": 0.0}, r"'min_weight' must be in \(0, 1\], got 0.0"),
        ({"min_weight": 1.5}, r"'min_weight' must be in \(0, 1\], got 1.5"),
        ({"pad_value": float("inf")}, "'pad_value' must be a finite number"),
        ({"window": (32, 32, 3)}, "'window' must have 2 items, got 3"),
        ({"window": True}, "'window'"),
    ],
)
def test_options_are_validated(kwargs: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        StitchOptions(**kwargs)


def test_options_accept_strings_and_pairs() -> None:
    options = StitchOptions(window=(64, 32), overlap=(8, 4), weights="Gaussian", border="constant")
    assert options.weights is WeightKind.GAUSSIAN and options.border is BorderMode.CONSTANT
    assert options.window == (64, 32) and options.overlap == (8, 4)
    square = StitchOptions(window=np.int64(48), overlap=[12, 6], pad_value=0)
    assert square.window == (48, 48) and square.overlap == (12, 6)
    assert type(square.window[0]) is int and square.pad_value == 0.0
    assert StitchOptions() == StitchOptions(window=256, overlap=64)


def test_weight_profile_names_a_bad_kind() -> None:
    with pytest.raises(ParameterError, match="'weights' = 'triangle' is not one of"):
        weight_profile(8, "triangle")


# --------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize("kind", list(WeightKind))
def test_weights_positive_symmetric_peak_one(kind: WeightKind) -> None:
    for length in (1, 2, 7, 64):
        profile = weight_profile(length, kind)
        assert profile.shape == (length,)
        assert (profile > 0).all() and profile.max() == pytest.approx(1.0)
        np.testing.assert_allclose(profile, profile[::-1])
    grid = weight_map((16, 24), kind)
    assert grid.shape == (16, 24) and grid.dtype == np.float32 and grid.min() > 0


def test_gaussian_sigma_is_an_eighth_of_the_window() -> None:
    profile = weight_profile(129, "gaussian")  # centre 64, sigma 129 / 8
    sigma = 129 / 8
    assert profile[64] == 1.0
    assert profile[64 + 16] == pytest.approx(np.exp(-0.5 * (16 / sigma) ** 2))
    assert weight_profile(129, "gaussian", min_weight=0.2).min() == 0.2


# ------------------------------------------------------------------------------------- stitching
@pytest.mark.parametrize("weights", list(WeightKind))
@pytest.mark.parametrize(("overlap", "margin"), [(0, 0), (5, 0), (31, 7), ((17, 3), 40)])
def test_identity_reproduces_input(weights: WeightKind, overlap, margin: int) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(3, 197, 263), dtype=np.uint8)  # not window multiples
    scaled = pixels.astype(np.float32) / 127.5 - 1.0
    options = StitchOptions(
        window=(64, 48), overlap=overlap, margin=margin, weights=weights, batch_size=3
    )
    stitched = stitch_to_array(array_reader(scaled), identity, scaled.shape, 3, options)
    assert stitched.dtype == np.float32 and stitched.shape == scaled.shape
    np.testing.assert_allclose(stitched, scaled, rtol=0, atol=1e-6)
    assert np.array_equal(to_uint8(stitched), np.moveaxis(pixels, 0, -1))  # exact in uint8


def test_rows_stream_in_order_and_cover_the_canvas_once() -> None:
    x = _smooth_texture(150, 90)
    seen: list[tuple[int, int]] = []
    progress: list[tuple[int, int]] = []
    for y0, rows in iter_stitched_rows(
        array_reader(x),
        identity,
        x.shape,
        1,
        StitchOptions(window=40, overlap=12, batch_size=2),
        progress=lambda done, total: progress.append((done, total)),
    ):
        assert rows.shape[0] == 1 and rows.shape[2] == 90 and rows.dtype == np.float32
        seen.append((y0, rows.shape[1]))
    assert seen[0][0] == 0
    for (y0, k), (y1, _) in zip(seen, seen[1:], strict=False):
        assert y1 == y0 + k
    assert seen[-1][0] + seen[-1][1] == 150
    grid = window_grid(x.shape, 40, 12)
    assert progress[-1] == (len(grid), len(grid))


def test_margin_reads_only_inside_the_canvas_and_pads() -> None:
    """read_input is never asked for pixels outside the canvas; the model sees padded context."""
    x = np.arange(20 * 30, dtype=np.float32).reshape(1, 20, 30) / 600.0
    calls: list[tuple[int, int, int, int]] = []
    seen: list[np.ndarray] = []

    def read(y0: int, x0: int, h: int, w: int) -> np.ndarray:
        calls.append((y0, x0, h, w))
        return x[:, y0 : y0 + h, x0 : x0 + w]

    def predict(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return batch

    options = StitchOptions(window=16, overlap=4, margin=5, border="constant", pad_value=-1.0)
    out = stitch_to_array(read, predict, (20, 30), 1, options)
    np.testing.assert_allclose(out, x, atol=1e-6)
    for y0, x0, h, w in calls:
        assert y0 >= 0 and x0 >= 0 and y0 + h <= 20 and x0 + w <= 30
    first = seen[0][0, 0]
    assert first.shape == (26, 26)
    assert (first[:5] == -1).all() and (first[:, :5] == -1).all()
    reflect = StitchOptions(window=16, overlap=4, margin=5)
    seen.clear()
    stitch_to_array(read, predict, (20, 30), 1, reflect)
    np.testing.assert_array_equal(seen[0][0, 0, 4, 5:], x[0, 1, :21])  # row -1 mirrors row 1


def test_vips_reader_matches_array_reader() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, size=(70, 90, 3), dtype=np.uint8)
    image = pyvips.Image.new_from_array(rgb).linear(2 / 255, -1)
    read = vips_reader(image)
    window = read(10, 20, 30, 40)
    assert window.shape == (3, 30, 40) and window.dtype == np.float32
    expected = np.moveaxis(rgb, -1, 0)[:, 10:40, 20:60] * (2 / 255) - 1
    np.testing.assert_allclose(window, expected, atol=1e-6)


def test_blending_hides_per_window_drift() -> None:
    """A per-window brightness offset shows as seams without blending, not with Hann/Gaussian."""
    x = _smooth_texture(300, 420)
    shape = x.shape[1:]
    assert seam_score(x[0], tile_size=64) == pytest.approx(1.0, abs=0.1)  # no seams in the input

    def score(options: StitchOptions, lines: str = "edges") -> float:
        out = stitch_to_array(array_reader(x), _drifting(seed=1), shape, 1, options)[0]
        grid = options.grid(shape)
        if lines == "edges":
            borders = grid.border_lines()
        else:  # centres of the overlaps, where a cross-fade is steepest
            half = options.overlap[0] // 2
            borders = ([y + half for y in grid.rows[1:-1]], [c + half for c in grid.cols[1:-1]])
        return seam_score(out, borders=borders)

    tiled = score(StitchOptions(window=64, overlap=0, weights="constant"))
    averaged = score(StitchOptions(window=64, overlap=16, weights="constant"))
    gaussian = score(StitchOptions(window=64, overlap=16, weights="gaussian"))
    hann = score(StitchOptions(window=64, overlap=16, weights="hann"))
    gaussian_mid = score(StitchOptions(window=64, overlap=16, weights="gaussian"), "centres")
    hann_mid = score(StitchOptions(window=64, overlap=32, weights="hann"), "centres")
    assert tiled > 3.0  # clearly visible seams
    assert tiled > averaged > max(gaussian, hann)
    assert gaussian < 1.1 and hann < 1.1
    assert gaussian_mid < tiled / 2 and hann_mid < 1.1


# ------------------------------------------------------------------------------------------ TIFF
@pytest.mark.parametrize("flavour", ["generic", "aperio"])
def test_tiff_opens_in_openslide_with_mpp_and_pixels(tmp_path: Path, flavour: str) -> None:
    x = np.concatenate([_smooth_texture(300, 470, seed) for seed in range(3)]) * 1.5
    options = StitchOptions(window=96, overlap=24, batch_size=4)
    expected = to_uint8(stitch_to_array(array_reader(x), np.tanh, x.shape, 3, options))
    path = stitch_to_tiff(
        array_reader(x),
        np.tanh,
        x.shape,
        3,
        tmp_path / "out" / "synthetic.svs",
        options,
        mpp=7.5,
        flavour=flavour,
        compression="deflate",
        app_mag=1.25,
    )
    assert path == tmp_path / "out" / "synthetic.svs"
    assert _folder_names(path.parent) == {"synthetic.svs"}  # temporaries removed
    slide = openslide.OpenSlide(path)
    try:
        assert slide.dimensions == (470, 300)
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(7.5)
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(7.5)
        vendor = "aperio" if flavour == "aperio" else "generic-tiff"
        assert slide.properties[openslide.PROPERTY_NAME_VENDOR] == vendor
        level0 = np.asarray(slide.read_region((0, 0), 0, (470, 300)).convert("RGB"))
    finally:
        slide.close()
    assert np.array_equal(level0, expected)  # lossless compression: identical pixels


def test_tiff_grey_jpeg_and_temp_dir(tmp_path: Path) -> None:
    x = _smooth_texture(200, 260)
    scratch = tmp_path / "scratch"
    path = stitch_to_tiff(
        array_reader(x),
        identity,
        x.shape,
        1,
        tmp_path / "grey.tif",
        StitchOptions(window=64, overlap=16),
        mpp=(2.0, 2.0),
        flavour="generic",
        tmp_dir=scratch,
    )
    assert _folder_names(scratch) == set() and _folder_names(tmp_path) == {"grey.tif", "scratch"}
    slide = openslide.OpenSlide(path)
    try:
        assert slide.dimensions == (260, 200)
        level0 = np.asarray(slide.read_region((0, 0), 0, (260, 200)).convert("RGB")).astype(int)
    finally:
        slide.close()
    expected = to_uint8(x)[..., 0].astype(int)
    for channel in range(3):  # grey stored as RGB; JPEG q90 tolerance
        diff = np.abs(level0[..., channel] - expected)
        assert diff.mean() < 1.5 and diff.max() <= 24


def test_wrong_predict_shape_fails_and_leaves_nothing(tmp_path: Path) -> None:
    x = _smooth_texture(100, 100)
    existing = tmp_path / "slide.svs"
    existing.write_bytes(b"old slide")
    with pytest.raises(ValueError, match=r"predict returned shape \(2, 3, 32, 32\).*expected"):
        stitch_to_tiff(
            array_reader(x),
            lambda b: np.repeat(b, 3, axis=1)[..., :32, :32],
            x.shape,
            3,
            existing,
            StitchOptions(window=48, overlap=8, batch_size=2),
            mpp=1.0,
        )
    assert _folder_names(tmp_path) == {"slide.svs"}
    assert existing.read_bytes() == b"old slide"  # an existing file is left untouched


def test_predict_errors_are_named(tmp_path: Path) -> None:
    x = _smooth_texture(50, 50)
    options = StitchOptions(window=32, overlap=8)
    with pytest.raises(ValueError, match="non-finite values"):
        stitch_to_array(array_reader(x), lambda b: b * np.nan, x.shape, 1, options)
    with pytest.raises(TypeError, match="predict must return a numpy array, got list"):
        stitch_to_array(array_reader(x), lambda b: b.tolist(), x.shape, 1, options)
    with pytest.raises(ValueError, match=r"read_input\(0, 0, 32, 32\) returned shape"):
        stitch_to_array(lambda *a: np.zeros((1, 3, 3)), identity, x.shape, 1, options)
    with pytest.raises(ValueError, match="out_channels must be 1 .grey. or 3"):
        stitch_to_tiff(array_reader(x), identity, x.shape, 2, tmp_path / "a.tif", mpp=1.0)
    with pytest.raises(ValueError, match="mpp must be positive microns per pixel"):
        stitch_to_tiff(array_reader(x), identity, x.shape, 1, tmp_path / "a.tif", mpp=-1.0)
    assert _folder_names(tmp_path) == set()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"compression": "jpg"}, "compression must be one of"),
        ({"tile_size": 100}, "tile_size must be a positive multiple of 16"),
        ({"quality": 0}, "quality must be an integer in 1..100"),
        ({"flavour": "svs"}, "flavour must be one of"),
        ({"mpp": (0.5, 0.25)}, "anisotropic"),
        ({"description": {"MPP": "1"}}, "reserved"),
        ({"value_range": (1.0, -1.0)}, "value_range must be"),
    ],
)
def test_writer_options_fail_before_predicting(tmp_path: Path, kwargs: dict, match: str) -> None:
    x = _smooth_texture(50, 50)
    calls: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch

    with pytest.raises(ValueError, match=match):
        stitch_to_tiff(
            array_reader(x), predict, x.shape, 1, tmp_path / "o.svs", **{"mpp": 1.0, **kwargs}
        )
    assert calls == [] and _folder_names(tmp_path) == set()


def test_unwritable_destination_fails_before_predicting(tmp_path: Path) -> None:
    x = _smooth_texture(50, 50)
    calls: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"cannot write .*out\.tif: the destination folder"):
        stitch_to_tiff(
            array_reader(x), predict, x.shape, 1, blocker / "missing" / "out.tif", mpp=1.0
        )
    if os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OSError, match="cannot write"):
            stitch_to_tiff(array_reader(x), predict, x.shape, 1, locked / "sub" / "o.tif", mpp=1.0)
    with pytest.raises(OSError, match=r"/proc/.*cannot be created"):
        stitch_to_tiff(array_reader(x), predict, x.shape, 1, "/proc/no/such/o.tif", mpp=1.0)
    assert calls == []
    assert _folder_names(tmp_path) <= {"not_a_folder", "locked"}
