"""What a finished ``kedro run`` tells its user: where results are, what is flagged, how to look.

A run used to end with Kedro's "Pipeline execution completed successfully" after about 1,400
log lines, none of which said where the tables and figures went (issue 19). :func:`run_summary`
gathers, from the outputs a run wrote, the reporting files (paths relative to the project), the
flags the evaluation raised (a degenerate model, a model that does not beat its trivial
baseline, a stale column: :mod:`mrihisto_kedro.evaluation.degenerate`) and the commands that
open kedro-viz and the MLflow UI on this project; :func:`summary_lines` renders it for the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mrihisto_kedro.evaluation.table import column_flags
from mrihisto_kedro.tracking.experiment_view import runs_url

__all__ = ["RunSummary", "run_summary", "summary_lines", "table_flags"]


@dataclass(frozen=True)
class RunSummary:
    """The end-of-run report.

    Attributes:
        outputs: ``(dataset name, path)`` of each reporting output the run wrote, sorted by
            path; paths are relative to the project where they lie inside it.
        flags: ``(table dataset, column, reason)`` of each flagged result in those outputs.
        tracking_uri: the MLflow store the run logged to (``None``: not tracked).
        pipeline: the pipeline name that ran.
        experiment_id: the MLflow experiment the run logged to (for the address of its runs).
    """

    outputs: tuple[tuple[str, str], ...]
    flags: tuple[tuple[str, str, str], ...] = ()
    tracking_uri: str | None = None
    pipeline: str = "__default__"
    experiment_id: str | None = None


def table_flags(table: pd.DataFrame) -> dict[str, str]:
    """``column -> reason`` of the flagged rows of a results table.

    Reads the long metrics table's ``column``/``flag`` columns, and tables keyed by
    ``experiment`` with a ``flag`` column (a row without a flag, or a table without the
    column, contributes nothing).
    """
    if "flag" not in table.columns:
        return {}
    if "column" in table.columns:
        return column_flags(table)
    if "experiment" not in table.columns:
        return {}
    flagged = table[table["flag"].map(lambda v: isinstance(v, str) and bool(v))]
    return {str(e): str(f) for e, f in zip(flagged["experiment"], flagged["flag"], strict=True)}


def _relative(path: Path, project: Path) -> str:
    try:
        return str(path.resolve().relative_to(project.resolve()))
    except ValueError:
        return str(path)


def run_summary(
    outputs: Mapping[str, Path],
    tables: Mapping[str, pd.DataFrame],
    project: Path,
    tracking_uri: str | None = None,
    pipeline: str = "__default__",
    experiment_id: str | None = None,
) -> RunSummary:
    """The summary of a run.

    Args:
        outputs: ``{dataset name: local path}`` of the reporting outputs the run wrote.
        tables: ``{dataset name: table}`` of those outputs that are results tables (their
            flags are collected).
        project: the project folder, to shorten paths.
        tracking_uri: the MLflow tracking URI of the run, if it was tracked (a SQLite store
            inside the project is given relative to it, as typed in the project folder).
        pipeline: the pipeline name(s) that ran.
        experiment_id: the MLflow experiment of the run.
    """
    listed = sorted(
        ((name, _relative(path, project)) for name, path in outputs.items()),
        key=lambda item: item[1],
    )
    flags = tuple(
        (name, column, reason)
        for name, table in sorted(tables.items())
        for column, reason in table_flags(table).items()
    )
    return RunSummary(
        tuple(listed), flags, _short_uri(tracking_uri, project), pipeline, experiment_id
    )


def _short_uri(uri: str | None, project: Path) -> str | None:
    """A ``sqlite:///`` store inside the project as the relative URI a user types there."""
    prefix = "sqlite:///"
    if uri is None or not uri.startswith(prefix):
        return uri
    return prefix + _relative(Path(uri[len(prefix) :]), project)


#: where :func:`summary_lines`' MLflow command serves the UI
MLFLOW_ADDRESS = "http://127.0.0.1:5000"


def _mlflow_command(uri: str) -> str:
    """One worker: ``mlflow ui`` starts about 15 processes (docs/mlflow.md)."""
    return f"mlflow server --workers 1 --host 127.0.0.1 --port 5000 --backend-store-uri {uri}"


def _by_folder(outputs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """``folder/ -> [file names]``; a folder output (a partitioned dataset) is its own entry."""
    folders: dict[str, list[str]] = {}
    for _, path in outputs:
        where = Path(path)
        if where.suffix:
            folders.setdefault(f"{where.parent}/", []).append(where.name)
        else:
            folders.setdefault(f"{where}/", [])
    return folders


def summary_lines(summary: RunSummary) -> list[str]:
    """The summary as log lines: one line per folder of outputs, the flags, the commands."""
    lines = [f"Run of pipeline '{summary.pipeline}' finished. Results:"]
    for folder, names in _by_folder(summary.outputs).items():
        lines.append(f"  {folder}  {', '.join(names)}" if names else f"  {folder}  (folder)")
    if not summary.outputs:
        lines.append("  (no reporting output in this run)")
    if summary.flags:
        lines.append(f"FLAGGED results ({len(summary.flags)}): read them before the numbers")
        lines += [f"  {column} [{name}]: {reason}" for name, column, reason in summary.flags]
    lines.append("Browse the pipeline: kedro viz run")
    if summary.tracking_uri:
        lines.append(f"Compare the runs:   {_mlflow_command(summary.tracking_uri)}")
        if summary.experiment_id is not None:
            address = runs_url(MLFLOW_ADDRESS, summary.experiment_id)
            lines.append(f"                    then open {address}")
    return lines
