"""A training process killed with SIGKILL at a checkpoint resumes when run again (issue 15).

A driver process runs ``train_experiment`` as the pipeline does (the catalog's checkpoint
store, MLflow on SQLite). It is killed with ``kill -9`` right after its second epoch's
checkpoint, then the same driver runs again: it resumes, its final weights equal those of an
uninterrupted run, and the MLflow run it started is the one that finishes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from mrihisto_kedro.nn.training import CHECKPOINT_NAME, load_checkpoint

DRIVER = r"""
import sys, time
from pathlib import Path
import mlflow, numpy as np, pandas as pd, torch
from mrihisto_kedro.datasets.checkpoint_store_dataset import CheckpointStoreDataset
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.pipelines.modelling.nodes import train_experiment
from mrihisto_kedro.tracking import mlflow_tracking

root, out, pause = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "pause"
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
mlflow.set_experiment("kill")
if pause:  # after each epoch's checkpoint: say so, and give the test time to kill us
    logged = mlflow_tracking.EpochLogger.__call__
    def call(self, report):
        logged(self, report)
        print(f"checkpointed epoch {report.epoch}", flush=True)
        time.sleep(60)
    mlflow_tracking.EpochLogger.__call__ = call
rng = np.random.default_rng(0)
a01 = np.kron(rng.random((12, 4, 4)), np.ones((8, 8)))
b = np.round(np.stack([a01, 1 - a01, 0.5 * a01 + 0.25], axis=-1) * 255).astype(np.uint8)
manifest = pd.DataFrame({
    "tile_id": [f"t{i}" for i in range(12)], "pair_id": "p", "specimen_id": "s",
    "split": ["train"] * 8 + ["val"] * 4, "x": np.arange(12) * 32, "y": 0, "size": 32,
    "scale": 1.0,
})
tiles = TileSet(manifest=manifest, a=a01[..., None].astype(np.float32), b=b)
training = {
    "model_type": "pix2pix", "sample_every": 0,
    "model": {"generator": "unet", "num_downs": 5, "ngf": 4, "ndf": 4, "n_epochs": 3,
              "n_epochs_decay": 2, "device": "cpu", "precision": "fp32", "seed": 0},
    "data": {"load_size": 32, "crop_size": 32, "flip": True, "batch_size": 4,
             "val_split": "val"},
}
store = CheckpointStoreDataset(path=str(root / "checkpoints")).load()
generator, history, summary = train_experiment(tiles, training, store, experiment="tiny")
torch.save(generator["state_dict"], out)
print(f"run {summary.loc[0, 'run_id']} resumed from {summary.loc[0, 'resumed_from_epoch']}")
"""


def _driver(root: Path, out: Path, mode: str) -> subprocess.Popen[str]:
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(root), str(out), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        cwd=root,  # MLflow's default artifact folder (./mlruns) lands there
    )


def _finish(process: subprocess.Popen[str]) -> str:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


@pytest.mark.slow  # 81 s on the AVX-512 machine, about 200 s on the slower one: .ci/run
@pytest.mark.timeout(900)
def test_kill_9_at_a_checkpoint_then_the_same_command_resumes(tmp_path: Path) -> None:
    reference = _finish(_driver(tmp_path / "a", tmp_path / "a.pt", "run"))
    assert "resumed from 0" in reference

    killed = _driver(tmp_path / "b", tmp_path / "b.pt", "pause")
    assert killed.stdout is not None
    for line in killed.stdout:
        if line.strip() == "checkpointed epoch 2":
            break
    else:
        pytest.fail(f"the driver ended before epoch 2: {killed.communicate()[1][-3000:]}")
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    (folder,) = (tmp_path / "b" / "checkpoints").glob("final-*")
    assert load_checkpoint(folder / CHECKPOINT_NAME)["epoch"] == 2
    run_id = json.loads((folder / "mlflow_run.json").read_text())["run_id"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    try:
        assert mlflow.get_run(run_id).info.status == "RUNNING"  # what a kill leaves behind

        resumed = _finish(_driver(tmp_path / "b", tmp_path / "b.pt", "run"))
        assert f"run {run_id} resumed from 2" in resumed
        assert mlflow.get_run(run_id).info.status == "FINISHED"
    finally:
        mlflow.set_tracking_uri(None)
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no half-written checkpoint beside last.pt
