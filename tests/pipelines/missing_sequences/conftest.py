"""Small in-memory inputs of the missing_sequences nodes and pipeline (``tests/tiny_sequences.py``).

A 14-slice 32 px T1/T2 tile set, two untrained U-Net generators, a 2-epoch 32 px DCGAN, tiny
parameters (2 epochs, 2 refinement steps, 10 bootstrap replicates), a VGG16-shaped trunk with
1/16 of the channels in place of the ImageNet VGG16, and Inception/AlexNet weight paths that do
not exist (FID, KID and LPIPS are then reported missing, as on a machine without weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
import tiny_sequences as tiny
import torch

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.dcgan import DCGAN, DCGANConfig
from mrihisto_kedro.nn.style_transfer import StyleTransferParams
from mrihisto_kedro.sequences import (
    DCGANTrainingParams,
    Method,
    RefinementParams,
    SynthesisParams,
    split_slices,
    style_reference,
    synthesis_to_tileset,
    synthesise,
    train_split_dcgan,
)

#: refinement of the tiny tests: Adam, 2 steps, every slice of a method in one batch
TRANSFER = {"optimizer": "adam", "lr": 0.01, "steps": 2, "batch_size": 4}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test here on one torch thread (the root conftest's ``one_torch_thread``)."""


@pytest.fixture
def tileset() -> TileSet:
    """8 train, 2 val and 4 test slices of 32 x 32 px (A = T1, B = T2)."""
    return tiny.tileset()


@pytest.fixture
def generators() -> tuple[dict[str, Any], dict[str, Any]]:
    """``(pix2pix, cyclegan)`` exported T1 -> T2 generators (untrained tiny U-Nets)."""
    return tiny.generator_payload(1), tiny.generator_payload(2)


@pytest.fixture
def dcgan_params() -> dict[str, Any]:
    """``missing_sequences.dcgan`` of a 2-epoch 32 px DCGAN."""
    return {"split": "train", "model": {**tiny.TINY_DCGAN, "epochs": 2}}


@pytest.fixture
def synthesis_params() -> dict[str, Any]:
    """``missing_sequences.synthesis`` with 2 Adam refinement steps on the CPU."""
    return {"device": "cpu", "refinement": {"transfer": dict(TRANSFER)}}


@pytest.fixture
def table_params(tmp_path: Path) -> dict[str, Any]:
    """``missing_sequences.table``: 10 bootstrap replicates, no Inception / AlexNet weights."""
    missing = tiny.missing_file(tmp_path)
    return {
        "device": "cpu",
        "n_boot": 10,
        "kid_subset_size": 4,
        "kid_subsets": 5,
        "weights": {"inception": missing, "alexnet": missing},
        "n_figure_slices": 2,
    }


@pytest.fixture
def tiny_vgg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refinement loads the tiny VGG trunk instead of the ImageNet VGG16."""
    monkeypatch.setattr("mrihisto_kedro.sequences.refinement.vgg_features", tiny.tiny_vgg_features)


@pytest.fixture
def mlflow_store(mlflow_client: mlflow.tracking.MlflowClient) -> str:
    """A fresh sqlite MLflow store for the test (the root conftest's ``mlflow_client``): its URI."""
    return mlflow.get_tracking_uri()


@pytest.fixture(scope="module")
def dcgan_state() -> dict[str, Any]:
    """A 2-epoch DCGAN trained on the tiny training slices, saved as the train node saves it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    params = DCGANTrainingParams(model=DCGANConfig(**tiny.TINY_DCGAN, epochs=2))
    try:
        training = train_split_dcgan(split_slices(tiny.tileset(), "train"), params)
    finally:
        torch.set_num_threads(threads)
    return training.state


@pytest.fixture
def synthesised(
    tileset: TileSet,
    generators: tuple[dict[str, Any], dict[str, Any]],
    dcgan_state: dict[str, Any],
) -> tuple[TileSet, Any]:
    """``(synthetic, refinement_history)`` as the synthesise node returns them, refined by the
    tiny trunk (made with the library, so the table node's test does not depend on that node)."""
    params = SynthesisParams(
        device="cpu",
        refinement=RefinementParams(transfer=StyleTransferParams(**TRANSFER)),
    )
    style, _ = style_reference(tileset, params.refinement)
    result = synthesise(
        split_slices(tileset, "test"),
        {Method.PIX2PIX: generators[0], Method.CYCLEGAN: generators[1]},
        DCGAN.from_state_dict(dcgan_state, device="cpu"),
        params,
        style=style,
        features=tiny.tiny_vgg(),
    )
    return synthesis_to_tileset(result), result.history
