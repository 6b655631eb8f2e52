"""Tests of :mod:`mrihisto_kedro.imaging.slides`: lazy OpenSlide handles and their errors."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile

from mrihisto_kedro.imaging.slides import (
    Slide,
    SlideReadError,
    composite_rgba,
    open_slide,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CMU = SHARED_DATA / "histology" / "CMU-1-Small-Region.svs"
needs_cmu = pytest.mark.skipif(
    not CMU.is_file(), reason=f"real Aperio sample not found at {CMU.resolve()}"
)


def _tissue(h: int, w: int) -> np.ndarray:
    """Deterministic tissue-like RGB content ``(h, w, 3)`` uint8: pink/purple on white."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.sin(x / 37.0) + np.sin(y / 53.0) + 0.7 * np.sin((x + 2 * y) / 29.0)
    tissue = f > -0.6
    rgb = np.stack([230 - 25 * f, 170 - 45 * f, 215 - 20 * f], axis=-1)
    rgb[~tissue] = 245
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def generic_pyramid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 1024x768 pyramidal JPEG TIFF written by libvips itself, mpp 0.25 x 0.5."""
    pixels = _tissue(768, 1024)
    path = tmp_path_factory.mktemp("slides") / "generic.tif"
    pyvips.Image.new_from_array(pixels).tiffsave(
        str(path),
        tile=True,
        pyramid=True,
        compression="jpeg",
        Q=95,
        tile_width=256,
        tile_height=256,
        xres=1000 / 0.25,
        yres=1000 / 0.5,
    )
    return path, pixels


# ------------------------------------------------------------------------------- real Aperio file
@needs_cmu
def test_real_aperio_metadata() -> None:
    with open_slide(CMU) as slide:
        assert slide.vendor == "aperio"
        assert slide.level_count == 1
        assert slide.level_dimensions == [(2220, 2967)]
        assert slide.dimensions == (2220, 2967)
        assert slide.level_downsamples == [1.0]
        assert slide.mpp == pytest.approx((0.499, 0.499))
        assert slide.objective_power == 20.0
        assert slide.path == CMU
        assert slide.properties["aperio.AppMag"] == "20"
        assert set(slide.associated_image_names) == {"label", "macro", "thumbnail"}
        assert "aperio" in repr(slide)


@needs_cmu
def test_real_aperio_associated_images() -> None:
    with open_slide(CMU) as slide:
        props = slide.properties
        for name in ("label", "macro", "thumbnail"):
            img = slide.associated_image(name)
            assert img.dtype == np.uint8
            assert img.shape == (
                int(props[f"openslide.associated.{name}.height"]),
                int(props[f"openslide.associated.{name}.width"]),
                3,
            )
        with pytest.raises(KeyError, match="no associated image 'overview'"):
            slide.associated_image("overview")


@needs_cmu
def test_real_aperio_read_region_matches_tiff_page() -> None:
    with open_slide(CMU) as slide:
        region = slide.read_region((100, 200), 0, (300, 150))
        assert region.shape == (150, 300, 3)
        assert region.dtype == np.uint8
        # the same pixels decoded by a different library
        page = tifffile.TiffFile(CMU).pages[0].asarray()
        np.testing.assert_array_equal(region, page[200:350, 100:400])
        # outside the slide: transparent in OpenSlide, white here (as viewers show it)
        outside = slide.read_region((-50, -50), 0, (40, 40))
        assert (outside == 255).all()


@needs_cmu
def test_real_aperio_pickle() -> None:
    with open_slide(CMU) as slide:
        clone = pickle.loads(pickle.dumps(slide))
        assert clone.path == slide.path and clone.mpp == slide.mpp
        np.testing.assert_array_equal(
            clone.read_region((5, 5), 0, (10, 10)), slide.read_region((5, 5), 0, (10, 10))
        )
        clone.close()


# ------------------------------------------------------------------------------- generic TIFF
def test_generic_pyramid_levels_and_mpp(generic_pyramid: tuple[Path, np.ndarray]) -> None:
    path, pixels = generic_pyramid
    with open_slide(path) as slide:
        assert isinstance(slide, Slide)
        assert slide.vendor == "generic-tiff"
        assert slide.mpp == pytest.approx((0.25, 0.5), rel=1e-6)
        assert slide.level_dimensions == [(1024, 768), (512, 384), (256, 192)]
        assert slide.level_downsamples == pytest.approx([1.0, 2.0, 4.0])
        assert slide.associated_image_names == []
        level0 = slide.read_level(0)
        assert level0.shape == (768, 1024, 3)
        assert np.abs(level0.astype(int) - pixels).mean() < 1.5  # JPEG Q95
        assert slide.read_level(2).shape == (192, 256, 3)


def test_best_level_for_downsample(generic_pyramid: tuple[Path, np.ndarray]) -> None:
    with open_slide(generic_pyramid[0]) as slide:
        assert slide.best_level_for_downsample(0.5) == 0
        assert slide.best_level_for_downsample(1.0) == 0
        assert slide.best_level_for_downsample(1.99) == 0
        assert slide.best_level_for_downsample(2.0) == 1
        assert slide.best_level_for_downsample(3.9) == 1
        assert slide.best_level_for_downsample(3.999) == 2  # within the 1e-3 tolerance
        assert slide.best_level_for_downsample(15) == 2
        with pytest.raises(ValueError, match="positive"):
            slide.best_level_for_downsample(0)


def test_read_budget_and_arguments(generic_pyramid: tuple[Path, np.ndarray]) -> None:
    with open_slide(generic_pyramid[0]) as slide:
        with pytest.raises(ValueError, match="budget"):
            slide.read_level(0, max_pixels=1000)
        with pytest.raises(ValueError, match="budget"):
            slide.read_region((0, 0), 0, (100, 100), max_pixels=9999)
        with pytest.raises(ValueError, match="level 3 out of range"):
            slide.read_region((0, 0), 3, (10, 10))
        with pytest.raises(ValueError, match="positive"):
            slide.read_region((0, 0), 0, (0, 10))
        # level-1 regions are addressed with level-0 coordinates
        np.testing.assert_array_equal(
            slide.read_region((512, 256), 1, (64, 32)), slide.read_level(1)[128:160, 256:320]
        )


def test_closed_handle_refuses_reads(generic_pyramid: tuple[Path, np.ndarray]) -> None:
    slide = open_slide(generic_pyramid[0])
    slide.close()
    slide.close()  # idempotent
    assert "closed" in repr(slide)
    with pytest.raises(SlideReadError, match="is closed"):
        slide.read_region((0, 0), 0, (4, 4))


def test_composite_rgba() -> None:
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque
    rgba[0, 1] = (0, 0, 0, 0)  # transparent
    rgba[0, 2] = (0, 0, 0, 128)  # half black
    out = composite_rgba(rgba)
    assert out.shape == (1, 3, 3)
    assert tuple(out[0, 0]) == (10, 20, 30)
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert tuple(out[0, 2]) == (127, 127, 127)
    assert tuple(composite_rgba(rgba, (0, 255, 0))[0, 1]) == (0, 255, 0)
    with pytest.raises(ValueError, match="RGBA"):
        composite_rgba(np.zeros((2, 2, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------- bad inputs
@needs_cmu
def test_truncated_svs_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "truncated.svs"
    path.write_bytes(CMU.read_bytes()[:10_240])
    with pytest.raises(SlideReadError) as info:
        open_slide(path)
    message = str(info.value)
    assert str(path) in message
    assert "truncated" in message
    assert "10240 bytes" in message


def test_truncated_tail_is_reported(
    tmp_path: Path, generic_pyramid: tuple[Path, np.ndarray]
) -> None:
    """Cut inside the image data: OpenSlide fails differently, the message still says why."""
    data = generic_pyramid[0].read_bytes()
    for keep in (len(data) // 2, len(data) - 100):
        path = tmp_path / f"cut_{keep}.tif"
        path.write_bytes(data[:keep])
        with pytest.raises(SlideReadError, match="truncated") as info:
            open_slide(path)
        assert str(path) in str(info.value)


def test_text_file_named_svs(tmp_path: Path) -> None:
    path = tmp_path / "notes.svs"
    path.write_text("this is not a slide\n")
    with pytest.raises(SlideReadError, match="not a slide format") as info:
        open_slide(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_empty_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.svs"
    with pytest.raises(SlideReadError, match="does not exist") as info:
        open_slide(missing)
    assert str(missing) in str(info.value)
    empty = tmp_path / "empty.svs"
    empty.touch()
    with pytest.raises(SlideReadError, match="empty"):
        open_slide(empty)
    with pytest.raises(SlideReadError, match="not a regular file"):
        open_slide(tmp_path)


def test_corrupt_tile_raises_on_read(
    tmp_path: Path, generic_pyramid: tuple[Path, np.ndarray]
) -> None:
    """A damaged tile opens fine (header intact) and fails on read with a clear error."""
    path = tmp_path / "corrupt.tif"
    shutil.copy(generic_pyramid[0], path)
    with tifffile.TiffFile(path) as tf:
        offset, count = tf.pages[0].dataoffsets[0], tf.pages[0].databytecounts[0]
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00" * count)
    slide = open_slide(path)
    for _ in range(2):  # OpenSlide stays in error state; still a SlideReadError
        with pytest.raises(SlideReadError, match="cannot read region") as info:
            slide.read_region((0, 0), 0, (64, 64))
        assert str(path) in str(info.value)
    assert slide.level_count == 3  # metadata stays available
    slide.close()
