"""The modelling pipeline as slices: each experiment's namespace, and ``t1_to_t2``'s run with
Kedro's ``SequentialRunner`` on a small ``DataCatalog`` (two 40-slice volumes, one epoch of a
4-filter CycleGAN on the CPU; seconds)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest
import SimpleITK as sitk
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from tiny_modelling import TINY_TRAINING

from mrihisto_kedro.datasets.checkpoint_store_dataset import CheckpointStoreDataset
from mrihisto_kedro.datasets.tileset_dataset import TileSetDataset
from mrihisto_kedro.experiments import by_name
from mrihisto_kedro.imaging.input_spec import InputSpec
from mrihisto_kedro.nn.training import generator_digest, load_generator
from mrihisto_kedro.pipelines.modelling.pipeline import training_pipeline

TILING = {"plane": "axial", "fractions": [0.6, 0.2, 0.2], "block": 4, "gap": 1, "pad_to": 32}
#: the tiny training as a one-epoch CycleGAN (t1_to_t2 has no validation split here)
TRAINING = {**TINY_TRAINING, "model_type": "cyclegan", "data": {"batch_size": 4}}
OUTPUTS = ("generator", "training_history", "training_summary")


def test_each_namespace_reads_its_tile_source_and_writes_its_training() -> None:
    volume = training_pipeline(by_name("t1_to_t2"))
    assert volume.inputs() == {
        "icbm152_t1",
        "icbm152_t2",
        "params:t1_to_t2.tiling",
        "params:t1_to_t2.training",
        "t1_to_t2.checkpoints",
    }
    assert volume.all_outputs() == {f"t1_to_t2.{name}" for name in ("tileset", *OUTPUTS)}
    assert {n.name for n in volume.nodes} == {"t1_to_t2.build_tiles", "t1_to_t2.train"}

    pairs = training_pipeline(by_name("tiles_256"))
    assert {"registration_report", "aligned_mri"} <= pairs.inputs()
    # the MRI normalisation is read from the aligned MRI files, not re-read from parameters
    assert not any(name.startswith("params:data_engineering") for name in pairs.inputs())
    assert "params:tiles_256.tiling" in pairs.inputs()

    shared = training_pipeline(by_name("unet_baseline"))  # trains on tiles_256's tiles
    assert [n.name for n in shared.nodes] == ["unet_baseline.train"]
    assert "tiles_256.tileset" in shared.inputs()
    assert not any(name.endswith(".tiling") for name in shared.inputs())


def _catalog(root: Path, t1: sitk.Image, t2: sitk.Image) -> DataCatalog:
    """The slice's folder datasets as the project configures them, the rest in memory."""
    models = root / "06_models" / "t1_to_t2"
    catalog = DataCatalog(
        {
            "t1_to_t2.tileset": TileSetDataset(
                filepath=str(root / "05_model_input" / "t1_to_t2" / "tileset")
            ),
            "t1_to_t2.checkpoints": CheckpointStoreDataset(path=str(models / "checkpoints")),
        }
    )
    values: dict[str, Any] = {
        "icbm152_t1": t1,
        "icbm152_t2": t2,
        "params:t1_to_t2.tiling": TILING,
        "params:t1_to_t2.training": TRAINING,
        **{f"t1_to_t2.{name}": None for name in OUTPUTS},
    }
    for name, value in values.items():
        catalog[name] = MemoryDataset(value, copy_mode="assign")
    return catalog


def test_t1_to_t2_tiles_and_trains_and_a_second_run_reuses_the_model(
    brain_volume: Callable[..., sitk.Image],
    tmp_path: Path,
    mlflow_experiment: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    t1 = brain_volume((40, 24, 20))
    t2 = sitk.InvertIntensity(t1, maximum=300.0)
    pipeline = training_pipeline(by_name("t1_to_t2"))
    catalog = _catalog(tmp_path / "data", t1, t2)
    SequentialRunner().run(pipeline, catalog)

    tiles = catalog.load("t1_to_t2.tileset")
    assert set(tiles.splits) == {"train", "val", "test"}
    assert tiles.a.shape[1:] == (32, 32, 1)
    generator = catalog.load("t1_to_t2.generator")
    spec = InputSpec.from_dict(generator["input_spec"])
    assert (spec.plane, spec.pad_to, spec.input_range) == ("axial", 32, (0.0, 1.0))
    assert load_generator(generator)(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32)
    history = catalog.load("t1_to_t2.training_history")
    summary = catalog.load("t1_to_t2.training_summary")
    assert list(history["epoch"]) == [1]
    row = summary.iloc[0]
    assert (row["experiment"], row["model_type"], row["val_split"]) == (
        "t1_to_t2",
        "cyclegan",
        "val",
    )
    assert row["generator"] == generator_digest(generator)
    assert {"identity_val_L1", "inverted_val_L1"} <= set(summary.columns)  # T1 -> T2 baselines
    assert mlflow.get_run(row["run_id"]).info.run_name == "t1_to_t2"

    with caplog.at_level(logging.INFO):  # the same command again: the checkpoint is reused
        SequentialRunner().run(pipeline, _catalog(tmp_path / "data", t1, t2))
    assert "resuming t1_to_t2 (final) from epoch 1" in caplog.text
