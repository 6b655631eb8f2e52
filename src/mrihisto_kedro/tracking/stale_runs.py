"""MLflow runs left RUNNING by a killed process, marked KILLED when the next run starts.

A ``kill -9`` (or a lost machine) never lets MLflow end its run: the run stays RUNNING in
the tracking store forever, and a comparison of runs cannot tell it from a live one. The
project allows one ``kedro run`` per output root at a time (:mod:`mrihisto_kedro.durability.
lock`), so when a run holds that lock, every other RUNNING run of its MLflow experiment is
stale. Each is set to KILLED, with the tag ``mrihisto.stale`` saying why; a training resumed
from its checkpoint later continues such a run and finishes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

__all__ = ["STALE_TAG", "mark_stale_runs"]

STALE_TAG = "mrihisto.stale"


def mark_stale_runs(
    experiment_names: Iterable[str],
    tags: Mapping[str, str],
    keep: Iterable[str] = (),
    client: MlflowClient | None = None,
) -> list[str]:
    """Set RUNNING runs of the experiments that carry ``tags`` to KILLED; return their ids.

    Args:
        experiment_names: MLflow experiments of this project (unknown names are skipped).
        tags: tags a run must carry to be this run's concern (the output root): runs of
            other roots (another user, another environment) may be live, and are kept.
        keep: run ids that are live (the run that is starting and its parents).
        client: the tracking client (default: the current tracking URI's).
    """
    client = client or MlflowClient()
    ids = [
        e.experiment_id
        for name in experiment_names
        if (e := client.get_experiment_by_name(name)) is not None
    ]
    if not ids:
        return []
    live = set(keep)
    marked = []
    note = (
        "RUNNING when a new kedro run took the project's lock at "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}: its process had died (killed or crashed)"
    )
    where = " and ".join(
        ["attributes.status = 'RUNNING'"]
        + [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
    )
    for run in client.search_runs(ids, filter_string=where):
        if run.info.run_id in live:
            continue
        client.set_tag(run.info.run_id, STALE_TAG, note)
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        marked.append(run.info.run_id)
    return marked
