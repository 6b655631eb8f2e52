"""Tests for ``mrihisto_kedro.imaging.sitk_io``: formats, geometry, DICOM series, validation."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from mrihisto_kedro.imaging import sitk_io
from mrihisto_kedro.imaging.sitk_io import (
    DICOM_SERIES,
    ImageReadError,
    ImageWriteError,
    image_format,
    list_dicom_series,
    read_image,
    write_image,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT.parent / "shared" / "data"
T1_2MM = DATA / "mri" / "icbm152_2009c_2mm" / "icbm152_2009c_sym_t1_2mm.nii.gz"

# an oblique, right-handed direction (rotation about a tilted axis)
_ROTATION = sitk.VersorTransform((0.2, 0.3, 0.1), 0.35).GetMatrix()


def _volume(
    pixel_type: int = sitk.sitkFloat32, size: tuple[int, int, int] = (9, 7, 5)
) -> sitk.Image:
    """Random test volume with non-trivial origin (mm), anisotropic spacing (mm) and direction."""
    rng = np.random.default_rng(0)
    values = rng.uniform(-50.0, 400.0, size=size[::-1])
    image = sitk.Cast(sitk.GetImageFromArray(values), pixel_type)
    image.SetOrigin((-12.5, 40.25, 3.0))
    image.SetSpacing((0.4, 0.7, 1.3))
    image.SetDirection(_ROTATION)
    return image


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayViewFromImage(image)


def _assert_same_geometry(a: sitk.Image, b: sitk.Image, atol: float = 1e-5) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=atol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=atol)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr"])
def test_round_trip_keeps_geometry_and_values(tmp_path: Path, suffix: str) -> None:
    image = _volume()
    path = write_image(image, tmp_path / f"vol{suffix}")
    assert path == tmp_path / f"vol{suffix}"
    back = read_image(path)
    _assert_same_geometry(image, back)
    assert back.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(
        sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image)
    )
    # no temporary files or folders are left behind
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".nii.gz"])
def test_round_trip_2d_and_vector_images(tmp_path: Path, suffix: str) -> None:
    rgb = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    image = sitk.GetImageFromArray(rgb, isVector=True)
    image.SetSpacing((0.25, 0.5))
    image.SetOrigin((10.0, -3.0))
    back = read_image(write_image(image, tmp_path / f"rgb{suffix}"))
    assert back.GetNumberOfComponentsPerPixel() == 3
    _assert_same_geometry(image, back)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), rgb)


def test_compress_flag_changes_file_size(tmp_path: Path) -> None:
    image = sitk.Image(64, 64, 16, sitk.sitkUInt16)  # zeros compress very well
    small = write_image(image, tmp_path / "z.mha", compress=True)
    large = write_image(image, tmp_path / "u.mha", compress=False)
    assert small.stat().st_size < large.stat().st_size / 10


def test_overwrite_is_atomic_and_failed_write_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "vol.nii.gz"
    write_image(_volume(), dest)
    before = dest.read_bytes()

    def broken_write(image: sitk.Image, filename: str, *args: object, **kwargs: object) -> None:
        Path(filename).write_bytes(b"half a file")
        raise RuntimeError("sitk::ERROR: disk full")

    monkeypatch.setattr(sitk_io.sitk, "WriteImage", broken_write)
    with pytest.raises(ImageWriteError, match="disk full"):
        write_image(_volume(sitk.sitkInt16), dest)
    monkeypatch.undo()
    assert dest.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.nii.gz"]
    # a successful overwrite replaces the content
    write_image(_volume(sitk.sitkInt16), dest)
    assert read_image(dest).GetPixelID() == sitk.sitkInt16


def test_nifti_header_fields_are_not_copied_into_other_formats(tmp_path: Path) -> None:
    nifti = read_image(write_image(_volume(), tmp_path / "v.nii.gz"))
    assert nifti.HasMetaDataKey("qform_code")
    nifti.SetMetaData("mrihisto_note", "kept")
    mha = write_image(nifti, tmp_path / "v.mha", compress=False)
    header = mha.read_bytes()[:4000].split(b"ElementDataFile")[0].decode()
    assert "qform_code" not in header
    assert "srow_x" not in header
    assert "mrihisto_note = kept" in header
    # the caller's image keeps all its metadata
    assert nifti.HasMetaDataKey("qform_code")
    assert nifti.GetMetaData("mrihisto_note") == "kept"


def test_pixel_type_cast_on_read(tmp_path: Path) -> None:
    path = write_image(_volume(sitk.sitkInt16), tmp_path / "v.nrrd")
    assert read_image(path, pixel_type="sitkFloat32").GetPixelID() == sitk.sitkFloat32
    assert read_image(path, pixel_type=sitk.sitkUInt8).GetPixelID() == sitk.sitkUInt8
    with pytest.raises(ValueError, match="unknown SimpleITK pixel type"):
        read_image(path, pixel_type="Float33")


# ---------------------------------------------------------------------------------------------
# validation


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.nii.gz"
    with pytest.raises(ImageReadError, match=r"nope\.nii\.gz.*does not exist"):
        read_image(missing)


def test_nan_nifti_is_refused_naming_the_file(tmp_path: Path) -> None:
    values = np.ones((4, 5, 6), dtype=np.float32)
    values[1, 2, 3] = np.nan
    values[0, 0, 0] = np.inf
    path = tmp_path / "has_nan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert "has_nan.nii.gz" in message
    assert "2 non-finite" in message
    assert "1 NaN" in message
    # ITK's NIfTI reader turns NaN/inf into 0, which is why read_image scans the file itself
    image = read_image(path, allow_nonfinite=True)
    assert np.isfinite(_array(image)).all()
    assert _array(image)[1, 2, 3] == 0


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_nonfinite_count_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    monkeypatch.setattr(sitk_io, "_GZIP_CHUNK", 7)  # values straddle every chunk boundary
    values = np.arange(4 * 5 * 6, dtype=np.float64).reshape(4, 5, 6)
    values.flat[[3, 50, 119]] = np.nan
    values.flat[[0, 77]] = [np.inf, -np.inf]
    path = tmp_path / f"v{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
    with pytest.raises(
        ImageReadError, match=r"5 non-finite voxel values \(3 NaN, 2 inf\) out of 120"
    ):
        read_image(path)


def test_nan_in_other_formats_is_refused(tmp_path: Path) -> None:
    values = np.zeros((3, 4, 5), dtype=np.float64)
    values[2, 1, 0] = np.nan
    path = tmp_path / "has_nan.mha"
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
    with pytest.raises(ImageReadError, match=r"has_nan\.mha: image has 1 non-finite .*1 NaN"):
        read_image(path)
    assert np.isnan(_array(read_image(path, allow_nonfinite=True))).sum() == 1


@pytest.mark.parametrize("name", ["junk.nii.gz", "junk.nii", "junk.mha", "junk.nrrd"])
def test_corrupt_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).bytes(4000))
    with pytest.raises(ImageReadError, match=re.escape(name)):
        read_image(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mha"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.mha: file is empty"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    """ITK reads truncated NIfTI without complaint; read_image must not."""
    image = sitk.Cast(_volume(size=(40, 40, 40)), sitk.sitkFloat32)
    path = write_image(image, tmp_path / f"full{suffix}")
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(ImageReadError, match=re.escape(f"cut{suffix}")):
        read_image(cut)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(ImageReadError, match="unsupported image extension"):
        read_image(path)
    with pytest.raises(ImageWriteError, match="unsupported image extension"):
        write_image(_volume(), tmp_path / "out.png")
    with pytest.raises(TypeError):
        write_image(np.zeros((3, 3)), tmp_path / "out.mha")  # type: ignore[arg-type]


def test_image_format() -> None:
    assert image_format("a/b.NII.GZ") == "nifti"
    assert image_format("b.mhd") == "metaimage"
    assert image_format("b.nhdr") == "nrrd"
    assert image_format("data/dicom_series") == DICOM_SERIES


# ---------------------------------------------------------------------------------------------
# DICOM


def _slice_tags(path: Path) -> dict[str, str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return {k: reader.GetMetaData(k).strip() for k in reader.GetMetaDataKeys()}


def test_dicom_series_int16_round_trip_with_per_slice_tags(tmp_path: Path) -> None:
    image = _volume(sitk.sitkInt16)
    folder = write_image(image, tmp_path / "series", dicom_series_description="test series")
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == image.GetSize()[2]
    assert image_format(folder) == DICOM_SERIES

    back = read_image(folder)
    _assert_same_geometry(image, back, atol=1e-4)
    assert back.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(
        sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image)
    )
    assert back.GetMetaData("0008|0060") == "MR"
    assert back.GetMetaData("0008|103e") == "test series"

    d = np.asarray(image.GetDirection()).reshape(3, 3)
    series_uids = set()
    for k, f in enumerate(files):
        tags = _slice_tags(f)
        ipp = [float(v) for v in tags["0020|0032"].split("\\")]
        np.testing.assert_allclose(ipp, image.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-4)
        iop = [float(v) for v in tags["0020|0037"].split("\\")]
        np.testing.assert_allclose(iop, np.concatenate([d[:, 0], d[:, 1]]), atol=1e-6)
        # Pixel Spacing is (row spacing, column spacing) = (spacing y, spacing x)
        np.testing.assert_allclose([float(v) for v in tags["0028|0030"].split("\\")], [0.7, 0.4])
        assert float(tags["0018|0050"]) == pytest.approx(1.3)
        assert int(tags["0020|0013"]) == k + 1
        series_uids.add(tags["0020|000e"])
    assert len(series_uids) == 1


def test_dicom_series_float_is_rescaled_within_half_a_step(tmp_path: Path) -> None:
    image = _volume(sitk.sitkFloat32)
    back = read_image(write_image(image, tmp_path / "float_series"))
    _assert_same_geometry(image, back, atol=1e-4)
    original = sitk.GetArrayViewFromImage(image).astype(np.float64)
    step = (original.max() - original.min()) / 65535
    error = np.abs(sitk.GetArrayViewFromImage(back) - original).max()
    assert error <= 0.51 * step * 1.001


def test_dicom_left_handed_volume_comes_back_physically_identical(tmp_path: Path) -> None:
    image = _volume(sitk.sitkInt16)
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))  # determinant -1
    back = read_image(write_image(image, tmp_path / "lh"))
    np.testing.assert_allclose(back.GetDirection(), (1, 0, 0, 0, 1, 0, 0, 0, 1), atol=1e-6)
    n = image.GetSize()[2]
    for k in range(n):
        point = image.TransformIndexToPhysicalPoint((2, 3, k))
        index = back.TransformPhysicalPointToIndex(point)
        assert index == (2, 3, n - 1 - k)
        assert back[index] == image[2, 3, k]


def test_dicom_folder_with_two_series_needs_series_id(tmp_path: Path) -> None:
    first = write_image(_volume(sitk.sitkInt16), tmp_path / "one")
    second_image = sitk.Cast(_volume(sitk.sitkInt16) * 0 + 7, sitk.sitkInt16)
    second = write_image(second_image, tmp_path / "two")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for folder, tag in ((first, "a"), (second, "b")):
        for f in folder.iterdir():
            os.replace(f, mixed / f"{tag}_{f.name}")
    ids = list_dicom_series(mixed)
    assert len(ids) == 2
    with pytest.raises(ImageReadError, match="2 DICOM series") as info:
        read_image(mixed)
    assert all(uid in str(info.value) for uid in ids)
    chosen = next(uid for uid in ids if _slice_tags(next(mixed.glob("b_*")))["0020|000e"] == uid)
    image = read_image(mixed, series_id=chosen)
    assert np.all(sitk.GetArrayViewFromImage(image) == 7)
    with pytest.raises(ImageReadError, match="no DICOM series 'not-a-uid'"):
        read_image(mixed, series_id="not-a-uid")


def test_dicom_folder_without_dicom_files(tmp_path: Path) -> None:
    folder = tmp_path / "not_dicom"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    with pytest.raises(ImageReadError, match="no readable DICOM series"):
        read_image(folder)


def test_dicom_refuses_2d_and_replaces_existing_series(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match="3-D scalar image"):
        write_image(sitk.Image(4, 4, sitk.sitkInt16), tmp_path / "flat")
    folder = write_image(_volume(sitk.sitkInt16, size=(5, 5, 6)), tmp_path / "series")
    write_image(_volume(sitk.sitkInt16, size=(5, 5, 3)), folder)
    assert len(list(folder.iterdir())) == 3
    assert read_image(folder).GetSize() == (5, 5, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


# ---------------------------------------------------------------------------------------------
# real data


@pytest.mark.skipif(not T1_2MM.is_file(), reason=f"shared ICBM 2 mm data not found at {T1_2MM}")
def test_real_icbm_t1_reads_with_its_geometry(tmp_path: Path) -> None:
    image = read_image(T1_2MM)
    assert image.GetSize() == (96, 114, 96)
    assert image.GetSpacing() == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(image.GetDirection(), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    back = read_image(write_image(image, tmp_path / "icbm.mha"))
    _assert_same_geometry(image, back)
