"""The libvips read path of :class:`Slide` gives OpenSlide's pixels on every level.

Each read is compared with ``openslide.OpenSlide.read_region`` of the same rectangle (composited
as the project composites), on every level of a generic pyramidal TIFF and of an Aperio SVS, at
interior, edge (partial last tile) and out-of-bounds rectangles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
import pyvips
import tifffile

from mrihisto_kedro.imaging.slide_reader import VipsLevels, vips_pages
from mrihisto_kedro.imaging.slides import Slide, composite_rgba, open_slide

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CMU = SHARED_DATA / "histology" / "CMU-1-Small-Region.svs"


def _tissue(h: int, w: int) -> np.ndarray:
    """Deterministic textured RGB ``(h, w, 3)`` uint8 (pink/purple stripes and noise)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.sin(x / 17.0) + np.sin(y / 23.0) + 0.7 * np.sin((x + 2 * y) / 13.0)
    noise = np.random.default_rng(0).integers(0, 40, (h, w, 1))
    rgb = np.stack([200 - 25 * f, 140 - 45 * f, 195 - 20 * f], axis=-1) + noise
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _generic(path: Path, w: int, h: int) -> Path:
    pyvips.Image.new_from_array(_tissue(h, w)).tiffsave(
        str(path), tile=True, pyramid=True, compression="jpeg", Q=90,
        tile_width=128, tile_height=128, xres=4000, yres=4000,
    )  # fmt: skip
    return path


