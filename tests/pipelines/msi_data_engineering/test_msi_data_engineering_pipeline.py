"""The msi_data_engineering pipeline run by Kedro's ``SequentialRunner`` on a temp catalog.

The analysis on the demo's MSI (the demo pipeline's ``make_msi_demo`` on a 3-specimen demo,
mapped onto the raw ``msi_*`` inputs by the registry's demo remap), as ``kedro run`` and
``kedro run --pipeline=msi`` run it: every dataset the base catalog defines is the project's own
(imzML, image and landmark folders, CSVs, the QC figure folder) under a temporary ``data_root``,
so what each node returns is saved and read back as in a real run; the two tile sets (catalog
factories) stay in memory. A few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from msi_test_inputs import DEMO, REDUCTION, SPECTRA, SPLITS, TILING

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.pipeline_registry import on_demo
from mrihisto_kedro.pipelines.demo import create_msi_pipeline
from mrihisto_kedro.pipelines.msi_data_engineering import create_pipeline

#: datasets of conf/base/catalog_msi.yml the run writes and reads back
FILES = [
    "demo_msi_imzml",
    "demo_msi_histology",
    "demo_msi_ground_truth",
    "demo_msi_peaks",
    "demo_msi_control_points",
    "msi_pairs_with_splits",
    "msi_peak_stacks",
    "msi_peaks",
    "msi_reduced",
    "msi_registration_transforms",
    "msi_histology_grid",
    "msi_registered_black",
    "msi_registered_white",
    "msi_coverage",
    "msi_registration_report",
    "msi_registration_qc",
]
PARAMETERS = {
    "splits": SPLITS,
    "spectra": SPECTRA,
    "reduction": REDUCTION,
    "registration": {"mode": "control_points"},
    "tiling": TILING,
}


#: the user's raw inputs the analysis reads
RAW_INPUTS = {"msi_pairs", "msi_imzml", "msi_histology", "msi_control_points", "msi_ground_truth"}


def test_the_pipeline_has_the_nodes_and_datasets_of_a_kedro_run() -> None:
    pipeline: Pipeline = create_pipeline()
    assert {n.name for n in pipeline.nodes} == {
        "assign_msi_splits",
        "build_peak_stacks",
        "reduce_peak_stacks",
        "register_msi_pairs",
        "msi_to_he_black.build_tiles",
        "msi_to_he_white.build_tiles",
    }
    params = {f"params:msi_data_engineering.{k}" for k in PARAMETERS}
    assert pipeline.inputs() == RAW_INPUTS | params  # the demo is not part of it
    assert {"msi_to_he_black.tileset", "msi_to_he_white.tileset"} <= pipeline.outputs()


def test_on_the_demo_it_reads_the_demos_outputs_only() -> None:
    pipeline = on_demo(create_msi_pipeline(), create_pipeline())
    assert not pipeline.inputs() & RAW_INPUTS
    assert pipeline.inputs() == {f"params:msi_data_engineering.{k}" for k in PARAMETERS} | {
        "params:demo_msi"
    }


def test_the_demo_and_its_analysis_run_through_the_project_datasets(
    project_catalog: Callable[..., DataCatalog],
    run_pipeline: Callable[[Pipeline, DataCatalog], DataCatalog],
    tmp_path: Path,
) -> None:
    catalog = project_catalog(FILES)
    for key, value in PARAMETERS.items():
        catalog[f"params:msi_data_engineering.{key}"] = MemoryDataset(value)
    catalog["params:demo_msi"] = MemoryDataset(DEMO)
    run_pipeline(on_demo(create_msi_pipeline(), create_pipeline()), catalog)

    root = tmp_path / "data"
    demo = root / "01_raw" / "demo_msi"
    ids = [f"msi_region_{k:02d}" for k in range(3)]
    assert sorted(p.name for p in (demo / "msi").glob("*.imzML")) == [f"{i}.imzML" for i in ids]
    assert sorted(p.stem for p in (demo / "control_points").glob("*.csv")) == ids
    pairs = pd.read_csv(root / "02_intermediate" / "msi" / "pairs_with_splits.csv")
    assert list(pairs["pair_id"]) == ids and set(pairs["split"]) <= {"train", "val", "test"}
    peaks = pd.read_csv(root / "02_intermediate" / "msi" / "peaks.csv")
    assert len(peaks) == SPECTRA["n_peaks"]  # the run's parameters, not conf/base's
    report = pd.read_csv(root / "08_reporting" / "msi" / "registration_report.csv")
    assert list(report["pair_id"]) == ids and (report["mode"] == "control_points").all()
    assert (report["tre_mean_um"] < 5.0).all(), report[["pair_id", "tre_mean_um"]]
    qc = root / "08_reporting" / "qc" / "msi_registration"
    assert sorted(p.name for p in qc.iterdir()) == [f"{i}.png" for i in ids]

    black: TileSet = catalog.load("msi_to_he_black.tileset")
    white: TileSet = catalog.load("msi_to_he_white.tileset")
    assert set(black.manifest["padding"]) == {"black"}
    assert set(white.manifest["padding"]) == {"white"}
    pd.testing.assert_frame_equal(
        black.manifest.drop(columns="padding"), white.manifest.drop(columns="padding")
    )
    assert black.a.shape[1:] == (16, 16, 3) and "input_spec" in black.attrs
    # the tiles are cut from the registered MSI as saved (.mha) and read back
    first = black.manifest.iloc[0]
    saved = root / "03_primary" / "msi" / "registered_black" / f"{first['pair_id']}.mha"
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(saved)))
    x, y = (int(first[k]) // int(first["scale"]) for k in ("x", "y"))
    np.testing.assert_array_equal(black.a[0], image[y : y + 16, x : x + 16])
