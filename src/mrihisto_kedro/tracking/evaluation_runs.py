"""An experiment's evaluation attached to the MLflow run that trained the measured model.

The evaluation pipeline runs after training, outside its run: the metric table, the measured
model's name, one metric per finite table value and the degenerate flag are written into the
training run found by its id (``run_id`` of the training summary), through an
:class:`~mlflow.tracking.MlflowClient` on the current tracking URI (kedro-mlflow sets it).

``entry`` (``"msi_unet_whole."``) prefixes what an evaluation of *another* experiment's model
logs (``msi_unet_whole`` measures ``msi_unet``'s generator on whole views), so that it does not
replace that experiment's own evaluation:

- artifacts ``evaluation/[<entry>/]metrics_table.md`` and ``.csv``;
- tags ``mrihisto.<entry>evaluated_model`` and ``mrihisto.<entry>degenerate``;
- metrics ``eval.<entry><split>.<comparison>.<metric>``.

A run id the tracking store does not know (``mlflow.db`` deleted since training) is a warning,
not an error: the tables on disk are the result.
"""

from __future__ import annotations

import logging
import math

import mlflow
import pandas as pd

__all__ = ["log_evaluation_table", "tag_degenerate"]

logger = logging.getLogger(__name__)

#: MLflow's limit on a tag value
_TAG_LIMIT = 5000


def log_evaluation_table(
    run_id: str | None, table: pd.DataFrame, markdown: str, entry: str = ""
) -> bool:
    """Attach an experiment's metric table to its training run (when one is known).

    Args:
        run_id: the training run (``None``: nothing is logged).
        table: the experiment's rows (``split, comparison, metric, value``, ``model``).
        markdown: the table rendered.
        entry: ``""``, or ``"<experiment>."`` for an evaluation of another experiment's model.

    Returns:
        Whether the run was found and the table logged.
    """
    if run_id is None:
        return False
    client = mlflow.tracking.MlflowClient()
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        logger.warning("training run %s is not in the tracking store; table not logged", run_id)
        return False
    folder = f"evaluation/{entry.rstrip('.')}" if entry else "evaluation"
    client.log_text(run_id, markdown, f"{folder}/metrics_table.md")
    client.log_text(run_id, table.to_csv(index=False), f"{folder}/metrics_table.csv")
    if "model" in table.columns and len(table):
        client.set_tag(run_id, f"mrihisto.{entry}evaluated_model", str(table["model"].iloc[0]))
    for row in table.itertuples():
        if isinstance(row.value, float) and math.isfinite(row.value):
            key = f"eval.{entry}{row.split}.{row.comparison}.{row.metric}"
            client.log_metric(run_id, key, float(row.value))
    return True


def tag_degenerate(run_id: str | None, reason: str, experiment: str, entry: str = "") -> None:
    """Tag the training run ``mrihisto.<entry>degenerate`` with why the experiment's numbers
    are not a result.

    Args:
        run_id: the training run (``None``: nothing is tagged).
        reason: ``"<split>: <reason>; ..."`` (``""``: not flagged, nothing is tagged); cut to
            MLflow's 5,000 characters.
        experiment: named in the warning when the run is not in the tracking store.
        entry: as :func:`log_evaluation_table`.
    """
    if not reason or run_id is None:
        return
    try:
        mlflow.tracking.MlflowClient().set_tag(
            run_id, f"mrihisto.{entry}degenerate", reason[:_TAG_LIMIT]
        )
    except mlflow.exceptions.MlflowException:
        logger.warning("the training run of %s is not in the tracking store", experiment)
