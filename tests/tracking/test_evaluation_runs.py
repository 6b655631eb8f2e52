"""An evaluation is logged to the training run it measured, or to nothing."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from mrihisto_kedro.tracking.evaluation_runs import log_evaluation_table, tag_degenerate


@pytest.fixture
def client(mlflow_client: mlflow.tracking.MlflowClient) -> mlflow.tracking.MlflowClient:
    return mlflow_client


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "split": ["test", "test"],
            "comparison": ["generated_vs_histology"] * 2,
            "metric": ["MI", "FID"],
            "value": [0.5, float("nan")],
            "model": ["generator abc"] * 2,
        }
    )


def test_without_a_run_nothing_is_logged(client: mlflow.tracking.MlflowClient) -> None:
    assert log_evaluation_table(None, _table(), "# t\n") is False
    tag_degenerate(None, "train: degenerate output", "x")
    assert client.search_experiments()[0].name == "Default"  # the store stays empty
    assert client.search_runs([client.search_experiments()[0].experiment_id]) == []


def test_finite_values_become_metrics_and_a_long_reason_is_cut(
    client: mlflow.tracking.MlflowClient,
) -> None:
    run_id = client.create_run(client.create_experiment("training")).info.run_id
    assert log_evaluation_table(run_id, _table(), "# t\n", entry="other.") is True
    tag_degenerate(run_id, "x" * 6000, "other", entry="other.")
    tag_degenerate(run_id, "", "other")  # not flagged: no tag
    data = client.get_run(run_id).data
    assert data.metrics == {"eval.other.test.generated_vs_histology.MI": 0.5}  # no NaN FID
    assert data.tags["mrihisto.other.evaluated_model"] == "generator abc"
    assert data.tags["mrihisto.other.degenerate"] == "x" * 5000
    assert "mrihisto.degenerate" not in data.tags
    paths = {a.path for a in client.list_artifacts(run_id, "evaluation/other")}
    assert paths == {"evaluation/other/metrics_table.md", "evaluation/other/metrics_table.csv"}
