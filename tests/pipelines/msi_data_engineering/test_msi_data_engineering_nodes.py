"""Nodes of the msi_data_engineering pipeline, called directly on a 3-specimen simulated demo
(the demo pipeline's ``make_msi_demo``; its own tests are in ``tests/pipelines/demo``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from matplotlib.figure import Figure
from msi_test_inputs import (
    MPP,
    MSI_PIXEL_UM,
    REDUCTION,
    SPECTRA,
    TILING,
    MsiInputs,
    loaders,
)

from mrihisto_kedro.imaging.input_spec import InputSpec
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.msi.joint_reduction import ReductionRecord
from mrihisto_kedro.msi.reduction import ReductionMethod
from mrihisto_kedro.msi.registration_study import REPORT_COLUMNS
from mrihisto_kedro.params import ParameterError
from mrihisto_kedro.pipelines.msi_data_engineering.nodes import (
    assign_msi_splits,
    build_msi_tiles,
    build_msi_whole_views,
    build_peak_stacks,
    reduce_peak_stacks,
    register_msi_pairs,
)

#: the working grid: 4 level-0 H&E pixels per grid pixel
DOWNSAMPLE = 4


def _register(inputs: MsiInputs, parameters: dict, **overrides: object) -> tuple:
    args = {
        "pairs": inputs.pairs,
        "reduced": loaders(inputs.reduced),
        "histology": loaders(inputs.histology),
        "control_points": inputs.control_point_loaders(),
        "ground_truth": inputs.ground_truth,
        "parameters": parameters,
    }
    return register_msi_pairs(**(args | overrides))


@pytest.fixture(scope="module")
def registered(msi_inputs: MsiInputs) -> tuple:
    """``register_msi_pairs`` in control-point mode (the paper's), with the known affines."""
    return _register(msi_inputs, {"mode": "control_points"})


def test_assign_msi_splits_keeps_specimens_whole() -> None:
    pairs = pd.DataFrame(
        {
            "pair_id": [f"p{k}" for k in range(10)],
            "specimen_id": [f"s{k // 2}" for k in range(10)],  # two sections per specimen
            "mpp_x": 0.5,
            "mpp_y": 0.5,
        }
    )
    out = assign_msi_splits(pairs, {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 1})
    assert (out.groupby("specimen_id")["split"].nunique() == 1).all()
    assert out.groupby("split")["specimen_id"].nunique().to_dict() == {
        "train": 3,
        "val": 1,
        "test": 1,
    }
    with pytest.raises(ParameterError, match=r"msi_data_engineering\.splits"):
        assign_msi_splits(pairs, {"train": 2.0})


def test_build_peak_stacks_images_the_same_peaks_in_every_specimen(
    msi_inputs: MsiInputs,
) -> None:
    stacks, peaks = build_peak_stacks(msi_inputs.pairs, msi_inputs.imzml_loaders(), SPECTRA)
    assert list(stacks) == msi_inputs.pair_ids
    assert len(peaks) == 12 and peaks["mz"].is_monotonic_increasing
    for image in stacks.values():
        assert image.GetNumberOfComponentsPerPixel() == 12
        assert image.GetSize() == (16, 16)
        assert image.GetSpacing() == pytest.approx((MSI_PIXEL_UM / 1000.0,) * 2)
    missing = dict(list(msi_inputs.imzml_loaders().items())[:2])
    with pytest.raises(ValueError, match="no imzML file for pair.s. msi_region_02"):
        build_peak_stacks(msi_inputs.pairs, missing, SPECTRA)


def test_reduce_peak_stacks_keeps_the_geometry(msi_inputs: MsiInputs, tmp_path: Path) -> None:
    reduced = reduce_peak_stacks(loaders(msi_inputs.peak_stacks), REDUCTION)
    assert list(reduced) == sorted(msi_inputs.peak_stacks)
    for pair_id, image in reduced.items():
        stack = msi_inputs.peak_stacks[pair_id]
        assert image.GetNumberOfComponentsPerPixel() == 3
        assert image.GetSize() == stack.GetSize()
        assert image.GetSpacing() == stack.GetSpacing()
        values = sitk.GetArrayViewFromImage(image)
        assert values.dtype == np.float32 and 0.0 <= values.min() and values.max() <= 1.0
        # the same pixels as the node that made the shared fixture: the reduction is seeded
        np.testing.assert_array_equal(
            values, sitk.GetArrayViewFromImage(msi_inputs.reduced[pair_id])
        )
        # each image records its reduction, and a .mha round trip keeps it
        path = tmp_path / f"{pair_id}.mha"
        sitk.WriteImage(image, str(path))
        record = ReductionRecord.read(sitk.ReadImage(str(path)), pair_id)
        assert record == ReductionRecord(ReductionMethod.PCA, 1.0, 99.0)


def test_register_msi_pairs_recovers_the_known_affines(
    msi_inputs: MsiInputs, registered: tuple
) -> None:
    transforms, grids, black, white, coverage, report, qc = registered
    for outputs in (transforms, grids, black, white, coverage):
        assert list(outputs) == msi_inputs.pair_ids
    assert list(qc) == [f"{p}.png" for p in msi_inputs.pair_ids]
    assert all(isinstance(figure, Figure) for figure in qc.values())
    assert (
        tuple(report.columns) == REPORT_COLUMNS and list(report["pair_id"]) == msi_inputs.pair_ids
    )
    assert list(report["split"]) == list(msi_inputs.pairs["split"])
    assert (report["mode"] == "control_points").all() and (report["n_control_points"] == 8).all()
    assert (report["tre_mean_um"] < 5.0).all(), report[["pair_id", "tre_mean_um"]]
    assert (report["tre_mean_um"] < report["tre_initial_um"]).all()
    assert (report["cp_rms_um"] < 10.0).all() and report["start_offset_x_px"].isna().all()
    assert report["grid_mpp_um"].to_numpy() == pytest.approx(MPP * DOWNSAMPLE)
    for pair_id in msi_inputs.pair_ids:
        grid = grids[pair_id]
        assert grid.GetSize() == (384 // DOWNSAMPLE,) * 2
        assert grid.GetPixelID() == sitk.sitkVectorUInt8
        cover = sitk.GetArrayFromImage(coverage[pair_id]) > 0
        b, w = (sitk.GetArrayFromImage(images[pair_id]) for images in (black, white))
        assert black[pair_id].GetSpacing() == grid.GetSpacing()
        assert 0.4 < cover.mean() < 0.9  # the MSI covers the crop's centre, padding around
        assert (b[~cover] <= w[~cover]).all() and (b[0, 0] == 0.0).all() and (w[0, 0] == 1.0).all()
        inner = sitk.GetArrayFromImage(sitk.BinaryErode(coverage[pair_id], (3, 3))) > 0
        np.testing.assert_allclose(b[inner], w[inner], atol=1e-6)  # one registration, 2 paddings


def test_register_msi_pairs_without_ground_truth_leaves_the_tre_empty(
    msi_inputs: MsiInputs, registered: tuple
) -> None:
    transforms, *_, report, _ = _register(msi_inputs, {"mode": "control_points"}, ground_truth=None)
    assert report[["tre_mean_um", "tre_initial_um", "tre_msi_px"]].isna().all().all()
    for pair_id, transform in transforms.items():  # the same registration as with a truth
        np.testing.assert_allclose(
            transform.GetParameters(), registered[0][pair_id].GetParameters()
        )


def test_register_msi_pairs_needs_landmarks_in_control_point_mode_only(
    msi_inputs: MsiInputs,
) -> None:
    some = dict(list(msi_inputs.control_point_loaders().items())[1:])
    with pytest.raises(ValueError, match="no control point file for pair.s. msi_region_00"):
        _register(msi_inputs, {"mode": "control_points"}, control_points=some)
    with pytest.raises(ParameterError, match=r"msi_data_engineering\.registration"):
        _register(msi_inputs, {"mode": "landmarks"})
    *_, report, _ = _register(msi_inputs, {"mode": "intensity"}, control_points={})
    assert (report["mode"] == "intensity").all() and report["cp_rms_um"].isna().all()
    for axis in ("x", "y"):  # which of the 9 starts won, in MSI pixels
        assert set(report[f"start_offset_{axis}_px"]) <= {-1.0, 0.0, 1.0}
    assert report["tre_mean_um"].median() < 5.0, report[["pair_id", "tre_mean_um"]]


def _tiles(msi_inputs: MsiInputs, registered: tuple, colour: str) -> TileSet:
    _, grids, black, white, coverage, _, _ = registered
    padded = black if colour == "black" else white
    return build_msi_tiles(
        msi_inputs.pairs,
        loaders(grids),
        loaders(padded),
        loaders(coverage),
        TILING,
        colour,
    )


def test_build_msi_tiles_label_the_padding_and_record_level0_coordinates(
    msi_inputs: MsiInputs, registered: tuple
) -> None:
    black, white = (_tiles(msi_inputs, registered, c) for c in ("black", "white"))
    m = black.manifest
    assert len(m) > 0 and black.a.shape[1:] == (16, 16, 3) and black.b.dtype == np.uint8
    assert set(m["padding"]) == {"black"} and set(white.manifest["padding"]) == {"white"}
    pd.testing.assert_frame_equal(m.drop(columns="padding"), white.manifest.drop(columns="padding"))
    np.testing.assert_array_equal(black.b, white.b)
    assert (m["msi_fraction"] >= 0.5).all() and (m["scale"] == DOWNSAMPLE).all()
    assert (m["size"] == 16 * DOWNSAMPLE).all() and (m["x"] % (8 * DOWNSAMPLE) == 0).all()
    splits = msi_inputs.pairs.set_index("pair_id")["split"]
    assert (m["split"] == m["pair_id"].map(splits)).all()
    spec = InputSpec.from_dict(black.attrs["input_spec"])
    assert spec.kind == "msi_to_slide" and spec.embedding == "pca"
    # the reduction as the registered images record it (reduce -> register -> tiles), not a
    # parameter: the node has no reduction input any more
    assert (spec.lower_percentile, spec.upper_percentile) == (1.0, 99.0)
    assert spec.pixel_size_um == pytest.approx((MPP * DOWNSAMPLE,) * 2)
    with pytest.raises(ParameterError, match=r"msi_data_engineering\.tiling"):
        build_msi_tiles(msi_inputs.pairs, {}, {}, {}, {"tile_size": 4})


def test_build_msi_whole_views_one_per_specimen(msi_inputs: MsiInputs, registered: tuple) -> None:
    _, grids, black, _, coverage, _, _ = registered
    views = build_msi_whole_views(
        msi_inputs.pairs, loaders(grids), loaders(black), loaders(coverage), {"size": 32}
    )
    assert list(views.manifest["pair_id"]) == msi_inputs.pair_ids
    assert views.a.shape == (3, 32, 32, 3) and set(views.manifest["padding"]) == {"black"}
    assert (views.manifest["size"] == 96 * DOWNSAMPLE).all()
    spec = InputSpec.from_dict(views.attrs["input_spec"])
    assert spec.pixel_size_um == pytest.approx((MPP * DOWNSAMPLE * 96 / 32,) * 2)
