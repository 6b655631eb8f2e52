"""LevelArray: a downsampled slide read window by window gives what the whole-level read gives,
and tiling through it reads no slide pixels while planning (issue 14: region reads in tiling);
batched window reads give the same pixels in batches of bounded size (issue 18)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.transform import resize

from mrihisto_kedro.imaging import level_array
from mrihisto_kedro.imaging.downsample import downsample_slide
from mrihisto_kedro.imaging.level_array import LevelArray
from mrihisto_kedro.imaging.slides import Slide, open_slide
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff
from mrihisto_kedro.imaging.tileset import load_tileset
from mrihisto_kedro.imaging.tiling import (
    AlignedPair,
    PairTilesJob,
    TilingParams,
    paired_tiles,
    plan_tiles,
)


@pytest.fixture(scope="module")
def downsampled(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real CMU-1-Small-Region reduced 3x and written as data_engineering writes its
    downsampled slides (generic pyramidal JPEG TIFF, 740 x 989 px, 256 px tiles)."""
    path = tmp_path_factory.mktemp("level_array") / "down.tiff"
    with open_slide(shared_data / "histology" / "CMU-1-Small-Region.svs") as slide:
        write_pyramidal_tiff(downsample_slide(slide, 3.0), path, flavour="generic")
    return path


def test_windows_equal_the_whole_level_read(downsampled: Path) -> None:
    with open_slide(downsampled) as slide:
        w, h = slide.dimensions
        whole = slide.read_region((0, 0), 0, (w, h))
        view = LevelArray(open_slide(downsampled))
        assert view.shape == (h, w, 3) and view.dtype == np.uint8 and len(view) == h
        for rows, cols in [
            (slice(0, 256), slice(0, 256)),  # aligned with the TIFF tiles
            (slice(100, 229), slice(37, 300)),  # across tile borders
            (slice(h - 50, h), slice(w - 70, None)),  # touching the edges
            (slice(-20, None), slice(None, 10)),  # negative and open bounds
            (slice(5, 5), slice(0, 10)),  # empty
        ]:
            np.testing.assert_array_equal(view[rows, cols], whole[rows, cols])
        np.testing.assert_array_equal(view[10:20, 30:40, 1], whole[10:20, 30:40, 1])
        np.testing.assert_array_equal(np.asarray(view), whole)
        with pytest.raises(TypeError, match="down.tiff.*step 1"):
            view[0:100:2, 0:10]
        with pytest.raises(TypeError, match=r"down.tiff.*\[y0:y1, x0:x1"):
            view[3]
        view.close()


def test_batched_windows_equal_single_window_reads(
    downsampled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = LevelArray(open_slide(downsampled))
    h, w, _ = view.shape
    rng = np.random.default_rng(1)
    corners = [(0, 0), (h - 100, w - 90), (256, 256), (255, 1)]  # corners, tile borders
    corners += [
        (int(y), int(x))
        for y, x in zip(rng.integers(0, h - 100, 20), rng.integers(0, w - 90, 20), strict=True)
    ]
    singles = np.stack([view[y : y + 100, x : x + 90] for y, x in corners])
    for workers in (1, 2):
        np.testing.assert_array_equal(view.windows(corners, (100, 90), workers=workers), singles)
    calls: list[int] = []
    original = Slide.read_regions

    def counting(
        self: Slide, locations: list[tuple[int, int]], *args: object, **kw: object
    ) -> np.ndarray:
        calls.append(len(locations))
        return original(self, locations, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Slide, "read_regions", counting)
    got = list(view.iter_windows(corners, (100, 90), workers=2, batch_pixels=5 * 100 * 90 + 1))
    np.testing.assert_array_equal(np.stack(got), singles)
    assert calls == [5, 5, 5, 5, 4]  # bounded batches of 5 windows, in order
    assert view.windows(np.zeros((0, 2), int), (8, 8)).shape == (0, 8, 8, 3)
    with pytest.raises(ValueError, match=r"down.tiff"):
        view.windows([(h - 99, 0)], (100, 90))  # would overhang the bottom edge
    with pytest.raises(ValueError, match=r"not inside level 0"):
        view.windows([(0, -1)], (100, 90))
    view.close()


@pytest.mark.parametrize(("read_workers", "output_size"), [(1, 64), (2, None)])
def test_tiling_through_a_level_array_is_bit_identical_and_plans_without_reading(
    downsampled: Path, monkeypatch: pytest.MonkeyPatch, read_workers: int, output_size: int | None
) -> None:
    """Resized (float rounding) and stored as cut (uint8 copied) tiles, 1 or 2 threads."""
    with open_slide(downsampled) as slide:
        w, h = slide.dimensions
        whole = slide.read_region((0, 0), 0, (w, h))
    rng = np.random.default_rng(3)
    mri = rng.random((h, w), dtype=np.float32)
    tissue = whole.mean(axis=2) < 200  # the section, not the glass

    def pair(histology: np.ndarray | LevelArray) -> AlignedPair:
        return AlignedPair("p", "s", "train", mri, histology, tissue, 3.0)

    params = TilingParams(
        tile_size=128,
        stride=96,
        min_tissue_fraction=0.4,
        output_size=output_size,
        read_workers=read_workers,
    )
    expected = paired_tiles([pair(whole)], params)  # in memory: plain slicing
    side = output_size or 128

    def previous(window: np.ndarray) -> np.ndarray:  # the rounding before issue 18
        if output_size:
            window = resize(window.astype(np.float32), (side, side), order=1,
                            anti_aliasing=True, preserve_range=True)  # fmt: skip
        return np.clip(np.rint(window), 0, 255).astype(np.uint8)

    plan = plan_tiles(pair(whole), params)
    cut = [previous(whole[y : y + 128, x : x + 128]) for y, x, _ in plan]
    np.testing.assert_array_equal(expected.b, np.stack(cut))
    loads: list[int] = []
    reads: list[tuple[int, int]] = []  # per slide read: (loads so far, windows read)
    original = Slide.read_regions

    def counting(
        self: Slide, locations: list[tuple[int, int]], *args: object, **kw: object
    ) -> np.ndarray:
        assert kw["workers"] == read_workers
        reads.append((len(loads), len(locations)))
        return original(self, locations, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Slide, "read_regions", counting)
    monkeypatch.setattr(Slide, "read_region", None)  # every window goes through the batches
    monkeypatch.setattr(level_array, "DEFAULT_BATCH_PIXELS", 8 * 128 * 128)

    def load() -> tuple[AlignedPair, tuple[float, float]]:
        loads.append(1)
        return pair(LevelArray(open_slide(downsampled))), (0.5, 0.5)

    PairTilesJob([load], params).write(downsampled.parent / f"tiles{read_workers}")
    got = load_tileset(downsampled.parent / f"tiles{read_workers}")
    np.testing.assert_array_equal(got.a, expected.a)
    np.testing.assert_array_equal(got.b, expected.b)
    assert got.manifest.equals(expected.manifest)
    assert len(expected) > 16
    assert len(loads) == 2  # plan, then write
    assert all(n == 2 for n, _ in reads)  # planning needs the tissue mask only: no pixels read
    counts = [k for _, k in reads]  # then batches of at most 8 windows, every kept tile once
    assert max(counts) == 8 and sum(counts) == len(expected)
