"""Tests of :class:`mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset`."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kedro.io import DataCatalog, DatasetError
from kedro_datasets.partitions import PartitionedDataset

from mrihisto_kedro.datasets.slide_dataset import OpenSlideDataset
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import Slide

DATASET = "mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset"


def _tissue(h: int, w: int, phase: float = 0.0) -> np.ndarray:
    """Deterministic tissue-like RGB content ``(h, w, 3)`` uint8: pink/purple on white."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.sin(x / 37.0 + phase) + np.sin(y / 53.0) + 0.7 * np.sin((x + 2 * y) / 29.0)
    tissue = f > -0.6
    rgb = np.stack([230 - 25 * f, 170 - 45 * f, 215 - 20 * f], axis=-1)
    rgb[~tissue] = 245
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture
def image() -> SlideImage:
    """A 600 x 400 px slide image at 0.5 mpp, 20x."""
    return SlideImage(_tissue(400, 600), mpp=(0.5, 0.5), app_mag=20, description={"Id": "s1"})


def test_save_then_load_lazy_handle(tmp_path: Path, image: SlideImage) -> None:
    path = tmp_path / "out" / "slide.svs"
    ds = OpenSlideDataset(filepath=str(path))
    assert not ds.exists()
    ds.save(image)
    assert ds.exists()
    slide = ds.load()
    assert isinstance(slide, Slide)
    with slide:
        assert slide.vendor == "aperio"  # default flavour
        assert slide.mpp == pytest.approx((0.5, 0.5))
        assert slide.dimensions == (600, 400)
        assert slide.properties["aperio.Id"] == "s1"
        assert np.abs(slide.read_level(0).astype(int) - image.pixels).mean() < 1.0


def test_save_args_are_used(tmp_path: Path, image: SlideImage) -> None:
    path = tmp_path / "slide.tif"
    ds = OpenSlideDataset(
        filepath=str(path),
        save_args={"flavour": "generic", "compression": "lzw", "tile_size": 128},
        metadata={"owner": "histology"},
    )
    ds.save(image)
    with ds.load() as slide:
        assert slide.vendor == "generic-tiff"
        assert slide.properties["openslide.level[0].tile-width"] == "128"
        np.testing.assert_array_equal(slide.read_level(0), image.pixels)
    assert ds.metadata == {"owner": "histology"}
    described = ds._describe()
    assert described["filepath"] == str(path)
    assert described["save_args"]["flavour"] == "generic"
    assert described["save_args"]["quality"] == 90  # defaults kept
    assert "generic" in repr(ds)


def test_errors_are_dataset_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.svs"
    with pytest.raises(DatasetError, match="does not exist") as info:
        OpenSlideDataset(filepath=str(missing)).load()
    assert str(missing) in str(info.value)
    text = tmp_path / "text.svs"
    text.write_text("not a slide")
    with pytest.raises(DatasetError, match="not a slide format"):
        OpenSlideDataset(filepath=str(text)).load()
    with pytest.raises(DatasetError, match="saves SlideImage"):
        OpenSlideDataset(filepath=str(tmp_path / "x.svs")).save(np.zeros((4, 4, 3), np.uint8))  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="local files only"):
        OpenSlideDataset(filepath="s3://bucket/slide.svs")
    with pytest.raises(DatasetError, match="unknown save_args"):
        OpenSlideDataset(filepath=str(tmp_path / "x.svs"), save_args={"level": 3})


def test_dataset_is_picklable(tmp_path: Path, image: SlideImage) -> None:
    """ParallelRunner pickles datasets and loaded handles."""
    ds = OpenSlideDataset(filepath=str(tmp_path / "p.svs"))
    clone = pickle.loads(pickle.dumps(ds))
    clone.save(image)
    slide = ds.load()
    reopened = pickle.loads(pickle.dumps(slide))
    assert reopened.dimensions == slide.dimensions
    slide.close()
    reopened.close()


def test_catalog_entry(tmp_path: Path, image: SlideImage) -> None:
    catalog = DataCatalog.from_config(
        {
            "histology_15x": {
                "type": DATASET,
                "filepath": str(tmp_path / "h.svs"),
                "save_args": {"quality": 80},
            }
        }
    )
    catalog.save("histology_15x", image)
    with catalog.load("histology_15x") as slide:
        assert slide.mpp == pytest.approx((0.5, 0.5))


def test_partitioned_dataset_load(tmp_path: Path) -> None:
    folder = tmp_path / "slides"
    for name, phase in (("A01", 0.0), ("B02", 1.0)):
        OpenSlideDataset(filepath=str(folder / f"{name}.svs")).save(
            SlideImage(_tissue(300, 500, phase), mpp=(0.25, 0.25))
        )
    (folder / "notes.txt").write_text("ignored: wrong suffix")
    parts = PartitionedDataset(path=str(folder), dataset=DATASET, filename_suffix=".svs")
    loaded = parts.load()
    assert sorted(loaded) == ["A01", "B02"]
    for load in loaded.values():
        assert callable(load)
        slide = load()
        assert isinstance(slide, Slide)
        assert slide.dimensions == (500, 300)
        assert slide.mpp == pytest.approx((0.25, 0.25))
        slide.close()


def test_partitioned_dataset_save_eager_and_lazy(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    parts = PartitionedDataset(
        path=str(folder),
        dataset={"type": DATASET, "save_args": {"flavour": "generic"}},
        filename_suffix=".tif",
    )
    calls: list[str] = []

    def make(name: str, phase: float) -> Callable[[], SlideImage]:
        def build() -> SlideImage:
            calls.append(name)
            return SlideImage(_tissue(200, 300, phase), mpp=(2.0, 2.0))

        return build

    parts.save(
        {
            "eager": SlideImage(_tissue(200, 300), mpp=(1.0, 1.0)),
            "lazy_1": make("lazy_1", 0.5),
            "lazy_2": make("lazy_2", 1.5),
        }
    )
    assert sorted(calls) == ["lazy_1", "lazy_2"]  # callables were evaluated at save time
    assert sorted(p.name for p in folder.iterdir()) == ["eager.tif", "lazy_1.tif", "lazy_2.tif"]
    reloaded = parts.load()
    with reloaded["eager"]() as slide:
        assert slide.vendor == "generic-tiff"
        assert slide.mpp == pytest.approx((1.0, 1.0))
    with reloaded["lazy_2"]() as slide:
        assert slide.mpp == pytest.approx((2.0, 2.0))
        assert slide.dimensions == (300, 200)
