"""durability.atomic.atomic_path: the old file or the new one, never half of one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mrihisto_kedro.durability.atomic import atomic_path, replace_folder, staging_path
from mrihisto_kedro.durability.temporaries import is_stale_temporary


def test_new_file_appears_only_when_complete(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "table.csv"
    with atomic_path(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.suffix == ".csv"
        tmp.write_text("a,b\n1,2\n")
        assert not dest.exists()
    assert dest.read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["table.csv"]


def test_failure_keeps_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "image.nii.gz"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["image.nii.gz"]


def test_keeps_permissions_of_replaced_file_and_umask_for_new(tmp_path: Path) -> None:
    dest = tmp_path / "weights.pth"
    dest.write_bytes(b"old")
    os.chmod(dest, 0o640)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh.bin"
    with atomic_path(fresh) as tmp:
        tmp.write_bytes(b"x")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~mask


def test_nothing_written_is_an_error(tmp_path: Path) -> None:
    with (
        pytest.raises(FileNotFoundError, match="nothing was written"),
        atomic_path(tmp_path / "x.txt"),
    ):
        pass
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.parametrize("name", ["generator.pt", "slice.nii.gz", "transform.tfm", "README"])
def test_staging_name_is_a_known_temporary_with_the_same_extension(name: str) -> None:
    tmp = staging_path(Path("/data") / name)
    assert is_stale_temporary(tmp.name), tmp.name
    assert tmp.name.endswith("".join(Path(name).suffixes))


def test_staging_name_of_a_name_with_dashes_and_several_dots_is_known(tmp_path: Path) -> None:
    dest = tmp_path / "slide-v2.final-a.svs"
    with atomic_path(dest) as tmp:
        assert tmp.name.startswith(".slide-v2.tmp-") and tmp.name.endswith(".final-a.svs")
        assert is_stale_temporary(tmp.name)
        tmp.write_bytes(b"x")
    assert dest.read_bytes() == b"x"


def test_keyboard_interrupt_removes_the_staging_file(tmp_path: Path) -> None:
    dest = tmp_path / "last.pt"
    with pytest.raises(KeyboardInterrupt), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "a.txt").write_text(text)
    return path


def test_replace_folder_creates_then_replaces_and_removes_the_old(tmp_path: Path) -> None:
    dest = tmp_path / "tileset"
    replace_folder(_folder(staging_path(dest), "first"), dest)
    assert (dest / "a.txt").read_text() == "first"
    replace_folder(_folder(staging_path(dest), "second"), dest)
    assert (dest / "a.txt").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["tileset"]


def test_replace_folder_puts_the_old_folder_back_when_the_swap_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = _folder(tmp_path / "tileset", "old")
    new = _folder(staging_path(dest), "new")
    real_replace = os.replace

    def refuse_new(src: Path, dst: Path) -> None:
        if Path(src) == new:
            raise PermissionError(13, "refused", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse_new)
    with pytest.raises(PermissionError):
        replace_folder(new, dest)
    assert (dest / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tileset", new.name])
