"""RunSummaryHooks: a finished run names its results, its flags and how to browse them; the
catalog's per-dataset load/save lines are DEBUG records (issue 19)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.text import TextDataset

from mrihisto_kedro.hooks import (
    CatalogIOAtDebug,
    KnownWarnings,
    RunSummaryHooks,
    install_log_filters,
)


def _table(flag: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "experiment": ["tiles_256", "whole_slide_4096"],
            "split": ["test", "test"],
            "column": ["tiles_256 / test", "whole_slide_4096 / test"],
            "flag": ["", flag],
        }
    )


def _project(tmp_path: Path) -> tuple[DataCatalog, Pipeline]:
    reporting = tmp_path / "data" / "08_reporting"
    catalog = DataCatalog(
        {
            "metrics_table": CSVDataset(filepath=str(reporting / "metrics_table.csv")),
            "metrics_markdown": TextDataset(filepath=str(reporting / "metrics_table.md")),
            "tiles": CSVDataset(filepath=str(tmp_path / "data" / "05_model_input" / "t.csv")),
            "scratch": MemoryDataset(),
        }
    )
    flag = "degenerate: output spread 0.02 of the real images' (min 0.25)"
    pipeline = Pipeline(
        [
            node(lambda: _table(flag), None, "metrics_table", name="table"),
            node(lambda t: "# Table 1", "metrics_table", "metrics_markdown", name="md"),
            node(lambda: pd.DataFrame({"a": [1]}), None, "tiles", name="tiles"),
            node(lambda: 1, None, "scratch", name="scratch"),
        ]
    )
    for n in pipeline.nodes:  # what the runner would have written
        catalog.save(n.outputs[0], n.run({i: catalog.load(i) for i in n.inputs})[n.outputs[0]])
    return catalog, pipeline


def test_the_summary_names_the_reporting_outputs_flags_and_commands(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog, pipeline = _project(tmp_path)
    hooks = RunSummaryHooks()
    hooks.after_context_created(SimpleNamespace(project_path=tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        experiment_id = mlflow.MlflowClient().create_experiment("summary")  # not a cached one
        with mlflow.start_run(experiment_id=experiment_id) as run:  # as kedro-mlflow's run,
            experiment = run.info.experiment_id  # ended before the hook runs
        with caplog.at_level(logging.INFO, logger="mrihisto_kedro.hooks"):
            hooks.after_pipeline_run({"pipeline_names": ["evaluation"]}, pipeline, catalog)
    finally:
        mlflow.set_tracking_uri(None)
    lines = [r.getMessage() for r in caplog.records if r.name == "mrihisto_kedro.hooks"]
    assert lines[0] == "Run of pipeline 'evaluation' finished. Results:"
    assert "  data/08_reporting/  metrics_table.csv, metrics_table.md" in lines
    assert not any("05_model_input" in line or "scratch" in line for line in lines)
    assert "FLAGGED results (1): read them before the numbers" in lines
    assert any(
        line.startswith("  whole_slide_4096 / test [metrics_table]: degenerate") for line in lines
    )
    assert "Browse the pipeline: kedro viz run" in lines
    assert lines[-2] == (
        "Compare the runs:   mlflow server --workers 1 --host 127.0.0.1 --port 5000 "
        "--backend-store-uri sqlite:///mlflow.db"
    )
    assert lines[-1] == (
        f"                    then open http://127.0.0.1:5000/#/experiments/{experiment}/runs"
        "?workflowType=machine_learning&viewStateShareKey=trainings"
    )


def test_catalog_load_and_save_lines_are_debug_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install_log_filters()
    install_log_filters()
    target = logging.getLogger("kedro.io.data_catalog")
    assert sum(isinstance(f, CatalogIOAtDebug) for f in target.filters) == 1
    catalog = DataCatalog({"x": MemoryDataset()})
    with caplog.at_level(logging.INFO):
        catalog.save("x", 1)
        catalog.load("x")
    assert not [r for r in caplog.records if r.name == "kedro.io.data_catalog"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="kedro.io.data_catalog"):
        catalog.save("x", 2)
        catalog.load("x")
    io = [r for r in caplog.records if r.name == "kedro.io.data_catalog"]
    assert [r.levelname for r in io] == ["DEBUG", "DEBUG"]
    assert [r.getMessage() for r in io] == [
        "Saving data to x (MemoryDataset)...",
        "Loading data from x (MemoryDataset)...",
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO):  # other catalog records keep their level
        catalog["x"] = MemoryDataset()
    assert [r.levelname for r in caplog.records if r.name == "kedro.io.data_catalog"] == ["WARNING"]


def _logged_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ``py.warnings`` messages of defining an untyped MLflow model and one other warning."""
    import warnings

    import mlflow.pyfunc

    caplog.clear()
    warnings.onceregistry.clear()  # MLflow warns "once" per process
    logging.captureWarnings(False)  # an earlier Kedro session may have left it half on
    logging.captureWarnings(True)
    try:
        with caplog.at_level(logging.WARNING, logger="py.warnings"), warnings.catch_warnings():
            warnings.simplefilter("always")

            class Untyped(mlflow.pyfunc.PythonModel):  # MLflow warns at class creation
                def predict(self, context, model_input):  # type: ignore[no-untyped-def]
                    return model_input

            warnings.warn("a warning of the project's own", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    return [r.getMessage() for r in caplog.records if r.name == "py.warnings"]


def test_known_third_party_warnings_leave_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """MLflow's advice is raised under its own ``simplefilter("once")``: only the log filter
    can keep it out of a run's console; any other warning still reaches the log."""
    target = logging.getLogger("py.warnings")
    install_log_filters()
    installed = [f for f in target.filters if isinstance(f, KnownWarnings)]
    assert len(installed) == 1
    target.removeFilter(installed[0])
    try:
        unfiltered = _logged_warnings(caplog)
    finally:
        target.addFilter(installed[0])
    assert any("Add type hints to the `predict`" in m for m in unfiltered)
    filtered = _logged_warnings(caplog)
    assert len(filtered) == 1 and "a warning of the project's own" in filtered[0]
