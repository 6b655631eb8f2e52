"""Tests for the tile-set store (``imaging.tileset``) and ``TileSetDataset``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError
from PIL import Image

from mrihisto_kedro.datasets.tileset_dataset import TileSetDataset
from mrihisto_kedro.imaging import tileset as tileset_module
from mrihisto_kedro.imaging.tileset import (
    REQUIRED_COLUMNS,
    TileSet,
    TileSetError,
    export_ab_folders,
    load_tileset,
    save_tileset,
    to_rgb8,
)

SPLITS = ["train", "train", "train", "val", "test", "test"]


def _manifest(n: int = 6, splits: list[str] | None = None) -> pd.DataFrame:
    splits = splits or SPLITS[:n]
    return pd.DataFrame(
        {
            "tile_id": [f"s{i // 3}_t{i:03d}" for i in range(n)],
            "pair_id": [f"p{i // 3}" for i in range(n)],
            "specimen_id": [f"spec{i // 3}" for i in range(n)],
            "split": splits,
            "x": [1024 * i for i in range(n)],
            "y": [512 * i for i in range(n)],
            "size": [1024] * n,
            "scale": [0.25] * n,
            "level": [0] * n,  # extra columns are kept
        }
    )


def _tileset(n: int = 6, *, paired: bool = True, seed: int = 0) -> TileSet:
    """``n`` tiles: A float32 (n, 16, 12, 1) in [0, 1], B uint8 RGB (n, 16, 12, 3)."""
    rng = np.random.default_rng(seed)
    a = rng.random((n, 16, 12, 1), dtype=np.float32)
    b = rng.integers(0, 256, size=(n, 16, 12, 3), dtype=np.uint8) if paired else None
    return TileSet(manifest=_manifest(n), a=a, b=b)


def _assert_equal(x: TileSet, y: TileSet) -> None:
    pd.testing.assert_frame_equal(x.manifest, y.manifest)
    np.testing.assert_array_equal(x.a, y.a)
    assert x.a.dtype == y.a.dtype
    if x.b is None:
        assert y.b is None
    else:
        assert y.b is not None
        np.testing.assert_array_equal(x.b, y.b)


# ---------------------------------------------------------------------------------------------
# TileSet validation


def test_tileset_basics() -> None:
    tiles = _tileset()
    assert len(tiles) == 6
    assert tiles.paired
    assert tiles.splits == ["train", "val", "test"]
    assert set(REQUIRED_COLUMNS) <= set(tiles.manifest.columns)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m, a, b: (m.drop(columns=["scale"]), a, b),
            r"lacks required column\(s\) \['scale'\]",
        ),
        (lambda m, a, b: (m.iloc[:5], a, b), "manifest has 5 rows but a holds 6 tiles"),
        (lambda m, a, b: (m, a, b[:, :8]), r"differ in \(N, H, W\)"),
        (lambda m, a, b: (m, a, b[:5]), r"differ in \(N, H, W\)"),
        (lambda m, a, b: (m, a[..., 0], b), r"shape \(N, H, W, C\)"),
        (lambda m, a, b: (m, a.astype(object), b), "bool, integer or float"),
        (lambda m, a, b: (m.assign(tile_id="same"), a, b), "tile_id must be unique"),
        (lambda m, a, b: (m.assign(tile_id=[f"../t{i}" for i in range(6)]), a, b), "filename-safe"),
        (lambda m, a, b: (m.assign(split=[""] * 6), a, b), "non-empty string"),
        (lambda m, a, b: (m.assign(x=[0.5] * 6), a, b), "'x' must hold integer"),
        (lambda m, a, b: (m.assign(size=[0] * 6), a, b), "'size' must be > 0"),
        (lambda m, a, b: (m.assign(scale=[-1.0] * 6), a, b), "'scale' must hold numbers > 0"),
        (lambda m, a, b: (m.assign(pair_id=[None] * 6), a, b), "missing value"),
    ],
)
def test_tileset_validation(change: object, message: str) -> None:
    tiles = _tileset()
    manifest, a, b = change(tiles.manifest.copy(), tiles.a, tiles.b)  # type: ignore[operator]
    with pytest.raises(TileSetError, match=message):
        TileSet(manifest=manifest, a=a, b=b)


def test_split_accessor() -> None:
    tiles = _tileset()
    train = tiles.split("train")
    assert len(train) == 3
    assert list(train.manifest["split"].unique()) == ["train"]
    assert train.manifest.index.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(train.a, tiles.a[:3])
    assert np.shares_memory(train.a, tiles.a)  # contiguous rows: a view
    # non-contiguous split: a copy of the selected rows, in order
    mixed = TileSet(manifest=_manifest(splits=["a", "b", "a", "b", "a", "b"]), a=tiles.a, b=tiles.b)
    b_split = mixed.split("b")
    np.testing.assert_array_equal(b_split.a, tiles.a[[1, 3, 5]])
    assert b_split.b is not None and tiles.b is not None
    np.testing.assert_array_equal(b_split.b, tiles.b[[1, 3, 5]])
    assert (
        b_split.manifest["tile_id"].tolist() == tiles.manifest["tile_id"].iloc[[1, 3, 5]].tolist()
    )
    with pytest.raises(KeyError, match=r"no tiles in split 'holdout'.*\['train', 'val', 'test'\]"):
        tiles.split("holdout")


# ---------------------------------------------------------------------------------------------
# storage


def test_round_trip_is_memory_mapped(tmp_path: Path) -> None:
    tiles = _tileset()
    folder = save_tileset(tiles, tmp_path / "tiles")
    assert sorted(p.name for p in folder.iterdir()) == [
        "a.npy",
        "b.npy",
        "manifest.parquet",
        "meta.json",
    ]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["format_version"] == 1
    assert meta["n_tiles"] == 6
    assert meta["a"] == {"shape": [6, 16, 12, 1], "dtype": "<f4"}
    assert meta["b"] == {"shape": [6, 16, 12, 3], "dtype": "|u1"}
    assert meta["splits"] == {"train": 3, "test": 2, "val": 1}

    loaded = load_tileset(folder)
    _assert_equal(tiles, loaded)
    assert isinstance(loaded.a, np.memmap)
    assert isinstance(loaded.b, np.memmap)
    assert not loaded.a.flags.writeable
    # a contiguous split of a memory-mapped set is still memory-mapped
    assert isinstance(loaded.split("train").a, np.memmap)
    eager = load_tileset(folder, mmap=False)
    assert not isinstance(eager.a, np.memmap)
    _assert_equal(tiles, eager)


def test_unpaired_and_other_dtypes_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    tiles = TileSet(
        manifest=_manifest(4, ["train", "train", "test", "test"]),
        a=rng.integers(0, 65536, size=(4, 8, 8, 5), dtype=np.uint16),
    )
    folder = save_tileset(tiles, tmp_path / "unpaired")
    assert not (folder / "b.npy").exists()
    loaded = load_tileset(folder)
    assert loaded.b is None
    assert not loaded.paired
    _assert_equal(tiles, loaded)


def test_dataset_round_trip_and_catalog(tmp_path: Path) -> None:
    dataset = TileSetDataset(filepath=str(tmp_path / "tiles"), metadata={"kedro-viz": {}})
    assert not dataset.exists()
    tiles = _tileset()
    dataset.save(tiles)
    assert dataset.exists()
    loaded = dataset.load()
    _assert_equal(tiles, loaded)
    assert isinstance(loaded.a, np.memmap)
    assert dataset._describe() == {"filepath": str(tmp_path / "tiles")}
    catalog = DataCatalog.from_config(
        {
            "tiles": {
                "type": "mrihisto_kedro.datasets.tileset_dataset.TileSetDataset",
                "filepath": str(tmp_path / "tiles"),
            }
        }
    )
    _assert_equal(tiles, catalog.load("tiles"))
    with pytest.raises(DatasetError, match="saves TileSet objects"):
        dataset.save({"a": tiles.a})
    with pytest.raises(DatasetError, match="local folders only"):
        TileSetDataset(filepath="gcs://bucket/tiles")


def test_failed_save_keeps_the_old_tileset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tiles"
    old = _tileset(seed=1)
    save_tileset(old, folder)
    real_save = np.save

    def fail_on_b(file: Path, arr: np.ndarray, *args: object, **kwargs: object) -> None:
        if Path(file).name == "b.npy":
            Path(file).write_bytes(b"\x93NUMPY partial")
            raise OSError("No space left on device")
        real_save(file, arr, *args, **kwargs)

    monkeypatch.setattr(tileset_module.np, "save", fail_on_b)
    new = _tileset(n=4, seed=2)
    with pytest.raises(OSError, match="No space left"):
        save_tileset(new, folder)
    dataset = TileSetDataset(filepath=str(folder))
    with pytest.raises(DatasetError, match="No space left"):
        dataset.save(new)
    monkeypatch.undo()
    # the old set is intact and no temporary folders are left
    _assert_equal(old, load_tileset(folder))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiles"]
    # a later successful save replaces it
    save_tileset(new, folder)
    _assert_equal(new, load_tileset(folder))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiles"]


def test_resave_over_its_own_memory_mapped_folder(tmp_path: Path) -> None:
    folder = tmp_path / "tiles"
    original = _tileset(seed=5)
    save_tileset(original, folder)
    loaded = load_tileset(folder)
    subset = loaded.split("train")
    save_tileset(subset, folder)  # reads the old memory maps while writing the new folder
    again = load_tileset(folder)
    assert len(again) == 3
    np.testing.assert_array_equal(again.a, original.a[:3])
    np.testing.assert_array_equal(loaded.a, original.a)  # old maps still readable


def test_load_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(TileSetError, match=r"nowhere: tile set folder does not exist"):
        load_tileset(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TileSetError, match=r"empty: not a tile set \(no meta.json\)"):
        load_tileset(empty)

    folder = save_tileset(_tileset(), tmp_path / "tiles")
    np.save(folder / "a.npy", np.zeros((5, 16, 12, 1), dtype=np.float32))
    with pytest.raises(TileSetError, match=r"tiles: a\.npy holds float32 \(5, 16, 12, 1\)"):
        load_tileset(folder)
    with pytest.raises(DatasetError, match=r"tiles: a\.npy holds"):
        TileSetDataset(filepath=str(folder)).load()

    # arrays agree with meta.json but not with the manifest
    folder = save_tileset(_tileset(), tmp_path / "tiles2")
    _manifest(5).to_parquet(folder / "manifest.parquet", index=False)
    with pytest.raises(TileSetError, match=r"tiles2: manifest has 5 rows but a holds 6 tiles"):
        load_tileset(folder)

    folder = save_tileset(_tileset(), tmp_path / "tiles3")
    (folder / "b.npy").unlink()
    with pytest.raises(
        TileSetError, match=r"tiles3: meta.json lists b\.npy but the file is missing"
    ):
        load_tileset(folder)

    folder = save_tileset(_tileset(), tmp_path / "tiles4")
    meta = json.loads((folder / "meta.json").read_text())
    meta["format_version"] = 99
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(TileSetError, match="tiles4: tile set format version 99"):
        load_tileset(folder)


# ---------------------------------------------------------------------------------------------
# pix2pix export


def test_export_ab_folders(tmp_path: Path) -> None:
    tiles = _tileset()
    table = export_ab_folders(
        load_tileset(save_tileset(tiles, tmp_path / "tiles")), tmp_path / "ab"
    )
    assert len(table) == 6
    assert sorted(p.name for p in (tmp_path / "ab").iterdir()) == ["test", "train", "val"]
    assert sorted(p.name for p in (tmp_path / "ab" / "train").iterdir()) == [
        "s0_t000.png",
        "s0_t001.png",
        "s0_t002.png",
    ]
    assert tiles.b is not None
    for i, row in table.iterrows():
        assert Path(row["path"]) == tmp_path / "ab" / row["split"] / f"{row['tile_id']}.png"
        image = np.asarray(Image.open(row["path"]))
        assert image.shape == (16, 24, 3)  # (H, 2W, 3)
        assert image.dtype == np.uint8
        a_grey = np.rint(tiles.a[i, ..., 0] * 255).astype(np.uint8)
        for channel in range(3):  # A left, as grey
            np.testing.assert_array_equal(image[:, :12, channel], a_grey)
        np.testing.assert_array_equal(image[:, 12:], tiles.b[i])  # B right, unchanged


def test_export_scaling_and_channels(tmp_path: Path) -> None:
    a16 = np.zeros((2, 4, 4, 1), dtype=np.uint16)
    a16[:, 0, 0, 0] = 65535
    a16[:, 1, 1, 0] = 4000
    b = np.full((2, 4, 4, 3), 7, dtype=np.uint8)
    tiles = TileSet(manifest=_manifest(2, ["train", "val"]), a=a16, b=b)
    table = export_ab_folders(tiles, tmp_path / "dtype_range")
    image = np.asarray(Image.open(table.loc[0, "path"]))
    assert image[0, 0, 0] == 255 and image[1, 1, 0] == round(4000 / 65535 * 255)
    table = export_ab_folders(tiles, tmp_path / "given_range", a_range=(0, 4000))
    image = np.asarray(Image.open(table.loc[1, "path"]))
    assert image[1, 1, 0] == 255 and image[0, 0, 0] == 255 and image[2, 2, 0] == 0
    # tanh-scaled float tiles
    assert to_rgb8(np.array([[[-1.0], [0.0], [1.0]]]), (-1.0, 1.0))[0, :, 0].tolist() == [
        0,
        128,
        255,
    ]
    # two channels cannot be shown unless some are picked
    two = TileSet(manifest=_manifest(2, ["train", "val"]), a=np.zeros((2, 4, 4, 2)), b=b)
    with pytest.raises(ValueError, match="2 channels cannot be shown"):
        export_ab_folders(two, tmp_path / "two")
    table = export_ab_folders(two, tmp_path / "two", a_channels=[1])
    assert np.asarray(Image.open(table.loc[0, "path"])).shape == (4, 8, 3)
    with pytest.raises(TileSetError, match="paired"):
        export_ab_folders(TileSet(manifest=_manifest(2, ["a", "a"]), a=a16), tmp_path / "x")


def test_hold_out_specimens_moves_whole_training_specimens() -> None:
    from mrihisto_kedro.imaging.tileset import hold_out_specimens

    splits = ["train"] * 9 + ["test"] * 3  # specimens spec0..spec2 train, spec3 test
    rng = np.random.default_rng(1)
    tiles = TileSet(
        manifest=_manifest(12, splits),
        a=rng.random((12, 16, 12, 1), dtype=np.float32),
        b=rng.integers(0, 256, (12, 16, 12, 3), dtype=np.uint8),
    )
    held_tiles, held = hold_out_specimens(tiles, 1, seed=0)
    assert len(held) == 1 and held[0] in {"spec0", "spec1", "spec2"}
    m = held_tiles.manifest
    by_specimen = m.groupby("specimen_id")["split"].agg(set)
    assert by_specimen[held[0]] == {"val"}  # every tile of the specimen moved
    assert by_specimen["spec3"] == {"test"}  # the test split is untouched
    assert (m["split"] == "train").sum() == 6
    assert held_tiles.a is tiles.a and held_tiles.b is tiles.b  # arrays shared, not copied
    assert (tiles.manifest["split"] == "val").sum() == 0  # the input is not modified
    assert hold_out_specimens(tiles, 1, seed=0)[1] == held  # deterministic
    with pytest.raises(TileSetError, match="at least one must remain"):
        hold_out_specimens(tiles, 3)
    with pytest.raises(TileSetError, match="already has tiles"):
        hold_out_specimens(held_tiles, 1)
