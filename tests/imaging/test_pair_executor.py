"""The per-pair executor: same results as the plain loop, in item order, errors raised.

The demo test runs ``data_engineering`` and ``registration`` on a 5-pair demo (more pairs than
the machine's 2 cores) with the executor sequential, on threads, on processes and on a Dask
``LocalCluster`` of 2 workers, and compares every output file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from demo_as_your_data import use_demo_as_your_data
from distributed import LocalCluster
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from project_copy import copy_project

from mrihisto_kedro.imaging.pair_executor import ExecutorKind, PairExecutorParams, map_pairs
from mrihisto_kedro.params import ParameterError, parse_params

REPO_ROOT = Path(__file__).resolve().parents[2]
KINDS = list(ExecutorKind)


def _square(x: int) -> int:
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"pair {x} failed")
    return x


@pytest.mark.parametrize("kind", KINDS)
def test_results_in_item_order(kind: ExecutorKind) -> None:
    params = PairExecutorParams(kind=kind, max_workers=2)
    assert map_pairs(_square, range(7), params) == [x * x for x in range(7)]
    assert map_pairs(_square, [], params) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_failing_pair_raises(kind: ExecutorKind) -> None:
    with pytest.raises(ValueError, match="pair 3 failed"):
        map_pairs(_fail_on_three, range(6), PairExecutorParams(kind=kind, max_workers=2))


def _pid(x: int) -> tuple[int, int]:
    return x, os.getpid()


def test_a_local_dask_cluster_leaves_the_environment_as_it_found_it() -> None:
    """Dask's nanny writes OMP/MKL/OPENBLAS_NUM_THREADS=1 (and more) into the process that
    starts a LocalCluster; left there, every process the same run started afterwards ran torch
    on one thread. ``map_pairs`` restores the environment (the control shows the leak)."""
    before = dict(os.environ)
    try:
        with LocalCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ):
            pass
        assert os.environ.get("MKL_NUM_THREADS") == "1"  # Dask's own leak, measured
    finally:
        os.environ.clear()
        os.environ.update(before)
    assert map_pairs(_square, [1, 2, 3], PairExecutorParams(kind="dask", max_workers=2)) == [
        1,
        4,
        9,
    ]
    assert dict(os.environ) == before


def test_dask_runs_pairs_on_a_running_cluster_by_its_address() -> None:
    """The many-machines path: a scheduler and 2 worker processes reached over tcp."""
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        params = PairExecutorParams.from_dict(
            {"kind": "dask", "scheduler_address": cluster.scheduler_address}
        )
        done = map_pairs(_pid, range(6), params)
        assert [x for x, _ in done] == list(range(6))
        assert os.getpid() not in {pid for _, pid in done}  # computed by the workers
        with pytest.raises(ValueError, match="pair 3 failed"):
            map_pairs(_fail_on_three, range(6), params)
        assert map_pairs(_square, range(4), params) == [0, 1, 4, 9]  # the cluster still serves


def test_dask_without_the_extra_names_the_key_and_the_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def without_distributed(name: str, *args: object, **kwargs: object) -> object:
        return None if name == "distributed" else real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", without_distributed)
    with pytest.raises(ParameterError) as raised:
        parse_params(PairExecutorParams, {"kind": "dask"}, "registration.executor")
    assert raised.value.key == "registration.executor.kind"
    assert 'pip install "mrihisto_kedro[dask]"' in str(raised.value)
    assert PairExecutorParams(kind=ExecutorKind.THREADS).kind is ExecutorKind.THREADS


def test_dask_missing_at_run_time_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parameters checked where Dask was installed, run where it is not (a worker image)."""
    params = PairExecutorParams(kind=ExecutorKind.DASK, max_workers=2)
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ImportError, match=r'pip install "mrihisto_kedro\[dask\]"'):
        map_pairs(_square, range(3), params)


def test_scheduler_address_only_with_dask() -> None:
    with pytest.raises(ParameterError, match="scheduler_address.*kind 'dask' only"):
        PairExecutorParams.from_dict({"kind": "threads", "scheduler_address": "tcp://h:8786"})
    with pytest.raises(ParameterError, match="scheduler_address"):
        PairExecutorParams.from_dict({"kind": "dask", "scheduler_address": " "})
    params = PairExecutorParams.from_dict({"kind": "dask", "scheduler_address": "tcp://h:8786"})
    assert params.scheduler_address == "tcp://h:8786"


def test_threads_run_pairs_at_once() -> None:
    """Two pairs that each wait for the other finish only when they run concurrently."""
    barrier = threading.Barrier(2, timeout=30)

    def meet(x: int) -> int:
        barrier.wait()
        return x

    threads = PairExecutorParams(kind=ExecutorKind.THREADS, max_workers=2)
    assert map_pairs(meet, [1, 2], threads) == [1, 2]


def test_params_parse_and_name_bad_keys() -> None:
    params = PairExecutorParams.from_dict({"kind": "processes", "max_workers": 3})
    assert params.kind is ExecutorKind.PROCESSES and params.max_workers == 3
    with pytest.raises(ParameterError, match="max_workers"):
        PairExecutorParams.from_dict({"max_workers": 0})
    with pytest.raises(ParameterError, match="kind"):
        PairExecutorParams.from_dict({"kind": "spark"})


# ---------------------------------------------------------------------- the demo, end to end
def _run(project: Path, pipelines: list[str], params: dict[str, object]) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_names=pipelines)
    while mlflow.active_run() is not None:  # kedro-mlflow leaves the session's run open
        mlflow.end_run()


def _outputs(data: Path) -> dict[str, bytes]:
    """Every output file's bytes (Kedro's partition indexes record the time: left out)."""
    return {
        str(path.relative_to(data)): path.read_bytes()
        for layer in ("02_intermediate", "03_primary", "08_reporting")
        for path in sorted((data / layer).rglob("*"))
        if path.is_file() and path.name != "_partitions.json"
    }


def test_demo_outputs_equal_sequential_on_threads_processes_and_dask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_project(tmp_path)
    monkeypatch.chdir(project)
    demo = {"n_specimens": 5, "level0_height": 1200, "level0_width": 1600}
    _run(project, ["demo"], {"demo": demo})
    use_demo_as_your_data(project)
    results = {}
    for kind in KINDS:
        executor = {"kind": kind.value, "max_workers": 2}
        params = {
            "data_engineering": {"downsample_factor": 5, "executor": executor},
            "registration": {"executor": executor},
        }
        _run(project, ["data_engineering", "registration"], params)
        files = _outputs(project / "data")
        report = files.pop("08_reporting/registration_report.csv")
        results[kind] = files
        table = pd.read_csv(project / "data" / "08_reporting" / "registration_report.csv")
        assert len(table) == 5
        results[kind]["report without seconds"] = table.drop(columns="seconds").to_csv().encode()
        assert report  # the wall-clock column differs from run to run; the rest must not
    sequential = results[ExecutorKind.SEQUENTIAL]
    assert any(name.startswith("03_primary/aligned_mri/") for name in sequential)
    assert len(sequential) > 40
    for kind in KINDS[1:]:
        assert results[kind].keys() == sequential.keys()
        different = [k for k in sequential if results[kind][k] != sequential[k]]
        assert not different, f"{kind}: {different}"
