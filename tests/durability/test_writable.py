"""Output folders that refuse writes stop a run before its first node (issue 15)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.partitions import PartitionedDataset

from mrihisto_kedro.durability.lock import OutputRootLock
from mrihisto_kedro.durability.writable import (
    OutputFolderNotWritableError,
    output_folders,
    require_writable,
)
from mrihisto_kedro.hooks import RunSafetyHooks


def _catalog(root: Path) -> DataCatalog:
    return DataCatalog(
        {
            "report": CSVDataset(filepath=str(root / "08_reporting" / "report.csv")),
            "deep": CSVDataset(filepath=str(root / "08_reporting" / "new" / "x" / "t.csv")),
            "slides": PartitionedDataset(
                path=str(root / "02_intermediate" / "slides"), dataset="pandas.CSVDataset"
            ),
            "remote": CSVDataset(filepath="memory://bucket/table.csv"),
            "scratch": MemoryDataset(),
        }
    )


def test_output_folders_are_where_the_writers_create_files(tmp_path: Path) -> None:
    (tmp_path / "08_reporting").mkdir()
    (tmp_path / "02_intermediate" / "slides").mkdir(parents=True)
    names = ["report", "deep", "slides", "remote", "scratch", "unknown"]
    folders = output_folders(names, _catalog(tmp_path))
    assert folders == {
        # "deep": 08_reporting/new/x does not exist yet, it is created in 08_reporting
        tmp_path / "08_reporting": ["deep", "report"],
        tmp_path / "02_intermediate": ["slides"],  # the staging sibling of a folder output
        tmp_path / "02_intermediate" / "slides": ["slides"],  # and files inside it
    }
    require_writable(folders)  # writable: no error, and no probe file left behind
    assert [p.name for p in tmp_path.rglob(".*")] == []


def test_a_folder_that_refuses_writes_is_named_with_its_outputs(
    tmp_path: Path, refuse_writes: Callable[[Path], None]
) -> None:
    reporting = tmp_path / "08_reporting"
    (tmp_path / "02_intermediate").mkdir()
    reporting.mkdir()
    refuse_writes(reporting)
    with pytest.raises(OutputFolderNotWritableError) as caught:
        require_writable(output_folders(["report", "deep", "slides"], _catalog(tmp_path)))
    assert caught.value.errno == errno.EACCES
    lines = str(caught.value).splitlines()
    assert "stopped before its first node" in lines[0]
    assert len(lines) == 2  # 02_intermediate is writable and not reported
    assert lines[1].startswith(f"  {reporting}: ")
    assert lines[1].endswith("(outputs: deep, report)")
    assert any(s in lines[1] for s in ("Operation not permitted", "Permission denied"))


def test_the_hook_refuses_the_run_before_any_node_and_releases_the_lock(
    tmp_path: Path, refuse_writes: Callable[[Path], None]
) -> None:
    root = tmp_path / "data"
    (root / "08_reporting").mkdir(parents=True)
    refuse_writes(root / "08_reporting")
    ran = []

    def table(frame: pd.DataFrame) -> pd.DataFrame:
        ran.append(True)
        return frame

    pipeline = Pipeline([node(table, "scratch", "report")])
    catalog = _catalog(root)
    catalog["scratch"] = pd.DataFrame({"a": [1]})
    hooks = RunSafetyHooks()
    config = {"globals": {"data_root": "data"}, "mlflow": {}}
    hooks.after_context_created(SimpleNamespace(config_loader=config, project_path=tmp_path))
    with pytest.raises(OutputFolderNotWritableError, match="08_reporting: .*outputs: report"):
        hooks.before_pipeline_run({"pipeline_names": ["evaluation"]}, pipeline, catalog)
    assert ran == []
    OutputRootLock(root).acquire()  # the refused run does not keep the root locked
