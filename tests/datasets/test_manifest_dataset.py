"""PairsManifestDataset: ids stay strings, a missing column names the file, saves are atomic."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DatasetError

from mrihisto_kedro.datasets.manifest_dataset import PairsManifestDataset

HEADER = "pair_id,specimen_id,slide,mri,plane,slice_index,split\n"


def test_ids_stay_strings_and_empty_split_is_blank(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(HEADER + "001,007,a.svs,v.nii.gz,sagittal,3,\n")
    table = PairsManifestDataset(filepath=str(path)).load()
    assert table.loc[0, "pair_id"] == "001" and table.loc[0, "specimen_id"] == "007"
    assert table.loc[0, "split"] == ""
    assert table.attrs["source"] == str(path)


def test_missing_column_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("pair_id,specimen_id,slide,mri,slice_index,split\n1,1,a.svs,v.nii,3,\n")
    with pytest.raises(DatasetError, match=rf"{path}: missing column\(s\) plane"):
        PairsManifestDataset(filepath=str(path)).load()


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    dataset = PairsManifestDataset(filepath=str(path))
    good = pd.DataFrame(
        [["p", "s", "a.svs", "v.nii", "axial", 1, "train"]], columns=HEADER.strip().split(",")
    )
    dataset.save(good)

    class Exploding(pd.DataFrame):
        def to_csv(self, *args: object, **kwargs: object) -> None:
            raise OSError("disk full")

    with pytest.raises(DatasetError, match="disk full"):
        dataset.save(Exploding(good))
    assert dataset.load().loc[0, "pair_id"] == "p"
    assert [f.name for f in tmp_path.iterdir()] == ["pairs.csv"]
