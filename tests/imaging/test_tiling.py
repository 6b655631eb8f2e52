"""Tiles from aligned pairs: geometry in level-0 pixels, tissue filter, whole views."""

from __future__ import annotations

import numpy as np
import pytest

from mrihisto_kedro.imaging.mri import Plane
from mrihisto_kedro.imaging.slabs import SliceLayout
from mrihisto_kedro.imaging.tiling import (
    AlignedPair,
    GridTile,
    TilingParams,
    grid_tiles,
    level0_pixels,
    paired_tiles,
    tile_origins,
    whole_views,
)
from mrihisto_kedro.imaging.tiling_params import PairTilingParams, TileKind, VolumeTilingParams
from mrihisto_kedro.msi.params import MsiTilingParams
from mrihisto_kedro.msi.tiles import MsiAlignedPair, msi_pair_tiles
from mrihisto_kedro.params import ParameterError, parse_params


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


def test_grid_tiles_keep_the_windows_the_mask_covers_row_by_row() -> None:
    mask = np.zeros((40, 64), bool)
    mask[:, :24] = True  # 24 of 64 columns
    kept = grid_tiles(mask, 16, 8, 0.5)
    # windows start at x = 0, 8 (fully covered) and 16 (half covered); y = 0, 8, 16, 24
    assert kept == [
        GridTile(y, x, f) for y in (0, 8, 16, 24) for x, f in ((0, 1.0), (8, 1.0), (16, 0.5))
    ]
    # stride None: non-overlapping, x = 0 (covered), 16 (half), 32 and 48 (none)
    expected = [GridTile(y, x, f) for y in (0, 16) for x, f in ((0, 1.0), (16, 0.5))]
    assert grid_tiles(mask, 16, None, 0.5) == expected
    assert grid_tiles(mask, 16, None, 1.01) == []


def test_level0_pixels_round_to_the_nearest_pixel() -> None:
    """The one rounding of tile coordinates (MRI and MSI): nearest, not truncation."""
    almost_15 = 14.999999999999998  # an integer factor after floating-point arithmetic
    assert 32 * almost_15 < 480 and int(32 * almost_15) == 479
    assert level0_pixels(32, almost_15) == 480
    assert level0_pixels(10, 15.37) == 154  # 153.7: truncation would give 153
    assert level0_pixels(10, 15.32) == 153
    assert (level0_pixels(1, 15.5), level0_pixels(3, 15.5)) == (16, 46)  # ties to even
    assert level0_pixels(-16, 4) == -64 and isinstance(level0_pixels(3, 15.0), int)


def test_mri_and_msi_tiles_share_the_grid_and_its_coordinates() -> None:
    """The same mask and downsample give the same windows and level-0 boxes in both tilers
    (MSI tiles used to truncate: ``x = 32`` at a factor of ``14.999999999999998`` was 479)."""
    factor = 14.999999999999998
    mri = _pair("a", "train", h=70, w=90)
    rgb = mri.histology
    msi = MsiAlignedPair(
        pair_id="a",
        specimen_id="spec_a",
        split="train",
        msi=np.repeat(mri.mri[..., None], 3, axis=-1),
        histology=rgb,
        coverage=mri.tissue,
        downsample=factor,  # type: ignore[arg-type]
        mpp=0.5 * factor,
    )
    mri = AlignedPair("a", "spec_a", "train", mri.mri, rgb, mri.tissue, factor)
    a = paired_tiles([mri], TilingParams(tile_size=16, stride=16, min_tissue_fraction=0.5))
    b = msi_pair_tiles(
        [msi], MsiTilingParams(tile_size=16, stride=16, min_msi_fraction=0.5), "black"
    )
    columns = ["tile_id", "x", "y", "size", "scale"]
    assert a.manifest[columns].equals(b.manifest[columns])
    assert set(b.manifest["x"]) == {0, 240, 480} and (b.manifest["size"] == 240).all()
    np.testing.assert_array_equal(a.b, b.b)
    np.testing.assert_array_equal(a.manifest["tissue_fraction"], b.manifest["msi_fraction"])


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


