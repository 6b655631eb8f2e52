"""The data_engineering pipeline as one slice: ``SequentialRunner`` on a small catalog.

Raw inputs are in memory (two 240 x 320 px slides at 0.5 µm/px, one MRI volume, a manifest);
the folder outputs are the project's own datasets as ``conf/base/catalog.yml`` configures them,
under a temporary ``data_root``; the rest are ``MemoryDataset`` s. Runs in a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from kedro.io import DataCatalog

from mrihisto_kedro.durability.temporaries import stale_temporaries
from mrihisto_kedro.imaging.downsample import recorded_downsample
from mrihisto_kedro.imaging.pair_masks import REPORT_COLUMNS, BlankSlideError
from mrihisto_kedro.pipelines.data_engineering import create_pipeline

FOLDERS = ["downsampled_slides", "mri_slices", "slide_masks", "mri_masks"]
MPP = 0.5


@pytest.fixture
def catalog(
    project_catalog: Callable[..., DataCatalog],
    write_slide: Callable[..., Path],
    tissue_rgb: Callable[..., np.ndarray],
    slide_loaders: Callable[..., Any],
    brain_volume: Callable[..., sitk.Image],
    memory_loaders: Callable[..., Any],
) -> DataCatalog:
    """Two specimens, one without a split; slides downsampled 4x to 80 x 60 px; an axial and a
    coronal MRI slice of one 20 x 24 x 20 voxel volume."""
    slides = {f"s{k}.svs": write_slide(f"s{k}.tiff", tissue_rgb(240, 320, k), MPP) for k in (0, 1)}
    pairs = pd.DataFrame(
        {
            "pair_id": ["p0", "p1"],
            "specimen_id": ["a", "b"],
            "slide": ["s0.svs", "s1.svs"],
            "mri": ["brain.nii.gz"] * 2,
            "plane": ["axial", "coronal"],
            "slice_index": ["5", "12"],
            "split": ["train", ""],
        }
    )
    return project_catalog(
        FOLDERS,
        pairs=pairs,
        slides=slide_loaders(slides),
        mri_volumes=memory_loaders({"brain.nii.gz": brain_volume((20, 24, 20))}),
        **{"params:data_engineering": {"downsample_factor": 4, "slide_mask": {"max_size": 64}}},
    )


@pytest.mark.usefixtures("close_figures")
def test_the_pipeline_writes_every_output_from_raw_inputs(
    catalog: DataCatalog, run_pipeline: Callable[..., DataCatalog], tmp_path: Path
) -> None:
    run_pipeline(create_pipeline(), catalog)
    pairs = catalog.load("pairs_with_splits")
    assert pairs.split[0] == "train" and pairs.split[1] in {"train", "val", "test"}
    slides = catalog.load("downsampled_slides")
    with slides["p1"]() as slide:
        assert slide.dimensions == (80, 60) and recorded_downsample(slide) == 4
        assert slide.mpp == pytest.approx((MPP * 4, MPP * 4))
    assert sitk.GetArrayViewFromImage(catalog.load("mri_slices")["p1"]()).shape == (20, 20)
    smask = catalog.load("slide_masks")["p0"]()
    assert smask.GetSize() == (64, 48) and smask.GetPixelID() == sitk.sitkUInt8
    assert catalog.load("mri_masks")["p0"]().GetSize() == (20, 24)
    report = catalog.load("data_engineering_report")
    assert list(report.columns) == list(REPORT_COLUMNS) and list(report.pair_id) == ["p0", "p1"]
    assert (report.slide_tissue_fraction > 0.05).all() and (report.mri_tissue_fraction > 0.2).all()
    assert sorted(catalog.load("data_engineering_qc")) == ["p0.png", "p1.png"]
    for name in FOLDERS:
        assert sorted(p.name for p in (tmp_path / "data").rglob(f"*/{name}/p*")) != []
    assert stale_temporaries(tmp_path / "data") == []


def test_a_blank_slide_stops_the_run_before_any_mask_is_saved(
    catalog: DataCatalog,
    run_pipeline: Callable[..., DataCatalog],
    write_slide: Callable[..., Path],
    slide_loaders: Callable[..., Any],
    tmp_path: Path,
) -> None:
    glass = write_slide("glass.tiff", np.full((240, 320, 3), 244, np.uint8), MPP)
    catalog["slides"] = {"s0.svs": slide_loaders({"s0.svs": glass})["s0.svs"]}
    catalog["pairs"] = catalog.load("pairs").iloc[:1]
    with pytest.raises(BlankSlideError, match="pair p0: slide s0.svs shows tissue on 0.00 %"):
        run_pipeline(create_pipeline(), catalog)
    assert not list((tmp_path / "data").rglob("slide_masks"))
    assert not catalog.exists("data_engineering_qc")
