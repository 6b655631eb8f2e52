"""Tiles from aligned pairs: geometry in level-0 pixels, tissue filter, whole views."""

from __future__ import annotations

import numpy as np
import pytest

from mrihisto_kedro.imaging.tiling import (
    AlignedPair,
    TilingParams,
    paired_tiles,
    tile_origins,
    whole_views,
)


def _pair(pair_id: str, split: str, h: int = 100, w: int = 130) -> AlignedPair:
    rng = np.random.default_rng(0)
    tissue = np.zeros((h, w), bool)
    tissue[:, : w // 2] = True  # left half is tissue
    return AlignedPair(
        pair_id=pair_id,
        specimen_id=f"spec_{pair_id}",
        split=split,
        mri=rng.random((h, w)).astype(np.float32),
        histology=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        tissue=tissue,
        downsample=15.0,
    )


def test_tile_origins_do_not_overhang() -> None:
    assert tile_origins(130, 32, 32) == [0, 32, 64, 96]
    assert tile_origins(31, 32, 32) == []
    assert tile_origins(64, 32, 16) == [0, 16, 32]


def test_tiles_keep_tissue_and_record_level0_coordinates() -> None:
    pairs = [_pair("a", "train"), _pair("b", "test")]
    tiles = paired_tiles(pairs, TilingParams(tile_size=32, min_tissue_fraction=0.5))
    m = tiles.manifest
    # 3 rows x 2 tissue columns (x = 0, 32) per pair; x=64 straddles the edge (fraction 0.03)
    assert len(m) == 12 and set(m["x"]) == {0, 32 * 15}
    assert (m["size"] == 32 * 15).all() and (m["scale"] == 15.0).all()
    first = m.iloc[0]
    np.testing.assert_array_equal(tiles.a[0, ..., 0], pairs[0].mri[:32, :32])
    np.testing.assert_array_equal(tiles.b[0], pairs[0].histology[:32, :32])
    assert first["tile_id"] == "a_x00000_y00000"
    assert set(m[m["split"] == "test"]["specimen_id"]) == {"spec_b"}


def test_output_size_resizes_and_scale_follows() -> None:
    tiles = paired_tiles([_pair("a", "train")], TilingParams(tile_size=32, output_size=16))
    assert tiles.a.shape[1:] == (16, 16, 1) and tiles.b.shape[1:] == (16, 16, 3)
    assert (tiles.manifest["scale"] == 32 * 15 / 16).all()


def test_no_tissue_is_a_clear_error() -> None:
    pair = _pair("a", "train")
    pair.tissue[:] = False
    with pytest.raises(ValueError, match="no tile of 32 px has tissue fraction >= 0.5"):
        paired_tiles([pair], TilingParams(tile_size=32, min_tissue_fraction=0.5))


def test_whole_views_pad_to_square() -> None:
    views = whole_views([_pair("a", "train", h=50, w=100)], load_size=32)
    assert views.a.shape == (1, 32, 32, 1) and views.b.shape == (1, 32, 32, 3)
    # the padded lower half is white histology and zero MRI
    assert views.b[0, -4:].min() == 255 and views.a[0, -4:].max() == 0.0
    assert views.manifest.iloc[0]["size"] == 100 * 15
