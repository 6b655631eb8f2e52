"""The MLflow experiment as a user opens it (issue 19): tagged for model training, described,
with a saved view of the columns that compare trainings; and, in headless Chromium over a
store written by the project's own tracking code (a tiny search of two trials and a final
training under a ``kedro run`` parent run), the runs table, a run's parameters and metric
charts, and the comparison of two runs.

The browser test takes about 15 s (the server starts in about 5 s); screenshots go to
``$MRIHISTO_SCREENSHOTS`` (default: the test's temporary folder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow_ui import differing_params, look, mlflow_server, require_chromium
from tiny_modelling import TINY_TRAINING, tiny_tileset

from mrihisto_kedro.nn.checkpoint_store import CheckpointStore
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.tracking.experiment_view import (
    EXPERIMENT_TAGS,
    KIND_TAG,
    NOTE_TAG,
    TRAININGS_COLUMNS,
    TRAININGS_VIEW,
    VIEW_TAG_PREFIX,
    prepare_experiment,
    runs_url,
)
from mrihisto_kedro.tracking.mlflow_tracking import total_epochs
from mrihisto_kedro.tracking.training_params import TrainingParams
from mrihisto_kedro.tracking.training_study import train_study

REPO_ROOT = Path(__file__).resolve().parents[2]
VIEW_TAG = VIEW_TAG_PREFIX + TRAININGS_VIEW


def test_an_existing_experiment_is_prepared_once_and_user_edits_stay(
    mlflow_client: mlflow.tracking.MlflowClient,
) -> None:
    experiment = mlflow_client.create_experiment("old")  # as a store from before this change
    assert sorted(prepare_experiment(experiment)) == sorted([KIND_TAG, NOTE_TAG, VIEW_TAG])
    tags = mlflow_client.get_experiment(experiment).tags
    assert tags[KIND_TAG] == "custom_model_development"
    assert tags[NOTE_TAG] == EXPERIMENT_TAGS[NOTE_TAG]

    view = json.loads(tags[VIEW_TAG])  # the envelope MLflow 3.17's "Views" menu reads
    assert view["name"] == "Trainings" and view["createdAt"] == view["updatedAt"] > 0
    state = json.loads(view["state"])
    assert state["selectedColumns"][:3] == [
        "tags.`experiment`",
        "params.`model_type`",
        "params.`total_epochs`",
    ]
    assert len(state["selectedColumns"]) == len(TRAININGS_COLUMNS)

    mlflow_client.set_experiment_tag(experiment, NOTE_TAG, "edited in the UI")
    assert prepare_experiment(experiment) == []
    assert mlflow_client.get_experiment(experiment).tags[NOTE_TAG] == "edited in the UI"


def test_kedro_mlflow_creates_the_experiment_with_the_same_tags_and_run_name() -> None:
    config = yaml.safe_load((REPO_ROOT / "conf" / "base" / "mlflow.yml").read_text())
    experiment = config["tracking"]["experiment"]
    assert experiment["create_experiment_kwargs"]["tags"] == EXPERIMENT_TAGS
    assert config["tracking"]["run"]["name"] == "kedro run"  # not `__default__`
    assert config["tracking"]["run"]["nested"] is True


def test_runs_url_states_the_workflow_and_the_view() -> None:
    assert runs_url("http://127.0.0.1:5000/", "3") == (
        "http://127.0.0.1:5000/#/experiments/3/runs"
        "?workflowType=machine_learning&viewStateShareKey=trainings"
    )
    assert runs_url("http://h:1", "3", view=None).endswith("/runs?workflowType=machine_learning")


def test_total_epochs_include_the_model_types_defaults() -> None:
    assert total_epochs({"model_type": "pix2pix", "model": {}}) == 200  # 100 + 100 decay
    assert total_epochs({"model_type": "pix2pix", "model": {"n_epochs": 15}}) == 115
    assert total_epochs({"model_type": "unet_regression", "model": {"n_epochs": 20}}) == 20
    assert total_epochs({"search_trials": 3, "trial_overrides": {}}) is None  # a search run


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A SQLite store holding what a ``kedro run`` of one experiment logs: a parent run
    ``kedro run``, under it a search (two one-epoch trials) and the final three-epoch training
    with sample grids, in an experiment created without tags (as before this change).
    Yields ``run name -> run id`` plus ``uri`` and ``experiment``."""
    import torch

    root = tmp_path_factory.mktemp("mlflow_ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    training = {
        **TINY_TRAINING,
        "model": {**TINY_TRAINING["model"], "n_epochs": 2, "n_epochs_decay": 1},
        "sample_every": 1,
        "search": {
            "n_trials": 2,
            "sampler": "random",
            "seed": 0,
            "space": {"lr": [0.0002, 0.002], "lambda_L1": [10.0, 100.0]},
            "trial_overrides": {"n_epochs": 1, "n_epochs_decay": 0},
        },
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment(
            "mrihisto_kedro", artifact_location=(root / "artifacts").as_uri()
        )
        mlflow.set_experiment(experiment_id=experiment)
        with mlflow.start_run(run_name="kedro run", tags={"kedro_command": "kedro run"}):
            train_study(
                tiny_tileset(),
                parse_params(TrainingParams, training),
                CheckpointStore(root / "checkpoints" / "tiny"),
                "tiny",
            )
        runs = mlflow.search_runs([experiment])
        ids = dict(zip(runs["tags.mlflow.runName"], runs["run_id"], strict=True))
        yield {**ids, "uri": uri, "experiment": experiment}
    finally:
        torch.set_num_threads(threads)
        mlflow.set_tracking_uri(None)


def test_the_training_runs_log_total_epochs_once_and_prepare_the_experiment(
    tiny_store: dict[str, str],
) -> None:
    client = mlflow.tracking.MlflowClient(tiny_store["uri"])
    final = client.get_run(tiny_store["tiny"]).data.params
    assert final["total_epochs"] == "3" and final["model.n_epochs"] == "2"
    assert "n_epochs" not in final  # alone it read as the epochs trained (2 of 3)
    trial = client.get_run(tiny_store["tiny-trial-0"]).data.params
    assert trial["total_epochs"] == "1"
    assert "total_epochs" not in client.get_run(tiny_store["tiny-search"]).data.params
    tags = client.get_experiment(tiny_store["experiment"]).tags
    assert tags[KIND_TAG] == "custom_model_development" and VIEW_TAG in tags


def test_mlflow_ui_opens_on_the_runs_and_compares_two_runs(
    tiny_store: dict[str, str], tmp_path: Path
) -> None:
    require_chromium()
    shots = Path(os.environ.get("MRIHISTO_SCREENSHOTS", tmp_path))
    trials = [tiny_store["tiny-trial-0"], tiny_store["tiny-trial-1"]]
    with mlflow_server(tiny_store["uri"], tmp_path / "server.log") as base:
        seen = look(
            base, tiny_store["experiment"], tiny_store["tiny"], trials, "kedro run", shots, "tiny"
        )
    check_seen(seen, trials, tiny_store["uri"])
    assert {"kedro run", "tiny", "tiny-search", "tiny-trial-0", "tiny-trial-1"} <= set(
        seen.run_rows
    )
    assert seen.run_params["total_epochs"] == "3"


def check_seen(seen: object, compared: list[str], uri: str) -> None:
    """The assertions on what the browser showed (shared with the demo store's test)."""
    from mlflow_ui import Seen

    assert isinstance(seen, Seen)
    # MLflow 3.17 reads the workflow type, not the experiment's kind tag: a fresh browser
    # lands on the GenAI overview from the bare address, hence runs_url's workflowType
    assert "workflowType=genai" in seen.plain_url and "/overview" in seen.plain_url
    assert "/runs?" in seen.runs_url and "workflowType=machine_learning" in seen.runs_url
    # the view's columns (the grid renders only those in its width: the tag column is off
    # to the right behind the parameters)
    for column in ("metrics.`val_L1`", "metrics.`val_SSIM`", "params.`lr`", "params.`lambda_L1`"):
        assert column in seen.columns, (column, seen.columns)
    assert {"model_type", "total_epochs", "lr", "model.lr", "data.batch_size"} <= set(
        seen.run_params
    ), seen.run_params
    assert "G_L1" in seen.chart_titles, seen.chart_titles  # a per-epoch loss chart
    mlflow.set_tracking_uri(uri)
    try:
        differing = differing_params(compared)
    finally:
        mlflow.set_tracking_uri(None)
    assert differing and set(seen.diff_params) == differing, (seen.diff_params, differing)
    assert "model_type" in seen.all_params and "model_type" not in seen.diff_params
    assert all(len(set(values)) == 2 for values in seen.diff_params.values())
