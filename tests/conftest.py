"""Shared fixtures: where the real sample data lives (``../shared/data`` beside the clone), an
MLflow store of a test's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _end_active_runs() -> None:
    """End the runs an in-process Kedro session left open, in the store they were started in
    (before a test points MLflow elsewhere: ending them there fails, "run not found")."""
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(autouse=True)
def no_mlflow_run_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """End a run a test left active, while its store is still the current one: kedro-mlflow
    adopts an already active run ("configuration is inferred from the environment") and would
    log a later test's whole ``kedro run`` into the leaked run's store."""
    yield
    if mlflow.active_run() is not None:
        import warnings

        warnings.warn(f"{request.node.nodeid} left an MLflow run active; ended", stacklevel=1)
        _end_active_runs()


@pytest.fixture
def mlflow_client(tmp_path: Path) -> Iterator[mlflow.tracking.MlflowClient]:
    """A client of a fresh SQLite store under ``tmp_path``, set as the tracking URI for the
    test (MLflow 3 refuses a plain file store), its ``Default`` experiment active; no run is
    left open after it."""
    _end_active_runs()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("Default")  # forget an experiment id an earlier test made active
    try:
        yield mlflow.tracking.MlflowClient()
    finally:
        _end_active_runs()
        mlflow.set_tracking_uri(None)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest (and without oversubscription on a busy 2-core CI box) on one
    torch thread; the previous count is restored after the test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with the reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (only present beside CI clones)")
    return SHARED_DATA


def _refuses_writes(folder: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return True
    os.close(fd)
    os.unlink(name)
    return False


@pytest.fixture
def refuse_writes() -> Iterator[Callable[[Path], None]]:
    """Make a folder refuse every new file for the test, even to root; undone afterwards.

    As root (as on these machines) ``chmod`` refuses nothing, so ``chattr +i`` (immutable:
    "Operation not permitted" even to root, on ext4/xfs/btrfs); otherwise ``chmod 555``.
    The test skips, saying why, where neither makes the folder refuse a real write.
    """
    made: list[tuple[Path, int]] = []

    def refuse(folder: Path) -> None:
        mode = folder.stat().st_mode
        if os.geteuid() == 0 and shutil.which("chattr"):
            done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
            if done.returncode == 0:
                made.append((folder, -1))
        else:
            folder.chmod(0o555)
            made.append((folder, mode))
        if not _refuses_writes(folder):
            pytest.skip(f"cannot make {folder} refuse writes here (chattr +i / chmod 555)")

    yield refuse
    for folder, mode in reversed(made):
        if mode < 0:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        else:
            folder.chmod(mode)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The numerics of this machine as torch sees them, at the top of every test log (issue 13:
    trajectories and ``precision: auto`` depend on them)."""
    import torch

    from mrihisto_kedro.nn.device import describe_numerics, numerics_report

    report = numerics_report(torch.device("cpu"), "auto", False)
    return [
        f"numerics: {describe_numerics(report)} (precision auto resolves to "
        f"{report['precision']} here; the demo pins fp32)",
        f"cuda: {torch.cuda.is_available()}, mkldnn: {torch.backends.mkldnn.is_available()}",
    ]
