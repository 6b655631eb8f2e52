"""Shared fixtures of the pipeline tests: small slides, MRI volumes, loaders and catalogs.

Node tests call a node directly on in-memory inputs; slice tests run one pipeline with
Kedro's ``SequentialRunner`` on a ``DataCatalog`` whose folder outputs are the project's own
dataset types (read from ``conf/base/catalog*.yml``) under a temporary ``data_root`` and whose
other datasets are ``MemoryDataset`` s. Everything is small enough to run in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import Slide, open_slide
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff

CONF_BASE = Path(__file__).resolve().parents[2] / "conf" / "base"


def _tissue_rgb(height: int, width: int, phase: float = 0.0) -> np.ndarray:
    """Tissue-like RGB ``(height, width, 3)`` uint8: pink/purple blobs on white glass."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    f = np.sin(x / 97.0 + phase) + np.sin(y / 131.0) + 0.7 * np.sin((x + 2 * y) / 71.0)
    rgb = np.stack([230 - 25 * f, 170 - 45 * f, 215 - 20 * f], axis=-1)
    rgb[f <= -0.6] = 245
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _brain_volume(
    shape_zyx: tuple[int, int, int] = (12, 24, 20), spacing_mm: float = 0.4, volumes: int = 1
) -> sitk.Image:
    """A 3-D (or, with ``volumes > 1``, 4-D) float32 MRI: a noisy ellipsoid on a dark background.

    Volume ``k`` of a 4-D image is scaled by ``k + 1`` (so its volumes differ); spacing is
    isotropic in mm, origin 0, direction identity (an axial slice is a ``(y, x)`` plane).
    """
    z, y, x = np.mgrid[0 : shape_zyx[0], 0 : shape_zyx[1], 0 : shape_zyx[2]].astype(np.float32)
    centre = [(s - 1) / 2 for s in shape_zyx]
    radius = [s * 0.4 for s in shape_zyx]
    inside = sum(((c - m) / r) ** 2 for c, m, r in zip((z, y, x), centre, radius, strict=True))
    rng = np.random.default_rng(0)
    brain = np.where(inside < 1, 100 + 40 * np.cos(x / 2), 2) + rng.normal(0, 1, shape_zyx)
    parts = [sitk.GetImageFromArray(brain.astype(np.float32) * (k + 1)) for k in range(volumes)]
    image = sitk.JoinSeries(parts) if volumes > 1 else parts[0]
    image.SetSpacing((spacing_mm,) * image.GetDimension())
    return image


def _mri_slice_image(rows: int = 24, cols: int = 20, spacing_mm: float = 0.4) -> sitk.Image:
    """A 2-D float32 MRI slice in [0, 1]: an ellipse of tissue on a zero background."""
    y, x = np.mgrid[0:rows, 0:cols]
    blob = ((y - rows / 2) / (rows * 0.38)) ** 2 + ((x - cols / 2) / (cols * 0.38)) ** 2 < 1
    image = sitk.GetImageFromArray(blob.astype(np.float32))
    image.SetSpacing((spacing_mm, spacing_mm))
    return image


@pytest.fixture
def tissue_rgb() -> Callable[..., np.ndarray]:
    """``tissue_rgb(height, width, phase=0.0)``: tissue-like uint8 RGB on white glass."""
    return _tissue_rgb


@pytest.fixture
def brain_volume() -> Callable[..., sitk.Image]:
    """``brain_volume(shape_zyx, spacing_mm, volumes)``: a small 3-D or 4-D MRI."""
    return _brain_volume


@pytest.fixture
def mri_slice_image() -> Callable[..., sitk.Image]:
    """``mri_slice_image(rows, cols, spacing_mm)``: a 2-D MRI slice in [0, 1]."""
    return _mri_slice_image


@pytest.fixture
def run_pipeline() -> Callable[[Pipeline, DataCatalog], DataCatalog]:
    """``run_pipeline(pipeline, catalog)`` with ``SequentialRunner``; returns the catalog."""
    return _run_pipeline


