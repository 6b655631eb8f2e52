"""Small in-memory inputs of the modelling nodes and pipeline.

A 10-tile 32 px paired tile set (blocky MRI-like A, an RGB colour mapping of it as B), tiny
training parameters (a U-Net pix2pix with 4 filters, one epoch, fp32 on the CPU), one torch
thread, and MLflow logging to an experiment of the test's own in a sqlite store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
from tiny_modelling import tiny_tileset

from mrihisto_kedro.imaging.tileset import TileSet


@pytest.fixture
def tileset() -> TileSet:
    """:func:`tiny_tileset`: 6 train and 4 val tiles."""
    return tiny_tileset()


@pytest.fixture
def make_tileset() -> Callable[..., TileSet]:
    """``make_tileset(n, splits)``: :func:`tiny_tileset`."""
    return tiny_tileset


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test here on one torch thread (the root conftest's ``one_torch_thread``)."""


@pytest.fixture(scope="session")
def _mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite MLflow store for the session (created once: its schema takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def mlflow_experiment(
    _mlflow_db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """An MLflow experiment of the test's own (named after it, artifacts under ``tmp_path``)
    in the session's sqlite store, active for the test; the previous tracking URI restored."""
    previous = mlflow.get_tracking_uri()
    while mlflow.active_run() is not None:  # one left open by an earlier in-process session
        mlflow.end_run()
    mlflow.set_tracking_uri(_mlflow_db)
    name = request.node.name
    mlflow.create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment(name)
    yield name
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)
