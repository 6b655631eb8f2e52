"""Tables measured on a model retrained since: found, marked, unmarked (library and hook)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from kedro.io import DataCatalog
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.text import TextDataset

from mrihisto_kedro.evaluation.staleness import (
    STALE_MARK,
    mark_stale,
    measured_digests,
    rebuild_command,
    stale_experiments,
)
from mrihisto_kedro.evaluation.table import render_markdown
from mrihisto_kedro.hooks import StaleTableHooks

OLD, NEW = "0123456789abcdef", "fedcba9876543210"


def _table(models: dict[str, str]) -> pd.DataFrame:
    rows = []
    for experiment, model in models.items():
        for split in ("train", "test"):
            rows.append(
                {
                    "experiment": experiment,
                    "split": split,
                    "comparison": "generated_vs_histology",
                    "metric": "L1",
                    "value": 0.1,
                    "ci_low": 0.09,
                    "ci_high": 0.11,
                    "n_tiles": 8,
                    "n_slides": 2,
                    "note": "",
                    "trained_with": "cpu, fp32",
                    "flag": "",
                    "model": model,
                }
            )
    return pd.DataFrame(rows)


def test_stale_experiments_compare_the_measured_and_the_current_digest() -> None:
    table = _table(
        {
            "tiles_256": f"generator {OLD}, MLflow run abc",
            "tiles_1024": f"generator {OLD}",
            "unet_baseline": "",  # not recorded: not judged
        }
    )
    assert measured_digests(table) == {"tiles_256": OLD, "tiles_1024": OLD}
    current = {"tiles_256": NEW, "tiles_1024": OLD, "unet_baseline": NEW}
    assert stale_experiments(table, current) == {
        "tiles_256": f"measured generator {OLD}, the current one is {NEW}"
    }
    assert stale_experiments(table, {}) == {}
    assert rebuild_command(["a", "b"]) == (
        "kedro run --pipeline=evaluation --from-nodes=a.evaluate,b.evaluate"
    )


def test_mark_stale_inserts_replaces_and_removes_one_notice() -> None:
    markdown = render_markdown(_table({"tiles_256": f"generator {OLD}"}), "Table 1")
    marked = mark_stale(markdown, {"tiles_256": "measured generator x, the current one is y"})
    lines = marked.splitlines()
    assert lines[0] == "# Table 1" and lines[2].startswith(STALE_MARK)
    assert "tiles_256" in lines[2] and "--from-nodes=tiles_256.evaluate" in lines[2]
    again = mark_stale(marked, {"tiles_1024": "r"})
    notice = [line for line in again.splitlines() if line.startswith(STALE_MARK)]
    assert len(notice) == 1 and "tiles_1024" in notice[0] and "tiles_256" not in notice[0]
    assert mark_stale(again, {}) == markdown
    assert mark_stale(markdown, {}) == markdown


def _catalog(root: Path) -> DataCatalog:
    reporting = root / "08_reporting"
    return DataCatalog(
        datasets={
            "metrics_table": CSVDataset(filepath=str(reporting / "metrics_table.csv")),
            "metrics_table_md": TextDataset(filepath=str(reporting / "metrics_table.md")),
            "tiles_256.training_summary": CSVDataset(
                filepath=str(reporting / "tiles_256" / "training_summary.csv")
            ),
        }
    )


def test_the_hook_marks_a_retrained_experiment_and_unmarks_it_once_re_measured(
    tmp_path: Path,
) -> None:
    catalog = _catalog(tmp_path)
    table = _table({"tiles_256": f"generator {OLD}, MLflow run abc"})
    catalog.save("metrics_table", table)
    markdown = render_markdown(table, "Table 1")
    catalog.save("metrics_table_md", markdown)
    hooks = StaleTableHooks()
    # no training summary with a digest yet: nothing to judge, the file is untouched
    hooks.after_pipeline_run(catalog=catalog)
    assert catalog.load("metrics_table_md") == markdown
    # a retrain wrote a new digest: marked (also after a failed run)
    catalog.save("tiles_256.training_summary", pd.DataFrame([{"generator": NEW}]))
    hooks.on_pipeline_error(catalog=catalog)
    text = catalog.load("metrics_table_md")
    assert STALE_MARK in text and f"measured generator {OLD}, the current one is {NEW}" in text
    assert not list((tmp_path / "08_reporting").glob(".*.tmp"))  # written atomically
    # the evaluation re-measured it: the table names the new digest, the notice goes
    catalog.save("metrics_table", _table({"tiles_256": f"generator {NEW}, MLflow run def"}))
    hooks.after_pipeline_run(catalog=catalog)
    assert catalog.load("metrics_table_md") == markdown
    # tables that were never written are skipped without error
    hooks.after_pipeline_run(catalog=_catalog(tmp_path / "elsewhere"))
