"""The missing_sequences pipeline as a slice: its interface, its parameters, and a run with Kedro's
``SequentialRunner`` on an in-memory ``DataCatalog`` with tiny inputs (seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset
from matplotlib.figure import Figure

from mrihisto_kedro.datasets.checkpoint_store_dataset import CheckpointStoreDataset
from mrihisto_kedro.datasets.tileset_dataset import TileSetDataset
from mrihisto_kedro.datasets.torch_state_dataset import TorchStateDataset
from mrihisto_kedro.evaluation.table import TABLE_COLUMNS
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.params import ParameterError, parse_params
from mrihisto_kedro.pipelines.missing_sequences import create_pipeline
from mrihisto_kedro.pipelines.parameter_checks import check_pipeline_parameters
from mrihisto_kedro.sequences import (
    DCGANTrainingParams,
    SequenceTableParams,
    SynthesisParams,
    method_order,
    refinement_summary,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def _catalog(
    tileset: TileSet,
    generators: tuple[dict[str, Any], dict[str, Any]],
    params: dict[str, dict[str, Any]],
    folder: Path,
) -> DataCatalog:
    """The modelling outputs the pipeline reads and its parameters in memory; the three
    intermediate datasets and the DCGAN's checkpoint store in ``folder`` with the project's own
    dataset types (so the run also checks that they survive being saved and loaded); the other
    outputs in memory."""
    catalog = DataCatalog(
        {
            "missing_sequences.dcgan": TorchStateDataset(
                filepath=str(folder / "dcgan.pt"), format="mrihisto-dcgan"
            ),
            "missing_sequences.synthetic": TileSetDataset(filepath=str(folder / "synthetic")),
            "missing_sequences.refinement_history": CSVDataset(
                filepath=str(folder / "refinement_history.csv"), save_args={"index": False}
            ),
            "missing_sequences.dcgan_checkpoints": CheckpointStoreDataset(
                path=str(folder / "checkpoints")
            ),
        }
    )
    catalog["t1_to_t2.tileset"] = tileset
    catalog["t1_to_t2_pix2pix.generator"] = generators[0]
    catalog["t1_to_t2.generator"] = generators[1]
    for key, value in params.items():
        catalog[f"params:missing_sequences.{key}"] = value
    return catalog


def test_pipeline_inputs_outputs_and_catalog() -> None:
    pipeline = create_pipeline()
    assert pipeline.inputs() == {
        "t1_to_t2.tileset",
        "t1_to_t2.generator",
        "t1_to_t2_pix2pix.generator",
        "missing_sequences.dcgan_checkpoints",
        "params:missing_sequences.dcgan",
        "params:missing_sequences.synthesis",
        "params:missing_sequences.table",
    }
    assert {n.name for n in pipeline.nodes} == {
        "missing_sequences.train_dcgan",
        "missing_sequences.synthesise",
        "missing_sequences.table",
    }
    outputs = pipeline.all_outputs()
    loader = OmegaConfigLoader(
        conf_source=str(REPO_ROOT / "conf"), base_env="base", default_run_env="local"
    )
    catalog = loader["catalog"]
    assert outputs <= set(catalog), outputs - set(catalog)
    store = catalog["missing_sequences.dcgan_checkpoints"]
    assert store["type"].endswith("CheckpointStoreDataset")
    assert store["path"].endswith("06_models/missing_sequences/checkpoints")
    assert catalog["missing_sequences.table"]["filepath"].endswith(
        "08_reporting/missing_sequences/table.csv"
    )
    params = loader["parameters"]["missing_sequences"]
    dcgan = parse_params(DCGANTrainingParams, params["dcgan"], "missing_sequences.dcgan")
    assert dcgan.model.image_size == params["dcgan"]["model"]["image_size"]
    parse_params(SynthesisParams, params["synthesis"], "missing_sequences.synthesis")
    parse_params(SequenceTableParams, params["table"], "missing_sequences.table")


def test_a_bad_dcgan_key_stops_the_run_before_the_first_node(
    dcgan_params: dict[str, Any],
    synthesis_params: dict[str, Any],
    table_params: dict[str, Any],
) -> None:
    params = {"dcgan": dcgan_params, "synthesis": synthesis_params, "table": table_params}
    load = {f"params:missing_sequences.{k}": v for k, v in params.items()}.__getitem__
    check_pipeline_parameters(create_pipeline(), load)  # the tiny parameters pass
    params["dcgan"] = {"model": {**dcgan_params["model"], "lr_D": -1.0}}
    load = {f"params:missing_sequences.{k}": v for k, v in params.items()}.__getitem__
    with pytest.raises(ParameterError, match=r"missing_sequences\.dcgan\.model.*lr_D"):
        check_pipeline_parameters(create_pipeline(), load)


def test_pipeline_runs_on_tiny_inputs(
    tileset: TileSet,
    generators: tuple[dict[str, Any], dict[str, Any]],
    dcgan_params: dict[str, Any],
    synthesis_params: dict[str, Any],
    table_params: dict[str, Any],
    tiny_vgg: None,
    mlflow_store: str,
    tmp_path: Path,
) -> None:
    params = {"dcgan": dcgan_params, "synthesis": synthesis_params, "table": table_params}
    catalog = _catalog(tileset, generators, params, tmp_path)
    outputs = SequentialRunner().run(create_pipeline(), catalog)
    assert set(outputs) == {
        "missing_sequences.dcgan_history",
        "missing_sequences.table",
        "missing_sequences.table_md",
        "missing_sequences.figure",
    }
    table = outputs["missing_sequences.table"].load()
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(dict.fromkeys(table["experiment"])) == method_order()
    ssim = table[(table["metric"] == "SSIM") & (table["comparison"] == "generated_vs_t2")]
    paired = ssim[~ssim["experiment"].str.startswith("dcgan")]
    assert len(paired) == 6 and np.isfinite(paired["value"]).all()
    assert ssim[ssim["experiment"].str.startswith("dcgan")]["value"].isna().all()
    assert len(outputs["missing_sequences.dcgan_history"].load()) == 2
    summary = refinement_summary(catalog.load("missing_sequences.refinement_history"))
    assert (summary["status"] == "ok").all() and (summary["steps"] == 2).all()
    markdown = outputs["missing_sequences.table_md"].load()
    assert "| SSIM | generated_vs_t2 |" in markdown and "Style refinement" in markdown
    assert isinstance(outputs["missing_sequences.figure"].load(), Figure)
    # the intermediate datasets the catalog persists: the DCGAN state and the synthetic slices
    state = torch.load(tmp_path / "dcgan.pt", weights_only=True)
    assert state["format"] == "mrihisto-dcgan" and state["training_split"] == "train"
    (last,) = (tmp_path / "checkpoints").glob("dcgan-*/dcgan/last.pt")  # the DCGAN checkpointed
    assert torch.load(last, weights_only=True)["epoch"] == 2
    synthetic = catalog.load("missing_sequences.synthetic")
    assert isinstance(synthetic, TileSet) and len(synthetic) == 4 * len(method_order())
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.run_name == "missing_sequences-dcgan"
