"""Runs a killed process left RUNNING are marked KILLED; live runs of other roots are kept."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mrihisto_kedro.hooks import ROOT_TAG
from mrihisto_kedro.tracking.mlflow_tracking import training_run
from mrihisto_kedro.tracking.stale_runs import STALE_TAG, mark_stale_runs


@pytest.fixture
def client(mlflow_client: MlflowClient) -> MlflowClient:
    return mlflow_client


def test_only_running_runs_of_this_root_are_marked(client: MlflowClient) -> None:
    exp = client.create_experiment("mrihisto_kedro")
    other_exp = client.create_experiment("someone_else")
    dead = client.create_run(exp, tags={ROOT_TAG: "/p/data"}).info.run_id
    live_elsewhere = client.create_run(exp, tags={ROOT_TAG: "/q/data"}).info.run_id
    done = client.create_run(exp, tags={ROOT_TAG: "/p/data"}).info.run_id
    client.set_terminated(done, "FINISHED")
    foreign = client.create_run(other_exp, tags={ROOT_TAG: "/p/data"}).info.run_id
    marked = mark_stale_runs(["mrihisto_kedro", "missing"], {ROOT_TAG: "/p/data"})
    assert marked == [dead]
    run = client.get_run(dead)
    assert run.info.status == "KILLED" and "its process had died" in run.data.tags[STALE_TAG]
    for run_id, status in ((live_elsewhere, "RUNNING"), (done, "FINISHED"), (foreign, "RUNNING")):
        assert client.get_run(run_id).info.status == status
    assert mark_stale_runs(["mrihisto_kedro"], {ROOT_TAG: "/p/data"}) == []  # idempotent


def test_training_runs_inherit_the_root_tag_and_a_resumed_run_continues(
    client: MlflowClient,
) -> None:
    mlflow.set_experiment("mrihisto_kedro")
    with mlflow.start_run(tags={ROOT_TAG: "/p/data"}) as pipeline_run:
        with training_run("tiles_256", {"model": {"lr": 0.0002}}, {"experiment": "t"}) as rid:
            pass
    assert client.get_run(rid).data.tags[ROOT_TAG] == "/p/data"
    with mlflow.start_run(tags={ROOT_TAG: "/p/data"}):
        params = {"model": {"lr": 0.0002}, "runtime": {"threads": 4}}
        with training_run("tiles_256", params, {"experiment": "t"}, run_id=rid) as again:
            pass
    assert again == rid
    run = client.get_run(rid)
    assert run.data.tags["resumed"] == "true" and run.data.params["model.lr"] == "0.0002"
    assert run.data.params["runtime.threads"] == "4"  # new keys are added
    assert run.data.tags["mlflow.parentRunId"] == pipeline_run.info.run_id
    with mlflow.start_run():  # a value that differs is a tag, not a failure
        with training_run("tiles_256", {"runtime": {"threads": 2}}, {}, run_id=rid):
            pass
    assert client.get_run(rid).data.tags["changed.runtime.threads"] == "2"
    # an id the store does not know starts a new run
    with mlflow.start_run():
        with training_run("tiles_256", {}, {}, run_id="0" * 32) as fresh:
            pass
    assert fresh != rid
