"""The evaluation pipeline's nodes, called directly on tiny in-memory inputs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from evaluation_inputs import FAST_EVALUATION, tiny_tileset, training_summary
from matplotlib.figure import Figure

from mrihisto_kedro.evaluation.table import TABLE_COLUMNS
from mrihisto_kedro.imaging.downsample import DownsampleRecordError
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.training import generator_digest
from mrihisto_kedro.params import ParameterError
from mrihisto_kedro.pipelines.evaluation.nodes import (
    combine_tables,
    evaluate_experiment,
    synthesise_slides,
    whole_design_tables,
)

pytestmark = pytest.mark.usefixtures("close_figures")


def _new_run(client: mlflow.tracking.MlflowClient, name: str) -> str:
    """A finished training run ``name`` in the store; its id."""
    experiment = client.get_experiment_by_name("training") or client.get_experiment(
        client.create_experiment("training")
    )
    run = client.create_run(experiment.experiment_id, run_name=name)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _artifacts(client: mlflow.tracking.MlflowClient, run_id: str, folder: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, folder)}


# --- evaluate_experiment -------------------------------------------------------------------


def test_evaluate_experiment_measures_each_split_and_logs_to_its_training_run(
    tileset: TileSet, generator: dict[str, Any], mlflow_store: mlflow.tracking.MlflowClient
) -> None:
    run_id = _new_run(mlflow_store, "tiles_256")
    summary = training_summary("tiles_256", run_id)
    per_tile, table, figure = evaluate_experiment(
        tileset, generator, summary, FAST_EVALUATION, "tiles_256"
    )
    # every tile of both splits, every comparison; L1/PSNR/SSIM against the target only
    assert set(per_tile["split"]) == {"train", "test"}
    assert per_tile["tile_id"].nunique() == 12
    l1 = per_tile[per_tile["metric"] == "L1"]
    assert set(l1["comparison"]) == {"generated_vs_histology"} and len(l1) == 12
    mi = per_tile[per_tile["metric"] == "MI"]
    assert set(mi["comparison"]) == {
        "generated_vs_histology",
        "generated_vs_mri",
        "histology_vs_mri",
    }
    # the table: the experiment's rows, with the model, its views and its numerics
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert set(table["experiment"]) == {"tiles_256"}
    assert not set(table["metric"]) & {"FID", "KID"}  # set_metrics: False
    by_split = table.groupby("split")[["n_tiles", "n_slides"]].max()
    assert by_split.loc["train"].tolist() == [8, 2] and by_split.loc["test"].tolist() == [4, 1]
    model = f"generator {generator_digest(generator)}, MLflow run {run_id}"
    assert set(table["model"]) == {model}
    assert set(table["views"]) == {"32 px at 270 µm/px (8.64 mm a side)"}
    assert set(table["trained_with"]) == {"cpu fp32"}
    mean_l1 = l1[l1["split"] == "test"]["value"].mean()
    row = table[(table["split"] == "test") & (table["metric"] == "L1")].iloc[0]
    assert row["value"] == pytest.approx(mean_l1)
    # a panel row per figure tile (3 of each split), input | real | generated
    assert isinstance(figure, Figure) and len(figure.axes) == 6 * 3
    # MLflow: the table, the measured model and every finite value, on the training run
    logged = mlflow_store.get_run(run_id).data
    assert _artifacts(mlflow_store, run_id, "evaluation") == {
        "evaluation/metrics_table.md",
        "evaluation/metrics_table.csv",
    }
    assert logged.tags["mrihisto.evaluated_model"] == model
    assert logged.metrics["eval.test.generated_vs_histology.L1"] == pytest.approx(row["value"])
    finite = table[np.isfinite(table["value"].astype(float))]
    assert {k for k in logged.metrics if k.startswith("eval.")} == {
        f"eval.{r.split}.{r.comparison}.{r.metric}" for r in finite.itertuples()
    }
    flagged = (table["flag"] != "").any()
    assert ("mrihisto.degenerate" in logged.tags) == flagged


def test_an_evaluation_of_another_experiments_model_keeps_its_own_entry(
    tileset: TileSet, generator: dict[str, Any], mlflow_store: mlflow.tracking.MlflowClient
) -> None:
    """``msi_unet_whole`` measures ``msi_unet``'s generator: it logs under its own name."""
    run_id = _new_run(mlflow_store, "msi_unet")
    summary = training_summary("msi_unet", run_id)
    test_only = {**FAST_EVALUATION, "tiles": {"device": "cpu", "splits": ["test"]}}
    evaluate_experiment(tileset, generator, summary, test_only, "msi_unet")
    _, whole, _ = evaluate_experiment(tileset, generator, summary, test_only, "msi_unet_whole")
    assert _artifacts(mlflow_store, run_id, "evaluation/msi_unet_whole") == {
        "evaluation/msi_unet_whole/metrics_table.md",
        "evaluation/msi_unet_whole/metrics_table.csv",
    }
    assert "evaluation/metrics_table.md" in _artifacts(mlflow_store, run_id, "evaluation")
    data = mlflow_store.get_run(run_id).data
    assert "mrihisto.evaluated_model" in data.tags
    assert "mrihisto.msi_unet_whole.evaluated_model" in data.tags
    ssim = whole[whole["metric"] == "SSIM"].iloc[0]["value"]
    key = "eval.msi_unet_whole.test.generated_vs_histology.SSIM"
    assert data.metrics[key] == pytest.approx(ssim)
    assert "eval.test.generated_vs_histology.SSIM" in data.metrics  # its own, not replaced


