"""The ``kedro run`` command that reproduces a run, from Kedro's ``run_params`` (issue 16).

kedro-mlflow tags its run ``kedro_command`` with only ``--pipeline``, ``--node``, ``--tag``,
``--from/--to-nodes``, ``--from-inputs`` and ``--load-version``: the ``--namespaces``,
``--params`` and ``--env`` that chose the experiment and its settings were lost (``kedro run
--pipeline=modelling`` was recorded for a one-experiment run with overridden parameters).
:func:`kedro_command` rebuilds the whole command; ``hooks.RunTagHooks`` writes it over
kedro-mlflow's tag and as ``mrihisto.kedro_command``, which the nested training runs inherit.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

__all__ = ["kedro_command"]

#: run_params key -> CLI option, for the options whose value is a list of names
_LISTS = (
    ("pipeline_names", "--pipeline"),
    ("namespaces", "--namespaces"),
    ("node_names", "--nodes"),
    ("tags", "--tags"),
    ("from_nodes", "--from-nodes"),
    ("to_nodes", "--to-nodes"),
    ("from_inputs", "--from-inputs"),
    ("to_outputs", "--to-outputs"),
)


def _dotted(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    items = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            items += _dotted(value, f"{prefix}{key}.")
        elif isinstance(value, list | tuple):
            items.append(f"{prefix}{key}=[{','.join(str(v) for v in value)}]")
        else:
            items.append(f"{prefix}{key}={value}")
    return items


def kedro_command(run_params: Mapping[str, Any]) -> str:
    """``kedro run ...`` with every option of ``run_params`` that changes what runs or how.

    Args:
        run_params: the dict Kedro passes to ``before_pipeline_run`` (``pipeline_names``,
            ``namespaces``, ``runtime_params`` (nested), ``env``, ``runner``, ...).

    Returns:
        A shell-quoted command line, e.g. ``kedro run --pipeline=modelling
        --namespaces=tiles_256 '--params=tiles_256.training.model.lr=0.0001'``.
    """
    words = ["kedro", "run"]
    env = run_params.get("env")
    if env and env != "local":
        words.append(f"--env={env}")
    for key, option in _LISTS:
        names = run_params.get(key)
        if isinstance(names, str):
            names = [names]
        if names and list(names) != ["__default__"]:
            words.append(f"{option}={','.join(names)}")
    versions = run_params.get("load_versions") or {}
    if versions:
        words.append("--load-versions=" + ",".join(f"{k}:{v}" for k, v in versions.items()))
    # Kedro records an instance's str(): "<kedro.runner.parallel_runner.ParallelRunner object ..."
    runner = re.search(r"(\w*Runner)\b", str(run_params.get("runner") or ""))
    if runner and runner.group(1) != "SequentialRunner":
        words.append(f"--runner={runner.group(1)}")
    if run_params.get("only_missing_outputs"):
        words.append("--only-missing-outputs")
    params = run_params.get("runtime_params") or {}
    if params:
        words.append("--params=" + ",".join(_dotted(params)))
    return shlex.join(words)
