"""ImzMLDataset: lazy loading of the real imzML examples, atomic pair saving, in a partition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kedro.io import DatasetError
from kedro_datasets.partitions import PartitionedDataset

from mrihisto_kedro.datasets.imzml_dataset import ImzMLDataset
from mrihisto_kedro.msi.imzml_files import ImzMLFiles

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "msi"

needs_examples = pytest.mark.skipif(
    not (EXAMPLES / "Example_Processed.imzML").is_file(),
    reason=f"the imzML example files are not at {EXAMPLES} (../shared/data is beside CI clones)",
)


@needs_examples
@pytest.mark.parametrize("name", ["Example_Continuous", "Example_Processed"])
def test_load_is_a_lazy_reader_of_the_real_example(name: str) -> None:
    dataset = ImzMLDataset(filepath=str(EXAMPLES / f"{name}.imzML"))
    assert dataset.exists()
    with dataset.load() as reader:
        assert reader.n_pixels == 9
        low, high = reader.mz_range
        assert 100.0 < low < 100.1 and 799.9 < high < 800.0


@needs_examples
def test_save_writes_both_files_and_partitions_list_imzml_only(tmp_path: Path) -> None:
    files = ImzMLFiles.read(EXAMPLES / "Example_Processed.imzML")
    folder = PartitionedDataset(
        path=str(tmp_path / "msi"),
        dataset={"type": ImzMLDataset},
        filename_suffix=".imzML",
    )
    folder.save({"p1": files, "p2": files})
    assert sorted(p.name for p in (tmp_path / "msi").iterdir()) == [
        "p1.ibd",
        "p1.imzML",
        "p2.ibd",
        "p2.imzML",
    ]
    assert not list((tmp_path / "msi").glob(".*tmp"))  # temporary names renamed away
    loaded = folder.load()
    assert sorted(loaded) == ["p1", "p2"]
    with (
        loaded["p2"]() as copy,
        ImzMLDataset(filepath=str(EXAMPLES / "Example_Processed.imzML")).load() as original,
    ):
        assert copy.n_pixels == original.n_pixels
        np.testing.assert_array_equal(copy.rows, original.rows)


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="local files only"):
        ImzMLDataset(filepath="s3://bucket/x.imzML")
    dataset = ImzMLDataset(filepath=str(tmp_path / "x.imzML"))
    with pytest.raises(DatasetError, match="ImzMLFiles"):
        dataset.save(b"not files")  # type: ignore[arg-type]
    (tmp_path / "x.imzML").write_text("<mzML/>")
    assert not dataset.exists()  # no .ibd beside it
