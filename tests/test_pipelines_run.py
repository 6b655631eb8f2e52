"""End to end: the default ``kedro run`` (demo + every pipeline) in a copy of the project.

It runs exactly what a user's ``kedro run`` runs, at the demo's default sizes (8 slides of
8000 x 6000 px), once per test session.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from demo_as_your_data import use_demo_as_your_data
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from project_copy import copy_project

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(project: Path, pipeline: str | None = None, params: dict | None = None) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params or {}) as session:
        session.run(pipeline_names=[pipeline] if pipeline else None)


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default run as a user types it (``kedro run`` in its own process, so nothing an
    earlier test left in this process, an MLflow run or Kedro's project settings, can change
    where it logs), on 2 torch threads (``OMP_NUM_THREADS``): the thread count changes float
    summation order, so the trained models' numbers (issue 13), and 2 is what a user's
    ``kedro run`` uses on the project's 2-core machines (its margins to every assertion
    below: ``python benchmarks/e2e_margins.py PROJECT`` after a ``kedro run``)."""
    import os
    import subprocess
    import sys

    project = copy_project(tmp_path_factory.mktemp("project"))
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "kedro", "run"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    use_demo_as_your_data(project)  # the tests of the user's pipelines read the demo's files
    return project


def test_default_run_writes_every_output(demo_project: Path) -> None:
    data = demo_project / "data"
    pairs = pd.read_csv(data / "02_intermediate" / "pairs_with_splits.csv", dtype=str)
    assert len(pairs) == 8
    assert (pairs.groupby("specimen_id")["split"].nunique() == 1).all()
    assert set(pairs["split"]) <= {"train", "val", "test"} and "test" in set(pairs["split"])
    report = pd.read_csv(data / "08_reporting" / "data_engineering_report.csv")
    assert list(report["pair_id"]) == list(pairs["pair_id"])
    for row in pairs.itertuples():
        source = openslide.OpenSlide(data / "01_raw" / "demo" / "slides" / row.slide)
        assert source.properties["openslide.vendor"] == "aperio"
        src_mpp = float(source.properties["openslide.mpp-x"])
        w0, h0 = source.dimensions
        down = openslide.OpenSlide(
            data / "02_intermediate" / "downsampled_slides" / f"{row.pair_id}.tiff"
        )
        w, h = down.dimensions
        assert abs(w - w0 / 15) <= 1 and abs(h - h0 / 15) <= 1
        assert float(down.properties["openslide.mpp-x"]) == pytest.approx(src_mpp * 15, rel=1e-3)
        mri = sitk.ReadImage(str(data / "02_intermediate" / "mri_slices" / f"{row.pair_id}.mha"))
        assert mri.GetDimension() == 2 and mri.GetSpacing() == pytest.approx((1.0, 1.0))
        array = sitk.GetArrayFromImage(mri)
        assert array.dtype == np.float32 and 0.0 <= array.min() and array.max() == 1.0
        for kind in ("slide_masks", "mri_masks"):
            mask = sitk.GetArrayFromImage(
                sitk.ReadImage(str(data / "03_primary" / kind / f"{row.pair_id}.mha"))
            )
            assert 0.1 < mask.mean() < 0.95, (kind, row.pair_id, mask.mean())
        assert (data / "08_reporting" / "qc" / "data_engineering" / f"{row.pair_id}.png").is_file()


def test_data_engineering_alone_reruns_on_existing_inputs(demo_project: Path) -> None:
    qc = demo_project / "data" / "08_reporting" / "qc" / "data_engineering"
    shutil.rmtree(qc)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(demo_project)
        _run(demo_project, pipeline="data_engineering")
    assert len(list(qc.glob("*.png"))) == 8


