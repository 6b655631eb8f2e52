"""The demo pipeline: its nodes, and its MSI demo run by Kedro's ``SequentialRunner`` into the
project's own datasets under a temporary ``data_root``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from test_demo_nodes import SMALL_MSI

from mrihisto_kedro.pipelines.demo import create_mri_pipeline, create_msi_pipeline, create_pipeline

#: the MSI demo's datasets in conf/base/catalog_msi.yml
MSI_FILES = [
    "demo_msi_imzml",
    "demo_msi_histology",
    "demo_msi_ground_truth",
    "demo_msi_peaks",
    "demo_msi_control_points",
]


def test_the_demo_holds_the_mri_and_the_msi_demo() -> None:
    mri, msi = create_mri_pipeline(), create_msi_pipeline()
    assert {n.name for n in mri.nodes} == {"make_demo", "place_icbm152_pair"}
    assert {n.name for n in msi.nodes} == {"make_msi_demo"}
    assert set(create_pipeline().nodes) == set(mri.nodes) | set(msi.nodes)
    assert create_pipeline().inputs() == {"params:demo", "params:demo_msi"}
    assert msi.outputs() == set(MSI_FILES)


def test_the_msi_demo_runs_through_the_project_datasets(
    project_catalog: Callable[..., DataCatalog],
    run_pipeline: Callable[[Pipeline, DataCatalog], DataCatalog],
    tmp_path: Path,
) -> None:
    catalog = project_catalog(MSI_FILES)
    catalog["params:demo_msi"] = MemoryDataset(SMALL_MSI)
    run_pipeline(create_msi_pipeline(), catalog)
    demo = tmp_path / "data" / "01_raw" / "demo_msi"
    ids = ["msi_region_00", "msi_region_01"]
    assert sorted(p.stem for p in (demo / "msi").glob("*.imzML")) == ids
    assert sorted(p.stem for p in (demo / "msi").glob("*.ibd")) == ids
    assert sorted(p.stem for p in (demo / "histology").glob("*.png")) == ids
    assert sorted(p.stem for p in (demo / "control_points").glob("*.csv")) == ids
    truth = pd.read_csv(demo / "ground_truth.csv")
    assert list(truth["pair_id"]) == ids
