"""The modelling nodes called directly on tiny in-memory inputs (seconds).

``build_pair_tiles`` on three registered pairs (one flagged by registration QC) written as small
pyramidal TIFFs, ``build_volume_tiles`` on two small volumes, ``train_experiment`` with one epoch
of a 4-filter U-Net pix2pix on the CPU (and a two-trial search), MLflow to a sqlite store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from tiny_modelling import TINY_TRAINING

from mrihisto_kedro.datasets import sitk_dataset
from mrihisto_kedro.datasets.sitk_dataset import SimpleITKImageDataset
from mrihisto_kedro.datasets.staged_partitioned_dataset import StagedPartitionedDataset
from mrihisto_kedro.imaging.mri import (
    MriNormalisation,
    NormalisationRecordError,
    record_normalisation,
)
from mrihisto_kedro.imaging.registration import resample_moving
from mrihisto_kedro.imaging.sitk_io import read_image, write_image
from mrihisto_kedro.imaging.tileset import TileSet, load_tileset
from mrihisto_kedro.imaging.tiling import PairTilesJob
from mrihisto_kedro.nn.checkpoint_store import CheckpointStore
from mrihisto_kedro.nn.training import generator_digest, load_generator
from mrihisto_kedro.params import ParameterError
from mrihisto_kedro.pipelines.data_engineering.nodes import extract_mri_slices
from mrihisto_kedro.pipelines.modelling.nodes import (
    build_pair_tiles,
    build_volume_tiles,
    train_experiment,
)

#: the downsampled slides' grid: rows, columns, factor, microns per downsampled pixel
ROWS, COLS, FACTOR, MPP = 96, 128, 4.0, 2.0
PAIRS = pd.DataFrame(
    {
        "pair_id": ["p1", "p2", "p3"],
        "specimen_id": ["s1", "s2", "s3"],
        "split": ["train", "test", "train"],
    }
)
REPORT = pd.DataFrame(
    {"pair_id": ["p1", "p2", "p3"], "flagged": [False, False, True], "converged": True}
)
#: what data_engineering recorded in the aligned MRI files of ``pair_inputs``
NORMALISATION = MriNormalisation(lower_percentile=2.0, upper_percentile=98.0)


def _image(array: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(array)  # spacing 1, origin 0: the downsampled grid


def _aligned_mri(array: np.ndarray) -> sitk.Image:
    image = _image(array)
    record_normalisation(image, NORMALISATION)
    return image


@pytest.fixture
def pair_inputs(
    write_slide: Callable[..., Path],
    tissue_rgb: Callable[..., np.ndarray],
    slide_loaders: Callable[..., Any],
    memory_loaders: Callable[..., Any],
) -> dict[str, Any]:
    """``build_pair_tiles``'s partitioned inputs: ``{pair_id: counting loader}`` each."""
    ids = list(PAIRS["pair_id"])
    rgb = {k: tissue_rgb(ROWS, COLS, i) for i, k in enumerate(ids)}
    paths = {k: write_slide(f"{k}.tiff", rgb[k], MPP, downsample=FACTOR) for k in ids}
    mri = {k: _aligned_mri((rgb[k][..., 1] / 255.0).astype(np.float32)) for k in ids}
    coverage = np.zeros((ROWS, COLS), np.uint8)
    coverage[:, : COLS - 32] = 1  # the registered MRI covers all but the last 32 columns
    return {
        "aligned_mri": memory_loaders(mri),
        "aligned_mri_masks": memory_loaders(dict.fromkeys(ids, _image(coverage))),
        "downsampled_slides": slide_loaders(paths),
        "slide_masks": memory_loaders(
            {k: _image((rgb[k].min(axis=-1) < 240).astype(np.uint8)) for k in ids}
        ),
    }


def _pair_tiles(pair_inputs: dict[str, Any], **tiling: Any) -> TileSet | PairTilesJob:
    return build_pair_tiles(PAIRS, REPORT, **pair_inputs, tiling=tiling)


