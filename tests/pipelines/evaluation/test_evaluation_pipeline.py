"""A slice of the evaluation pipeline with Kedro's ``SequentialRunner``: one experiment's
namespace (``tiles_256``: evaluate and synthesise) and the tables after it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from evaluation_inputs import FAST_EVALUATION, tiny_tileset
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from matplotlib.figure import Figure

from mrihisto_kedro.evaluation.table import TABLE_COLUMNS
from mrihisto_kedro.experiments import Table, by_name, experiments
from mrihisto_kedro.pipelines.evaluation.pipeline import (
    EVALUATION_OUTPUTS,
    create_pipeline,
    evaluation_pipeline,
    tables_pipeline,
)

pytestmark = pytest.mark.usefixtures("close_figures")


def _unet_rows() -> pd.DataFrame:
    """``unet_baseline``'s rows as its own evaluation would have written them."""
    rows = [
        {
            "experiment": "unet_baseline",
            "split": split,
            "comparison": "generated_vs_histology",
            "metric": metric,
            "value": 0.5,
            "n_tiles": 8,
            "n_slides": 2,
        }
        for split in ("train", "test")
        for metric in ("MI", "SSIM", "L1")
    ]
    return pd.DataFrame(rows).reindex(columns=list(TABLE_COLUMNS))


def test_one_experiments_evaluation_then_the_tables(
    generator: dict[str, Any],
    write_slide: Callable[..., Path],
    tissue_rgb: Callable[..., np.ndarray],
    mri_slice_image: Callable[..., Any],
    slide_loaders: Callable[..., dict[str, Any]],
    memory_loaders: Callable[..., dict[str, Any]],
    project_catalog: Callable[..., DataCatalog],
    run_pipeline: Callable[[Pipeline, DataCatalog], DataCatalog],
) -> None:
    pipeline = evaluation_pipeline(by_name("tiles_256")) + tables_pipeline()
    assert {n.name for n in pipeline.nodes} == {
        "tiles_256.evaluate",
        "tiles_256.synthesise_slides",
        "combine_tables",
    }
    others = {  # every other experiment of Table 1: unet_baseline measured, the rest not run
        f"{e.name}.evaluation_metrics": _unet_rows()
        if e.name == "unet_baseline"
        else pd.DataFrame(columns=list(TABLE_COLUMNS))
        for e in experiments(table=Table.METRICS)
        if e.name != "tiles_256"
    }
    slide = write_slide("p1.tiff", tissue_rgb(40, 48), 10.0, downsample=4)
    catalog = project_catalog(
        [],
        **{
            "tiles_256.tileset": tiny_tileset(scale=2.0),
            "tiles_256.generator": generator,
            "tiles_256.training_summary": pd.DataFrame(),
            "params:tiles_256.evaluation": FAST_EVALUATION,
            "pairs_with_splits": pd.DataFrame({"pair_id": ["p1"], "split": ["test"]}),
            "aligned_mri": memory_loaders({"p1": mri_slice_image(40, 48, 0.01)}),
            "downsampled_slides": slide_loaders({"p1": slide}),
            "params:synthesis": {"device": "cpu", "seam_random_lines": 16},
            **others,
        },
    )
    assert pipeline.inputs() <= set(catalog.keys())
    run_pipeline(pipeline, catalog)

    metrics = catalog.load("metrics_table")  # the runner released the rows it consumed
    assert set(metrics["experiment"]) == {"tiles_256", "unet_baseline"}
    rows = metrics[metrics["experiment"] == "tiles_256"]
    assert set(rows["split"]) == {"train", "test"} and rows["model"].str.len().min() > 0
    assert set(catalog.load("tiles_256.evaluation_tiles")["tile_id"]) == set(
        tiny_tileset().manifest["tile_id"]
    )
    assert isinstance(catalog.load("tiles_256.evaluation_figure"), Figure)
    assert list(catalog.load("tiles_256.synthetic_slides")) == ["p1"]
    assert catalog.load("tiles_256.seam_report")["width_px"].tolist() == [96]
    assert len(metrics) == len(rows) + len(_unet_rows())
    baseline = catalog.load("baseline_table")
    assert set(baseline["experiment"]) == {"tiles_256", "unet_baseline"}
    assert set(baseline["metric"]) == {"MI", "SSIM"}
    assert "| metric | comparison | tiles_256 / train" in catalog.load("metrics_table_md")
    assert catalog.load("msi_table").empty


def test_every_experiment_of_the_default_run_is_evaluated_in_its_namespace() -> None:
    """One ``evaluate`` node per registered experiment, named as the registry says; the
    tables read every Table 1 experiment's rows."""
    pipeline = create_pipeline()
    names = {n.name for n in pipeline.nodes}
    for experiment in experiments():
        assert experiment.evaluate_node in names
        assert f"{experiment.name}.{EVALUATION_OUTPUTS[1]}" in pipeline.all_outputs()
        synthesised = experiment.evaluate_node.replace("evaluate", "synthesise_slides")
        assert (synthesised in names) is experiment.synthesised
    combine = next(n for n in pipeline.nodes if n.name == "combine_tables")
    assert combine.inputs == [
        f"{e.name}.evaluation_metrics" for e in experiments(table=Table.METRICS)
    ]
