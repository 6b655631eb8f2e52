"""The registration pipelines run by Kedro's ``SequentialRunner`` on a catalog of temp folders.

The datasets are the project's own (staged partition folders of slides, images, transforms and
landmarks; the optional ground-truth CSV; the QC figure folder), so what the nodes return is
saved and read back as in a ``kedro run``. ``max_grid_px`` is below the slides' size: the
pairs are registered on a reduction and the aligned MRI is resampled onto the full grid while
it is saved.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.partitions import PartitionedDataset
from registration_inputs import RegistrationInputs

from mrihisto_kedro.datasets.optional_csv_dataset import OptionalCSVDataset
from mrihisto_kedro.datasets.staged_partitioned_dataset import RECORD_NAME, StagedPartitionedDataset
from mrihisto_kedro.imaging.mri import MriNormalisation, recorded_normalisation
from mrihisto_kedro.imaging.registration import (
    grid_points_in_mask,
    target_registration_error,
    transform_from_moving_to_fixed_affine,
)
from mrihisto_kedro.pipelines.registration import create_control_point_pipeline, create_pipeline

_IMAGES = "mrihisto_kedro.datasets.sitk_dataset.SimpleITKImageDataset"


def _folder(path: Path, dataset: str | dict, suffix: str) -> StagedPartitionedDataset:
    return StagedPartitionedDataset(path=str(path), dataset=dataset, filename_suffix=suffix)


def _catalog(inputs: RegistrationInputs, root: Path) -> DataCatalog:
    """Inputs written by the project's datasets into ``root``; outputs beside them."""
    slides = {
        "type": "mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset",
        "save_args": {"flavour": "generic", "compression": "jpeg", "quality": 90},
    }
    catalog = DataCatalog(
        {
            "pairs_with_splits": MemoryDataset(inputs.pairs),
            "downsampled_slides": _folder(root / "downsampled_slides", slides, ".tiff"),
            "mri_slices": _folder(root / "mri_slices", _IMAGES, ".mha"),
            "slide_masks": _folder(root / "slide_masks", _IMAGES, ".mha"),
            "mri_masks": _folder(root / "mri_masks", _IMAGES, ".mha"),
            "registration_ground_truth": OptionalCSVDataset(
                filepath=str(root / "ground_truth.csv"),
                columns=["pair_id", "a11", "a12", "a21", "a22", "tx", "ty"],
            ),
            "data_engineering_report": MemoryDataset(inputs.mask_report),
            "control_points": PartitionedDataset(  # a user's folder, as in catalog.yml
                path=str(root / "control_points"),
                dataset="mrihisto_kedro.datasets.control_points_dataset.ControlPointsDataset",
                filename_suffix=".csv",
            ),
            "params:registration": MemoryDataset(
                {"max_grid_px": 256, "optimiser": {"iterations": [600], "use_masks": False}}
            ),
            "registration_transforms": _folder(
                root / "transforms",
                "mrihisto_kedro.datasets.transform_dataset.SimpleITKTransformDataset",
                ".tfm",
            ),
            "aligned_mri": _folder(root / "aligned_mri", _IMAGES, ".mha"),
            "aligned_mri_masks": _folder(root / "aligned_mri_masks", _IMAGES, ".mha"),
            "registration_report": CSVDataset(
                filepath=str(root / "registration_report.csv"), save_args={"index": False}
            ),
            "registration_qc": MatplotlibDataset(
                filepath=str(root / "qc"), save_args={"format": "png", "dpi": 100}
            ),
        }
    )
    catalog.save("downsampled_slides", inputs.slides)
    catalog.save("mri_slices", inputs.mri_slices)
    catalog.save("slide_masks", inputs.slide_masks)
    catalog.save("mri_masks", inputs.mri_masks)
    inputs.ground_truth.to_csv(root / "ground_truth.csv", index=False)
    (root / "control_points").mkdir()
    inputs.write_control_points(root / "control_points")
    return catalog


@pytest.mark.parametrize(
    ("make", "mode"),
    [(create_pipeline, "intensity"), (create_control_point_pipeline, "control_points")],
)
def test_registration_slice_saves_every_output(
    registration_inputs: RegistrationInputs, tmp_path: Path, make: Callable[[], Pipeline], mode: str
) -> None:
    catalog = _catalog(registration_inputs, tmp_path)
    SequentialRunner().run(make(), catalog)

    report = pd.read_csv(tmp_path / "registration_report.csv")
    assert report["pair_id"].tolist() == ["pair_a", "pair_b"]
    assert (report["mode"] == mode).all() and not report["flagged"].any()
    assert report["tre_px"].iloc[0] < 0.25 and np.isnan(report["tre_px"].iloc[1])
    assert report["slide_mask_method"].tolist() == ["otsu", "otsu"]
    for pair_id in ("pair_a", "pair_b"):
        transform = sitk.ReadTransform(str(tmp_path / "transforms" / f"{pair_id}.tfm"))
        true = transform_from_moving_to_fixed_affine(registration_inputs.truth[pair_id])
        points = grid_points_in_mask(registration_inputs.slide_masks[pair_id], 2.0)
        assert np.mean(target_registration_error(transform, true, points)) < 0.5  # mm
        # registered on a 256 px reduction, written on the full slide grid
        slide = registration_inputs.slides[pair_id]
        mri = sitk.ReadImage(str(tmp_path / "aligned_mri" / f"{pair_id}.mha"))
        mask = sitk.ReadImage(str(tmp_path / "aligned_mri_masks" / f"{pair_id}.mha"))
        for image in (mri, mask):
            assert image.GetSize() == (slide.width, slide.height)
            assert image.GetOrigin() == pytest.approx(
                registration_inputs.slide_masks[pair_id].GetOrigin(), abs=1e-6
            )
        assert mask.GetPixelID() == sitk.sitkUInt8
        # the aligned MRI file keeps the normalisation data_engineering recorded in the slice
        assert recorded_normalisation(mri, pair_id) == MriNormalisation()
        assert (tmp_path / "qc" / f"{pair_id}.png").stat().st_size > 10_000
    for folder in ("transforms", "aligned_mri", "aligned_mri_masks"):
        record = json.loads((tmp_path / folder / RECORD_NAME).read_text())
        assert sorted(record["partitions"]) == ["pair_a", "pair_b"]
