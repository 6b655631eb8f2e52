"""Tables measured on a model that has been retrained since: found and marked (no Kedro).

Every row of the metric tables names the model it measured (``model``: ``generator <digest>,
MLflow run <id>``, :func:`~mrihisto_kedro.nn.training.generator_digest`); every training
summary names the generator it exported (``generator``: the same digest). Retraining one
experiment (``kedro run --pipeline=modelling --namespaces=tiles_256``) replaces its generator
but not the tables, which are rebuilt only by the evaluation pipeline. :func:`stale_experiments`
compares the two; :func:`mark_stale` puts a notice under a markdown table's title saying which
columns describe a model that no longer exists and the command that rebuilds them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pandas as pd

__all__ = ["STALE_MARK", "measured_digests", "mark_stale", "rebuild_command", "stale_experiments"]

#: the first words of the notice :func:`mark_stale` writes (and replaces on the next call)
STALE_MARK = "> **STALE**"
_DIGEST = re.compile(r"generator ([0-9a-f]{16})")


def measured_digests(table: pd.DataFrame) -> dict[str, str]:
    """``experiment -> generator digest`` read from a metric table's ``model`` column."""
    if table.empty or "model" not in table.columns:
        return {}
    out: dict[str, str] = {}
    for experiment, model in zip(table["experiment"], table["model"], strict=True):
        match = _DIGEST.search(model) if isinstance(model, str) else None
        if match:
            out[str(experiment)] = match.group(1)
    return out


def rebuild_command(
    experiments: list[str],
    nodes: Mapping[str, str] | None = None,
    pipeline: str = "evaluation",
) -> str:
    """The ``kedro run`` that re-measures ``experiments`` and rebuilds the tables after them.

    ``nodes``: experiment -> the name of its evaluation node, where it is not
    ``<experiment>.evaluate`` (:attr:`~mrihisto_kedro.experiments.Experiment.evaluate_node`);
    ``pipeline``: the registered pipeline that holds those nodes and the table
    (``msi_whole_specimen`` for its table)."""
    names = ",".join((nodes or {}).get(e, f"{e}.evaluate") for e in experiments)
    return f"kedro run --pipeline={pipeline} --from-nodes={names}"


def stale_experiments(table: pd.DataFrame, current: Mapping[str, str]) -> dict[str, str]:
    """The experiments whose columns measured another generator than the current one.

    Args:
        table: a long metric table with ``experiment`` and ``model`` columns.
        current: ``experiment -> digest`` of the generator each training last exported
            (experiments without a known digest are not judged).

    Returns:
        ``experiment -> "measured generator <old>, the current one is <new>"``.
    """
    measured = measured_digests(table)
    return {
        experiment: f"measured generator {old}, the current one is {current[experiment]}"
        for experiment, old in measured.items()
        if experiment in current and current[experiment] != old
    }


def mark_stale(
    markdown: str,
    stale: Mapping[str, str],
    nodes: Mapping[str, str] | None = None,
    pipeline: str = "evaluation",
) -> str:
    """``markdown`` with a stale notice under its first line (a previous notice replaced).

    ``nodes``, ``pipeline``: as :func:`rebuild_command`.

    With ``stale`` empty the notice is removed: the text is the table as it was written.
    """
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(STALE_MARK):
            del lines[i]
            if i >= 2 and lines[i - 1] == "":  # the blank line inserted with it
                del lines[i - 1]
            break
    if not stale:
        return "\n".join(lines) + "\n"
    names = sorted(stale)
    details = "; ".join(f"{e}: {stale[e]}" for e in names)
    notice = (
        f"{STALE_MARK}: the columns of {', '.join(names)} describe a model that has been "
        f"retrained since ({details}). Rebuild them with "
        f"`{rebuild_command(names, nodes, pipeline)}`."
    )
    return "\n".join([*lines[:1], "", notice, *lines[1:]]) + "\n"
