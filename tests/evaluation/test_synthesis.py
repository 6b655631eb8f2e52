"""Synthetic whole slides: new-MRI preparation, seam comparison, the lazily written TIFF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
import SimpleITK as sitk
from evaluation_inputs import tiny_pix2pix

from mrihisto_kedro.datasets.slide_dataset import OpenSlideDataset
from mrihisto_kedro.evaluation.synthesis import (
    NewSliceParams,
    SynthesisParams,
    SyntheticSlideJob,
    compare_seams,
    mri_to_model_input,
    new_slice_input,
    stitch_options,
)
from mrihisto_kedro.imaging.mri import Plane
from mrihisto_kedro.imaging.stitching import WeightKind
from mrihisto_kedro.nn.training import export_generator
from mrihisto_kedro.params import ParameterError, parse_params


@pytest.fixture(scope="module")
def payload() -> dict:
    return export_generator(tiny_pix2pix())


def _volume() -> sitk.Image:
    rng = np.random.default_rng(0)
    arr = (rng.random((12, 40, 30)) * 1000).astype(np.int16)  # (z, y, x) scanner units
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.5, 0.5, 1.0))
    return image


def test_new_slice_from_a_volume_is_normalised_and_resampled() -> None:
    with pytest.raises(ValueError, match=r"scan\.nii\.gz is a 3-D volume.*slice_index"):
        new_slice_input(_volume(), NewSliceParams(), "scan.nii.gz")
    with pytest.raises(ValueError, match=r"scan\.nii\.gz: axial slice_index 99 out of range"):
        new_slice_input(_volume(), NewSliceParams(slice_index=99), "scan.nii.gz")
    x, mpp = new_slice_input(_volume(), NewSliceParams(slice_index=5), "scan.nii.gz")
    assert x.shape == (1, 40, 30) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0  # robust percentiles -> [0, 1] -> [-1, 1]
    assert mpp == pytest.approx(500.0)  # 0.5 mm pixels
    # the model was trained at 250 um/px: the slice is upsampled 2x
    x2, mpp2 = new_slice_input(
        _volume(), NewSliceParams(slice_index=5, model_mpp=250.0), "scan.nii.gz"
    )
    assert x2.shape == (1, 80, 60) and mpp2 == pytest.approx(250.0)


def test_new_slice_with_non_square_pixels_keeps_its_proportions() -> None:
    """A 1.2 x 0.9375 mm slice (issue 14) was written as if its pixels were square (the brain
    stretched 1.28x): it is resampled to square pixels of the model's size from its file."""
    from mrihisto_kedro.imaging.input_spec import InputKind, InputSpec

    ramp = np.add.outer(np.arange(64.0), np.arange(50.0)).astype(np.float32)  # (rows, cols)
    image = sitk.GetImageFromArray(ramp)
    image.SetSpacing((1.2, 0.9375))  # (col mm, row mm)
    spec = InputSpec(kind=InputKind.SLICE_TO_SLIDE, pixel_size_um=(300.0, 300.0))
    x, mpp = new_slice_input(image, NewSliceParams(), "slice.mha", spec)
    assert mpp == pytest.approx(300.0)
    assert x.shape == (1, round(64 * 937.5 / 300), round(50 * 1200 / 300))  # (1, 200, 200)
    assert x.shape[2] * mpp == pytest.approx(50 * 1200.0, abs=mpp)  # width in µm kept
    assert x.shape[1] * mpp == pytest.approx(64 * 937.5, abs=mpp)  # height in µm kept
    # without a model pixel size: the finer spacing, made square
    x2, mpp2 = new_slice_input(image, NewSliceParams(), "slice.mha")
    assert mpp2 == pytest.approx(937.5) and x2.shape == (1, 64, 64)
    volume_model = InputSpec(kind=InputKind.VOLUME_TO_VOLUME, pixel_size_um=(2000.0, 2000.0))
    with pytest.raises(ValueError, match="translates MRI volumes.*--pipeline=inference_volume"):
        new_slice_input(image, NewSliceParams(), "slice.mha", volume_model)
    msi_model = InputSpec(
        kind=InputKind.MSI_TO_SLIDE,
        pixel_size_um=(8.0, 8.0),
        channels=3,
        normalisation_scope="dataset",
        embedding="pca",
    )
    with pytest.raises(ValueError, match="slice.mha translates MSI embeddings \\(pca"):
        new_slice_input(image, NewSliceParams(), "slice.mha", msi_model)


