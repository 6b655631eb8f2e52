"""Rows spooled through a strip TIFF into a pyramidal TIFF: same pixels, nothing left behind."""

from __future__ import annotations

import errno
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import openslide
import pytest

from mrihisto_kedro.imaging.row_spool import SPOOL_SUFFIX, spool_rows_to_pyramidal_tiff
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff


def _image(height: int = 700, width: int = 900) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _writer(mpp: float):
    def write(image, path: Path) -> None:
        write_pyramidal_tiff(SlideImage(image, mpp=(mpp, mpp)), path, compression="lzw")

    return write


def _strips(pixels: np.ndarray, rows: int):
    for r0 in range(0, pixels.shape[0], rows):
        yield pixels[r0 : r0 + rows]


def test_spooled_rows_give_the_in_memory_pyramid(tmp_path: Path) -> None:
    pixels = _image()
    write_pyramidal_tiff(SlideImage(pixels, mpp=(0.5, 0.5)), tmp_path / "a.svs", compression="lzw")
    out = spool_rows_to_pyramidal_tiff(
        _strips(pixels, 37), pixels.shape, tmp_path / "b.svs", _writer(0.5)
    )
    a, b = openslide.OpenSlide(tmp_path / "a.svs"), openslide.OpenSlide(out)
    assert b.dimensions == (900, 700) and b.level_count == a.level_count
    assert float(b.properties["openslide.mpp-x"]) == pytest.approx(0.5)
    for level, size in enumerate(a.level_dimensions):
        np.testing.assert_array_equal(
            np.asarray(a.read_region((0, 0), level, size)),
            np.asarray(b.read_region((0, 0), level, size)),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.svs", "b.svs"]


def test_short_rows_keep_the_previous_file_and_leave_no_spool(tmp_path: Path) -> None:
    pixels = _image()
    dest = tmp_path / "slide.svs"
    dest.write_bytes(b"previous complete slide")
    with pytest.raises(RuntimeError, match="expected"):
        spool_rows_to_pyramidal_tiff(_strips(pixels[:500], 50), pixels.shape, dest, _writer(0.5))
    assert dest.read_bytes() == b"previous complete slide"
    assert [p.name for p in tmp_path.iterdir()] == ["slide.svs"]


def test_full_disk_is_refused_before_the_first_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9 - 1000, 1000))
    produced: list[int] = []

    def rows():
        produced.append(1)
        yield _image()

    with pytest.raises(OSError, match=r"slide\.svs.*GiB") as error:
        spool_rows_to_pyramidal_tiff(rows(), (700, 900, 3), tmp_path / "slide.svs", _writer(0.5))
    assert error.value.errno == errno.ENOSPC
    assert produced == [] and list(tmp_path.iterdir()) == []


def test_spool_file_is_hidden_and_named_after_the_destination(tmp_path: Path) -> None:
    seen: list[str] = []

    def write(image, path: Path) -> None:
        seen.extend(p.name for p in tmp_path.iterdir())
        _writer(1.0)(image, path)

    pixels = _image(64, 64)
    spool_rows_to_pyramidal_tiff(_strips(pixels, 16), pixels.shape, tmp_path / "x.svs", write)
    assert len(seen) == 1 and seen[0].startswith(".x.svs.") and seen[0].endswith(SPOOL_SUFFIX)
    assert [p.name for p in tmp_path.iterdir()] == ["x.svs"]
