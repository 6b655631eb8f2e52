"""Shared fixtures: where the real sample data lives (``../shared/data`` beside the clone)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with the reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (only present beside CI clones)")
    return SHARED_DATA


_MLFLOW_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_RUN_ID",
)


@pytest.fixture(autouse=True, scope="module")
def _mlflow_state_per_module() -> Iterator[None]:
    """Reset MLflow's process-wide state after each test module.

    In-process Kedro sessions (kedro-mlflow) leave an active run, a tracking URI and
    ``MLFLOW_EXPERIMENT_ID`` (set by ``mlflow.set_experiment``) behind; a later module's project
    with its own ``mlflow.db`` would otherwise log into, or look up, the previous one's experiment.
    """
    saved = {name: os.environ.get(name) for name in _MLFLOW_ENV}
    yield
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    while mlflow.active_run() is not None:
        mlflow.end_run()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    fluent._active_experiment_id = None
    utils._tracking_uri = None
