"""data_engineering on slides that no one here made, re-encoded as users' files come (issue 14).

The real Aperio slide ``CMU-1-Small-Region.svs`` (2220 x 2967 px, 0.499 µm/px) is rewritten as a
JPEG pyramid that records no pixel size (as TCGA JPEG2000 slides and plain TIFF exports come),
and as a 16-bit greyscale TIFF. The pipeline runs on a catalog of the project's own datasets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest
import tifffile
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

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


def _catalog(slides: Path, project: Path, pairs: pd.DataFrame, params: dict) -> DataCatalog:
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
        "mri_volumes": {**image_folder, "path": str(ICBM_T1.parent), "filename_suffix": ".nii.gz"},
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
        "mri": "icbm152_2009c_sym_t1_2mm",
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
