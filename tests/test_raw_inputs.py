"""A run that reads the user's raw inputs stops before any work when they are not there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog

from mrihisto_kedro.raw_inputs import (
    MissingRawInputError,
    missing_raw_inputs,
    require_raw_inputs,
    your_data_hint,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
HINT = {"mrihisto": {"your_data": "your slides"}}


def _catalog(root: Path) -> DataCatalog:
    return DataCatalog.from_config(
        {
            "slides": {
                "type": "partitions.PartitionedDataset",
                "path": str(root / "slides"),
                "dataset": "mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset",
                "metadata": HINT,
            },
            "pairs": {
                "type": "mrihisto_kedro.datasets.manifest_dataset.PairsManifestDataset",
                "filepath": str(root / "pairs.csv"),
                "metadata": {"mrihisto": {"your_data": "the manifest"}},
            },
            "made_by_a_node": {"type": "pandas.CSVDataset", "filepath": str(root / "x.csv")},
        }
    )


def test_missing_empty_and_present_inputs(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    assert your_data_hint(catalog.get("slides")) == "your slides"
    assert your_data_hint(catalog.get("made_by_a_node")) is None
    names = ["slides", "pairs", "made_by_a_node", "params:x"]
    assert missing_raw_inputs(names, catalog) == {
        "pairs": (tmp_path / "pairs.csv", "the manifest"),
        "slides": (tmp_path / "slides", "your slides"),
    }
    (tmp_path / "slides").mkdir()  # an empty folder holds no data either
    assert set(missing_raw_inputs(names, catalog)) == {"pairs", "slides"}
    (tmp_path / "slides" / "a.svs").write_bytes(b"")
    (tmp_path / "pairs.csv").write_text("pair_id\n")
    assert missing_raw_inputs(names, catalog) == {}
    require_raw_inputs(names, catalog)


def test_the_error_names_each_entry_its_path_and_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(MissingRawInputError) as error:
        require_raw_inputs(["slides", "pairs"], _catalog(tmp_path))
    text = str(error.value)
    assert f"  - slides: {tmp_path / 'slides'} does not exist or is empty" in text
    assert "it should hold the manifest" in text
    assert "conf/local/catalog.yml" in text and "`kedro run`" in text


@pytest.mark.parametrize(
    ("pipeline", "entries", "first"),
    [
        ("data_engineering", ("slides", "mri_volumes", "pairs"), "data/01_raw/slides"),
        (
            "msi_data_engineering",
            ("msi_pairs", "msi_imzml", "msi_histology", "msi_control_points"),
            "data/01_raw/msi/histology",
        ),
    ],
)
def test_a_users_pipeline_without_your_data_stops_before_any_work(
    tmp_path: Path, pipeline: str, entries: tuple[str, ...], first: str
) -> None:
    """A fresh clone, no conf/local: ``kedro run --pipeline=data_engineering`` (or
    ``msi_data_engineering``) says what to set, and writes nothing (the base catalog's raw
    entries have no demo default; only the default run and ``msi`` read the demo's)."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO_ROOT / name, project / name)
    shutil.copytree(REPO_ROOT / "conf" / "base", project / "conf" / "base")
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()
    bootstrap_project(project)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(project)
            with KedroSession.create(project_path=project) as session:
                with pytest.raises(MissingRawInputError) as error:
                    session.run(pipeline_names=[pipeline])
    finally:
        bootstrap_project(REPO_ROOT)
    text = str(error.value)
    for name in entries:
        assert f"  - {name}: " in text
    assert f"{first} does not exist" in text
    written = [p for p in (project / "data").rglob("*") if p.is_file()]
    assert written == []
