"""LevelArray: a downsampled slide read window by window gives what the whole-level read gives,
and tiling through it reads no slide pixels while planning (issue 14: region reads in tiling)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrihisto_kedro.imaging.downsample import downsample_slide
from mrihisto_kedro.imaging.level_array import LevelArray
from mrihisto_kedro.imaging.slides import Slide, open_slide
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff
from mrihisto_kedro.imaging.tileset import load_tileset
from mrihisto_kedro.imaging.tiling import AlignedPair, PairTilesJob, TilingParams, paired_tiles


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


def test_tiling_through_a_level_array_is_bit_identical_and_plans_without_reading(
    downsampled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_slide(downsampled) as slide:
        w, h = slide.dimensions
        whole = slide.read_region((0, 0), 0, (w, h))
    rng = np.random.default_rng(3)
    mri = rng.random((h, w), dtype=np.float32)
    tissue = whole.mean(axis=2) < 200  # the section, not the glass

    def pair(histology: np.ndarray | LevelArray) -> AlignedPair:
        return AlignedPair("p", "s", "train", mri, histology, tissue, 3.0)

    params = TilingParams(tile_size=128, stride=96, min_tissue_fraction=0.4, output_size=64)
    expected = paired_tiles([pair(whole)], params)
    loads: list[int] = []
    reads: list[int] = []  # for each slide read, how many times the pair had been loaded
    original = Slide.read_region

    def counting(self: Slide, *args: object, **kwargs: object) -> np.ndarray:
        reads.append(len(loads))
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Slide, "read_region", counting)

    def load() -> tuple[AlignedPair, tuple[float, float]]:
        loads.append(1)
        return pair(LevelArray(open_slide(downsampled))), (0.5, 0.5)

    PairTilesJob([load], params).write(downsampled.parent / "tiles")
    got = load_tileset(downsampled.parent / "tiles")
    np.testing.assert_array_equal(got.a, expected.a)
    np.testing.assert_array_equal(got.b, expected.b)
    assert got.manifest.equals(expected.manifest)
    assert len(expected) > 10
    assert len(loads) == 2  # plan, then write
    assert 1 not in reads  # planning needs the tissue mask only: no slide pixels read
    assert reads.count(2) == len(expected)  # then one region read per kept tile
