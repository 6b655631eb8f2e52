"""Tests of :mod:`mrihisto_kedro.metrics.seam`."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mrihisto_kedro.metrics.seam import grid_borders, seam_score, seam_statistics


def _texture(height: int = 256, width: int = 320, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=(height, width))
    return ndimage.gaussian_filter(noise, 1.5)


def _tiled_with_offsets(image: np.ndarray, tile: int, amplitude: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    out = image.copy()
    for y in range(0, image.shape[0], tile):
        for x in range(0, image.shape[1], tile):
            out[y : y + tile, x : x + tile] += rng.uniform(-amplitude, amplitude)
    return out


def test_grid_borders() -> None:
    assert grid_borders(256, 64) == [64, 128, 192]
    assert grid_borders(250, 64) == [64, 128, 192]
    assert grid_borders(200, 64, stride=48) == [48, 64, 96, 112, 144, 160, 192]
    with pytest.raises(ValueError, match="tile_size and stride must be >= 1"):
        grid_borders(10, 0)


def test_seamless_image_scores_about_one() -> None:
    image = _texture()
    assert seam_score(image, tile_size=64) == pytest.approx(1.0, abs=0.1)


def test_offsets_score_above_one_and_grow_with_the_offset() -> None:
    image = _texture()
    scores = [
        seam_score(_tiled_with_offsets(image, 64, amplitude), tile_size=64)
        for amplitude in (0.0, 0.1, 0.4)  # the typical neighbour step is about 0.07
    ]
    assert scores[0] == pytest.approx(1.0, abs=0.1)
    assert scores[2] > scores[1] > 1.15
    assert scores[2] > 3.0
    # only the true borders light up: a shifted grid sees no seams
    shifted = seam_score(_tiled_with_offsets(image, 64, 0.4), borders=([32, 96], [32, 96]))
    assert shifted == pytest.approx(1.0, abs=0.15)


def test_scale_free_and_dtype_free() -> None:
    image = _tiled_with_offsets(_texture(), 64, 0.1)
    base = seam_score(image, tile_size=64)
    assert seam_score(image * 100.0 + 7.0, tile_size=64) == pytest.approx(base)
    rgb = np.repeat(image[..., None], 3, axis=2)
    assert seam_score(rgb, tile_size=64) == pytest.approx(base)
    as_uint8 = np.clip((image - image.min()) / np.ptp(image) * 255, 0, 255).astype(np.uint8)
    # uint8 must not wrap around in the differences (0 - 1 = 255)
    assert seam_score(as_uint8, tile_size=64) == pytest.approx(base, rel=0.1)


def test_statistics_and_seed() -> None:
    image = _tiled_with_offsets(_texture(), 64, 0.1)
    stats = seam_statistics(image, borders=([], [64, 128]), n_random=10, seed=3)
    assert stats.n_border_lines == 2 and stats.n_random_lines == 10  # only the column axis
    assert stats.score == pytest.approx(stats.border_step / stats.random_step)
    again = seam_statistics(image, borders=([], [64, 128]), n_random=10, seed=3)
    assert again == stats
    everything = seam_statistics(image, tile_size=64, n_random=10_000)
    assert everything.n_random_lines == (256 - 1 - 3) + (320 - 1 - 4)  # all non-border lines


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((5,)), {"tile_size": 2}, r"shape \(H, W\) or \(H, W, C\)"),
        (np.zeros((8, 8)), {}, "give the tile grid"),
        (np.zeros((8, 8)), {"tile_size": 4, "borders": ([4], [4])}, "either borders or"),
        (np.zeros((8, 8)), {"tile_size": 16}, "no border line lies inside"),
        (np.zeros((8, 8)), {"borders": ([0], [])}, r"row border lines must lie in 1\.\.7"),
        (np.zeros((8, 8)), {"tile_size": 4}, "seam score is undefined"),
        (np.full((8, 8), np.nan), {"tile_size": 4}, "NaN"),
        (np.zeros((8, 8)), {"tile_size": 4, "n_random": 0}, "n_random must be a positive"),
    ],
)
def test_bad_inputs(image: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        seam_score(image, **kwargs)
