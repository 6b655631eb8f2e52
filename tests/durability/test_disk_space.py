"""A write of known size stops before its first byte when the disk cannot hold it (issue 15)."""

from __future__ import annotations

import errno
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from mrihisto_kedro.durability import disk_space
from mrihisto_kedro.imaging.tileset import TileSetWriter, load_tileset, save_tileset

Usage = namedtuple("Usage", "total used free")


def _disk_with(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    real = shutil.disk_usage

    def usage(path):  # the real disk, with only ``free`` bytes left on it
        total, used, _ = real(path)
        return Usage(total, used, free)

    monkeypatch.setattr(disk_space.shutil, "disk_usage", usage)


def test_require_free_space_names_the_target_and_the_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_space.require_free_space(tmp_path, 1 << 20, tmp_path / "x", "it")  # real disk: fine
    _disk_with(monkeypatch, 2**30)
    with pytest.raises(
        OSError,
        match=r"cannot write .*x: its tiles needs 3\.00 GiB in .*, only "
        r"1\.00 GiB free \(free some\)",
    ) as error:
        disk_space.require_free_space(tmp_path, 3 * 2**30, tmp_path / "x", "its tiles", "free some")
    assert error.value.errno == errno.ENOSPC


def test_a_tile_set_too_big_for_the_disk_is_refused_and_the_old_one_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from mrihisto_kedro.imaging.tileset import TileSet

    manifest = pd.DataFrame(
        {
            "tile_id": ["t0"],
            "pair_id": "p",
            "specimen_id": "s",
            "split": "train",
            "x": 0,
            "y": 0,
            "size": 8,
            "scale": 1.0,
        }
    )
    old = TileSet(manifest, np.ones((1, 8, 8, 1), np.float32), np.zeros((1, 8, 8, 3), np.uint8))
    folder = save_tileset(old, tmp_path / "tiles")
    # 1200 tiles of 256 x 256: 300 MiB of float32 + 225 MiB of uint8, with 100 MiB free
    _disk_with(monkeypatch, 100 * 2**20)
    needs = r"cannot write .*tiles: its 1200 tiles needs 0\.51 GiB in .*, only 0\.10 GiB free"
    with pytest.raises(OSError, match=needs):
        TileSetWriter(folder, 1200, ((256, 256, 1), np.float32), ((256, 256, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiles"]  # no staging folder left
    np.testing.assert_array_equal(load_tileset(folder).a, old.a)
