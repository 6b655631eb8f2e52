"""data_engineering on inputs that no one here made, re-encoded as users' files come (issue 14).

The real Aperio slide ``CMU-1-Small-Region.svs`` (2220 x 2967 px, 0.499 µm/px) is rewritten as a
JPEG pyramid that records no pixel size (as TCGA JPEG2000 slides and plain TIFF exports come);
a 16-bit greyscale TIFF; the real ICBM152 T1 (2 mm) as a DICOM series folder, a multi-frame
``.dcm`` and inside a 4-D NIfTI. The pipeline runs on a catalog of the project's own datasets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest
import SimpleITK as sitk
import tifffile
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from mrihisto_kedro.imaging.mri import extract_slice, robust_normalise
from mrihisto_kedro.imaging.sitk_io import write_image
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import SlideReadError, open_slide
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff
from mrihisto_kedro.manifest import ManifestError
from mrihisto_kedro.pipelines.data_engineering import create_pipeline

ICBM_T1 = (
    Path(__file__).resolve().parents[2]
    / "src/mrihisto_kedro/demo/data/icbm152_2009c_2mm/icbm152_2009c_sym_t1_2mm.nii.gz"
)
CMU_MPP = 0.499


@pytest.fixture(scope="module")
def cmu_without_mpp(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CMU-1-Small-Region as a 3-level JPEG pyramid with no MPP anywhere in the file."""
    source = shared_data / "histology" / "CMU-1-Small-Region.svs"
    if not source.is_file():
        pytest.skip(f"{source} is absent (../shared/data)")
    with open_slide(source) as slide:
        assert slide.mpp == pytest.approx((CMU_MPP, CMU_MPP), rel=1e-2)
        rgb = slide.read_level(0)
    folder = tmp_path_factory.mktemp("user_slides")
    path = folder / "tcga_like.tiff"
    write_pyramidal_tiff(SlideImage(rgb, mpp=None), path, flavour="generic", compression="jpeg")
    with open_slide(path) as slide:
        assert slide.mpp is None and slide.level_count >= 3
    return path


def _catalog(
    slides: Path,
    project: Path,
    pairs: pd.DataFrame,
    params: dict,
    mri: Path = ICBM_T1.parent,
) -> DataCatalog:
    slide_folder = {
        "type": "partitions.PartitionedDataset",
        "dataset": {"type": "mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset"},
    }
    image_folder = {
        "type": "partitions.PartitionedDataset",
        "dataset": {"type": "mrihisto_kedro.datasets.sitk_dataset.SimpleITKImageDataset"},
    }
    out = project / "data"
    config = {
        "slides": {**slide_folder, "path": str(slides)},
        "mri_volumes": {
            "type": "mrihisto_kedro.datasets.mri_folder_dataset.MriFolderDataset",
            "path": str(mri),
        },
        "downsampled_slides": {
            **slide_folder,
            "path": str(out / "downsampled_slides"),
            "filename_suffix": ".tiff",
            "dataset": {
                "type": "mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset",
                "save_args": {"flavour": "generic"},
            },
        },
        "mri_slices": {**image_folder, "path": str(out / "mri"), "filename_suffix": ".mha"},
        "slide_masks": {**image_folder, "path": str(out / "smask"), "filename_suffix": ".mha"},
        "mri_masks": {**image_folder, "path": str(out / "mmask"), "filename_suffix": ".mha"},
        "pairs_with_splits": {
            "type": "mrihisto_kedro.datasets.manifest_dataset.PairsManifestDataset",
            "filepath": str(out / "pairs_with_splits.csv"),
        },
        "data_engineering_report": {
            "type": "pandas.CSVDataset",
            "filepath": str(out / "report.csv"),
        },
    }
    catalog = DataCatalog.from_config(config)
    catalog["pairs"] = pairs
    catalog["params:data_engineering"] = params
    return catalog


def _pairs(slide: str, **extra: str) -> pd.DataFrame:
    row = {
        "pair_id": "case_01",
        "specimen_id": "patient_01",
        "slide": slide,
        "mri": "icbm152_2009c_sym_t1_2mm.nii.gz",
        "plane": "axial",
        "slice_index": "48",
        "split": "train",
        **extra,
    }
    return pd.DataFrame([row])


def _run(catalog: DataCatalog) -> None:
    SequentialRunner().run(create_pipeline(), catalog)