def test_a_collapsed_generator_is_flagged_in_the_table_the_log_and_its_run(
    tileset: TileSet,
    constant_generator: dict[str, Any],
    mlflow_store: mlflow.tracking.MlflowClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_id = _new_run(mlflow_store, "flat")
    with caplog.at_level(logging.WARNING):
        _, table, _ = evaluate_experiment(
            tileset, constant_generator, training_summary("flat", run_id), FAST_EVALUATION, "flat"
        )
    assert table["flag"].str.startswith("degenerate output: ").all()
    assert caplog.text.count("flat is flagged in Table 1: train: degenerate output") == 1
    tag = mlflow_store.get_run(run_id).data.tags["mrihisto.degenerate"]
    assert tag.startswith("train: degenerate output") and "; test: degenerate output" in tag


def test_a_training_run_missing_from_the_store_is_a_warning_not_an_error(
    tileset: TileSet,
    constant_generator: dict[str, Any],
    mlflow_store: mlflow.tracking.MlflowClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``mlflow.db`` deleted since training: the tables are still written."""
    gone = "0" * 32
    with caplog.at_level(logging.WARNING):
        _, table, _ = evaluate_experiment(
            tileset, constant_generator, training_summary("flat", gone), FAST_EVALUATION, "flat"
        )
    assert f"training run {gone} is not in the tracking store; table not logged" in caplog.text
    assert "the training run of flat is not in the tracking store" in caplog.text
    assert set(table["model"]) == {
        f"generator {generator_digest(constant_generator)}, MLflow run {gone}"
    }


def test_evaluate_experiment_without_a_training_summary(
    tileset: TileSet, generator: dict[str, Any]
) -> None:
    """No summary (a model trained elsewhere): the table names the weights only."""
    _, table, _ = evaluate_experiment(
        tileset, generator, pd.DataFrame(), FAST_EVALUATION, "elsewhere"
    )
    assert set(table["model"]) == {f"generator {generator_digest(generator)}"}
    assert set(table["trained_with"]) == {""}


def test_evaluate_experiment_rejects_bad_parameters_and_empty_splits(
    tileset: TileSet, generator: dict[str, Any]
) -> None:
    with pytest.raises(
        ParameterError, match=r"'tiles_256\.evaluation' has unknown key\(s\) 'n_bootstrap'"
    ):
        evaluate_experiment(tileset, generator, pd.DataFrame(), {"n_bootstrap": 5}, "tiles_256")
    with pytest.raises(
        ParameterError, match=r"'tiles_256\.evaluation\.tiles\.mi_bins' must be >= 2, got 1"
    ):
        evaluate_experiment(
            tileset, generator, pd.DataFrame(), {"tiles": {"mi_bins": 1}}, "tiles_256"
        )
    validation = {**FAST_EVALUATION, "tiles": {"device": "cpu", "splits": ["validation"]}}
    with pytest.raises(ValueError, match=r"tiles_256: none of the splits \['validation'\]"):
        evaluate_experiment(tileset, generator, pd.DataFrame(), validation, "tiles_256")


# --- synthesise_slides ---------------------------------------------------------------------

#: whole-slide synthesis that runs in seconds
FAST_SYNTHESIS: dict[str, Any] = {"device": "cpu", "seam_random_lines": 16}


@pytest.fixture
def slide_inputs(
    write_slide: Callable[..., Path],
    tissue_rgb: Callable[..., np.ndarray],
    mri_slice_image: Callable[..., Any],
    slide_loaders: Callable[..., dict[str, Any]],
    memory_loaders: Callable[..., dict[str, Any]],
) -> dict[str, Any]:
    """Two pairs (``p0`` train, ``p1`` test): downsampled slides of 48 x 40 px recording a
    factor of 4, and aligned MRI slices on their grid (10 µm per pixel)."""
    pairs = pd.DataFrame({"pair_id": ["p1", "p0"], "split": ["test", "train"]})
    slides = {
        pair: write_slide(f"{pair}.tiff", tissue_rgb(40, 48, phase), 10.0, downsample=4)
        for pair, phase in (("p0", 0.0), ("p1", 1.0))
    }
    mri = {pair: mri_slice_image(rows=40, cols=48, spacing_mm=0.01) for pair in slides}
    return {
        "pairs": pairs,
        "aligned_mri": memory_loaders(mri),
        "downsampled_slides": slide_loaders(slides),
    }


def test_synthesise_slides_of_the_test_pairs(
    generator: dict[str, Any], slide_inputs: dict[str, Any]
) -> None:
    """Tiles at scale 2 (level-0 pixels per model pixel) on slides downsampled 4x: the model
    sees 2 pixels per grid pixel, so the synthetic slide is 96 x 80 px at 5 µm per pixel."""
    jobs, report, figure = synthesise_slides(
        generator,
        tiny_tileset(scale=2.0),
        slide_inputs["pairs"],
        slide_inputs["aligned_mri"],
        slide_inputs["downsampled_slides"],
        FAST_SYNTHESIS,
        "tiles_256",
    )
    assert list(jobs) == ["p1"]  # splits: test (the default)
    job = jobs["p1"]
    assert job.mri.shape == (1, 80, 96) and job.mpp == pytest.approx(5.0)
    assert job.description == {"Experiment": "tiles_256", "Pair": "p1"}
    assert job.options.window == (32, 32) and job.options.overlap == (16, 16)
    row = report.iloc[0]
    assert report.columns.tolist()[:3] == ["experiment", "pair_id", "split"]
    assert (row["pair_id"], row["split"], row["width_px"], row["height_px"]) == (
        "p1",
        "test",
        96,
        80,
    )
    assert (row["window_px"], row["overlap_px"], row["weights"]) == (32, 16, "hann")
    assert row["mpp"] == pytest.approx(5.0)
    assert row["seam_plain"] > 0 and row["seam_blended"] > 0
    assert isinstance(figure, Figure) and len(figure.axes) == 4
    assert figure.texts[0].get_text().startswith("tiles_256: seam score plain ")


def test_synthesise_slides_in_pair_order_reading_the_factor_from_each_slide(
    generator: dict[str, Any], slide_inputs: dict[str, Any]
) -> None:
    both = {**FAST_SYNTHESIS, "splits": ["train", "test"], "window": 16}
    jobs, report, figure = synthesise_slides(
        generator,
        tiny_tileset(scale=4.0),
        slide_inputs["pairs"],
        slide_inputs["aligned_mri"],
        slide_inputs["downsampled_slides"],
        both,
        "tiles_256",
    )
    assert list(jobs) == ["p0", "p1"] and report["pair_id"].tolist() == ["p0", "p1"]
    assert report["width_px"].tolist() == [48, 48]  # 4x downsampled, tiles at 4x: the grid
    assert report["mpp"].tolist() == pytest.approx([10.0, 10.0])
    assert report["window_px"].tolist() == [16, 16]
    assert len(figure.axes) == 2 * 4
    assert slide_inputs["downsampled_slides"].calls == {"p0": 1, "p1": 1}


def test_synthesise_slides_says_what_is_missing(
    generator: dict[str, Any],
    slide_inputs: dict[str, Any],
    write_slide: Callable[..., Path],
    tissue_rgb: Callable[..., np.ndarray],
    slide_loaders: Callable[..., dict[str, Any]],
) -> None:
    def run(tileset: TileSet, **changed: Any) -> None:
        inputs = {**slide_inputs, **changed}
        synthesise_slides(
            generator,
            tileset,
            inputs["pairs"],
            inputs["aligned_mri"],
            inputs["downsampled_slides"],
            inputs.get("synthesis", FAST_SYNTHESIS),
            "tiles_256",
        )

    mixed = tiny_tileset(scale=2.0)
    mixed.manifest.loc[0, "scale"] = 3.0
    with pytest.raises(ValueError, match=r"tiles_256: tiles of several scales \[2\.0, 3\.0\]"):
        run(mixed)
    with pytest.raises(KeyError, match="tiles_256: no aligned MRI or downsampled slide for 'p1'"):
        run(tiny_tileset(scale=2.0), aligned_mri={})
    with pytest.raises(ValueError, match=r"tiles_256: no pair in splits \['validation'\]"):
        run(tiny_tileset(scale=2.0), synthesis={**FAST_SYNTHESIS, "splits": ["validation"]})
    unrecorded = write_slide("p1_raw.tiff", tissue_rgb(40, 48), 10.0)
    with pytest.raises(DownsampleRecordError, match="records no downsampling factor"):
        run(tiny_tileset(scale=2.0), downsampled_slides=slide_loaders({"p1": unrecorded}))


# --- combine_tables and whole_design_tables ------------------------------------------------


def _rows(experiment: str, values: dict[tuple[str, str], float]) -> pd.DataFrame:
    """Table rows of generated vs histology: ``{(split, metric): value}``."""
    rows = [
        {
            "experiment": experiment,
            "split": split,
            "comparison": "generated_vs_histology",
            "metric": metric,
            "value": value,
            "n_tiles": 4,
            "n_slides": 2,
        }
        for (split, metric), value in values.items()
    ]
    return pd.DataFrame(rows).reindex(columns=list(TABLE_COLUMNS))


def _mri_rows(experiment: str, offset: float) -> pd.DataFrame:
    return _rows(
        experiment,
        {
            (split, metric): value + offset
            for split in ("train", "test")
            for metric, value in (("MI", 0.5), ("SSIM", 0.3), ("L1", 0.2))
        },
    )


def test_combine_tables_builds_table_1_and_the_baseline_table() -> None:
    tiles, unet = _mri_rows("tiles_256", 0.0), _mri_rows("unet_baseline", 0.1)
    metrics, metrics_md, baseline, baseline_md, msi, msi_md = combine_tables(tiles, unet)
    assert list(metrics.columns) == list(TABLE_COLUMNS) and len(metrics) == 12
    assert metrics_md.startswith("# Table 1: generated vs real histology and vs MRI")
    assert "| tiles_256 / train | tiles_256 / test | unet_baseline / train |" in metrics_md
    assert len(baseline) == 8 and set(baseline["metric"]) == {"MI", "SSIM"}  # no L1
    assert baseline_md.startswith("# pix2pix vs U-Net regression (paper 003): MI and SSIM")
    assert msi.empty and "No experiment was evaluated." in msi_md  # no MSI experiment
    # one of the baseline table's experiments missing: an empty table, not half of one
    _, _, alone, alone_md, _, _ = combine_tables(tiles)
    assert alone.empty and "No experiment was evaluated." in alone_md


def test_combine_tables_builds_paper_003s_table_with_its_claim() -> None:
    def msi(experiment: str, mi: float) -> pd.DataFrame:
        return _rows(experiment, {("test", "MI"): mi, ("test", "SSIM"): 0.4, ("train", "MI"): 1})

    *_, table, markdown = combine_tables(
        msi("msi_to_he_black", 0.2), msi("msi_to_he_white", 0.25), msi("msi_unet", 0.3)
    )
    assert len(table) == 6 and set(table["split"]) == {"test"}
    assert "## Paper 003's claim and what was measured" in markdown
    assert "MI (higher is better) pix2pix 0.200 / 0.250 vs U-Net 0.300: the U-Net" in markdown


def test_whole_design_tables_compare_the_whole_view_models() -> None:
    pix2pix = _rows("msi_to_he_whole", {("test", "MI"): 0.4, ("test", "LPIPS"): 0.3})
    unet = _rows("msi_unet_whole", {("test", "MI"): 0.3, ("test", "LPIPS"): 0.5})
    table, markdown = whole_design_tables(pix2pix, unet)
    assert set(table["experiment"]) == {"msi_to_he_whole", "msi_unet_whole"}
    assert markdown.startswith("# Paper 003's own design: whole specimen views")
    assert "MI (higher is better) pix2pix 0.400 vs U-Net 0.300: pix2pix is better" in markdown
    assert "LPIPS (lower is better) pix2pix 0.300 vs U-Net 0.500: pix2pix is better" in markdown
