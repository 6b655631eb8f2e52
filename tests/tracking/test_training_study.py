"""The training study's pieces that need no training: its result table, the tiles a search
validates on, and the MLflow logging of a search's outcome and of a summary row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.tracking.mlflow_tracking import log_search_best, log_summary_metrics
from mrihisto_kedro.tracking.training_params import TrainingParams
from mrihisto_kedro.tracking.training_study import (
    TrainingStudyResult,
    logged_params,
    search_tileset,
)


def _tiles(splits: list[str]) -> TileSet:
    n = len(splits)
    manifest = pd.DataFrame(
        {
            "tile_id": [f"t{i}" for i in range(n)],
            "pair_id": [f"p{i}" for i in range(n)],
            "specimen_id": [f"s{i % 4}" for i in range(n)],
            "split": splits,
            "x": 0,
            "y": 0,
            "size": 8,
            "scale": 1.0,
        }
    )
    a = np.zeros((n, 8, 8, 1), np.float32)
    return TileSet(manifest=manifest, a=a, b=np.zeros((n, 8, 8, 3), np.uint8))


def test_the_table_is_the_summary_row_then_the_trials() -> None:
    trials = pd.DataFrame({"trial": [0, 1], "lr": [0.1, 0.2], "val_L1": [0.5, 0.4]})
    result = TrainingStudyResult({}, pd.DataFrame(), {"experiment": "x", "val_L1": 0.3}, trials)
    table = result.table
    assert list(table["experiment"].fillna("")) == ["x", "", ""]
    assert list(table["val_L1"]) == [0.3, 0.5, 0.4] and list(table["trial"].iloc[1:]) == [0, 1]


def test_a_search_uses_the_val_split_or_holds_out_training_specimens() -> None:
    params = parse_params(TrainingParams, {"search": {"holdout_specimens": 2, "seed": 3}})
    with_val = _tiles(["train"] * 6 + ["val"] * 2)
    assert search_tileset(with_val, params, "x") == (with_val, {"search_val": "val"})

    tiles, info = search_tileset(_tiles(["train"] * 8 + ["test"] * 2), params, "x")
    held = set(tiles.split("val").manifest["specimen_id"])
    assert len(held) == 2  # the trials validate on them, never on the test split
    assert not held & set(tiles.split("train").manifest["specimen_id"])
    assert info["search_val"] == "held-out training specimens: " + ", ".join(sorted(held))


def test_logged_params_are_what_a_run_records() -> None:
    params = parse_params(TrainingParams, {"model": {"ngf": 4}, "data": {"batch_size": 2}})
    logged = logged_params(_tiles(["train"] * 3), params)
    assert logged["model_type"] == "pix2pix" and logged["model"] == {"ngf": 4}
    assert logged["data"]["batch_size"] == 2 and logged["tiles"] == 3


@pytest.fixture
def active_run(mlflow_client: mlflow.tracking.MlflowClient, tmp_path: Path) -> Iterator[str]:
    """An open MLflow run in a sqlite store of the test's own (the root conftest's)."""
    mlflow.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment("t")
    with mlflow.start_run() as run:
        yield run.info.run_id


def test_search_best_and_summary_metrics_are_logged(active_run: str) -> None:
    log_search_best({"lr": 0.002, "gan_mode": "lsgan"}, "val_L1", 0.25)
    log_summary_metrics({"experiment": "x", "val_L1": 0.5, "epochs": 3, "val_SSIM": None})
    data = mlflow.get_run(active_run).data
    assert data.params == {"best.lr": "0.002", "best.gan_mode": "lsgan"}
    assert data.metrics == {"best_val_L1": 0.25, "val_L1": 0.5, "epochs": 3.0}