def test_new_slice_onto_a_reference_grid(tmp_path: Path) -> None:
    reference = sitk.Image(20, 16, sitk.sitkFloat32)
    reference.SetSpacing((1.0, 1.0))
    reference.SetOrigin((2.0, 3.0))
    sitk.WriteImage(reference, str(tmp_path / "grid.mha"))
    slice_2d = sitk.GetImageFromArray(np.linspace(0, 1, 40 * 30).reshape(40, 30).astype("f4"))
    slice_2d.SetSpacing((0.5, 0.5))
    params = NewSliceParams(reference_image=str(tmp_path / "grid.mha"), normalise=False)
    x, mpp = new_slice_input(slice_2d, params, "slice.mha")
    assert x.shape == (1, 16, 20) and mpp == pytest.approx(1000.0)
    # grid point (0, 0) is at (2 mm, 3 mm) = MRI pixel (4, 6): value 6 * 30 + 4 of the ramp
    expected = (6 * 30 + 4) / (40 * 30 - 1)
    assert (x[0, 0, 0] + 1) / 2 == pytest.approx(expected, abs=1e-5)
    bad = NewSliceParams(reference_image=str(tmp_path / "grid.mha"), transform="missing.tfm")
    with pytest.raises(ValueError, match="missing.tfm"):
        new_slice_input(slice_2d, bad, "slice.mha")


def test_blending_lowers_the_seam_score_of_a_drifting_model() -> None:
    """A model whose output drifts from window to window (like a generator's tile-wise colour
    shifts): plain tiling shows seams, Hann blending hides them."""
    rng = np.random.default_rng(1)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(1, 160, 200)), 1), 2)
    mri = (smooth - smooth.min()) / np.ptp(smooth) * 2 - 1
    calls = {"n": 0}

    def drifting(batch: np.ndarray) -> np.ndarray:
        out = []
        for window in batch:
            calls["n"] += 1
            offset = 0.3 * np.sin(calls["n"] * 1.7)
            out.append(np.repeat(np.clip(window * 0.5 + offset, -1, 1), 3, axis=0))
        return np.stack(out).astype(np.float32)

    seams = compare_seams(mri.astype(np.float32), drifting, 3, 40, SynthesisParams())
    assert seams.plain > 1.5
    assert abs(seams.blended - 1.0) < abs(seams.plain - 1.0)
    assert seams.plain_image.shape == seams.blended_image.shape == (160, 200, 3)
    assert 0.0 <= seams.blended_image.min() and seams.blended_image.max() <= 1.0


def test_job_is_written_by_the_slide_dataset(tmp_path: Path, payload: dict) -> None:
    image = sitk.GetImageFromArray(np.tile(np.linspace(0, 1, 90, dtype="f4"), (70, 1)))
    mri = mri_to_model_input(image, 1.0)
    job = SyntheticSlideJob(
        mri=mri,
        generator=payload,
        options=stitch_options(SynthesisParams(), 32),
        mpp=270.0,
        device="cpu",
        description={"Experiment": "test"},
    )
    path = tmp_path / "out" / "pair.svs"
    OpenSlideDataset(str(path), save_args={"compression": "lzw"}).save(job)
    with openslide.OpenSlide(str(path)) as slide:
        assert slide.dimensions == (90, 70)
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(270.0)
        assert slide.properties["openslide.vendor"] == "aperio"
        pixels = np.asarray(slide.read_region((0, 0), 0, (90, 70)).convert("RGB"))
    assert pixels.std() > 0  # the generator's output, not a blank canvas


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"window": 8}, "'synthesis.window' must be >= 16, got 8"),
        ({"overlap_fraction": 1.0}, "'synthesis.overlap_fraction' must be in [0, 1), got 1.0"),
        ({"overlap_fraction": -0.1}, "'synthesis.overlap_fraction' must be in [0, 1)"),
        ({"margin": -1}, "'synthesis.margin' must be >= 0, got -1"),
        ({"batch_size": 0}, "'synthesis.batch_size' must be >= 1, got 0"),
        ({"weights": "cosine"}, "'synthesis.weights' = 'cosine' is not one of"),
        ({"a_range": [0, 1, 2]}, "'synthesis.a_range' must have 2 items, got 3"),
    ],
)
def test_synthesis_parameters_name_the_dotted_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError) as error:
        parse_params(SynthesisParams, values, "synthesis")
    assert message in str(error.value)


def test_new_slice_parameters_coerce_and_check() -> None:
    params = parse_params(NewSliceParams, {"plane": "Coronal", "model_mpp": 250}, "n")
    assert params.plane is Plane.CORONAL and params.model_mpp == 250.0
    assert SynthesisParams(weights="gaussian", splits=["a"]).weights is WeightKind.GAUSSIAN
    with pytest.raises(ParameterError, match=r"'n\.model_mpp' must be > 0, got 0\.0"):
        parse_params(NewSliceParams, {"model_mpp": 0.0}, "n")
    with pytest.raises(ParameterError, match=r"'n\.plane' = 'oblique' is not one of"):
        parse_params(NewSliceParams, {"plane": "oblique"}, "n")
