"""The whole ``kedro run`` command is recorded, and reads back as the same run (issue 16)."""

from __future__ import annotations

import shlex

from kedro.framework.cli.utils import _split_params
from kedro.runner import ParallelRunner, SequentialRunner

from mrihisto_kedro.tracking.kedro_command import kedro_command


def _run_params(**given):
    """run_params as KedroSession.run builds them (kedro 1.7), with ``given`` changed."""
    params = {
        "run_id": "2026-12-04T21.00.00.000Z",
        "project_path": "/work/main",
        "env": None,
        "kedro_version": "1.7.0",
        "tags": None,
        "from_nodes": None,
        "to_nodes": None,
        "node_names": None,
        "from_inputs": None,
        "to_outputs": None,
        "load_versions": None,
        "runtime_params": {},
        "pipeline_names": None,
        "namespaces": None,
        "runner": str(SequentialRunner()),
        "only_missing_outputs": False,
    }
    return {**params, **given}


def test_a_plain_run_is_kedro_run() -> None:
    assert kedro_command(_run_params()) == "kedro run"
    assert kedro_command(_run_params(pipeline_names=["__default__"], env="local")) == "kedro run"


def test_namespaces_params_and_env_are_kept_and_parse_back() -> None:
    runtime = {
        "tiles_256": {
            "training": {
                "model": {"gan_mode": "lsgan", "lr": 0.0001},
                "search": {"n_trials": 0, "space": {"beta1": [0.5]}},
            }
        }
    }
    command = kedro_command(
        _run_params(
            env="paper",
            pipeline_names=["modelling"],
            namespaces=["tiles_256"],
            runtime_params=runtime,
            runner=str(ParallelRunner()),
            only_missing_outputs=True,
            load_versions={"tiles_256.generator": "2026-12-01T10.00.00.000Z"},
        )
    )
    words = shlex.split(command)
    assert words[:5] == [
        "kedro",
        "run",
        "--env=paper",
        "--pipeline=modelling",
        "--namespaces=tiles_256",
    ]
    assert "--runner=ParallelRunner" in words and "--only-missing-outputs" in words
    assert "--load-versions=tiles_256.generator:2026-12-01T10.00.00.000Z" in words
    params = next(w for w in words if w.startswith("--params="))
    # read back by Kedro's own --params parser (it splits on every comma, so the CLI takes
    # one-element lists only: the search's one-choice space)
    assert _split_params(None, None, params.removeprefix("--params=")) == runtime
