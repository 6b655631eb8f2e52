"""Paper 003's whole-specimen views: real H&E (CMU-1-Small-Region) on the 2 µm working grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from mrihisto_kedro.demo.msi import DemoSource, load_histology_source
from mrihisto_kedro.imaging.input_spec import InputSpec
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.msi.geometry import histology_on_grid, image_to_array, msi_image
from mrihisto_kedro.msi.joint_reduction import ReductionRecord, ReductionRecordError
from mrihisto_kedro.msi.reduction import PadColour, ReductionMethod
from mrihisto_kedro.msi.tiles import MsiAlignedPair
from mrihisto_kedro.msi.whole_views import MsiWholeViewParams, square_pad, whole_specimen_views
from mrihisto_kedro.params import ParameterError, parse_params
from mrihisto_kedro.pipelines.msi_data_engineering.nodes import build_msi_whole_views

MPP = 0.499  # µm per level-0 pixel of CMU-1-Small-Region
DOWNSAMPLE = 4  # the demo's working grid: 2 µm per pixel


@pytest.fixture(scope="module")
def grid_rgb() -> np.ndarray:
    """A 96 x 128 px crop of the real H&E on the 2 µm grid (uint8 RGB): not square."""
    rgb = load_histology_source(DemoSource.SLIDE).rgb[: 96 * DOWNSAMPLE, : 128 * DOWNSAMPLE]
    return image_to_array(histology_on_grid(rgb, (MPP, MPP), DOWNSAMPLE))


def _pair(rgb: np.ndarray, padding: PadColour, split: str = "test") -> MsiAlignedPair:
    """An MSI made from the H&E's own channels (smoothed to 10 µm) over an inner rectangle."""
    h, w = rgb.shape[:2]
    coverage = np.zeros((h, w), bool)
    coverage[10 : h - 12, 14 : w - 9] = True
    smooth = ndimage.uniform_filter(rgb.astype(np.float32) / 255.0, size=(5, 5, 1))
    pad = 0.0 if padding is PadColour.BLACK else 1.0
    msi = np.where(coverage[..., None], 1.0 - smooth, pad).astype(np.float32)
    return MsiAlignedPair(
        pair_id="case_07",
        specimen_id="s7",
        split=split,
        msi=msi,
        histology=rgb,
        coverage=coverage,
        downsample=DOWNSAMPLE,
        mpp=MPP * DOWNSAMPLE,
    )


def test_square_pad_centres_the_grid(grid_rgb: np.ndarray) -> None:
    pair = _pair(grid_rgb, PadColour.WHITE)
    msi, histology, coverage, (top, left) = square_pad(pair, PadColour.WHITE)
    assert msi.shape == (128, 128, 3) and histology.shape == (128, 128, 3)
    assert (top, left) == (16, 0)
    np.testing.assert_array_equal(histology[16:112], grid_rgb)
    np.testing.assert_array_equal(histology[:16], np.repeat(grid_rgb[:1], 16, axis=0))
    np.testing.assert_array_equal(histology[112:], np.repeat(grid_rgb[-1:], 16, axis=0))
    assert (msi[:16] == 1.0).all() and (msi[112:] == 1.0).all()  # white padding
    assert coverage.sum() == pair.coverage.sum() and not coverage[:16].any()


@pytest.mark.parametrize("padding", [PadColour.BLACK, PadColour.WHITE])
def test_views_of_a_non_square_grid(grid_rgb: np.ndarray, padding: PadColour) -> None:
    pair = _pair(grid_rgb, padding)
    views = whole_specimen_views([pair], MsiWholeViewParams(size=64), padding)
    assert isinstance(views, TileSet)
    assert views.a.shape == (1, 64, 64, 3) and views.a.dtype == np.float32
    assert views.b.shape == (1, 64, 64, 3) and views.b.dtype == np.uint8
    row = views.manifest.iloc[0]
    # the padded square is 128 grid px = 512 level-0 px, starting 16 grid px above the grid
    assert (row["x"], row["y"], row["size"]) == (0, -16 * DOWNSAMPLE, 128 * DOWNSAMPLE)
    assert row["scale"] == pytest.approx(128 * DOWNSAMPLE / 64)  # level-0 px per stored px
    assert row["mpp"] == pytest.approx(MPP * DOWNSAMPLE * 128 / 64)  # µm per stored px
    assert row["msi_fraction"] == pytest.approx(pair.coverage.sum() / 128**2)
    assert (row["tile_id"], row["split"], row["padding"]) == ("case_07_whole", "test", padding)
    # resizing 2x averages: the colours and the padding are kept
    pad = 0.0 if padding is PadColour.BLACK else 1.0
    assert np.abs(views.a[0, :4] - pad).max() < 1e-6  # rows far inside the padding band
    _, histology, _, _ = square_pad(pair, padding)
    assert np.abs(views.b[0].mean(axis=(0, 1)) - histology.mean(axis=(0, 1))).max() < 1.0
    coarse = histology.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))
    assert np.corrcoef(coarse[..., 1].ravel(), views.b[0, ..., 1].ravel())[0, 1] > 0.95


