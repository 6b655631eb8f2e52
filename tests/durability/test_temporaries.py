"""Stale temporaries: exactly the staging names this project's writers use, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrihisto_kedro.durability.temporaries import (
    is_stale_temporary,
    remove_stale_temporaries,
    stale_temporaries,
)


@pytest.mark.parametrize(
    "name",
    [
        ".tileset.tmp-0123456789ab",  # TileSetWriter staging folder
        ".last.tmp-0123456789ab.pt",  # save_checkpoint (atomic_path)
        ".last.pt.tmp-0123456789ab",  # save_checkpoint before atomic_path
        ".pair_01.tmp-0123456789ab.mha",  # sitk_io image
        ".pair_01.tmp-0123456789ab.svs",  # TIFF writer and its scratch pyramid
        ".slide-v2.tmp-0123456789ab.final-a.svs",  # atomic_path keeps every extension
        ".vol.tmp-0123456789ab.mhd",  # detached-header staging folder
        ".pair_01.tmp-0123456789ab.tfm",  # transform dataset
        ".pairs.tmp-0123456789ab.csv",  # manifest / control-point tables
        ".pair_01.svs.old-0123456789ab",  # atomic swap's previous version
        ".pair_01.tiff.k2j3_a8x.pyramid.tmp",  # TIFF writer (mkstemp)
        ".generator.pt.ab12cd9e.tmp",  # atomic dataset write
        ".pair_01.svs.ab12_c9e.stitch.tif",  # row spool
        ".pair_01.ab1c2d3e.tmp.tfm",  # transform dataset
    ],
)
def test_project_staging_names_are_recognised(name: str) -> None:
    assert is_stale_temporary(name)


@pytest.mark.parametrize(
    "name",
    [
        ".gitkeep",
        ".DS_Store",
        ".kedro-run.lock",
        "tileset",
        "a.tmp",
        ".ipynb_checkpoints",
        "notes.tmp-0123456789ab.txt",  # not hidden: a user's file
        ".notes.tmp-draft.txt",  # no 12-hex token
    ],
)
def test_other_names_are_left_alone(name: str) -> None:
    assert not is_stale_temporary(name)


KILLED_WRITER = r"""
import os, signal, sys
from pathlib import Path
import numpy as np, torch
from mrihisto_kedro.imaging.tileset import TileSetWriter
from mrihisto_kedro.nn.training import save_checkpoint
root = Path(sys.argv[1])
TileSetWriter(root / "05_model_input" / "tileset", 2, a=((4, 4, 1), np.float32))
real_save = torch.save
def save_then_die(obj, f):
    real_save(obj, f)
    os.kill(os.getpid(), signal.SIGKILL)  # after the bytes, before the rename
torch.save = save_then_die
save_checkpoint({"epoch": 3}, root / "06_models" / "checkpoints" / "last.pt")
"""


def test_writers_killed_mid_write_leave_names_the_cleaner_finds(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], check=False)
    assert done.returncode == -signal.SIGKILL
    found = stale_temporaries(tmp_path)
    assert [p.parent.name for p in found] == ["05_model_input", "checkpoints"], found
    assert found[0].is_dir() and found[0].name.startswith(".tileset.tmp-")
    assert found[1].name.startswith(".last.tmp-") and found[1].suffix == ".pt"
    assert not (tmp_path / "06_models" / "checkpoints" / "last.pt").exists()
    removed, freed = remove_stale_temporaries(tmp_path)
    assert removed == found and freed > 0 and stale_temporaries(tmp_path) == []


def test_removal_frees_the_bytes_and_keeps_outputs(tmp_path: Path) -> None:
    out = tmp_path / "05_model_input" / "tiles_256"
    staging = out / ".tileset.tmp-0123456789ab"
    staging.mkdir(parents=True)
    (staging / "a.npy").write_bytes(b"x" * 1000)
    (out / "tileset").mkdir()
    (out / "tileset" / "meta.json").write_text("{}")
    (tmp_path / ".slide.svs.ab12cd34.stitch.tif").write_bytes(b"y" * 500)
    (tmp_path / ".gitkeep").write_text("")
    removed, freed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [
        ".slide.svs.ab12cd34.stitch.tif",
        ".tileset.tmp-0123456789ab",
    ]
    assert freed == 1500
    assert (out / "tileset" / "meta.json").is_file() and (tmp_path / ".gitkeep").is_file()
    assert stale_temporaries(tmp_path) == []
