"""The DCGAN training node resumes from ``missing_sequences.dcgan_checkpoints`` (issue 18).

A training killed after an epoch (the MLflow callback raises, as a kill would stop it after
that epoch's checkpoint) and run again ends with the weights, optimiser states and history of an
uninterrupted training, bit for bit, each epoch once; so does a training run again with more
epochs. The same command after a finished training reuses it; ``resume: never``, a changed
parameter or fewer epochs than the checkpoint holds train from epoch 0.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import tiny_sequences as tiny
import torch

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.checkpoint_store import CheckpointStore
from mrihisto_kedro.nn.dcgan import DCGAN, load_dcgan_checkpoint
from mrihisto_kedro.pipelines.missing_sequences import nodes
from mrihisto_kedro.pipelines.missing_sequences.nodes import train_sequence_dcgan_node
from mrihisto_kedro.sequences import DCGANTrainingParams, split_slices, train_split_dcgan
from mrihisto_kedro.sequences.dcgan_training import dcgan_checkpoint_description
from mrihisto_kedro.sequences.slices import SequenceSlices

EPOCHS = 4


class Killed(Exception):
    """Stands for the kill of the training process after an epoch."""


def _params(dcgan_params: dict[str, Any], epochs: int, **more: Any) -> dict[str, Any]:
    return {**dcgan_params, "model": {**dcgan_params["model"], "epochs": epochs}, **more}


def _kill_after(monkeypatch: pytest.MonkeyPatch, epochs: int) -> None:
    """The node's per-epoch callback raises once ``epochs`` epochs are done (and checkpointed)."""
    log_epoch = nodes._log_epoch

    def dying(epoch: int, means: Mapping[str, float], model: DCGAN) -> None:
        log_epoch(epoch, means, model)
        if epoch + 1 == epochs:
            raise Killed(f"killed after epoch {epochs}")

    monkeypatch.setattr(nodes, "_log_epoch", dying)


