"""train_experiment resumes an interrupted training from its checkpoint (issue 15).

The node is run as the pipeline runs it (a ``CheckpointStore`` from the catalog's
``<experiment>.checkpoints``, MLflow on a SQLite store), once without interruption and once
interrupted after an epoch's checkpoint and run again: the resumed model is bit-identical,
the MLflow run is continued, and a changed parameter starts fresh, saying so. A ``kill -9``
of a real training process is in ``test_training_kill.py``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import torch
from tiny_modelling import TINY_TRAINING, tiny_tileset

from mrihisto_kedro.datasets.checkpoint_store_dataset import CheckpointStoreDataset
from mrihisto_kedro.nn.checkpoint_store import CheckpointStore
from mrihisto_kedro.nn.training import CHECKPOINT_NAME, load_checkpoint, load_generator
from mrihisto_kedro.pipelines.modelling.nodes import train_experiment
from mrihisto_kedro.tracking import mlflow_tracking

#: the tiny training for 3 epochs (2 + 1 decay), so that a kill can land between epochs
TRAINING: dict[str, Any] = {
    **TINY_TRAINING,
    "model": {**TINY_TRAINING["model"], "n_epochs": 2, "n_epochs_decay": 1},
    "data": {"load_size": 32, "crop_size": 32, "flip": True, "batch_size": 4, "val_split": "val"},
}


@pytest.fixture(autouse=True)
def _tracking(tmp_path: Path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    while mlflow.active_run() is not None:  # one left open by an earlier in-process session
        mlflow.end_run()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.create_experiment("resume", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment("resume")
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)
    mlflow.set_tracking_uri(None)


class Interrupt(RuntimeError):
    """Stands in for a crash after an epoch's checkpoint was written."""


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, epoch: int, run_name: str = "tiny") -> None:
    original = mlflow_tracking.EpochLogger.__call__

    def call(self: mlflow_tracking.EpochLogger, report: Any) -> None:
        original(self, report)
        name = mlflow.tracking.MlflowClient().get_run(self.run_id).info.run_name
        if report.epoch == epoch and name == run_name:
            raise Interrupt(f"interrupted after epoch {epoch}")

    monkeypatch.setattr(mlflow_tracking.EpochLogger, "__call__", call)


def _store(root: Path) -> CheckpointStore:
    return CheckpointStoreDataset(path=str(root / "06_models" / "tiny" / "checkpoints")).load()


def _same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())


def test_interrupted_training_resumes_bit_identical_in_its_mlflow_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tiles = tiny_tileset()
    reference, ref_history, _ = train_experiment(
        tiles, TRAINING, _store(tmp_path / "a"), experiment="tiny"
    )

    store = _store(tmp_path / "b")
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 2)
        with pytest.raises(Interrupt):
            train_experiment(tiles, TRAINING, store, experiment="tiny")
    (folder,) = store.root.glob("final-*")
    assert load_checkpoint(folder / CHECKPOINT_NAME)["epoch"] == 2
    run_id = json.loads((folder / "mlflow_run.json").read_text())["run_id"]
    assert mlflow.get_run(run_id).info.status == "FAILED"

    with caplog.at_level(logging.INFO):
        generator, history, summary = train_experiment(tiles, TRAINING, store, experiment="tiny")
    assert "resuming tiny (final) from epoch 2" in caplog.text
    assert _same_weights(generator, reference)
    assert summary.loc[0, "resumed_from_epoch"] == 2 and summary.loc[0, "epochs"] == 3
    pd.testing.assert_frame_equal(
        history.drop(columns="seconds"), ref_history.drop(columns="seconds")
    )
    # the same MLflow run, continued: one value per epoch, finished
    assert summary.loc[0, "run_id"] == run_id
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resumed"] == "true"
    steps = mlflow.tracking.MlflowClient().get_metric_history(run_id, "G_L1")
    assert sorted(m.step for m in steps) == [1, 2, 3]
    runs = mlflow.search_runs(experiment_names=["resume"], output_format="pandas")
    assert (runs["tags.mlflow.runName"] == "tiny").sum() == 2  # one per store, not three
    # the run's model is the weights-only generator file, not a pickled mlflow.pytorch model
    names = {a.path for a in mlflow.tracking.MlflowClient().list_artifacts(run_id, "generator")}
    assert names == {
        "generator/generator.pt",
        "generator/signature.json",
        "generator/HOW_TO_LOAD.txt",
    }
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="generator/generator.pt"
    )
    net = load_generator(path)
    assert all(torch.equal(v, generator["state_dict"][k]) for k, v in net.state_dict().items())


def test_completed_training_is_reused_and_a_changed_parameter_starts_fresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tiles = tiny_tileset()
    store = _store(tmp_path)
    first, _, _ = train_experiment(tiles, TRAINING, store, experiment="tiny")
    with caplog.at_level(logging.INFO):
        again, _, summary = train_experiment(tiles, TRAINING, store, experiment="tiny")
    assert "resuming tiny (final) from epoch 3" in caplog.text
    assert _same_weights(again, first) and summary.loc[0, "resumed_from_epoch"] == 3
    (kept,) = store.root.glob("final-*")

    caplog.clear()
    changed = {**TRAINING, "model": {**TRAINING["model"], "lr": 0.001}}
    with caplog.at_level(logging.INFO):
        other, _, summary = train_experiment(tiles, changed, store, experiment="tiny")
    assert f"parameters changed since checkpoint {kept.name} (model.lr): starting fresh" in (
        caplog.text
    )
    assert not kept.exists() and len(list(store.root.glob("final-*"))) == 1
    assert summary.loc[0, "resumed_from_epoch"] == 0
    assert not _same_weights(other, first)

    caplog.clear()
    never = {**changed, "resume": "never"}
    with caplog.at_level(logging.INFO):
        fresh, _, summary = train_experiment(tiles, never, store, experiment="tiny")
    assert "training.resume is 'never'" in caplog.text
    assert summary.loc[0, "resumed_from_epoch"] == 0 and _same_weights(fresh, other)


def test_interrupted_search_skips_completed_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tiles = tiny_tileset()
    search = {
        **TRAINING,
        "search": {
            "n_trials": 2,
            "sampler": "random",
            "seed": 0,
            "metric": "val_L1",
            "space": {"lr": [0.0002, 0.002], "lambda_L1": [10.0, 100.0]},
            "trial_overrides": {"n_epochs": 1, "n_epochs_decay": 1},
        },
    }
    ref_generator, _, ref_table = train_experiment(
        tiles, search, _store(tmp_path / "a"), experiment="tiny"
    )

    store = _store(tmp_path / "b")
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 1, run_name="tiny-trial-1")
        with pytest.raises(Interrupt):
            train_experiment(tiles, search, store, experiment="tiny")
    (folder,) = store.root.glob("search-*")
    assert len((folder / "trials.jsonl").read_text().splitlines()) == 1  # trial 0 completed
    assert load_checkpoint(folder / "trial-1" / CHECKPOINT_NAME)["epoch"] == 1

    with caplog.at_level(logging.INFO):
        generator, _, table = train_experiment(tiles, search, store, experiment="tiny")
    assert "search tiny: trial 0 completed before: not trained again" in caplog.text
    assert "resuming tiny (trial-1) from epoch 1" in caplog.text
    trials = ["trial", "lr", "lambda_L1", "val_L1"]
    pd.testing.assert_frame_equal(table[trials].iloc[1:], ref_table[trials].iloc[1:])
    assert _same_weights(generator, ref_generator)
    assert not (folder / "trial-1").exists()  # a completed trial's checkpoint is dropped