class CountingLoaders(dict[str, Callable[[], Any]]):
    """``{name: loader}`` as a folder dataset loads, counting how often each is called."""

    def __init__(self, make: Mapping[str, Callable[[], Any]]) -> None:
        """Wrap the zero-argument callables of ``make``."""
        self.calls: dict[str, int] = dict.fromkeys(make, 0)
        super().__init__({name: self._counted(name, load) for name, load in make.items()})

    def _counted(self, name: str, load: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            self.calls[name] += 1
            return load()

        return call


@pytest.fixture
def write_slide(tmp_path: Path) -> Callable[..., Path]:
    """``write_slide(name, pixels, mpp, downsample=None)`` -> a generic pyramidal TIFF path.

    ``downsample`` is recorded in the description the way data_engineering records it
    (``Downsample = <factor>``); ``mpp=None`` writes a slide without a pixel size.
    """

    def write(
        name: str, pixels: np.ndarray, mpp: float | None, downsample: float | None = None
    ) -> Path:
        description = {} if downsample is None else {"Downsample": format(downsample, "g")}
        image = SlideImage(pixels, mpp=None if mpp is None else (mpp, mpp), description=description)
        return write_pyramidal_tiff(image, tmp_path / "slides" / name, flavour="generic")

    return write


@pytest.fixture
def memory_loaders() -> Callable[[Mapping[str, Any]], CountingLoaders]:
    """``memory_loaders({name: value})`` -> counting loaders that return each value."""

    def loaders(values: Mapping[str, Any]) -> CountingLoaders:
        return CountingLoaders({name: (lambda v=value: v) for name, value in values.items()})

    return loaders


@pytest.fixture
def slide_loaders() -> Callable[[Mapping[str, Path]], CountingLoaders]:
    """``slide_loaders({name: path})`` -> counting loaders that open each slide."""

    def loaders(paths: Mapping[str, Path]) -> CountingLoaders:
        def opener(path: Path) -> Callable[[], Slide]:
            return lambda: open_slide(path)

        return CountingLoaders({name: opener(path) for name, path in paths.items()})

    return loaders


@pytest.fixture
def close_figures() -> Iterator[None]:
    """Close every matplotlib figure a test leaves open."""
    yield
    plt.close("all")


def project_datasets(names: list[str], data_root: Path) -> dict[str, dict[str, Any]]:
    """The configurations of ``names`` in ``conf/base/catalog*.yml``, under ``data_root``.

    Raises:
        KeyError: a name the base catalog does not define.
    """
    entries: dict[str, Any] = {}
    for path in sorted(CONF_BASE.glob("catalog*.yml")):
        entries.update(yaml.safe_load(path.read_text()) or {})
    text = yaml.safe_dump({name: entries[name] for name in names})
    text = text.replace("${globals:data_root}", str(data_root))
    assert "${" not in text, f"unresolved interpolation in the base catalog: {text}"
    return yaml.safe_load(text)


@pytest.fixture
def project_catalog(tmp_path: Path) -> Callable[..., DataCatalog]:
    """``project_catalog(files=[...], **memory)`` -> a ``DataCatalog`` for a slice test.

    ``files`` are dataset names configured as in ``conf/base`` but under ``tmp_path/data``;
    each keyword is a ``MemoryDataset`` holding that value as is (``copy_mode="assign"``:
    loaders and images are passed by reference, as a folder dataset would pass them).
    """

    def make(files: list[str], **memory: Any) -> DataCatalog:
        catalog = DataCatalog.from_config(project_datasets(files, tmp_path / "data"))
        for name, value in memory.items():
            catalog[name] = MemoryDataset(value, copy_mode="assign")
        return catalog

    return make


class KeptMemoryDataset(MemoryDataset):
    """A ``MemoryDataset`` that the runner does not empty after its last reader, so that a
    test can inspect intermediate outputs after the run."""

    def _release(self) -> None:
        """Keep the data."""


def _run_pipeline(pipeline: Pipeline, catalog: DataCatalog) -> DataCatalog:
    """Run ``pipeline`` with ``SequentialRunner``; every output that the catalog does not
    configure (intermediate ones included) is kept in memory for the test to load."""
    for name in sorted(pipeline.all_outputs() - set(catalog.keys())):
        catalog[name] = KeptMemoryDataset(copy_mode="assign")
    SequentialRunner().run(pipeline, catalog)
    return catalog
