"""A whole new MRI volume through an MRI -> MRI generator, on the input's own grid (issue 14)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from mrihisto_kedro.evaluation.volume_translation import (
    NewVolumeParams,
    resample_in_plane,
    translate_volume,
)
from mrihisto_kedro.imaging.input_spec import InputKind, InputSpec
from mrihisto_kedro.imaging.mri import Plane, extract_slice, slice_count, stack_slices
from mrihisto_kedro.params import ParameterError, parse_params

ICBM_T1 = (
    Path(__file__).resolve().parents[2]
    / "src/mrihisto_kedro/demo/data/icbm152_2009c_2mm/icbm152_2009c_sym_t1_2mm.nii.gz"
)
SPEC = InputSpec(
    kind=InputKind.VOLUME_TO_VOLUME,
    pixel_size_um=(2000.0, 2000.0),
    normalisation_scope="volume",
    plane="axial",
    pad_to=128,
)


def _anisotropic(t1: sitk.Image, spacing: tuple[float, float, float]) -> sitk.Image:
    """The ICBM152 T1 resampled (linear) onto a grid of ``spacing`` mm, same field of view."""
    size = [
        round(n * s / t) for n, s, t in zip(t1.GetSize(), t1.GetSpacing(), spacing, strict=True)
    ]
    return sitk.Resample(
        t1, size, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkLinear, t1.GetOrigin(),
        spacing, t1.GetDirection(), 0.0, sitk.sitkFloat32,
    )  # fmt: skip


@pytest.mark.parametrize("plane", list(Plane))
def test_stack_slices_inverts_extract_slice(plane: Plane) -> None:
    """On a volume whose voxel axes are permuted and flipped against LPS."""
    rng = np.random.default_rng(0)
    volume = sitk.GetImageFromArray(rng.random((5, 6, 7)).astype(np.float32))
    volume.SetDirection((0, 0, -1, 1, 0, 0, 0, -1, 0))
    slices = np.stack(
        [
            sitk.GetArrayFromImage(extract_slice(volume, plane, i))
            for i in range(slice_count(volume, plane))
        ]
    )
    back = stack_slices(volume, plane, slices)
    assert back.GetDirection() == volume.GetDirection()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(volume))


def test_resample_in_plane_keeps_the_field_of_view() -> None:
    t1 = _anisotropic(sitk.ReadImage(str(ICBM_T1)), (1.2, 0.9375, 2.0))
    square = resample_in_plane(t1, "axial", 2.0)
    assert square.GetSpacing() == pytest.approx((2.0, 2.0, 2.0))
    assert square.GetDirection() == t1.GetDirection()
    for axis in (0, 1):  # the extent (size x spacing) is kept to within one new voxel
        extent = t1.GetSize()[axis] * t1.GetSpacing()[axis]
        assert square.GetSize()[axis] * 2.0 == pytest.approx(extent, abs=2.0)

    # the intensity centre of mass lies at the same physical point (no half-voxel shift)
    def centre_of_mass(image: sitk.Image) -> np.ndarray:
        values = sitk.GetArrayFromImage(image).astype(np.float64)  # (z, y, x)
        index = [np.sum(values.sum(axis=tuple(a for a in range(3) if a != k)) * np.arange(n))
                 / values.sum() for k, n in enumerate(values.shape)]  # fmt: skip
        return np.asarray(image.TransformContinuousIndexToPhysicalPoint(index[::-1]))

    np.testing.assert_allclose(centre_of_mass(square), centre_of_mass(t1), atol=0.1)


def test_identity_generator_returns_the_normalised_input_on_its_grid() -> None:
    """With a generator that returns its input, the output is the input scaled by its robust
    percentiles, on the input's (non-square) grid: nothing is stretched or shifted."""
    t1 = _anisotropic(sitk.ReadImage(str(ICBM_T1)), (1.2, 0.9375, 2.0))
    shapes: list[tuple[int, ...]] = []

    def identity(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return batch

    out = translate_volume(t1, identity, SPEC, batch_size=16, source="t1.nii.gz")
    assert out.GetSize() == t1.GetSize() and out.GetSpacing() == t1.GetSpacing()
    assert out.GetOrigin() == t1.GetOrigin() and out.GetDirection() == t1.GetDirection()
    assert all(s[2] % 4 == 0 and s[3] % 4 == 0 and min(s[2:]) >= 128 for s in shapes)
    values = sitk.GetArrayFromImage(t1).astype(np.float64)
    lo, hi = np.percentile(values, [1.0, 99.5])
    expected = np.clip((values - lo) / (hi - lo), 0, 1)
    got = sitk.GetArrayFromImage(out)
    brain = expected > 0.2
    assert np.corrcoef(got[brain], expected[brain])[0, 1] > 0.95  # two linear resamplings
    assert np.median(np.abs(got[brain] - expected[brain])) < 0.03


def test_wrong_inputs_are_refused() -> None:
    t1 = sitk.ReadImage(str(ICBM_T1))
    slide_model = InputSpec(kind=InputKind.SLICE_TO_SLIDE, pixel_size_um=(250.0, 250.0))
    with pytest.raises(ValueError, match="translates slice_to_slide inputs"):
        translate_volume(t1, lambda b: b, slide_model, source="t1.nii.gz")
    four = sitk.JoinSeries([t1, t1])
    with pytest.raises(ValueError, match=r"t1\.nii\.gz is 4-D \(2 volumes\).*volume_index"):
        translate_volume(four, lambda b: b, SPEC, source="t1.nii.gz")
    out = translate_volume(four, lambda b: b, SPEC, volume_index=1, source="t1.nii.gz")
    assert out.GetDimension() == 3 and out.GetSize() == t1.GetSize()


def test_new_volume_parameters_name_the_dotted_key() -> None:
    assert NewVolumeParams().batch_size == 8
    with pytest.raises(ParameterError, match=r"'v\.new_volume\.batch_size' must be >= 1, got 0"):
        parse_params(NewVolumeParams, {"batch_size": 0}, "v.new_volume")
    with pytest.raises(ParameterError, match=r"'v\.new_volume\.volume_index' must be an integer"):
        parse_params(NewVolumeParams, {"volume_index": "1"}, "v.new_volume")
