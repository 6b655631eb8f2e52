"""Tables, text and transforms written through ``atomic_path``: old file or new, nothing else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest
import SimpleITK as sitk
from kedro.io import DatasetError

from mrihisto_kedro.datasets.atomic import write_csv_atomically, write_text_atomically
from mrihisto_kedro.datasets.transform_dataset import SimpleITKTransformDataset


def test_csv_round_trip_without_index_and_keeps_mode(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "pairs.csv"
    table = pd.DataFrame({"pair_id": ["p1", "p2"], "note": ["é", "a,b"]})
    assert write_csv_atomically(table, dest) == dest
    pd.testing.assert_frame_equal(pd.read_csv(dest), table)
    os.chmod(dest, 0o640)
    write_csv_atomically(table.iloc[:1], dest)
    assert len(pd.read_csv(dest)) == 1 and stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert [p.name for p in dest.parent.iterdir()] == ["pairs.csv"]


def test_text_keeps_newlines_as_given(tmp_path: Path) -> None:
    dest = tmp_path / "catalog.yml"
    write_text_atomically("a: 1\r\nb: 2\n", dest)
    assert dest.read_bytes() == b"a: 1\r\nb: 2\n"


def test_csv_failure_mid_write_keeps_the_old_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "pairs.csv"
    write_csv_atomically(pd.DataFrame({"a": [1]}), dest)

    def half_then_fail(self: pd.DataFrame, handle: object, **kwargs: object) -> None:
        handle.write("a\n2\n")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        write_csv_atomically(pd.DataFrame({"a": [2]}), dest)
    assert dest.read_text() == "a\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.csv"]


@pytest.mark.parametrize("suffix", [".tfm", ".h5"])
def test_transform_dataset_round_trip_in_the_format_of_its_extension(
    tmp_path: Path, suffix: str
) -> None:
    transform = sitk.AffineTransform(2)
    transform.SetMatrix((1.1, 0.1, -0.2, 0.9))
    transform.SetTranslation((3.0, -1.5))
    dataset = SimpleITKTransformDataset(filepath=str(tmp_path / "t" / f"pair_01{suffix}"))
    dataset.save(transform)
    back = dataset.load()
    assert back.GetParameters() == pytest.approx(transform.GetParameters())
    assert [p.name for p in (tmp_path / "t").iterdir()] == [f"pair_01{suffix}"]


def test_transform_write_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pair_01.tfm"
    dataset = SimpleITKTransformDataset(filepath=str(path))
    dataset.save(sitk.TranslationTransform(2, (1.0, 2.0)))
    before = path.read_bytes()

    def half_then_fail(transform: sitk.Transform, name: str) -> None:
        Path(name).write_text("#Insight Transform File V1.0\n")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteTransform", half_then_fail)
    with pytest.raises(DatasetError, match="disk full"):
        dataset.save(sitk.TranslationTransform(2, (5.0, 6.0)))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pair_01.tfm"]