def test_pairs_without_tiles_are_named_in_one_warning(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from mrihisto_kedro.imaging.tiling import PairTilesJob

    faint = _pair("faint", "train")
    faint.tissue[:] = False
    faint.tissue[:5, :5] = True  # 0.2 % of the grid
    small = _pair("small", "test", h=20, w=40)
    pairs = [_pair("a", "train"), faint, small]
    params = TilingParams(tile_size=32, min_tissue_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="mrihisto_kedro.imaging.tiling"):
        tiles = paired_tiles(pairs, params)
    assert set(tiles.manifest["pair_id"]) == {"a"}
    expected = (
        "2 of 3 pairs gave no tile and are not in the tile set: faint (tissue covers 0.2% of "
        "its grid; no 32 px window reaches min_tissue_fraction 0.5); small (its 40 x 20 px "
        "grid is smaller than the 32 px tile)"
    )
    assert caplog.messages == [expected]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mrihisto_kedro.imaging.tiling"):
        PairTilesJob([lambda p=p: (p, (0.5, 0.5)) for p in pairs], params).write(tmp_path / "t")
    assert caplog.messages == [expected]


def test_whole_views_pad_to_square() -> None:
    views = whole_views([_pair("a", "train", h=50, w=100)], load_size=32)
    assert views.a.shape == (1, 32, 32, 1) and views.b.shape == (1, 32, 32, 3)
    # the padded lower half is white histology and zero MRI
    assert views.b[0, -4:].min() == 255 and views.a[0, -4:].max() == 0.0
    assert views.manifest.iloc[0]["size"] == 100 * 15


def test_pair_tiles_job_writes_what_paired_tiles_returns(tmp_path) -> None:
    """The streaming writer (one pair in memory at a time) gives the in-memory set exactly,
    with the input spec; a failure while writing leaves the previous folder intact."""
    from mrihisto_kedro.imaging.tileset import load_tileset
    from mrihisto_kedro.imaging.tiling import PairTilesJob

    pairs = [_pair("a", "train"), _pair("b", "test", h=90, w=150)]
    params = TilingParams(tile_size=32, stride=16, min_tissue_fraction=0.5, output_size=24)
    expected = paired_tiles(pairs, params)
    calls = {"n": 0}

    def loader(pair: AlignedPair):
        def load():
            calls["n"] += 1
            return pair, (0.25, 0.25)

        return load

    folder = tmp_path / "tileset"
    PairTilesJob([loader(p) for p in pairs], params).write(folder)
    assert calls["n"] == 4  # plan, then write: each pair loaded twice, one at a time
    got = load_tileset(folder)
    np.testing.assert_array_equal(got.a, expected.a)
    np.testing.assert_array_equal(got.b, expected.b)
    assert got.a.dtype == np.float32 and got.b.dtype == np.uint8
    assert got.manifest.equals(expected.manifest)
    spec = got.attrs["input_spec"]
    assert spec["pixel_size_um"] == pytest.approx([0.25 * 15 * 32 / 24] * 2)  # mpp x scale

    def broken():
        if calls["n"] >= 6:
            raise OSError("disk full")
        calls["n"] += 1
        return pairs[0], (0.25, 0.25)

    with pytest.raises(OSError, match="disk full"):
        PairTilesJob([broken, broken], params).write(folder)
    np.testing.assert_array_equal(load_tileset(folder).a, expected.a)  # previous set kept
    assert [p.name for p in tmp_path.iterdir()] == ["tileset"]  # no staging folder left


# ------------------------------------------------------------------------------------ parameters
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tile_size": 4}, r"'tiling\.tile_size' must be >= 8, got 4"),
        ({"stride": 0}, r"'tiling\.stride' must be >= 1, got 0"),
        ({"min_tissue_fraction": 1.5}, r"'tiling\.min_tissue_fraction' must be in \[0, 1\]"),
        ({"tile_size": 64.0}, r"'tiling\.tile_size' must be an integer"),
    ],
)
def test_tiling_params_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_params(TilingParams, values, "tiling")
    with pytest.raises(ParameterError, match=message):
        parse_params(PairTilingParams, values, "tiling")  # kind: tiles checks the grid


def test_pair_tiling_params_check_the_grid_of_tiles_only() -> None:
    assert TilingParams(tile_size=8, stride=1, min_tissue_fraction=0.0).tile_size == 8
    whole = parse_params(PairTilingParams, {"kind": "whole", "tile_size": 4}, "tiling")
    assert whole.kind is TileKind.WHOLE and whole.load_size == 256
    grid = parse_params(PairTilingParams, {"tile_size": 128, "stride": 64}, "tiling").grid()
    assert grid == TilingParams(tile_size=128, stride=64)
    threads = parse_params(PairTilingParams, {"read_workers": 3}, "tiling").grid()
    assert threads.read_workers == 3 and TilingParams().read_workers == 2
    with pytest.raises(ParameterError, match=r"'tiling\.read_workers' must be >= 1, got 0"):
        parse_params(PairTilingParams, {"read_workers": 0}, "tiling")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fractions": [0.7, 0.2, 0.2]}, r"'tiling\.fractions' must sum to 1, got \[0\.7, 0\.2"),
        ({"fractions": [1.2, -0.2, 0.0]}, r"'tiling\.fractions\[1\]' must be >= 0, got -0\.2"),
        ({"fractions": [0.5, 0.5]}, r"'tiling\.fractions' must have 3 items, got 2"),
        ({"gap": -1}, r"'tiling\.gap' must be >= 0, got -1"),
        ({"block": 0}, r"'tiling\.block' must be >= 1 with layout 'interleaved', got 0"),
        ({"plane": "oblique"}, r"'tiling\.plane' = 'oblique' is not one of"),
        ({"layout": "random"}, r"'tiling\.layout' = 'random' is not one of"),
    ],
)
def test_volume_tiling_params_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_params(VolumeTilingParams, values, "tiling")


def test_volume_tiling_params_coerce_and_keep_slab_blocks_free() -> None:
    p = parse_params(
        VolumeTilingParams,
        {"plane": "Coronal", "layout": "slabs", "block": 0, "fractions": [1, 0, 0]},
        "tiling",
    )
    assert p.plane is Plane.CORONAL and p.layout is SliceLayout.SLABS
    assert p.fractions == (1.0, 0.0, 0.0) and all(type(f) is float for f in p.fractions)
