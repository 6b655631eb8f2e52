"""Fixtures of the evaluation pipeline's tests: a tiny tile set, tiny generators, MLflow.

The MLflow store is a SQLite file under the test's ``tmp_path``; the builders are in
``evaluation_inputs``.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pytest
import torch
from evaluation_inputs import SPEC, tiny_pix2pix, tiny_tileset

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.training import export_generator


@pytest.fixture(scope="package")
def generator() -> dict[str, Any]:
    """An exported, untrained pix2pix U-Net (:func:`tiny_pix2pix`) with its input spec."""
    return export_generator(tiny_pix2pix(), SPEC)


@pytest.fixture(scope="package")
def constant_generator() -> dict[str, Any]:
    """A collapsed generator: its last layer zeroed, ``tanh(0.3)`` everywhere."""
    model = tiny_pix2pix()
    last = [m for m in model.generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(0.3)
    return export_generator(model, SPEC)


@pytest.fixture
def tileset() -> TileSet:
    """:func:`tiny_tileset` at scale 1."""
    return tiny_tileset()


@pytest.fixture
def mlflow_store(mlflow_client: mlflow.tracking.MlflowClient) -> mlflow.tracking.MlflowClient:
    """A client on an empty SQLite tracking store (the root conftest's ``mlflow_client``)."""
    return mlflow_client