def test_slide_without_mpp_stops_before_any_work(cmu_without_mpp: Path, tmp_path: Path) -> None:
    catalog = _catalog(cmu_without_mpp.parent, tmp_path, _pairs("tcga_like.tiff"), {})
    with pytest.raises(ManifestError) as err:
        _run(catalog)
    message = str(err.value)
    assert f"slide {cmu_without_mpp} records no pixel size" in message  # the user's file
    assert "'slide_mpp'" in message and "--params=data_engineering.slide_mpp=" in message
    assert not (tmp_path / "data").exists()  # nothing was downsampled or extracted


@pytest.mark.parametrize("where", ["manifest", "parameter"])
def test_supplied_mpp_reaches_every_output(
    cmu_without_mpp: Path, tmp_path: Path, where: str
) -> None:
    pairs = _pairs("tcga_like.tiff", slide_mpp=str(CMU_MPP)) if where == "manifest" else None
    params = {"slide_mpp": CMU_MPP} if where == "parameter" else {}
    catalog = _catalog(cmu_without_mpp.parent, tmp_path, _pairs("tcga_like.tiff"), params)
    if pairs is not None:
        catalog["pairs"] = pairs
    _run(catalog)
    validated = catalog.load("pairs_with_splits")
    assert validated.loc[0, "slide_mpp_source"] == where
    down = openslide.OpenSlide(tmp_path / "data" / "downsampled_slides" / "case_01.tiff")
    assert float(down.properties["openslide.mpp-x"]) == pytest.approx(CMU_MPP * 15, rel=1e-4)
    assert float(down.properties["openslide.mpp-y"]) == pytest.approx(CMU_MPP * 15, rel=1e-4)
    assert down.dimensions == (round(2220 / 15), round(2967 / 15))
    report = catalog.load("data_engineering_report")
    assert report.loc[0, "slide_mpp"] == pytest.approx(CMU_MPP * 15, rel=1e-4)
    # the mask covers the slide's physical size: 2220 px x 0.499 µm = 1.108 mm wide
    mask = catalog.load("slide_masks")["case_01"]()
    assert mask.GetSize()[0] * mask.GetSpacing()[0] == pytest.approx(2220 * CMU_MPP / 1000, 0.01)


def test_sixteen_bit_tiff_is_refused_not_crushed(tmp_path: Path) -> None:
    """OpenSlide opens a 16-bit greyscale tiled TIFF as generic-tiff and keeps the high byte:
    12-bit data 0..4094 comes back as 0..15. The slide is refused at open, naming the file."""
    values = (np.arange(512 * 512, dtype=np.int64).reshape(512, 512) % 4095).astype(np.uint16)
    path = tmp_path / "fluorescence.tif"
    tifffile.imwrite(path, values, tile=(256, 256), resolution=(1e4 / 0.5, 1e4 / 0.5))
    crushed = np.asarray(openslide.OpenSlide(path).read_region((0, 0), 0, (512, 512)))
    assert crushed[..., 0].max() == 4094 >> 8  # what OpenSlide alone would hand on
    with pytest.raises(SlideReadError) as err:
        open_slide(path)
    message = str(err.value)
    assert str(path) in message and "16 bits per sample" in message and "vips" in message
    catalog = _catalog(tmp_path, tmp_path / "project", _pairs("fluorescence.tif"), {})
    with pytest.raises(Exception, match="16 bits per sample"):
        _run(catalog)
    assert not (tmp_path / "project" / "data").exists()


# ------------------------------------------------------------------ MRI as users have it
def _tissue(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.sin(x / 37.0) + np.sin(y / 51.0)
    rgb = np.stack([230 - 25 * f, 170 - 45 * f, 215 - 20 * f], axis=-1)
    rgb[f <= -0.6] = 245
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def mri_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, sitk.Image]:
    """A slide folder, and an MRI folder holding the ICBM152 T1 as a DICOM series folder (int16,
    classic MR), a multi-frame .dcm, a 4-D NIfTI of (T1, 2 x T1) and a BIDS-style sidecar."""
    root = tmp_path_factory.mktemp("user_mri")
    slides = root / "slides"
    slides.mkdir()
    write_pyramidal_tiff(SlideImage(_tissue(1200, 1500), mpp=(0.5, 0.5)), slides / "s1.tiff")
    t1 = sitk.ReadImage(str(ICBM_T1))
    t1_int16 = sitk.Cast(sitk.RescaleIntensity(t1, 0, 4000), sitk.sitkInt16)
    mri = root / "mri"
    write_image(t1_int16, mri / "subject01_t1")  # one .dcm per slice
    multi = sitk.Image(t1_int16)
    multi.SetMetaData("0008|0060", "MR")
    sitk.WriteImage(multi, str(mri / "subject02_t1.dcm"))  # one multi-frame file
    array = sitk.GetArrayFromImage(t1)
    four = sitk.GetImageFromArray(np.stack([array, 2 * array]), isVector=False)
    four.SetSpacing((*t1.GetSpacing(), 3.0))
    four.SetOrigin((*t1.GetOrigin(), 0.0))
    d = np.asarray(t1.GetDirection()).reshape(3, 3)
    four.SetDirection(tuple(np.block([[d, np.zeros((3, 1))], [np.zeros((1, 3)), 1.0]]).ravel()))
    sitk.WriteImage(four, str(mri / "subject03_bold.nii.gz"))
    (mri / "subject03_bold.json").write_text("{}")
    return slides, mri, t1_int16


