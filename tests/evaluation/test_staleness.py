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


def test_the_rebuild_command_names_nodes_of_the_pipeline_it_runs() -> None:
    """MSI entries are tagged ``msi_to_he`` (a tag, not a namespace); the whole-view entries
    live in ``msi_whole_specimen``; every node a command names exists in the pipeline it runs."""
    from mrihisto_kedro.experiments import by_name
    from mrihisto_kedro.pipeline_registry import register_pipelines

    registry = register_pipelines()
    for pipeline, entries in (
        ("evaluation", ["tiles_256", "msi_unet"]),
        ("msi_whole_specimen", ["msi_to_he_whole", "msi_unet_whole"]),
    ):
        nodes = {e: by_name(e).evaluate_node for e in entries}
        command = rebuild_command(entries, nodes, pipeline)
        assert command.startswith(f"kedro run --pipeline={pipeline} --from-nodes=")
        assert set(nodes.values()) <= {n.name for n in registry[pipeline].nodes}
    assert by_name("msi_unet").evaluate_node == "msi_unet.evaluate"
    # the whole-view entry measures msi_unet's model: its generator and training summary
    node = next(
        n for n in registry["msi_whole_specimen"].nodes if n.name == "msi_unet_whole.evaluate"
    )
    assert by_name("msi_unet_whole").model == "msi_unet"
    assert {"msi_unet.generator", "msi_unet.training_summary", "msi_to_he_whole.tileset"} <= set(
        node.inputs
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


def test_a_whole_view_entry_is_judged_by_the_model_it_measured(tmp_path: Path) -> None:
    """``mark_stale_tables`` (the after-run hook) on real CSV/text datasets: ``msi_unet_whole``
    measured ``msi_unet``'s generator, so a retrained ``msi_unet`` makes both columns stale."""
    from mrihisto_kedro.hooks import mark_stale_tables

    tiles = _table({"msi_unet": f"generator {OLD}"})
    whole = _table({"msi_to_he_whole": f"generator {NEW}", "msi_unet_whole": f"generator {OLD}"})
    catalog = DataCatalog(
        {
            "msi_table": CSVDataset(filepath=str(tmp_path / "msi_table.csv")),
            "msi_table_md": TextDataset(filepath=str(tmp_path / "msi_table.md")),
            "msi_whole_table": CSVDataset(filepath=str(tmp_path / "msi_whole_table.csv")),
            "msi_whole_table_md": TextDataset(filepath=str(tmp_path / "msi_whole_table.md")),
            "msi_unet.training_summary": CSVDataset(filepath=str(tmp_path / "unet.csv")),
            "msi_to_he_whole.training_summary": CSVDataset(filepath=str(tmp_path / "whole.csv")),
        }
    )
    for name, table in (("msi_table", tiles), ("msi_whole_table", whole)):
        catalog.save(name, table)
        catalog.save(f"{name}_md", render_markdown(table, "Paper 003"))
    catalog.save("msi_unet.training_summary", pd.DataFrame({"generator": [NEW]}))
    catalog.save("msi_to_he_whole.training_summary", pd.DataFrame({"generator": [NEW]}))
    found = mark_stale_tables(catalog)
    assert set(found["msi_table_md"]) == {"msi_unet"}
    assert set(found["msi_whole_table_md"]) == {"msi_unet_whole"}  # msi_to_he_whole is current
    assert (
        "`kedro run --pipeline=evaluation --from-nodes=msi_unet.evaluate`"
        in (tmp_path / "msi_table.md").read_text()
    )
    assert (
        "`kedro run --pipeline=msi_whole_specimen --from-nodes=msi_unet_whole.evaluate`"
        in (tmp_path / "msi_whole_table.md").read_text()
    )
    catalog.save("msi_unet.training_summary", pd.DataFrame({"generator": [OLD]}))
    assert mark_stale_tables(catalog) == {}
    assert "**STALE**" not in (tmp_path / "msi_whole_table.md").read_text()
