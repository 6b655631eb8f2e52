"""Tests of :mod:`mrihisto_kedro.imaging.downsample`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pyvips
from skimage.transform import resize as sk_resize

from mrihisto_kedro.imaging import downsample
from mrihisto_kedro.imaging.downsample import (
    DownsampleRecordError,
    downsample_dimensions,
    downsample_slide,
    recorded_downsample,
    slide_thumbnail,
)
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slide_reader import vips_pages
from mrihisto_kedro.imaging.slides import open_slide
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff

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
def pixels() -> np.ndarray:
    """Level-0 content, 3000 x 2000 px (w x h)."""
    return _tissue(2000, 3000)


@pytest.fixture(scope="module")
def generic_slide(tmp_path_factory: pytest.TempPathFactory, pixels: np.ndarray) -> Path:
    """Multi-level generic TIFF (levels 1, 2, 4, 8, ...), lossless so pixels are known."""
    path = tmp_path_factory.mktemp("ds") / "multi.tif"
    return write_pyramidal_tiff(
        SlideImage(pixels, mpp=(0.5, 0.5)), path, flavour="generic", compression="deflate"
    )


@pytest.fixture(scope="module")
def aperio_slide(tmp_path_factory: pytest.TempPathFactory, pixels: np.ndarray) -> Path:
    """Aperio-style file (levels 1, 4, 16), JPEG, mpp 0.25, 40x."""
    path = tmp_path_factory.mktemp("ds") / "multi.svs"
    return write_pyramidal_tiff(SlideImage(pixels, mpp=(0.25, 0.25), app_mag=40), path)


def test_downsample_dimensions() -> None:
    assert downsample_dimensions((3000, 2000), 15) == (200, 133)
    assert downsample_dimensions((3000, 2000), 1) == (3000, 2000)
    assert downsample_dimensions((2220, 2967), 15) == (148, 198)
    assert downsample_dimensions((5, 5), 2) == (3, 3)  # halves round up
    assert downsample_dimensions((10, 10), 100) == (1, 1)
    with pytest.raises(ValueError, match=">= 1"):
        downsample_dimensions((10, 10), 0.5)
    with pytest.raises(ValueError, match=">= 1"):
        downsample_dimensions((10, 10), float("nan"))


def test_generic_uses_level_below_and_matches_reference(generic_slide: Path) -> None:
    with open_slide(generic_slide) as slide:
        assert slide.level_downsamples[:3] == pytest.approx([1.0, 2.0, 4.0])
        result = downsample_slide(slide, 3)
        assert isinstance(result.pixels, pyvips.Image)  # lazy
        assert (result.width, result.height) == (1000, 667)
        assert result.mpp == pytest.approx((1.5, 1.5))
        assert result.app_mag is None
        assert result.description["SourceLevel"] == "1"  # downsample 2, nearest below 3
        assert result.description["Reader"] == "tiff"
        out = result.pixels.numpy().astype(float)
        assert out.shape == (667, 1000, 3)
        # the same reduction done by hand on the level-1 pixels
        level1 = slide.read_level(1)
        ref = pyvips.Image.new_from_array(level1).resize(1000 / 1500, vscale=667 / 1000).numpy()
        assert np.abs(out - ref).max() <= 1
        # and an independent antialiased reduction of level 0 (scikit-image)
        sk = sk_resize(slide.read_level(0), (667, 1000), anti_aliasing=True, preserve_range=True)
        assert np.abs(out - sk).mean() < 2.0


def test_exact_level_is_returned_unchanged(generic_slide: Path) -> None:
    with open_slide(generic_slide) as slide:
        result = downsample_slide(slide, 4)
        assert result.description["SourceLevel"] == "2"
        np.testing.assert_array_equal(result.pixels.numpy(), slide.read_level(2))
        same = downsample_slide(slide, 1)
        np.testing.assert_array_equal(same.pixels.numpy(), slide.read_level(0))


def test_aperio_factor_15(aperio_slide: Path) -> None:
    with open_slide(aperio_slide) as slide:
        assert slide.level_downsamples == pytest.approx([1.0, 4.0, 16.0], rel=1e-2)
        result = downsample_slide(slide, 15)
        assert result.description["SourceLevel"] == "1"  # 4x, not 16x (which is above 15)
        assert (result.width, result.height) == (200, 133)
        assert result.mpp == pytest.approx((3.75, 3.75))
        assert result.app_mag == pytest.approx(40 / 15)
        out = result.pixels.numpy().astype(float)
        sk = sk_resize(slide.read_level(0), (133, 200), anti_aliasing=True, preserve_range=True)
        assert np.abs(out - sk).mean() < 3.0


def test_the_tiff_reader_takes_the_pages_the_slide_reader_finds(
    aperio_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rule for which TIFF page libvips reads (``slide_reader.vips_pages``): a level it
    leaves out is read through OpenSlide."""
    with open_slide(aperio_slide) as slide:
        pages = vips_pages(slide.path, slide.level_dimensions)
        assert sorted(pages) == [0, 1, 2]
        assert downsample_slide(slide, 15).description["Reader"] == "tiff"
        without_level_1 = {level: page for level, page in pages.items() if level != 1}
        monkeypatch.setattr(downsample, "vips_pages", lambda path, dims: without_level_1)
        assert downsample_slide(slide, 15).description["Reader"] == "openslide"  # level 1
        assert downsample_slide(slide, 20).description["Reader"] == "tiff"  # level 2
        with pytest.raises(ValueError, match="level 1 cannot be read with the libvips"):
            downsample_slide(slide, 15, reader="tiff")


