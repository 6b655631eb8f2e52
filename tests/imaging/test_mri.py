"""Tests for ``mrihisto_kedro.imaging.mri``: slice extraction (shape, spacing, orientation) and
robust normalisation, on the real ICBM 2009c 2 mm T1 where available."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from mrihisto_kedro.imaging.mri import (
    MriNormalisation,
    NormalisationRecordError,
    Plane,
    extract_slice,
    normalised_slice,
    record_normalisation,
    recorded_normalisation,
    robust_normalise,
    slice_count,
)
from mrihisto_kedro.imaging.sitk_io import read_image, write_image
from mrihisto_kedro.params import ParameterError, parse_params

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT.parent / "shared" / "data"
T1_2MM = DATA / "mri" / "icbm152_2009c_2mm" / "icbm152_2009c_sym_t1_2mm.nii.gz"
MASK_1MM = DATA / "mri" / "icbm152_2009c" / "mni_icbm152_t1_tal_nlin_sym_09c_mask.nii.gz"

needs_icbm = pytest.mark.skipif(
    not (T1_2MM.is_file() and MASK_1MM.is_file()),
    reason=f"shared ICBM 2009c data not found ({T1_2MM}, {MASK_1MM})",
)

# a marker on the patient's left, anterior and superior (ITK LPS coordinates, mm)
_MARKER_LPS = (40.0, -20.0, 30.0)
_MARKER_VALUE = 10_000.0


@pytest.fixture(scope="module")
def t1() -> sitk.Image:
    """ICBM 2009c T1, 2 mm, size (96, 114, 96), direction diag(-1, -1, 1) (RAS voxel order)."""
    return sitk.ReadImage(str(T1_2MM), sitk.sitkFloat32)


@pytest.fixture(scope="module")
def brain(t1: sitk.Image) -> sitk.Image:
    """The 1 mm ICBM brain mask resampled (nearest neighbour) onto the 2 mm T1 grid, uint8."""
    mask = sitk.ReadImage(str(MASK_1MM))
    on_grid = sitk.Resample(mask, t1, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0)
    return sitk.Cast(on_grid > 0.5, sitk.sitkUInt8)


def _with_marker(volume: sitk.Image) -> sitk.Image:
    marked = sitk.Image(volume)
    marked[marked.TransformPhysicalPointToIndex(_MARKER_LPS)] = _MARKER_VALUE
    return marked


def _equivalent_index(source: sitk.Image, target: sitk.Image, plane: Plane, index: int) -> int:
    """Slice index in ``target`` of the anatomical slice ``index`` of ``source``."""
    centre = [(n - 1) // 2 for n in source.GetSize()]
    direction = np.asarray(source.GetDirection()).reshape(3, 3)
    normal_phys = {Plane.SAGITTAL: 0, Plane.CORONAL: 1, Plane.AXIAL: 2}[plane]
    axis = int(np.argmax(np.abs(direction[normal_phys])))
    centre[axis] = index
    point = source.TransformIndexToPhysicalPoint(centre)
    t_dir = np.asarray(target.GetDirection()).reshape(3, 3)
    t_axis = int(np.argmax(np.abs(t_dir[normal_phys])))
    return target.TransformPhysicalPointToIndex(point)[t_axis]


def _flip_voxel_axis(volume: sitk.Image, axis: int) -> sitk.Image:
    """Same physical image with the voxel order along ``axis`` reversed (origin/direction fixed)."""
    array = sitk.GetArrayFromImage(volume)
    flipped = sitk.GetImageFromArray(np.flip(array, axis=2 - axis).copy())
    flipped.SetSpacing(volume.GetSpacing())
    corner = [0, 0, 0]
    corner[axis] = volume.GetSize()[axis] - 1
    flipped.SetOrigin(volume.TransformIndexToPhysicalPoint(corner))
    direction = np.asarray(volume.GetDirection()).reshape(3, 3).copy()
    direction[:, axis] *= -1
    flipped.SetDirection(direction.ravel().tolist())
    return flipped


@needs_icbm
def test_counts_shapes_and_spacing(t1: sitk.Image) -> None:
    assert t1.GetSize() == (96, 114, 96)
    expected = {
        # plane: (count, (rows, cols), spacing (col mm, row mm))
        Plane.SAGITTAL: (96, (96, 114), (2.0, 2.0)),  # rows S->I (z), cols A->P (y)
        Plane.CORONAL: (114, (96, 96), (2.0, 2.0)),  # rows S->I (z), cols R->L (x)
        Plane.AXIAL: (96, (114, 96), (2.0, 2.0)),  # rows A->P (y), cols R->L (x)
    }
    for plane, (count, shape, spacing) in expected.items():
        assert slice_count(t1, plane) == count
        out = extract_slice(t1, plane, count // 2)
        assert out.GetDimension() == 2
        assert sitk.GetArrayViewFromImage(out).shape == shape
        assert out.GetSpacing() == spacing
        assert out.GetOrigin() == (0.0, 0.0)
        assert out.GetDirection() == (1.0, 0.0, 0.0, 1.0)
        assert out.GetPixelID() == t1.GetPixelID()
        assert out.GetMetaData("mrihisto_plane") == str(plane)
        assert out.GetMetaData("mrihisto_slice_index") == str(count // 2)


@needs_icbm
def test_anisotropic_spacing_follows_the_axes(t1: sitk.Image) -> None:
    volume = sitk.Image(t1)
    volume.SetSpacing((1.0, 1.5, 2.5))  # x (R-L), y (A-P), z (S-I)
    assert extract_slice(volume, "sagittal", 10).GetSpacing() == (1.5, 2.5)
    assert extract_slice(volume, "coronal", 10).GetSpacing() == (1.0, 2.5)
    assert extract_slice(volume, "axial", 10).GetSpacing() == (1.0, 1.5)
    # the same holds after permuting the voxel axes
    permuted = sitk.DICOMOrient(volume, "PIR")
    assert extract_slice(permuted, "sagittal", 10).GetSpacing() == (1.5, 2.5)
    assert extract_slice(permuted, "axial", 10).GetSpacing() == (1.0, 1.5)


@needs_icbm
def test_sagittal_mid_slice_is_upright_with_anterior_left(brain: sitk.Image) -> None:
    mid = slice_count(brain, "sagittal") // 2
    mask = sitk.GetArrayFromImage(extract_slice(brain, "sagittal", mid)).astype(bool)
    rows = np.flatnonzero(mask.any(axis=1))
    # row 0 is superior: the top rows are background above the brain
    assert not mask[:10].any()
    assert rows[0] < mask.shape[0] // 4
    # the lowest part of the brain is the cerebellum and brainstem: posterior (right half of
    # the image), below the frontal lobe, which is anterior (left half)
    low = mask[rows[-1] - (rows[-1] - rows[0]) // 4 : rows[-1] + 1]
    low_cols = np.nonzero(low)[1]
    assert low_cols.mean() > mask.shape[1] / 2
    high = mask[rows[0] : rows[0] + (rows[-1] - rows[0]) // 2]
    frontal_extent = np.nonzero(high)[1].min()
    assert frontal_extent < low_cols.min()


@needs_icbm
def test_marker_lands_where_the_conventions_say(t1: sitk.Image) -> None:
    marked = _with_marker(t1)
    ix, iy, iz = marked.TransformPhysicalPointToIndex(_MARKER_LPS)
    nx, ny, nz = marked.GetSize()
    # volume voxel axes run R (x decreasing), A (y decreasing), S (z increasing) here, so
    # columns A->P are j reversed, rows S->I are k reversed, columns R->L are i reversed
    expected = {
        Plane.SAGITTAL: (ix, (nz - 1 - iz, ny - 1 - iy)),
        Plane.CORONAL: (iy, (nz - 1 - iz, nx - 1 - ix)),
        Plane.AXIAL: (iz, (ny - 1 - iy, nx - 1 - ix)),
    }
    for plane, (index, (row, col)) in expected.items():
        array = sitk.GetArrayViewFromImage(extract_slice(marked, plane, index))
        found = np.argwhere(array == _MARKER_VALUE)
        assert found.tolist() == [[row, col]], plane
    # left / anterior / superior in image terms: radiological display
    coronal = sitk.GetArrayViewFromImage(extract_slice(marked, "coronal", iy))
    r, c = np.argwhere(coronal == _MARKER_VALUE)[0]
    assert c > coronal.shape[1] / 2  # patient's left is on the image's right
    assert r < coronal.shape[0] / 2  # superior is up
    axial = sitk.GetArrayViewFromImage(extract_slice(marked, "axial", iz))
    r, c = np.argwhere(axial == _MARKER_VALUE)[0]
    assert r < axial.shape[0] / 2  # anterior is up


@needs_icbm
@pytest.mark.parametrize("orientation", ["RAS", "LPS", "LPI", "PIR", "SAL", "flip-x", "flip-z"])
def test_reoriented_volume_gives_the_same_anatomical_slice(
    t1: sitk.Image, orientation: str
) -> None:
    volume = _with_marker(t1)
    volume.SetSpacing((2.0, 1.5, 2.5))  # anisotropic, so axis mix-ups change the spacing
    if orientation.startswith("flip-"):
        other = _flip_voxel_axis(volume, "xyz".index(orientation[-1]))
    else:
        other = sitk.DICOMOrient(volume, orientation)
    marker_index = volume.TransformPhysicalPointToIndex(_MARKER_LPS)
    for plane, through_marker in (
        (Plane.SAGITTAL, marker_index[0]),
        (Plane.CORONAL, marker_index[1]),
        (Plane.AXIAL, marker_index[2]),
    ):
        assert slice_count(other, plane) == slice_count(volume, plane)
        for index in (through_marker, 5, slice_count(volume, plane) - 3):
            ref = extract_slice(volume, plane, index)
            got = extract_slice(other, plane, _equivalent_index(volume, other, plane, index))
            assert got.GetSpacing() == ref.GetSpacing()
            np.testing.assert_array_equal(
                sitk.GetArrayViewFromImage(got), sitk.GetArrayViewFromImage(ref)
            )


def test_out_of_range_and_bad_input() -> None:
    volume = sitk.Image(4, 5, 6, sitk.sitkUInt16)
    assert slice_count(volume, "axial") == 6
    for plane, n in (("sagittal", 4), ("coronal", 5), ("axial", 6)):
        extract_slice(volume, plane, n - 1)
        with pytest.raises(ValueError, match=f"slice_index {n} out of range 0..{n - 1}"):
            extract_slice(volume, plane, n)
        with pytest.raises(ValueError, match="out of range"):
            extract_slice(volume, plane, -1)
    with pytest.raises(ValueError, match="3-D"):
        extract_slice(sitk.Image(4, 5, sitk.sitkUInt8), "axial", 0)
    with pytest.raises(ValueError, match="not a valid Plane"):
        extract_slice(volume, "oblique", 0)
    oblique = sitk.Image(volume)
    c = s = np.sqrt(0.5)
    oblique.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))  # 45 degrees about z
    with pytest.raises(ValueError, match="too oblique"):
        extract_slice(oblique, "sagittal", 0)


def test_robust_normalise_uint16_without_overflow() -> None:
    values = np.array([[0, 1000, 30000], [60000, 65000, 65535]], dtype=np.uint16)
    out = robust_normalise(values, 0.0, 100.0)
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out, values.astype(np.float64) / 65535.0, rtol=1e-6)
    # high 16-bit values only: a uint16 subtraction would wrap around
    high = np.array([60000, 61000, 65535], dtype=np.uint16)
    np.testing.assert_allclose(robust_normalise(high, 0, 100), [0.0, 1000 / 5535, 1.0], rtol=1e-6)
    ramp = np.arange(0, 65536, 7, dtype=np.uint16)
    scaled = robust_normalise(ramp)
    assert 0.0 <= scaled.min() and scaled.max() <= 1.0
    assert np.all(np.diff(scaled) >= 0)  # monotonic, clipped at both ends
    assert (scaled == 0).mean() == pytest.approx(0.01, abs=0.002)
    assert (scaled == 1).mean() == pytest.approx(0.005, abs=0.002)


def test_robust_normalise_int16_and_mask() -> None:
    values = np.array([-1000, -10, 0, 10, 20000], dtype=np.int16)
    mask = np.array([False, True, True, True, False])
    out = robust_normalise(values, 0, 100, mask=mask)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])


def test_robust_normalise_errors() -> None:
    with pytest.raises(ValueError, match="1 non-finite"):
        robust_normalise(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        robust_normalise(np.array([0.0, np.inf, 1.0]))
    with pytest.raises(ValueError, match="constant"):
        robust_normalise(np.full((3, 3), 7, dtype=np.uint16))
    with pytest.raises(ValueError, match="lower_percentile < upper_percentile"):
        robust_normalise(np.arange(5), 50, 10)
    with pytest.raises(ValueError, match="mask selects no pixels"):
        robust_normalise(np.arange(5), mask=np.zeros(5, dtype=bool))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lower_percentile": -0.5}, r"'n\.lower_percentile' must be in \[0, 100\), got -0\.5"),
        ({"lower_percentile": 100}, r"'n\.lower_percentile' must be in \[0, 100\), got 100"),
        ({"upper_percentile": 100.5}, r"'n\.upper_percentile' must be in \(0, 100\]"),
        (
            {"lower_percentile": 60, "upper_percentile": 40},
            r"'n\.lower_percentile' must be below upper_percentile \(40\), got 60",
        ),
        ({"lower_percentile": 99.5}, r"'n\.lower_percentile' must be below upper_percentile"),
    ],
)
def test_normalisation_percentiles_are_checked(values: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_params(MriNormalisation, values, "n")


def test_normalisation_accepts_the_whole_range() -> None:
    full = MriNormalisation(lower_percentile=0, upper_percentile=100)
    assert full == MriNormalisation(0.0, 100.0) and type(full.lower_percentile) is float


@needs_icbm
def test_robust_normalise_real_slice_inside_brain(t1: sitk.Image, brain: sitk.Image) -> None:
    index = slice_count(t1, "axial") // 2
    image = sitk.GetArrayFromImage(extract_slice(t1, "axial", index))
    mask = sitk.GetArrayFromImage(extract_slice(brain, "axial", index)).astype(bool)
    out = robust_normalise(image, 1.0, 99.0, mask=mask)
    assert out.shape == image.shape
    assert out.min() == 0.0 and out.max() == 1.0
    inside = out[mask]
    assert (inside == 1.0).mean() == pytest.approx(0.01, abs=0.005)
    assert 0.3 < np.median(inside) < 0.9


def test_a_normalised_slice_records_its_percentiles_through_an_mha_file(tmp_path: Path) -> None:
    volume = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6))
    norm = MriNormalisation(lower_percentile=0.3, upper_percentile=97.25)
    write_image(normalised_slice(volume, "axial", 2, norm), tmp_path / "slice.mha")
    loaded = read_image(tmp_path / "slice.mha")
    assert recorded_normalisation(loaded, "slice.mha") == norm
    assert loaded.GetMetaData("mrihisto_plane") == "axial"


@pytest.mark.parametrize(
    ("keys", "why"),
    [({}, "records no MRI normalisation"), ({"mrihisto_upper_percentile": "abc"}, "records no")],
)
def test_a_slice_without_its_normalisation_names_the_file_and_the_fix(
    keys: dict[str, str], why: str
) -> None:
    image = sitk.GetImageFromArray(np.ones((3, 3), np.float32))
    if keys:
        record_normalisation(image, MriNormalisation())
    for key, value in keys.items():
        image.SetMetaData(key, value)
    with pytest.raises(NormalisationRecordError, match=f"old.mha: {why}.*re-run"):
        recorded_normalisation(image, "old.mha")