def test_a_grid_of_the_views_size_is_kept_exactly(grid_rgb: np.ndarray) -> None:
    square = np.ascontiguousarray(grid_rgb[:, :96])
    pair = _pair(square, PadColour.BLACK)
    views = whole_specimen_views([pair], MsiWholeViewParams(size=96), PadColour.BLACK)
    np.testing.assert_array_equal(views.a[0], pair.msi)
    np.testing.assert_array_equal(views.b[0], square)
    assert views.manifest.loc[0, "mpp"] == pytest.approx(MPP * DOWNSAMPLE)
    assert views.manifest.loc[0, "scale"] == pytest.approx(DOWNSAMPLE)


def test_bad_sizes_and_no_pairs_are_refused() -> None:
    for size, reason in [
        (8, "must be >= 16, got 8"),
        (64.0, "must be an integer, got 64.0"),
        (True, "must be an integer, got True"),
    ]:
        with pytest.raises(ParameterError) as caught:
            parse_params(MsiWholeViewParams, {"size": size}, "msi_data_engineering.whole_views")
        assert caught.value.key == "msi_data_engineering.whole_views.size"
        assert caught.value.reason == reason
        with pytest.raises(ParameterError, match=f"parameter 'size' {reason}"):
            MsiWholeViewParams(size=size)  # type: ignore[arg-type]
    assert MsiWholeViewParams(size=np.int64(16)).size == 16  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no registered MSI pairs"):
        whole_specimen_views([], MsiWholeViewParams(), PadColour.BLACK)


def _reduced(image: sitk.Image, percentiles: tuple[float, float] = (2.0, 98.0)) -> sitk.Image:
    """``image`` recording a joint PCA reduction scaled between ``percentiles``."""
    record = ReductionRecord(ReductionMethod.PCA, *percentiles)
    record.write(image)
    return image


def test_the_node_makes_one_view_per_specimen_with_its_input_spec(grid_rgb: np.ndarray) -> None:
    """``build_msi_whole_views`` on the SimpleITK images the registration node saves."""
    rgb_level0 = load_histology_source(DemoSource.SLIDE).rgb[: 96 * 4, : 128 * 4]
    ids = ["a1", "b2", "c3"]
    splits = ["train", "val", "test"]
    grid_um = MPP * DOWNSAMPLE
    histology, registered, coverage = {}, {}, {}
    for i, pair_id in enumerate(ids):
        rgb = np.roll(rgb_level0, 40 * i, axis=1)
        grid = histology_on_grid(rgb, (MPP, MPP), DOWNSAMPLE)
        pair = _pair(image_to_array(grid), PadColour.BLACK)
        histology[pair_id] = lambda g=grid: g
        registered[pair_id] = lambda m=pair.msi: _reduced(msi_image(m, (grid_um, grid_um)))
        cover = sitk.GetImageFromArray(pair.coverage.astype(np.uint8))
        coverage[pair_id] = lambda c=cover: c
    manifest = pd.DataFrame(
        {
            "pair_id": ids,
            "specimen_id": ["s1", "s2", "s3"],
            "mpp_x": MPP,
            "mpp_y": MPP,
            "split": splits,
        }
    )
    views = build_msi_whole_views(
        manifest,
        histology,
        registered,
        coverage,
        {"size": 64},
    )
    assert list(views.manifest["pair_id"]) == ids and list(views.manifest["split"]) == splits
    assert views.a.shape == (3, 64, 64, 3)
    assert set(views.manifest["padding"]) == {"black"}
    spec = InputSpec.from_dict(views.attrs["input_spec"])
    assert spec.pixel_size_um == pytest.approx((grid_um * 128 / 64,) * 2)  # 3.992 µm per px
    assert spec.embedding == "pca" and spec.channels == 3
    # what the registered images record, not the reduction parameters (the node has none)
    assert (spec.lower_percentile, spec.upper_percentile) == (2.0, 98.0)

    # a file without the record (an older version's), or pairs reduced differently: refused,
    # naming the pair and the re-run
    unrecorded = dict(registered, b2=lambda: msi_image(np.zeros((4, 4, 3)), (10.0, 10.0)))
    with pytest.raises(ReductionRecordError, match=r"registered MSI of pair b2: records no MSI"):
        build_msi_whole_views(manifest, histology, unrecorded, coverage, {"size": 64})
    other = registered["c3"]
    mixed = dict(registered, c3=lambda: _reduced(other(), (1.0, 99.0)))
    with pytest.raises(
        ReductionRecordError, match=r"differ between pairs: .*in c3; they were not reduced together"
    ):
        build_msi_whole_views(manifest, histology, mixed, coverage, {"size": 64})