def test_openslide_reader_agrees_and_has_no_seams(aperio_slide: Path) -> None:
    with open_slide(aperio_slide) as slide:
        tiff = downsample_slide(slide, 2.5, reader="tiff").pixels.numpy().astype(int)
        one_strip = downsample_slide(slide, 2.5, reader="openslide", strip_pixels=10**9)
        assert one_strip.description["Reader"] == "openslide"
        whole = one_strip.pixels.numpy().astype(int)
        # tiny strips (6 rows): the strip-wise reduction equals the whole-image one
        strips = downsample_slide(slide, 2.5, reader="openslide", strip_pixels=6 * 3000)
        assert np.abs(strips.pixels.numpy().astype(int) - whole).max() <= 1
        assert (whole.shape[1], whole.shape[0]) == (1200, 800)
        assert np.abs(whole - tiff).mean() < 0.5
        # factor 15 reads level 1 through OpenSlide too
        os15 = downsample_slide(slide, 15, reader="openslide", strip_pixels=20_000)
        tiff15 = downsample_slide(slide, 15, reader="tiff")
        assert os15.description["SourceLevel"] == "1"
        diff = np.abs(os15.pixels.numpy().astype(int) - tiff15.pixels.numpy())
        assert diff.mean() < 1.0


def test_written_result_has_the_right_mpp(tmp_path: Path, aperio_slide: Path) -> None:
    with open_slide(aperio_slide) as slide:
        result = downsample_slide(slide, 15)
    out = write_pyramidal_tiff(result, tmp_path / "small.svs")
    with open_slide(out) as small:
        assert small.vendor == "aperio"
        assert small.dimensions == (200, 133)
        assert small.mpp == pytest.approx((3.75, 3.75))
        assert small.properties["aperio.SourceFile"] == "multi.svs"


def test_source_without_mpp(tmp_path: Path, pixels: np.ndarray) -> None:
    path = write_pyramidal_tiff(SlideImage(pixels[:500, :600], mpp=None), tmp_path / "n.tif")
    with open_slide(path) as slide:
        result = downsample_slide(slide, 3)
    assert result.mpp is None
    assert (result.width, result.height) == (200, 167)


def test_invalid_arguments(generic_slide: Path) -> None:
    with open_slide(generic_slide) as slide:
        with pytest.raises(ValueError, match=">= 1"):
            downsample_slide(slide, 0.5)
        with pytest.raises(ValueError, match="reader"):
            downsample_slide(slide, 2, reader="bioformats")  # type: ignore[arg-type]


def test_slide_thumbnail(generic_slide: Path) -> None:
    with open_slide(generic_slide) as slide:  # 3000 x 2000 px
        thumb = slide_thumbnail(slide, 300)
        assert thumb.shape == (200, 300, 3) and thumb.dtype == np.uint8
        np.testing.assert_array_equal(thumb, downsample_slide(slide, 10).pixels.numpy())
        # never larger than level 0
        assert slide_thumbnail(slide, 5000).shape == (2000, 3000, 3)
        with pytest.raises(ValueError, match="max_size must be positive"):
            slide_thumbnail(slide, 0)


@needs_cmu
def test_real_svs_thumbnail() -> None:
    with open_slide(CMU) as slide:
        assert slide_thumbnail(slide, 256).shape == (256, 192, 3)


@needs_cmu
def test_real_svs_15x() -> None:
    with open_slide(CMU) as slide:
        result = downsample_slide(slide, 15)
        assert (result.width, result.height) == (148, 198)
        assert result.mpp == pytest.approx((7.485, 7.485))
        assert result.description["Reader"] == "tiff"
        out = result.pixels.numpy().astype(float)
        sk = sk_resize(slide.read_level(0), (198, 148), anti_aliasing=True, preserve_range=True)
        assert np.abs(out - sk).mean() < 4.0
        by_openslide = downsample_slide(slide, 15, reader="openslide").pixels.numpy()
        assert np.abs(out - by_openslide).mean() < 1.0


@pytest.mark.parametrize(("flavour", "suffix"), [("aperio", ".svs"), ("generic", ".tiff")])
def test_the_factor_is_read_back_from_the_written_slide(
    tmp_path: Path, aperio_slide: Path, flavour: str, suffix: str
) -> None:
    """Issue 17: steps after data_engineering read the factor from the file, not a parameter."""
    with open_slide(aperio_slide) as slide:
        result = downsample_slide(slide, 7.5)
    out = write_pyramidal_tiff(result, tmp_path / f"small{suffix}", flavour=flavour)
    with open_slide(out) as small:
        assert recorded_downsample(small) == 7.5
    with open_slide(aperio_slide) as source:  # not written by data_engineering: no factor
        with pytest.raises(DownsampleRecordError, match=r"multi\.svs: records no downsampling"):
            recorded_downsample(source)