def _assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    """Every tensor equal bit for bit (and every other value equal), recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), where
        for key in a:
            _assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _losses(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns="seconds")


def _last_run() -> Any:
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return max(runs, key=lambda r: r.info.start_time)


def _steps(run: Any, metric: str = "loss_D") -> list[int]:
    history = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, metric)
    return [m.step for m in history]


@pytest.fixture(scope="module")
def uninterrupted() -> tuple[dict[str, Any], pd.DataFrame]:
    """``(state, history)`` as the node returns them after an uninterrupted ``EPOCHS``-epoch
    training without checkpoints (the library call of the node, without MLflow)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the threads of the tests below (the package's autouse fixture)
    try:
        params = DCGANTrainingParams.from_dict({"model": {**tiny.TINY_DCGAN, "epochs": EPOCHS}})
        training = train_split_dcgan(split_slices(tiny.tileset(), "train"), params)
    finally:
        torch.set_num_threads(threads)
    return training.state, training.history


def test_a_killed_training_resumes_to_the_uninterrupted_weights(
    tileset: TileSet,
    dcgan_params: dict[str, Any],
    uninterrupted: tuple[dict[str, Any], pd.DataFrame],
    mlflow_store: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CheckpointStore(tmp_path / "checkpoints", "missing_sequences")
    params = _params(dcgan_params, EPOCHS)
    with monkeypatch.context() as m:
        _kill_after(m, 2)
        with pytest.raises(Killed):
            train_sequence_dcgan_node(tileset, params, store)
    (last,) = (tmp_path / "checkpoints").glob("dcgan-*/dcgan/last.pt")
    assert load_dcgan_checkpoint(last)["epoch"] == 2

    with caplog.at_level(logging.INFO):
        state, history = train_sequence_dcgan_node(tileset, params, store)
    _assert_same_state(state, uninterrupted[0])
    pd.testing.assert_frame_equal(_losses(history), _losses(uninterrupted[1]))
    assert list(history["epoch"]) == [1.0, 2.0, 3.0, 4.0]  # each epoch once
    assert history["seconds"].isna().tolist() == [True, True, False, False]
    assert "resumed after epoch 2 from" in caplog.text
    run = _last_run()  # the resumed run logs the epochs it trained
    assert _steps(run) == [3, 4] and run.data.metrics["resumed_epoch"] == 2
    assert run.data.params["resume"] == "auto"
    assert load_dcgan_checkpoint(last)["epoch"] == EPOCHS


def test_more_epochs_continue_and_the_same_epochs_reuse_the_training(
    tileset: TileSet,
    dcgan_params: dict[str, Any],
    uninterrupted: tuple[dict[str, Any], pd.DataFrame],
    mlflow_store: str,
    tmp_path: Path,
) -> None:
    store = CheckpointStore(tmp_path / "checkpoints", "missing_sequences")
    train_sequence_dcgan_node(tileset, _params(dcgan_params, 2), store)
    state, history = train_sequence_dcgan_node(tileset, _params(dcgan_params, EPOCHS), store)
    _assert_same_state(state, uninterrupted[0])
    pd.testing.assert_frame_equal(_losses(history), _losses(uninterrupted[1]))
    assert _steps(_last_run()) == [3, 4]
    assert len(list((tmp_path / "checkpoints").glob("dcgan-*"))) == 1  # the same key

    again, same = train_sequence_dcgan_node(tileset, _params(dcgan_params, EPOCHS), store)
    _assert_same_state(again, state)
    pd.testing.assert_frame_equal(_losses(same), _losses(history))
    assert same["seconds"].isna().all()  # nothing trained
    run = _last_run()
    assert _steps(run) == [] and run.data.metrics["resumed_epoch"] == EPOCHS


def test_resume_never_changed_parameters_and_fewer_epochs_train_from_epoch_0(
    tileset: TileSet,
    dcgan_params: dict[str, Any],
    mlflow_store: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CheckpointStore(tmp_path / "checkpoints", "missing_sequences")
    first, history = train_sequence_dcgan_node(tileset, _params(dcgan_params, 2), store)
    assert history["seconds"].notna().all()

    state, history = train_sequence_dcgan_node(
        tileset, _params(dcgan_params, 2, resume="never"), store
    )
    assert history["seconds"].notna().all() and _steps(_last_run()) == [1, 2]
    _assert_same_state(state, first)  # trained again from epoch 0, deterministically

    lr = {**dcgan_params["model"], "epochs": 2, "lr": 1e-3}
    with caplog.at_level(logging.WARNING):
        state, history = train_sequence_dcgan_node(tileset, {**dcgan_params, "model": lr}, store)
    assert history["seconds"].notna().all() and _steps(_last_run()) == [1, 2]
    assert not torch.equal(state["G"]["main.0.weight"], first["G"]["main.0.weight"])
    assert "parameters changed since checkpoint" in caplog.text and "model.lr" in caplog.text
    assert len(list((tmp_path / "checkpoints").glob("dcgan-*"))) == 1  # the old key removed

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _, history = train_sequence_dcgan_node(tileset, {**dcgan_params, "model": lr}, store)
        assert history["seconds"].isna().all()  # finished: reused
        fewer = {**lr, "epochs": 1}
        _, history = train_sequence_dcgan_node(tileset, {**dcgan_params, "model": fewer}, store)
    assert list(history["epoch"]) == [1.0] and history["seconds"].notna().all()
    assert "holds 2 epochs, more than epochs=1: training from epoch 0" in caplog.text


def test_the_checkpoint_key_follows_the_data_and_ignores_epochs(tileset: TileSet) -> None:
    slices = split_slices(tileset, "train")
    params = DCGANTrainingParams.from_dict({"model": {"epochs": 2}})
    described = dcgan_checkpoint_description(slices, params, 1)
    assert "epochs" not in described["model"] and described["split"] == "train"
    longer = DCGANTrainingParams.from_dict({"model": {"epochs": 9}})
    assert dcgan_checkpoint_description(slices, longer, 1) == described
    assert dcgan_checkpoint_description(slices, params, 2)["processes"] == 2
    other = SequenceSlices(slices.manifest, slices.t1, slices.t2 * np.float32(0.5))
    assert dcgan_checkpoint_description(other, params, 1)["slices"] != described["slices"]


def test_a_killed_data_parallel_training_resumes_to_the_uninterrupted_weights(
    tileset: TileSet,
    dcgan_params: dict[str, Any],
    mlflow_store: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``processes: 2``: rank 0 alone writes the checkpoint; after the kill (the other rank is
    stopped with it) both ranks resume from it and end where an uninterrupted run ends."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    params = _params(dcgan_params, 3, processes=2)

    def cpu_batch_norm() -> Any:
        return pytest.warns(UserWarning, match="SyncBatchNorm runs on CUDA only")

    with cpu_batch_norm():
        reference = train_sequence_dcgan_node(tileset, params)
    store = CheckpointStore(tmp_path / "checkpoints", "missing_sequences")
    with monkeypatch.context() as m, cpu_batch_norm():
        _kill_after(m, 1)
        with pytest.raises(Killed):
            train_sequence_dcgan_node(tileset, params, store)
    with cpu_batch_norm():
        state, history = train_sequence_dcgan_node(tileset, params, store)
    _assert_same_state(state, reference[0])
    pd.testing.assert_frame_equal(_losses(history), _losses(reference[1]))
    assert history["seconds"].isna().tolist() == [True, False, False]
    run = _last_run()
    assert _steps(run) == [2, 3] and run.data.metrics["resumed_epoch"] == 1
    assert len(list((tmp_path / "checkpoints").rglob("*.pt"))) == 1  # one checkpoint set
