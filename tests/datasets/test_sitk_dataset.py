"""Tests for ``SimpleITKImageDataset``, alone, from catalog config and inside PartitionedDataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from kedro.io import DataCatalog, DatasetError
from kedro_datasets.partitions import PartitionedDataset

from mrihisto_kedro.datasets.sitk_dataset import SimpleITKImageDataset
from mrihisto_kedro.imaging.mri import extract_slice

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT.parent / "shared" / "data"
T1_2MM = DATA / "mri" / "icbm152_2009c_2mm" / "icbm152_2009c_sym_t1_2mm.nii.gz"

DATASET_TYPE = "mrihisto_kedro.datasets.sitk_dataset.SimpleITKImageDataset"


def _volume(seed: int = 0, pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
    """Small volume (6, 5, 4) voxels with spacing (0.4, 0.5, 1.2) mm and an oblique direction."""
    values = np.random.default_rng(seed).uniform(0, 100, size=(4, 5, 6))
    image = sitk.Cast(sitk.GetImageFromArray(values), pixel_type)
    image.SetSpacing((0.4, 0.5, 1.2))
    image.SetOrigin((1.0, -2.0, 3.5 + seed))
    image.SetDirection(sitk.VersorTransform((0.0, 0.0, 1.0), 0.3).GetMatrix())
    return image


def _assert_same(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


@pytest.mark.parametrize("name", ["vol.nii.gz", "vol.mha", "vol.nrrd", "sub/dir/vol.mhd"])
def test_save_load_round_trip(tmp_path: Path, name: str) -> None:
    dataset = SimpleITKImageDataset(filepath=str(tmp_path / name))
    assert not dataset.exists()
    image = _volume()
    dataset.save(image)
    assert dataset.exists()
    _assert_same(image, dataset.load())


def test_describe_and_args(tmp_path: Path) -> None:
    path = tmp_path / "v.nrrd"
    dataset = SimpleITKImageDataset(
        filepath=str(path),
        load_args={"pixel_type": "sitkFloat64"},
        save_args={"compress": False},
        metadata={"owner": "test"},
    )
    described = dataset._describe()
    assert described["filepath"] == str(path)
    assert described["format"] == "nrrd"
    assert described["load_args"] == {"pixel_type": "sitkFloat64"}
    assert dataset.metadata == {"owner": "test"}
    dataset.save(_volume())
    assert dataset.load().GetPixelID() == sitk.sitkFloat64
    assert "v.nrrd" in repr(dataset)


def test_file_url_is_accepted(tmp_path: Path) -> None:
    dataset = SimpleITKImageDataset(filepath=f"file://{tmp_path / 'v.mha'}")
    dataset.save(_volume())
    assert (tmp_path / "v.mha").is_file()


def test_errors_are_dataset_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"missing\.nii\.gz.*does not exist"):
        SimpleITKImageDataset(filepath=str(tmp_path / "missing.nii.gz")).load()
    bad = tmp_path / "bad.mha"
    bad.write_bytes(b"not an image at all" * 10)
    with pytest.raises(DatasetError, match=r"bad\.mha"):
        SimpleITKImageDataset(filepath=str(bad)).load()
    nan = np.zeros((3, 3, 3), dtype=np.float32)
    nan[1, 1, 1] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(DatasetError, match=r"nan\.nii\.gz.*1 NaN"):
        SimpleITKImageDataset(filepath=str(tmp_path / "nan.nii.gz")).load()
    with pytest.raises(DatasetError, match="saves SimpleITK.Image"):
        SimpleITKImageDataset(filepath=str(tmp_path / "x.mha")).save(np.zeros((3, 3)))


def test_bad_configuration(tmp_path: Path) -> None:
    png = SimpleITKImageDataset(filepath=str(tmp_path / "x.png"))  # reported on use
    assert png._describe()["format"] == "unsupported"
    with pytest.raises(DatasetError, match="unsupported image extension"):
        png.save(_volume())
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(DatasetError, match="unsupported image extension"):
        png.load()
    with pytest.raises(DatasetError, match=r"unknown load_args \['mmap'\]"):
        SimpleITKImageDataset(filepath=str(tmp_path / "x.mha"), load_args={"mmap": True})
    with pytest.raises(DatasetError, match=r"unknown save_args \['level'\]"):
        SimpleITKImageDataset(filepath=str(tmp_path / "x.mha"), save_args={"level": 9})
    with pytest.raises(DatasetError, match="local files only"):
        SimpleITKImageDataset(filepath="s3://bucket/x.nii.gz")


def test_dicom_series_folder(tmp_path: Path) -> None:
    dataset = SimpleITKImageDataset(
        filepath=str(tmp_path / "dicom" / "t1"),
        save_args={"dicom_series_description": "T1 test"},
    )
    assert dataset._describe()["format"] == "dicom-series"
    assert not dataset.exists()
    image = _volume(pixel_type=sitk.sitkInt16)
    dataset.save(image)
    assert dataset.exists()
    back = dataset.load()
    _assert_same(image, back)
    assert back.GetMetaData("0008|103e") == "T1 test"


def test_from_catalog_config(tmp_path: Path) -> None:
    catalog = DataCatalog.from_config(
        {
            "volume": {
                "type": DATASET_TYPE,
                "filepath": str(tmp_path / "v.nii.gz"),
                "load_args": {"allow_nonfinite": False},
            }
        }
    )
    image = _volume()
    catalog.save("volume", image)
    _assert_same(image, catalog.load("volume"))


def test_partitioned_folder_of_volumes_loads_lazily(tmp_path: Path) -> None:
    folder = tmp_path / "volumes"
    images = {"specimen_a": _volume(1), "specimen_b": _volume(2), "nested/specimen_c": _volume(3)}
    for key, image in images.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(folder / f"{key}.nii.gz"))
    (folder / "notes.txt").write_text("ignored: wrong suffix")
    partitioned = PartitionedDataset(
        path=str(folder), dataset=DATASET_TYPE, filename_suffix=".nii.gz"
    )
    assert "SimpleITKImageDataset" in repr(partitioned)  # builds a dataset with filepath ""
    loaded = partitioned.load()
    assert sorted(loaded) == sorted(images)
    assert all(callable(v) for v in loaded.values())
    for key, image in images.items():
        _assert_same(image, loaded[key]())


def test_partitioned_folder_without_suffix_tolerates_stray_files(tmp_path: Path) -> None:
    folder = tmp_path / "bids_like"
    folder.mkdir()
    sitk.WriteImage(_volume(1), str(folder / "sub-01_T1w.nii.gz"))
    (folder / "sub-01_T1w.json").write_text('{"RepetitionTime": 2.3}')
    loaded = PartitionedDataset(path=str(folder), dataset=DATASET_TYPE).load()
    assert sorted(loaded) == ["sub-01_T1w.json", "sub-01_T1w.nii.gz"]
    _assert_same(_volume(1), loaded["sub-01_T1w.nii.gz"]())
    with pytest.raises(DatasetError, match=r"sub-01_T1w\.json.*unsupported image extension"):
        loaded["sub-01_T1w.json"]()


def test_partitioned_save_of_2d_slices_keeps_spacing(tmp_path: Path) -> None:
    volume = _volume()
    volume.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    slices = {f"axial_{k:03d}": extract_slice(volume, "axial", k) for k in range(3)}
    slices["sagittal_002"] = extract_slice(volume, "sagittal", 2)
    partitioned = PartitionedDataset(
        path=str(tmp_path / "slices"),
        dataset={"type": DATASET_TYPE, "save_args": {"compress": True}},
        filename_suffix=".mha",
    )
    partitioned.save(slices)
    written = sorted(p.name for p in (tmp_path / "slices").iterdir())
    assert written == [f"{key}.mha" for key in sorted(slices)]
    for key, loader in partitioned.load().items():
        image = loader()
        assert image.GetDimension() == 2
        assert image.GetSpacing() == slices[key].GetSpacing()
        _assert_same(slices[key], image)
    assert slices["axial_000"].GetSpacing() == (0.4, 0.5)
    assert slices["sagittal_002"].GetSpacing() == (0.5, 1.2)


@pytest.mark.skipif(not T1_2MM.is_file(), reason=f"shared ICBM 2 mm T1 not found at {T1_2MM}")
def test_real_volume_through_partitioned_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "mri"
    folder.mkdir()
    (folder / "icbm_t1.nii.gz").symlink_to(T1_2MM)
    partitioned = PartitionedDataset(
        path=str(folder), dataset=DATASET_TYPE, filename_suffix=".nii.gz"
    )
    volume = partitioned.load()["icbm_t1"]()
    assert volume.GetSize() == (96, 114, 96)
    assert volume.GetSpacing() == (2.0, 2.0, 2.0)