def test_bad_manifest_fails_naming_the_file(demo_project: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    bad = tmp_path / "bad_pairs.csv"
    pd.read_csv(demo_project / "data" / "01_raw" / "demo" / "pairs.csv").drop(
        columns="plane"
    ).to_csv(bad, index=False)
    raw = demo_project / "data" / "01_raw" / "demo"
    (project / "conf" / "local" / "catalog.yml").write_text(
        f"""
pairs:
  type: mrihisto_kedro.datasets.manifest_dataset.PairsManifestDataset
  filepath: {bad}
slides:
  type: partitions.PartitionedDataset
  path: {raw / "slides"}
  dataset: mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset
mri_volumes:
  type: partitions.PartitionedDataset
  path: {raw / "mri"}
  dataset: mrihisto_kedro.datasets.sitk_dataset.SimpleITKImageDataset
"""
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        with pytest.raises(Exception, match="bad_pairs.csv: missing column\\(s\\) plane"):
            _run(project, pipeline="data_engineering")
    assert not (project / "data" / "02_intermediate" / "downsampled_slides").exists()


def test_registration_recovers_the_demo_ground_truth(demo_project: Path) -> None:
    """Issue 3's acceptance: median Dice >= 0.93, median TRE <= 1 MRI voxel, Dice improves."""
    data = demo_project / "data"
    report = pd.read_csv(data / "08_reporting" / "registration_report.csv")
    assert len(report) == 8
    for column in (
        "pair_id",
        "dice_before",
        "dice_after",
        "mi_before",
        "mi_after",
        "tre_px",
        "tre_um",
        "seconds",
        "converged",
        "flagged",
    ):
        assert column in report.columns
    assert (report["dice_after"] > report["dice_before"]).all()
    assert (report["mi_after"] > report["mi_before"]).all()
    assert report["dice_after"].median() >= 0.93
    assert report["tre_px"].median() <= 1.0
    assert report["tre_um"].median() == pytest.approx(report["tre_px"].median() * 1000, rel=0.01)
    for row in report.itertuples():
        tfm = sitk.ReadTransform(
            str(data / "03_primary" / "registration_transforms" / f"{row.pair_id}.tfm")
        )
        aligned = sitk.ReadImage(str(data / "03_primary" / "aligned_mri" / f"{row.pair_id}.mha"))
        slide = openslide.OpenSlide(
            data / "02_intermediate" / "downsampled_slides" / f"{row.pair_id}.tiff"
        )
        # the aligned MRI lies on the downsampled histology grid, in mm
        assert aligned.GetSize() == slide.dimensions
        assert aligned.GetSpacing()[0] == pytest.approx(
            float(slide.properties["openslide.mpp-x"]) / 1000, rel=1e-6
        )
        # re-applying the saved transform reproduces the aligned image
        mri = sitk.ReadImage(str(data / "02_intermediate" / "mri_slices" / f"{row.pair_id}.mha"))
        again = sitk.Resample(mri, aligned, tfm, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        assert np.allclose(sitk.GetArrayFromImage(again), sitk.GetArrayFromImage(aligned))
        assert (data / "08_reporting" / "qc" / "registration" / f"{row.pair_id}.png").is_file()
    # issue 16: structure agreement inside the tissue; the demo's pairs all pass QC
    assert report["structure_after"].min() > 0.9 and report["converged"].all()
    assert not report["flagged"].any(), report[report["flagged"]]


def test_a_wrong_pairing_passes_dice_but_is_flagged_and_not_tiled(
    demo_project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 16: a slide registered to another specimen's MRI (pair_04's anatomy, not a mirror
    of pair_01's) reaches Dice above the 0.85 gate; the structure check flags it and tiling
    leaves it out, by name. Measured: right pairs 0.94-0.96, this pairing 0.60."""
    import logging

    from kedro.config import OmegaConfigLoader

    from mrihisto_kedro.imaging.slides import open_slide
    from mrihisto_kedro.pipelines.modelling.nodes import build_pair_tiles
    from mrihisto_kedro.pipelines.registration.nodes import register_pairs

    data = demo_project / "data"

    def image(folder: str, pair: str):
        return lambda: sitk.ReadImage(str(data / folder / f"{pair}.mha"))

    # "pair_x" is pair_01's slide with pair_04's MRI slice: what a wrong manifest row gives
    mri_of = {"pair_01": "pair_01", "pair_02": "pair_02", "pair_x": "pair_04"}
    slide_of = {"pair_01": "pair_01", "pair_02": "pair_02", "pair_x": "pair_01"}
    pairs = pd.DataFrame(
        {"pair_id": list(mri_of), "specimen_id": ["s1", "s2", "s1"], "split": "train"}
    )
    mask_report = pd.read_csv(data / "08_reporting" / "data_engineering_report.csv")
    mask_report = mask_report[mask_report["pair_id"].isin(["pair_01", "pair_02"])]
    x_row = mask_report[mask_report["pair_id"] == "pair_01"].assign(pair_id="pair_x")
    slides = {
        k: (lambda v=v: open_slide(data / "02_intermediate" / "downsampled_slides" / f"{v}.tiff"))
        for k, v in slide_of.items()
    }
    _, aligned, aligned_masks, report, _ = register_pairs(
        pairs,
        slides,
        {k: image("02_intermediate/mri_slices", v) for k, v in mri_of.items()},
        {k: image("03_primary/slide_masks", v) for k, v in slide_of.items()},
        {k: image("03_primary/mri_masks", v) for k, v in mri_of.items()},
        pd.DataFrame(),
        pd.concat([mask_report, x_row], ignore_index=True),
        OmegaConfigLoader(str(demo_project / "conf"), base_env="base", default_run_env="local")[
            "parameters"
        ]["registration"],
    )
    report = report.set_index("pair_id")
    assert (report["dice_after"] > 0.85).all()  # Dice alone passes the wrong pairing
    assert (
        report.loc["pair_x", "structure_after"]
        < 0.7
        < report["structure_after"].drop("pair_x").min()
    )
    assert report["flagged"].tolist() == [False, False, True]
    assert "structure agreement" in report.loc["pair_x", "flag_reason"]
    with caplog.at_level(logging.WARNING):
        job = build_pair_tiles(
            pairs,
            report.reset_index(),
            {k: (lambda v=v: v) for k, v in aligned.items()},
            {k: (lambda v=v: v) for k, v in aligned_masks.items()},
            slides,
            {k: image("03_primary/slide_masks", v) for k, v in slide_of.items()},
            {"kind": "tiles", "tile_size": 64},
        )
    assert len(job.loaders) == 2
    assert (
        "excluded 1 of 3 pairs from tiling (flagged or not converged in registration: pair_x)"
        in caplog.text
    )


def test_control_point_mode_runs_on_the_demo_clicks(demo_project: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(demo_project)
        _run(demo_project, pipeline="registration_control_points")
    report = pd.read_csv(demo_project / "data" / "08_reporting" / "registration_report.csv")
    assert set(report["mode"]) == {"control_points"}
    # 8 landmarks with 0.3 mm click noise: sub-voxel residuals and TRE
    assert (report["cp_rms_mm"] < 1.0).all() and (report["cp_rms_mm"] > 0).all()
    assert report["tre_px"].median() < 1.0
    assert (report["dice_after"] > report["dice_before"]).all()


def _summary(project: Path, experiment: str) -> pd.Series:
    table = pd.read_csv(project / "data" / "08_reporting" / experiment / "training_summary.csv")
    return table.iloc[0]


def test_tile_sets_never_put_a_test_specimen_in_training(demo_project: Path) -> None:
    from mrihisto_kedro.imaging.tileset import load_tileset

    for experiment in ("tiles_256", "tiles_1024", "whole_slide_4096"):
        tiles = load_tileset(demo_project / "data" / "05_model_input" / experiment / "tileset")
        manifest = tiles.manifest
        specimens = {s: set(g["specimen_id"]) for s, g in manifest.groupby("split")}
        assert specimens["train"] and specimens["test"]
        assert not specimens["train"] & specimens["test"]
        assert (manifest["size"] > 0).all() and {"x", "y", "scale"} <= set(manifest.columns)
        assert tiles.a.dtype == np.float32 and tiles.b.dtype == np.uint8


def test_every_demo_model_trains_in_pinned_fp32_and_says_so(demo_project: Path) -> None:
    """Issue 13: the demo's numbers do not depend on the CPU's bf16 support, and the tables
    and MLflow say what produced them."""
    import mlflow

    experiments = [
        d.parent.name
        for d in sorted((demo_project / "data" / "08_reporting").glob("*/training_summary.csv"))
    ]
    assert len(experiments) >= 9, experiments
    settings = set()
    for experiment in experiments:
        s = _summary(demo_project, experiment)
        assert s["precision"] == "fp32", (experiment, dict(s))
        assert s["trained_with"].startswith("cpu, fp32, torch "), s["trained_with"]
        settings.add(s["trained_with"])
    markdown = (demo_project / "data" / "08_reporting" / "metrics_table.md").read_text()
    for setting in settings:
        assert f"- Trained with {setting}: " in markdown
    mlflow.set_tracking_uri(f"sqlite:///{demo_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["mrihisto_kedro"], output_format="pandas")
    trained = runs[runs["params.runtime.precision"].notna()]
    assert set(trained["params.runtime.precision"]) == {"fp32"}
    assert set(trained["params.runtime.cpu_capability"]) == {
        torch.backends.cpu.get_cpu_capability()
    }
    names = set(trained["tags.mlflow.runName"])
    assert {"tiles_256", "t1_to_t2", "msi_unet", "tiles_256-trial-0"} <= names
    assert trained["tags.numerics"].str.contains("native bf16").all()


def test_training_beats_untrained_and_trivial_baselines(demo_project: Path) -> None:
    for experiment in ("tiles_256", "tiles_1024", "whole_slide_4096", "unet_baseline"):
        s = _summary(demo_project, experiment)
        assert s["val_L1"] < 0.5 * s["untrained_val_L1"], (experiment, dict(s))
        assert s["val_L1"] < s["mean_colour_val_L1"], (experiment, dict(s))
    # SSIM inside the tissue against the mean colour: whole_slide_4096 draws the section
    # (measured 0.72 vs 0.53). The tile models' hallucinated texture is not the real one's
    # (the demo's cells are random, not predictable from the MRI), which SSIM punishes more
    # than no texture: measured tiles_256 0.51 vs 0.59, tiles_1024 0.65 vs 0.64, unet_baseline
    # 0.62 vs 0.59; not asserted (the closing note of issue 16 has the numbers)
    s = _summary(demo_project, "whole_slide_4096")
    assert s["val_SSIM_fg"] > s["mean_colour_val_SSIM_fg"] + 0.1, dict(s)
    # CycleGAN T1 -> T2 on the real ICBM152 pair (validation slab)
    s = _summary(demo_project, "t1_to_t2")
    assert s["val_L1"] < s["identity_val_L1"] and s["val_L1"] < s["inverted_val_L1"]
    assert s["val_SSIM"] > s["inverted_val_SSIM"] and s["val_SSIM"] > s["untrained_val_SSIM"]
    # SSIM inside the head: whole-slice SSIM is dominated by the dark background, where SSIM's
    # luminance term punishes the tanh output's ~1 % offset (see nn.training.evaluate)
    assert s["val_SSIM_fg"] > s["identity_val_SSIM_fg"], dict(s)
    assert s["val_SSIM_fg"] > s["inverted_val_SSIM_fg"], dict(s)
    assert s["val_SSIM_fg"] > s["untrained_val_SSIM_fg"], dict(s)
    # pix2pix T1 -> T2 (seed 002) on the same slabs: paired training beats both baselines
    s = _summary(demo_project, "t1_to_t2_pix2pix")
    assert s["val_SSIM"] > s["identity_val_SSIM"] and s["val_SSIM"] > s["inverted_val_SSIM"]
    assert s["val_L1"] < s["identity_val_L1"], dict(s)


def test_random_search_and_mlflow_runs(demo_project: Path) -> None:
    import mlflow
    import torch

    from mrihisto_kedro.nn.training import load_generator

    table = pd.read_csv(
        demo_project / "data" / "08_reporting" / "tiles_256" / "training_summary.csv"
    )
    assert table["trial"].notna().sum() == 3  # three trials of the paper's search space
    assert set(table["gan_mode"].dropna()) <= {"vanilla", "lsgan", "wgangp"}
    # the demo has no validation specimens: the trials validated on a held-out training
    # specimen, never on the test split; the final model is reported on the test split
    tiles = pd.read_parquet(
        demo_project / "data" / "05_model_input" / "tiles_256" / "tileset" / "manifest.parquet"
    )
    held = table.loc[0, "search_val"].removeprefix("held-out training specimens: ")
    assert held != table.loc[0, "search_val"]
    assert set(tiles.loc[tiles["specimen_id"] == held, "split"]) == {"train"}
    assert table.loc[0, "val_split"] == "test"

    mlflow.set_tracking_uri(f"sqlite:///{demo_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["mrihisto_kedro"], output_format="pandas")
    names = set(runs["tags.mlflow.runName"])
    for experiment in ("tiles_256", "tiles_1024", "whole_slide_4096", "unet_baseline", "t1_to_t2"):
        assert experiment in names
    assert {"tiles_256-trial-0", "tiles_256-trial-1", "tiles_256-trial-2"} <= names
    for param in ("gan_mode", "lr", "beta1", "lambda_L1"):
        assert f"params.{param}" in runs.columns
    search = runs[runs["tags.mlflow.runName"] == "tiles_256-search"].iloc[0]
    assert search["params.best.gan_mode"] in {"vanilla", "lsgan", "wgangp"}
    trials = runs[runs["tags.mlflow.runName"].str.startswith("tiles_256-trial-")]
    assert (trials["tags.mlflow.parentRunId"] == search["run_id"]).all()
    # short trials (search.trial_overrides), the final model trains the configured epochs
    assert set(trials["params.model.n_epochs"]) == {"2"}
    assert set(trials["params.model.n_epochs_decay"]) == {"1"}
    final = runs[runs["tags.mlflow.runName"] == "tiles_256"].iloc[0]
    assert final["params.model.n_epochs"] == "15"
    assert final["params.total_epochs"] == "30" and set(trials["params.total_epochs"]) == {"3"}
    assert final["params.model.gan_mode"] == search["params.best.gan_mode"]
    assert final["tags.mrihisto.kedro_command"] == "kedro run"  # the whole default run
    assert set(trials["tags.mrihisto.kedro_command"]) == {"kedro run"}
    # no demo model is degenerate (the tag is tested on a constant generator in
    # tests/evaluation/test_degenerate.py)
    assert "tags.mrihisto.degenerate" not in runs.columns
    row = runs[runs["tags.mlflow.runName"] == "tiles_1024"].iloc[0]
    history = mlflow.tracking.MlflowClient().get_metric_history(row["run_id"], "G_L1")
    assert [m.step for m in history] == list(range(1, 31))  # one value per epoch

    payload = torch.load(
        demo_project / "data" / "06_models" / "tiles_256" / "generator.pt", weights_only=True
    )
    generator = load_generator(payload)
    out = generator(torch.zeros(1, 1, 64, 64))
    assert out.shape == (1, 3, 64, 64) and not generator.training


def test_evaluation_writes_table_1_and_the_baseline_table(demo_project: Path) -> None:
    from mrihisto_kedro.metrics.weights import find_weights

    reporting = demo_project / "data" / "08_reporting"
    table = pd.read_csv(reporting / "metrics_table.csv")
    assert list(table.columns) == [
        "experiment",
        "split",
        "comparison",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n_tiles",
        "n_slides",
        "note",
        "trained_with",
        "flag",
        "model",
        "views",
    ]
    # issue 14: the names are paper 000's designs; the table says what the demo's views are
    views = table.drop_duplicates("experiment").set_index("experiment")["views"]
    assert views["tiles_256"].startswith("64 px at ") and "mm a side" in views["tiles_256"]
    assert views["whole_slide_4096"].startswith("128 px at ")
    assert "- Views of tiles_256: 64 px at " in (reporting / "metrics_table.md").read_text()
    # issue 16: each row names the model it measured (generator digest, MLflow training run)
    from mrihisto_kedro.nn.training import generator_digest

    for experiment in ("tiles_1024", "t1_to_t2", "msi_unet"):
        payload = torch.load(
            demo_project / "data" / "06_models" / experiment / "generator.pt", weights_only=True
        )
        run_id = _summary(demo_project, experiment)["run_id"]
        expected = f"generator {generator_digest(payload)}, MLflow run {run_id}"
        assert set(table.loc[table["experiment"] == experiment, "model"]) == {expected}
        assert (
            f"- Measured {experiment}: {expected}" in (reporting / "metrics_table.md").read_text()
        )
        # the training summary records the same digest, so the fresh table is not stale
        assert _summary(demo_project, experiment)["generator"] == generator_digest(payload)
    assert "**STALE**" not in (reporting / "metrics_table.md").read_text()
    # issue 16: a degenerate model would be flagged, not reported as a result. Measured: with
    # 8 epochs (40 iterations) whole_slide_4096 drew one grey square (output spread 0.18-0.20x
    # the real slides' inside an image, 0.06x between inputs: flagged); with 60 epochs every
    # model's spread is 0.41-1.29x (threshold 0.25) and none is flagged
    flagged = table[table["flag"].fillna("") != ""]
    assert flagged.empty, flagged.drop_duplicates("flag")[["experiment", "split", "flag"]]
    assert "FLAGGED" not in (reporting / "metrics_table.md").read_text()
    assert set(table["experiment"]) == {
        "whole_slide_4096",
        "tiles_1024",
        "tiles_256",
        "unet_baseline",
        "t1_to_t2",
        "t1_to_t2_pix2pix",
        "msi_to_he_black",
        "msi_to_he_white",
        "msi_unet",
    }
    assert set(table["split"]) == {"train", "test"}
    pix = table[table["experiment"] == "tiles_256"].set_index(["split", "comparison", "metric"])
    # the demo split: 5 training and 3 test slides, at most 8 tiles per slide
    assert pix.loc[("test", "generated_vs_histology", "SSIM"), "n_slides"] == 3
    assert pix.loc[("train", "generated_vs_histology", "SSIM"), "n_tiles"] <= 5 * 8
    # percentile intervals of per-tile means contain the mean; FID/KID are biased statistics
    # whose replicates (fewer distinct tiles) need not bracket the value, so not asserted there
    finite = table.dropna(subset=["value", "ci_low", "ci_high"])
    finite = finite[~finite["metric"].isin(["FID", "KID"])]
    assert (finite["ci_low"] <= finite["value"] + 1e-9).all()
    assert (finite["value"] <= finite["ci_high"] + 1e-9).all()
    assert "nats" in " ".join(table.loc[table["metric"] == "MI", "note"])
    weights = find_weights("fid") is not None and find_weights("alexnet") is not None
    if weights:  # the CI path: real FID, KID and LPIPS
        assert (
            pix[["value"]]
            .loc[(slice(None), slice(None), ["FID", "KID", "LPIPS"]), :]
            .notna()
            .all()
            .item()
        )
        for experiment in ("tiles_256", "tiles_1024", "whole_slide_4096"):
            e = table[(table["experiment"] == experiment) & (table["split"] == "test")]
            e = e.set_index(["comparison", "metric"])["value"]
            # the sanity direction of the paper's table, with LPIPS and with FID
            assert e[("generated_vs_histology", "LPIPS")] < e[("generated_vs_mri", "LPIPS")]
            assert e[("generated_vs_histology", "FID")] < e[("generated_vs_mri", "FID")], e
        assert (table["metric"] == "FID").sum() == (table["metric"] == "KID").sum() > 0
    else:  # a clone without the weights: reported as missing, with the reason
        fid = table[table["metric"] == "FID"]
        assert fid["value"].isna().all() and fid["note"].str.startswith("missing: ").all()
    baseline = pd.read_csv(reporting / "baseline_table.csv")
    assert set(baseline["experiment"]) == {"tiles_256", "unet_baseline"}
    assert set(baseline["metric"]) == {"MI", "SSIM"}
    assert "| MI |" in (reporting / "metrics_table.md").read_text()
    # paper 003 itself (MSI -> H&E), in the default run: every tile of the 2 test specimens,
    # intervals over specimens
    msi = pd.read_csv(reporting / "msi_table.csv")
    assert set(msi["experiment"]) == {"msi_to_he_black", "msi_to_he_white", "msi_unet"}
    assert set(msi["metric"]) == {"MI", "SSIM", "LPIPS"} and set(msi["split"]) == {"test"}
    assert (msi["n_tiles"] > 50).all() and (msi["n_slides"] == 2).all()
    assert (msi["value"] > 0).all()
    assert (msi["ci_low"] <= msi["value"] + 1e-9).all()
    assert (msi["value"] <= msi["ci_high"] + 1e-9).all()
    assert (msi["ci_high"] > msi["ci_low"]).all()
    assert "msi_to_he_white / test" in (reporting / "msi_table.md").read_text()
    # issue 16's decision: the measured direction is the result. LPIPS puts both pix2pix
    # models nearer the H&E than the U-Net (measured 0.137 / 0.115 vs 0.192 at 70 epochs; at
    # 20 epochs it did not: 0.219 / 0.223), while MI and SSIM reward the U-Net's conditional
    # mean (MI 0.261 / 0.270 vs 0.312): the table says both, and the paper's claim
    v = msi.set_index(["experiment", "metric"])["value"]
    for pix2pix in ("msi_to_he_black", "msi_to_he_white"):
        assert v[(pix2pix, "LPIPS")] < v[("msi_unet", "LPIPS")], dict(v)
        assert v[(pix2pix, "MI")] < v[("msi_unet", "MI")], dict(v)
    msi_md = (reporting / "msi_table.md").read_text()
    assert "Paper 003 reports pix2pix" in msi_md and "Why it does not reproduce here" in msi_md
    assert "MI (higher is better) pix2pix" in msi_md and "LPIPS (lower is better)" in msi_md
    for experiment in ("msi_to_he_black", "msi_to_he_white", "msi_unet"):
        summary = pd.read_csv(reporting / experiment / "training_summary.csv").iloc[0]
        assert summary["val_split"] == "val"
        assert summary["val_L1"] < summary["mean_colour_val_L1"], dict(summary)


def test_synthetic_slides_open_in_openslide_and_blending_hides_seams(
    demo_project: Path,
) -> None:
    for experiment in ("tiles_256", "tiles_1024", "unet_baseline"):
        report = pd.read_csv(
            demo_project / "data" / "08_reporting" / experiment / "seam_report.csv"
        )
        assert len(report) == 3  # the three test slides
        assert (abs(report["seam_blended"] - 1) < abs(report["seam_plain"] - 1)).all(), report
        for row in report.itertuples():
            path = (
                demo_project
                / "data"
                / "07_model_output"
                / experiment
                / "synthetic_slides"
                / f"{row.pair_id}.svs"
            )
            with openslide.OpenSlide(path) as slide:
                assert slide.dimensions == (row.width_px, row.height_px)
                assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(row.mpp)
                assert slide.properties["openslide.vendor"] == "aperio"
                power = float(slide.properties["openslide.objective-power"])
                assert power == pytest.approx(10.0 / row.mpp, rel=1e-3)  # 0.25 µm/px = 40x


def _anisotropic_t1(project: Path) -> tuple[Path, sitk.Image]:
    """The demo's ICBM152 T1 on a 1.2 x 0.9375 x 2 mm grid (same field of view), as NIfTI."""
    t1 = sitk.ReadImage(
        str(project / "data/01_raw/demo/icbm152_2009c_2mm/icbm152_2009c_sym_t1_2mm.nii.gz")
    )
    spacing = (1.2, 0.9375, 2.0)
    size = [
        round(n * s / t) for n, s, t in zip(t1.GetSize(), t1.GetSpacing(), spacing, strict=True)
    ]
    image = sitk.Resample(
        t1, size, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkLinear, t1.GetOrigin(),
        spacing, t1.GetDirection(), 0.0, sitk.sitkFloat32,
    )  # fmt: skip
    path = project / "data" / "01_raw" / "user_t1_anisotropic.nii.gz"
    sitk.WriteImage(image, str(path))
    return path, image


def test_generators_record_how_they_were_trained(demo_project: Path) -> None:
    """Issue 14: generator.pt holds the input pixel size, normalisation, plane and padding."""
    models = demo_project / "data" / "06_models"
    slide_spec = torch.load(models / "tiles_256" / "generator.pt", weights_only=True)["input_spec"]
    report = pd.read_csv(demo_project / "data" / "08_reporting" / "data_engineering_report.csv")
    tiles = pd.read_parquet(models.parent / "05_model_input/tiles_256/tileset/manifest.parquet")
    level0 = report.set_index("pair_id")["slide_mpp"] / 15.0
    expected = float(np.median(level0[tiles["pair_id"]].to_numpy() * tiles["scale"].to_numpy()))
    assert slide_spec["kind"] == "slice_to_slide"
    assert slide_spec["pixel_size_um"][0] == pytest.approx(expected, rel=1e-6)
    assert slide_spec["lower_percentile"] == 1.0 and slide_spec["upper_percentile"] == 99.5
    assert slide_spec["input_range"] == [0.0, 1.0] and slide_spec["channels"] == 1
    volume_spec = torch.load(models / "t1_to_t2" / "generator.pt", weights_only=True)["input_spec"]
    assert volume_spec["kind"] == "volume_to_volume" and volume_spec["plane"] == "axial"
    assert volume_spec["pixel_size_um"] == [2000.0, 2000.0] and volume_spec["pad_to"] == 128
    assert volume_spec["normalisation_scope"] == "volume"


def test_inference_command_on_a_new_volume(demo_project: Path) -> None:
    """A user's volume with non-square voxels, no model_mpp: the model file gives the pixel
    size, and the synthetic slide keeps the slice's physical proportions."""
    path, image = _anisotropic_t1(demo_project)
    out = demo_project / "data" / "07_model_output" / "inference" / "t1_axial_50.svs"
    params = {
        "inference_mri": str(path),
        "inference_output": str(out),
        "inference": {"new_slice": {"slice_index": 50}},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(demo_project)
        _run(demo_project, "inference", params)
    spec = torch.load(demo_project / "data/06_models/tiles_256/generator.pt", weights_only=True)[
        "input_spec"
    ]
    model_um = spec["pixel_size_um"][0]
    width_um, height_um = (
        n * s * 1000 for n, s in zip(image.GetSize()[:2], image.GetSpacing()[:2], strict=True)
    )
    with openslide.OpenSlide(out) as slide:
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(model_um, rel=1e-4)
        w, h = slide.dimensions
    assert w * model_um == pytest.approx(width_um, abs=model_um)  # columns: 1.2 mm voxels
    assert h * model_um == pytest.approx(height_um, abs=model_um)  # rows: 0.9375 mm voxels


def test_inference_volume_translates_a_new_t1_volume(demo_project: Path) -> None:
    """``kedro run --pipeline=inference_volume``: the t1_to_t2 model on a whole new volume
    with non-square voxels gives a NIfTI on the input's grid that is the model's translation
    of the same anatomy on its own 2 mm grid (resampled): voxel size changes nothing.

    Whether the demo's CycleGAN translates well is issue 16's question (measured at this
    commit on the 2 mm volume: correlation with the T2 0.39, the T1's own 0.43)."""
    path, image = _anisotropic_t1(demo_project)
    outputs = demo_project / "data" / "07_model_output" / "inference"
    native = demo_project / "data/01_raw/demo/icbm152_2009c_2mm/icbm152_2009c_sym_t1_2mm.nii.gz"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(demo_project)
        for source, name in ((path, "user_t2.nii.gz"), (native, "native_t2.nii.gz")):
            params = {
                "inference_volume_mri": str(source),
                "inference_volume_output": str(outputs / name),
            }
            _run(demo_project, "inference_volume", params)
    synthetic = sitk.ReadImage(str(outputs / "user_t2.nii.gz"))
    assert synthetic.GetSize() == image.GetSize()
    assert synthetic.GetSpacing() == pytest.approx(image.GetSpacing())
    assert synthetic.GetOrigin() == pytest.approx(image.GetOrigin())
    assert synthetic.GetDirection() == pytest.approx(image.GetDirection())
    got = sitk.GetArrayFromImage(synthetic)
    assert got.dtype == np.float32 and 0.0 <= got.min() and got.max() <= 1.0
    reference = sitk.Resample(sitk.ReadImage(str(outputs / "native_t2.nii.gz")), image,
                              sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)  # fmt: skip
    t1 = sitk.GetArrayFromImage(image)
    brain = t1 > 0.2 * np.percentile(t1, 99)
    same = np.corrcoef(got[brain], sitk.GetArrayFromImage(reference)[brain])[0, 1]
    print(f"\ninference_volume: anisotropic vs native-grid translation corr {same:.3f}")
    assert same > 0.9


def test_cli_runs_one_experiment_with_overridden_parameters(demo_project: Path) -> None:
    """What a user types: one namespace of the modelling pipeline, parameters overridden.

    Runs last in this module: it replaces the ``tiles_256`` outputs.
    """
    import os
    import subprocess
    import sys

    import mlflow

    other = demo_project / "data" / "06_models" / "t1_to_t2" / "generator.pt"
    before = other.stat().st_mtime_ns
    overrides = ",".join(
        [
            "tiles_256.training.model.gan_mode=lsgan",
            "tiles_256.training.model.lr=0.0001",
            "tiles_256.training.search.n_trials=0",
            "tiles_256.training.model.n_epochs=1",
            "tiles_256.training.model.n_epochs_decay=0",
        ]
    )

    def kedro(*args: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "kedro", *args],
            cwd=demo_project,
            env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]

    kedro("run", "--pipeline=modelling", "--namespaces=tiles_256", f"--params={overrides}")
    assert other.stat().st_mtime_ns == before  # other experiments did not run
    summary = pd.read_csv(
        demo_project / "data" / "08_reporting" / "tiles_256" / "training_summary.csv"
    )
    assert len(summary) == 1 and summary.loc[0, "epochs"] == 1  # no search rows
    mlflow.set_tracking_uri(f"sqlite:///{demo_project / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["mrihisto_kedro"],
        filter_string=f"attributes.run_id = '{summary.loc[0, 'run_id']}'",
        output_format="pandas",
    )
    assert runs.loc[0, "params.gan_mode"] == "lsgan"
    assert float(runs.loc[0, "params.lr"]) == pytest.approx(1e-4)
    # issue 16: the whole command and the epochs the run trained
    from kedro.framework.cli.utils import _split_params

    command = runs.loc[0, "tags.mrihisto.kedro_command"]
    prefix, _, params = command.partition(" --params=")
    assert prefix == "kedro run --pipeline=modelling --namespaces=tiles_256"
    assert _split_params(None, None, params) == _split_params(None, None, overrides)
    assert runs.loc[0, "params.total_epochs"] == "1"
    run = mlflow.get_run(runs.loc[0, "run_id"])
    while "mlflow.parentRunId" in run.data.tags:  # up to kedro-mlflow's pipeline run
        run = mlflow.get_run(run.data.tags["mlflow.parentRunId"])
    assert run.data.tags["kedro_command"] == command
    # issue 16: Table 1 still holds the old tiles_256 numbers; it says so, and how to rebuild
    table_md = demo_project / "data" / "08_reporting" / "metrics_table.md"
    notice = [line for line in table_md.read_text().splitlines() if "**STALE**" in line]
    assert len(notice) == 1 and "the columns of tiles_256 describe a model" in notice[0]
    assert f"the current one is {summary.loc[0, 'generator']}" in notice[0]
    rebuild = notice[0].split("`")[1]
    assert rebuild == "kedro run --pipeline=evaluation --from-nodes=tiles_256.evaluate"
    assert rebuild.startswith("kedro ")
    kedro(*rebuild.split()[1:])
    text = table_md.read_text()
    assert "**STALE**" not in text
    assert f"- Measured tiles_256: generator {summary.loc[0, 'generator']}, MLflow run " in text


def test_torchrun_trains_one_experiment_on_two_processes(demo_project: Path) -> None:
    """``torchrun ... kedro run`` (issue 18, docs/cluster.md): two Kedro sessions train one
    model with DDP on gloo; rank 0 alone writes the generator and the one MLflow pipeline run,
    rank 1 keeps its outputs in memory and does not take the output root's lock.

    Runs after the CLI test: it replaces the ``t1_to_t2`` generator.
    """
    import os
    import subprocess
    import sys

    import mlflow

    generator = demo_project / "data" / "06_models" / "t1_to_t2" / "generator.pt"
    before = generator.stat().st_mtime_ns
    mlflow.set_tracking_uri(f"sqlite:///{demo_project / 'mlflow.db'}")
    runs_before = len(mlflow.search_runs(experiment_names=["mrihisto_kedro"]))
    params = "t1_to_t2.training.model.n_epochs=1,t1_to_t2.training.model.n_epochs_decay=0"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
        + ["-m", "kedro", "run", "--pipeline=modelling", "--namespaces=t1_to_t2"]
        + ["--nodes=t1_to_t2.train", f"--params={params}"],
        cwd=demo_project,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "torchrun rank 1: 3 outputs kept in memory" in output
    assert generator.stat().st_mtime_ns > before
    runs = mlflow.search_runs(experiment_names=["mrihisto_kedro"], order_by=["start_time DESC"])
    new = runs.iloc[: len(runs) - runs_before]
    names = sorted(new["tags.mlflow.runName"])  # rank 0's only: the pipeline run (named by
    assert len(names) == 2 and "t1_to_t2" in names  # its command) and the training
    parent = next(name for name in names if name != "t1_to_t2")
    assert parent.startswith("kedro run ") and "--pipeline=modelling" in parent
    trained = new[new["tags.mlflow.runName"] == "t1_to_t2"].iloc[0]
    assert trained["params.distributed.processes"] == "2"
    from mrihisto_kedro.durability.lock import OutputRootLock

    with OutputRootLock(demo_project / "data"):  # released by rank 0, never held by rank 1
        pass


def test_mlflow_ui_over_the_demo_store(demo_project: Path, tmp_path: Path) -> None:
    """Issue 19's browser proof on the demo's own store: ``mlflow server`` over it, headless
    Chromium opens the runs table (the parent ``kedro run`` expanded over its trainings), the
    final ``tiles_256`` run's parameters and metric charts, and the comparison of two of its
    search trials (tests/tracking/mlflow_ui.py; about 20 s)."""
    import importlib
    import os
    import sys

    import mlflow

    sys.path.insert(0, str(REPO_ROOT / "tests" / "tracking"))
    try:
        ui = importlib.import_module("mlflow_ui")
        checks = importlib.import_module("test_mlflow_ui")
    finally:
        sys.path.remove(str(REPO_ROOT / "tests" / "tracking"))
    ui.require_chromium()
    uri = f"sqlite:///{demo_project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.get_experiment_by_name("mrihisto_kedro")
        assert experiment is not None
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        runs = mlflow.search_runs([experiment.experiment_id])
    finally:
        mlflow.set_tracking_uri(None)
    ids = dict(zip(runs["tags.mlflow.runName"], runs["run_id"], strict=False))
    assert "__default__" not in ids and "kedro run" in ids
    trials = [ids["tiles_256-trial-0"], ids["tiles_256-trial-1"]]
    shots = Path(os.environ.get("MRIHISTO_SCREENSHOTS", tmp_path))
    with ui.mlflow_server(uri, tmp_path / "server.log") as base:
        seen = ui.look(
            base, experiment.experiment_id, ids["tiles_256"], trials, "kedro run", shots, "demo"
        )
    checks.check_seen(seen, trials, uri)
    for name in ("tiles_256", "tiles_256-search", "tiles_1024", "t1_to_t2", "unet_baseline"):
        assert name in seen.run_rows, seen.run_rows
    assert seen.run_params["total_epochs"] == "30"


def test_walkthrough_notebook_runs_on_the_demo_outputs(demo_project: Path) -> None:
    """notebooks/walkthrough.ipynb, executed headlessly (nbclient) in the project's
    ``notebooks/`` folder as ``kedro jupyter lab`` runs it: every cell runs on the demo's
    outputs, and its six figures are drawn inline (a module that switched matplotlib to Agg
    on import once left the notebook without any)."""
    import re

    import nbformat
    from nbclient import NotebookClient
    from project_copy import REPO_ROOT

    folder = demo_project / "notebooks"
    folder.mkdir(exist_ok=True)
    nb = nbformat.read(REPO_ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 6
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert re.search(r"pair_01: \d+ x \d+ px at [\d.]+ x [\d.]+ µm/px", printed)
    assert re.search(r"\d+ tiles, a \(\d+, 64, 64, 1\) float32", printed)
    assert f"in sqlite:///{demo_project / 'mlflow.db'}" in printed
