"""RunSafetyHooks: lock, stale temporaries and stale MLflow runs, before the first node."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from kedro.pipeline import Pipeline
from mlflow.tracking import MlflowClient

from mrihisto_kedro.durability.lock import OutputRootBusyError, OutputRootLock
from mrihisto_kedro.hooks import ROOT_TAG, RunSafetyHooks


def _context(project: Path, data_root: str) -> SimpleNamespace:
    config = {
        "globals": {"data_root": data_root},
        "mlflow": {"tracking": {"experiment": {"name": "mrihisto_kedro"}}},
    }
    return SimpleNamespace(config_loader=config, project_path=project)


def test_before_the_first_node(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "data" / "full_scale"
    (root / "05_model_input").mkdir(parents=True)
    staging = root / "05_model_input" / ".tileset.tmp-0123456789ab"
    staging.mkdir()
    (staging / "a.npy").write_bytes(b"x" * 2_000_000)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        client = MlflowClient()
        exp = client.create_experiment("mrihisto_kedro")
        dead = client.create_run(exp, tags={ROOT_TAG: str(root.resolve())}).info.run_id
        hooks = RunSafetyHooks()
        hooks.after_context_created(_context(tmp_path, "data/full_scale"))
        with caplog.at_level(logging.WARNING):
            hooks.before_pipeline_run(
                {"pipeline_names": ["full_scale"]}, Pipeline([]), SimpleNamespace(load=None)
            )
        with pytest.raises(OutputRootBusyError, match="kedro run --pipeline=full_scale"):
            OutputRootLock(root).acquire()  # a second run into this root is refused
        OutputRootLock(tmp_path / "data").acquire()  # the demo's root is another root
        assert not staging.exists()
        assert "removed 1 stale temporaries (2.0 MB)" in caplog.text
        assert client.get_run(dead).info.status == "KILLED"
        assert f"marked 1 MLflow run(s) of {root.resolve()} KILLED" in caplog.text
        hooks.on_pipeline_error()
        OutputRootLock(root).acquire()  # released when the pipeline fails (or ends)
    finally:
        mlflow.set_tracking_uri(None)