def _aperio(path: Path, w: int, h: int) -> Path:
    """An Aperio-style SVS: tiled JPEG level 0, stripped thumbnail, tiled 4x level."""
    full = _tissue(h, w)
    desc = (
        f"Aperio Image Library v12.0.0\n{w}x{h} [0,0 {w}x{h}] (256x256) JPEG/RGB Q=80"
        "|MPP = 0.25|AppMag = 40"
    )
    with tifffile.TiffWriter(path) as tw:
        for pixels, tile, text in [
            (full, (256, 256), desc),
            (full[::8, ::8], None, f"Aperio Image Library\n{w}x{h} -> thumb"),
            (full[::4, ::4], (256, 256), "Aperio reduced"),
        ]:
            tw.write(
                pixels, tile=tile, description=text, photometric="rgb", compression="jpeg",
                metadata=None,
            )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Test pyramids: exact-halving sizes, odd sizes, and an Aperio SVS."""
    root = tmp_path_factory.mktemp("reader")
    return {
        "generic": _generic(root / "generic.tif", 1024, 768),
        "odd": _generic(root / "odd.tif", 1001, 707),
        "aperio": _aperio(root / "aperio.svs", 1024, 768),
    }


def _openslide(path: Path, xy: tuple[int, int], level: int, wh: tuple[int, int]) -> np.ndarray:
    with openslide.OpenSlide(path) as osr:
        return composite_rgba(np.asarray(osr.read_region(xy, level, wh)))


def _rectangles(lw: int, lh: int, ds: float) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Level-0 corners and level sizes: interior, right/bottom edge tiles, out of bounds."""
    level_xy = [(0, 0), (37, 11), (lw - 50, lh - 40), (lw - 1, 0), (-30, -20), (lw + 5, 3),
                (-10, lh - 5), (lw // 2, lh // 3)]  # fmt: skip
    sizes = [(64, 48), (129, 130), (1, 1), (lw + 20, 7)]
    return [((round(x * ds), round(y * ds)), size) for (x, y) in level_xy for size in sizes]


@pytest.mark.parametrize("name", ["generic", "odd", "aperio"])
def test_every_level_equals_openslide(slides: dict[str, Path], name: str) -> None:
    path = slides[name]
    with open_slide(path) as slide:
        assert slide.vips_levels, f"{name}: no level is read through libvips"
        for level in range(slide.level_count):
            lw, lh = slide.level_dimensions[level]
            for xy, wh in _rectangles(lw, lh, slide.level_downsamples[level]):
                got = slide.read_region(xy, level, wh)
                want = _openslide(path, xy, level, wh)
                assert got.shape == (wh[1], wh[0], 3)
                np.testing.assert_array_equal(got, want, err_msg=f"{name} L{level} {xy} {wh}")
        assert slide.vips_levels  # no level was handed back to OpenSlide


def test_libvips_path_is_taken(slides: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified levels do not touch OpenSlide: a broken OpenSlide read does not matter."""
    with open_slide(slides["generic"]) as slide:
        assert slide.vips_levels == [0, 1, 2, 3]
        first = slide.read_region((256, 128), 1, (100, 80))  # verifies level 1

        def broken(*args: object, **kwargs: object) -> np.ndarray:
            raise AssertionError("OpenSlide read")

        monkeypatch.setattr(Slide, "_read_openslide", broken)
        again = slide.read_region((256, 128), 1, (100, 80))
        np.testing.assert_array_equal(first, again)
        with pytest.raises(AssertionError, match="OpenSlide read"):
            slide.read_region((0, 0), 2, (10, 10))  # level 2 not yet verified


def test_fractional_level_coordinates_go_to_openslide(slides: dict[str, Path]) -> None:
    """OpenSlide interpolates at fractional level coordinates: those reads stay OpenSlide's."""
    path = slides["odd"]
    with open_slide(path) as slide:
        ds = slide.level_downsamples[1]
        assert not ds.is_integer()
        xy = (301, 203)
        assert not (xy[0] / ds).is_integer()
        np.testing.assert_array_equal(
            slide.read_region(xy, 1, (90, 70)), _openslide(path, xy, 1, (90, 70))
        )


def test_mismatching_level_is_handed_back(
    slides: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A level whose libvips pixels differ from OpenSlide's is read by OpenSlide from then on."""
    path = slides["generic"]
    with open_slide(path) as slide:
        assert slide._vips is not None
        real = slide._vips.read

        def off_by_one(*args: object, **kwargs: object) -> np.ndarray:
            return real(*args, **kwargs) ^ np.uint8(1)  # type: ignore[arg-type]

        monkeypatch.setattr(slide._vips, "read", off_by_one)
        got = slide.read_region((0, 0), 0, (64, 64))
        np.testing.assert_array_equal(got, _openslide(path, (0, 0), 0, (64, 64)))
        assert 0 not in slide.vips_levels


def test_read_regions_batch(slides: dict[str, Path]) -> None:
    """A batch equals one read_region per rectangle, edges and outside included."""
    with open_slide(slides["aperio"]) as slide:
        assert slide.vendor == "aperio" and slide.vips_levels == [0, 1]
        corners = [(0, 0), (1000, 700), (-40, 100), (512, 256), (2000, 2000)]
        for level in range(slide.level_count):
            batch = slide.read_regions(corners, level, (64, 32))
            assert batch.shape == (5, 32, 64, 3)
            for got, xy in zip(batch, corners, strict=True):
                np.testing.assert_array_equal(got, slide.read_region(xy, level, (64, 32)))
            threaded = slide.read_regions(np.array(corners), level, (64, 32), workers=3)
            np.testing.assert_array_equal(threaded, batch)
        with pytest.raises(ValueError, match="budget"):
            slide.read_regions(corners, 0, (64, 32), max_pixels=5 * 64 * 32 - 1)


def test_unsupported_pages_are_left_to_openslide(tmp_path: Path) -> None:
    """A stripped (untiled) TIFF level has no libvips page; pixels still come from OpenSlide."""
    path = tmp_path / "stripped.tif"
    pyvips.Image.new_from_array(_tissue(300, 400)).tiffsave(str(path), tile=False)
    assert vips_pages(path, [(400, 300)]) == {}


@pytest.mark.skipif(not CMU.is_file(), reason="real Aperio sample not found")
def test_real_aperio_equals_openslide() -> None:
    with open_slide(CMU) as slide:
        assert slide.vips_levels == [0]
        w, h = slide.dimensions
        for xy, wh in [((0, 0), (w, h)), ((w - 100, h - 77), (256, 256)), ((-5, 9), (300, 40))]:
            np.testing.assert_array_equal(slide.read_region(xy, 0, wh), _openslide(CMU, xy, 0, wh))


def test_disabled_level_refuses_libvips_reads(slides: dict[str, Path]) -> None:
    """A level handed back to OpenSlide (by another thread) raises, so the caller falls back."""
    path = slides["generic"]
    with open_slide(path) as slide:
        levels = VipsLevels(path, vips_pages(path, slide.level_dimensions))
    assert levels.read(0, (0, 0), (8, 8), (255, 255, 255)).shape == (8, 8, 3)
    levels.disable(1)
    assert levels.levels == [0, 2, 3] and not levels.has(1)
    with pytest.raises(pyvips.Error, match="read by OpenSlide"):
        levels.read(1, (0, 0), (8, 8), (255, 255, 255))
    levels.close()
    assert levels.levels == []