def _expected_slice(volume: sitk.Image) -> np.ndarray:
    plane = extract_slice(volume, "axial", 48)
    return robust_normalise(sitk.GetArrayViewFromImage(plane), 1.0, 99.5)


def test_mri_folder_lists_files_and_dicom_series(mri_folder: tuple) -> None:
    from mrihisto_kedro.datasets.mri_folder_dataset import MriFolderDataset

    _, mri, _ = mri_folder
    names = set(MriFolderDataset(path=str(mri)).load())
    assert {"subject01_t1", "subject02_t1.dcm", "subject03_bold.nii.gz"} <= names
    assert "subject03_bold.json" not in names
    assert "subject01_t1/slice_00010.dcm" in names  # one slice of the series, by its path


@pytest.mark.parametrize("name", ["subject01_t1", "subject02_t1.dcm"])
def test_dicom_from_the_manifest_keeps_spacing_and_voxels(
    mri_folder: tuple, tmp_path: Path, name: str
) -> None:
    slides, mri, t1_int16 = mri_folder
    pairs = _pairs("s1.tiff", mri=name)
    catalog = _catalog(slides, tmp_path, pairs, {}, mri=mri)
    _run(catalog)
    out = sitk.ReadImage(str(tmp_path / "data" / "mri" / "case_01.mha"))
    assert out.GetSpacing() == pytest.approx((2.0, 2.0))
    np.testing.assert_allclose(sitk.GetArrayFromImage(out), _expected_slice(t1_int16), atol=1e-6)


def test_four_d_mri_needs_a_volume_index(mri_folder: tuple, tmp_path: Path) -> None:
    slides, mri, _ = mri_folder
    pairs = _pairs("s1.tiff", mri="subject03_bold.nii.gz")
    with pytest.raises(ManifestError) as err:
        _run(_catalog(slides, tmp_path, pairs, {}, mri=mri))
    assert f"MRI {mri / 'subject03_bold.nii.gz'} is 4-D (2 volumes)" in str(err.value)
    assert "'mri_volume'" in str(err.value)
    assert not (tmp_path / "data").exists()
    catalog = _catalog(
        slides, tmp_path, _pairs("s1.tiff", mri=pairs.mri[0], mri_volume="1"), {}, mri=mri
    )
    _run(catalog)
    out = sitk.ReadImage(str(tmp_path / "data" / "mri" / "case_01.mha"))
    t1 = sitk.ReadImage(str(ICBM_T1))
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(out), _expected_slice(2 * t1), atol=1e-6
    )  # the normalised slice of volume 1 (2 x T1) is that of T1; its spacing is the volume's
    assert out.GetSpacing() == pytest.approx((2.0, 2.0))


def test_dicom_without_pixel_spacing_is_refused(mri_folder: tuple, tmp_path: Path) -> None:
    """GDCM reads a classic MR slice without (0028,0030) as 1 mm: the file is refused instead.
    The element is renamed to (0028,0031) in place (implicit VR, as GDCM writes it), so the file
    stays valid DICOM."""
    _, mri, _ = mri_folder
    source = (mri / "subject01_t1" / "slice_00010.dcm").read_bytes()
    tag = b"\x28\x00\x30\x00\x04\x00\x00\x00"  # (0028,0030), 4 bytes: "2\\2 "
    assert source.count(tag) == 1
    broken = tmp_path / "mri" / "no_spacing.dcm"
    broken.parent.mkdir()
    broken.write_bytes(source.replace(tag, b"\x28\x00\x31\x00\x04\x00\x00\x00"))
    assert sitk.ReadImage(str(broken)).GetSpacing()[:2] == (1.0, 1.0)  # what ITK alone says
    from mrihisto_kedro.imaging.sitk_io import ImageReadError, read_image

    with pytest.raises(ImageReadError, match=r"no_spacing\.dcm: this MR Image Storage DICOM"):
        read_image(broken)