def test_pair_tiles_are_written_one_pair_at_a_time_without_flagged_pairs(
    pair_inputs: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        job = _pair_tiles(pair_inputs, tile_size=32, min_tissue_fraction=0.3)
    assert "excluded 1 of 3 pairs" in caplog.text and "p3" in caplog.text
    assert isinstance(job, PairTilesJob)
    assert sum(pair_inputs["downsampled_slides"].calls.values()) == 0  # the dataset reads them
    tiles = load_tileset(job.write(tmp_path / "tileset"))
    calls = pair_inputs["downsampled_slides"].calls
    assert calls == {"p1": 2, "p2": 2, "p3": 0}  # planned, then cut; the flagged pair never
    assert set(tiles.manifest["pair_id"]) == {"p1", "p2"}
    assert tiles.a.shape[1:] == (32, 32, 1) and tiles.b.shape[1:] == (32, 32, 3)
    # level-0 coordinates: grid origins times the recorded factor, never past the MRI coverage
    assert set(tiles.manifest["x"]) <= {0, 128, 256} and set(tiles.manifest["y"]) <= {0, 128, 256}
    spec = tiles.attrs["input_spec"]
    assert spec["pixel_size_um"] == [MPP, MPP]  # level-0 mpp (MPP / FACTOR) x FACTOR px a tile px
    assert (spec["lower_percentile"], spec["upper_percentile"]) == (2.0, 98.0)


def test_flagged_pairs_are_tiled_when_asked(pair_inputs: dict[str, Any], tmp_path: Path) -> None:
    job = _pair_tiles(
        pair_inputs, tile_size=32, min_tissue_fraction=0.3, include_flagged_pairs=True
    )
    assert isinstance(job, PairTilesJob)
    tiles = load_tileset(job.write(tmp_path / "tileset"))
    assert set(tiles.manifest["pair_id"]) == {"p1", "p2", "p3"}


def test_whole_views_are_one_view_per_pair_in_memory(pair_inputs: dict[str, Any]) -> None:
    views = _pair_tiles(pair_inputs, kind="whole", load_size=32)
    assert isinstance(views, TileSet)
    assert list(views.manifest["pair_id"]) == ["p1", "p2"]
    assert views.a.shape == (2, 32, 32, 1) and views.b.shape == (2, 32, 32, 3)
    assert views.b.dtype == np.uint8
    assert pair_inputs["downsampled_slides"].calls == {"p1": 1, "p2": 1, "p3": 0}
    # a view of the padded 128 px square: level-0 side 128 x 4, 16 level-0 px per view px
    assert list(views.manifest["size"]) == [512, 512]
    assert views.attrs["input_spec"]["pixel_size_um"] == [8.0, 8.0]


def test_a_misspelt_tiling_key_is_named(pair_inputs: dict[str, Any]) -> None:
    with pytest.raises(ParameterError, match=r"'tiling' has unknown key\(s\) 'tile_sise'"):
        _pair_tiles(pair_inputs, tile_sise=32)


def test_the_normalisation_data_engineering_wrote_reaches_the_input_spec_through_the_files(
    pair_inputs: dict[str, Any],
    brain_volume: Callable[..., sitk.Image],
    memory_loaders: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """data_engineering cuts the slices with (3, 97); registration resamples them onto the
    grid; both written as .mha. Tiling takes no ``data_engineering`` parameter: the spec holds
    what the files record, whatever ``data_engineering.mri_normalisation`` says afterwards."""
    manifest = pd.DataFrame(
        {"pair_id": ["p1", "p2", "p3"], "mri": "t1.nii.gz", "plane": "axial", "slice_index": 5}
    )
    written = {"lower_percentile": 3.0, "upper_percentile": 97.0}
    slices = extract_mri_slices(
        manifest, memory_loaders({"t1.nii.gz": brain_volume()}), {"mri_normalisation": written}
    )
    grid = _image(np.zeros((ROWS, COLS), np.float32))
    aligned = {}
    for pair_id, mri_slice in slices.items():
        write_image(mri_slice, tmp_path / f"slice_{pair_id}.mha")
        moved = resample_moving(
            read_image(tmp_path / f"slice_{pair_id}.mha"), grid, sitk.AffineTransform(2)
        )
        write_image(moved, tmp_path / f"aligned_{pair_id}.mha")
        aligned[pair_id] = lambda p=tmp_path / f"aligned_{pair_id}.mha": read_image(p)
    views = _pair_tiles({**pair_inputs, "aligned_mri": aligned}, kind="whole", load_size=32)
    spec = views.attrs["input_spec"]
    assert (spec["lower_percentile"], spec["upper_percentile"]) == (3.0, 97.0)


def test_an_aligned_mri_without_the_normalisation_names_the_pair_and_the_fix(
    pair_inputs: dict[str, Any], memory_loaders: Callable[..., Any]
) -> None:
    old = _image(np.ones((ROWS, COLS), np.float32))  # an older version wrote no keys
    mri = {"p1": pair_inputs["aligned_mri"]["p1"](), "p2": old}
    with pytest.raises(
        NormalisationRecordError, match=r"pair p2.*re-run .*data_engineering.*registration"
    ):
        _pair_tiles({**pair_inputs, "aligned_mri": memory_loaders(mri)}, tile_size=32)


def test_pairs_normalised_differently_are_refused(
    pair_inputs: dict[str, Any], memory_loaders: Callable[..., Any]
) -> None:
    other = _image(np.ones((ROWS, COLS), np.float32))
    record_normalisation(other, MriNormalisation(lower_percentile=1.0, upper_percentile=99.5))
    mri = {"p1": pair_inputs["aligned_mri"]["p1"](), "p2": other}
    with pytest.raises(NormalisationRecordError, match=r"\(2, 98\) in p1; \(1, 99.5\) in p2"):
        _pair_tiles({**pair_inputs, "aligned_mri": memory_loaders(mri)}, tile_size=32)


def test_the_normalisation_is_read_from_the_headers_and_the_pixels_by_tiling_only(
    pair_inputs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The aligned MRI as the catalog loads it (a folder of .mha partitions): the recorded
    normalisation comes from the files' headers, so tiling alone reads the pixels (plan, cut);
    a file without the record is still refused, naming the pair and the re-runs."""
    images = {k: load() for k, load in pair_inputs["aligned_mri"].items()}
    reads: list[str] = []

    def counted(path: Any, **kwargs: Any) -> sitk.Image:
        reads.append(Path(path).stem)
        return read_image(path, **kwargs)

    monkeypatch.setattr(sitk_dataset, "read_image", counted)

    def folder(name: str, partitions: dict[str, sitk.Image]) -> Any:
        dataset = StagedPartitionedDataset(
            path=str(tmp_path / name), dataset=SimpleITKImageDataset, filename_suffix=".mha"
        )
        dataset.save(partitions)
        return dataset.load()

    job = _pair_tiles({**pair_inputs, "aligned_mri": folder("aligned", images)}, tile_size=32)
    assert isinstance(job, PairTilesJob) and reads == []
    assert (job.lower_percentile, job.upper_percentile) == (2.0, 98.0)
    job.write(tmp_path / "tileset")
    assert sorted(reads) == ["p1", "p1", "p2", "p2"]

    old = folder("old", {**images, "p2": _image(np.ones((ROWS, COLS), np.float32))})
    with pytest.raises(
        NormalisationRecordError, match=r"pair p2: records no MRI.*data_engineering.*registration"
    ):
        _pair_tiles({**pair_inputs, "aligned_mri": old}, tile_size=32)


def test_volume_slices_are_dealt_to_three_splits_with_gaps(
    brain_volume: Callable[..., sitk.Image],
) -> None:
    t1 = brain_volume((40, 24, 20))
    t2 = sitk.InvertIntensity(t1, maximum=300.0)
    tiling = {"plane": "axial", "fractions": [0.6, 0.2, 0.2], "block": 4, "gap": 1, "pad_to": 32}
    tiles = build_volume_tiles(t1, t2, tiling)
    m = tiles.manifest
    assert set(m["split"]) == {"train", "val", "test"}
    assert tiles.a.shape[1:] == (32, 32, 1) and tiles.b.shape == tiles.a.shape
    assert m["slice_index"].is_unique
    owner = dict(zip(m["slice_index"], m["split"], strict=True))
    ordered = sorted(owner)
    for i, j in zip(ordered, ordered[1:], strict=False):  # a split change skips a gap slice
        assert owner[i] == owner[j] or j - i > 1, (i, j)
    # B is the inverted A (both scaled by their own volume's percentiles), inside the brain
    inside = tiles.a[..., 0] > 0.5
    assert np.corrcoef(tiles.a[..., 0][inside], tiles.b[..., 0][inside])[0, 1] < -0.9
    spec = tiles.attrs["input_spec"]
    assert (
        spec["plane"] == "axial"
        and spec["pad_to"] == 32
        and spec["pixel_size_um"] == [400.0, 400.0]
    )


def test_train_experiment_returns_generator_history_summary_and_logs_its_run(
    tileset: TileSet, tmp_path: Path, mlflow_experiment: str
) -> None:
    store = CheckpointStore(tmp_path / "checkpoints", "tiny")
    generator, history, summary = train_experiment(tileset, TINY_TRAINING, store, experiment="tiny")

    assert list(history["epoch"]) == [1]
    row = summary.iloc[0]
    assert len(summary) == 1
    assert (row["experiment"], row["model_type"], row["epochs"]) == ("tiny", "pix2pix", 1)
    assert (row["n_train_tiles"], row["n_val_tiles"], row["val_split"]) == (6, 4, "val")
    assert row["generator"] == generator_digest(generator)
    assert row["val_L1"] == pytest.approx(history["val_L1"].iloc[-1])
    net = load_generator(generator)
    assert net(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)

    run = mlflow.get_run(row["run_id"])
    assert run.info.run_name == "tiny" and run.info.status == "FINISHED"
    assert run.data.tags["experiment"] == "tiny" and run.data.tags["model_type"] == "pix2pix"
    assert run.data.params["model.ngf"] == "4" and run.data.params["tiles"] == "10"
    assert run.data.params["total_epochs"] == "1"
    for metric in ("val_L1", "untrained_val_L1", "mean_colour_val_L1", "n_train_tiles"):
        assert run.data.metrics[metric] == pytest.approx(float(row[metric])), metric
    assert "runtime.device" in run.data.params and "numerics" in run.data.tags
    artifacts = {
        a.path for a in mlflow.tracking.MlflowClient().list_artifacts(run.info.run_id, "generator")
    }
    assert "generator/generator.pt" in artifacts


def test_a_search_without_a_val_split_validates_on_held_out_training_specimens(
    make_tileset: Callable[..., TileSet], tmp_path: Path, mlflow_experiment: str
) -> None:
    tiles = make_tileset(splits=["train"] * 6 + ["test"] * 4)
    search = {
        "n_trials": 2,
        "sampler": "random",
        "seed": 0,
        "space": {"lr": [0.0002, 0.002]},
        "holdout_specimens": 1,
    }
    training = {**TINY_TRAINING, "search": search}
    store = CheckpointStore(tmp_path / "checkpoints", "tiny")
    _, _, table = train_experiment(tiles, training, store, experiment="tiny")

    assert len(table) == 3  # the final training, then one row per trial
    final = table.iloc[0]
    assert final["search_val"].startswith("held-out training specimens: s")
    assert final["val_split"] == "test"  # the final training itself validates on test
    assert list(table["trial"].iloc[1:]) == [0, 1]
    runs = mlflow.search_runs(experiment_names=[mlflow_experiment], output_format="pandas")
    names = runs.set_index("tags.mlflow.runName")
    assert set(names.index) == {"tiny", "tiny-search", "tiny-trial-0", "tiny-trial-1"}
    search_run = names.loc["tiny-search"]
    for trial in ("tiny-trial-0", "tiny-trial-1"):
        assert names.loc[trial, "tags.mlflow.parentRunId"] == search_run["run_id"]
    assert search_run["metrics.best_val_L1"] == pytest.approx(table["val_L1"].iloc[1:].min())
    best_lr = table.loc[table["val_L1"].iloc[1:].idxmin(), "lr"]
    assert float(search_run["params.best.lr"]) == best_lr
    assert names.loc["tiny", "params.model.lr"] == str(best_lr)  # the final training used it
