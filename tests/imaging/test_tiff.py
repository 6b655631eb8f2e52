"""Tests of :func:`mrihisto_kedro.imaging.tiff.write_pyramidal_tiff`."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile

from mrihisto_kedro.imaging import tiff as tiff_module
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import open_slide
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff


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
    """2000 x 1500 px (w x h) of tissue-like content."""
    return _tissue(1500, 2000)


def _folder_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_aperio_round_trip(tmp_path: Path, pixels: np.ndarray) -> None:
    image = SlideImage(pixels, mpp=(0.5, 0.5), app_mag=20, description={"Stain": "GFAP"})
    path = write_pyramidal_tiff(image, tmp_path / "a.svs")
    assert path == tmp_path / "a.svs"
    assert _folder_names(tmp_path) == {"a.svs"}  # no temporary files left behind
    with open_slide(path) as slide:
        assert slide.vendor == "aperio"
        assert slide.mpp == pytest.approx((0.5, 0.5))
        assert slide.objective_power == 20.0
        assert slide.properties["aperio.Stain"] == "GFAP"
        # levels 4x apart, as in Aperio files
        assert slide.level_dimensions == [(2000, 1500), (500, 375)]
        assert slide.level_downsamples == pytest.approx([1.0, 4.0])
        assert slide.associated_image_names == ["thumbnail"]
        assert slide.associated_image("thumbnail").shape == (768, 1024, 3)
        level0 = slide.read_level(0).astype(int)
        diff = np.abs(level0 - pixels)
        assert diff.mean() < 1.0 and diff.max() <= 40  # JPEG q90 tolerance
        level1 = slide.read_level(1).astype(int)
        expected = pyvips.Image.new_from_array(pixels).resize(0.25).numpy().astype(int)
        assert np.abs(level1 - expected).mean() < 2.0
    with tifffile.TiffFile(path) as tf:
        desc = tf.pages[0].description
        assert desc.startswith("Aperio Image Library")
        assert "|MPP = 0.5" in desc and "|AppMag = 20" in desc
        assert sum(1 for p in tf.pages if p.description.startswith("Aperio")) == len(tf.pages)
        assert tf.pages[0].is_tiled and not tf.pages[1].is_tiled  # thumbnail is stripped
    assert stat.S_IMODE(path.stat().st_mode) != 0o600  # not mkstemp's private mode


def test_aperio_more_levels_and_options(tmp_path: Path) -> None:
    big = _tissue(2400, 4100)
    path = write_pyramidal_tiff(
        SlideImage(big, mpp=(0.25, 0.25)), tmp_path / "b.svs", tile_size=512, quality=80
    )
    with open_slide(path) as slide:
        assert slide.level_dimensions == [(4100, 2400), (1025, 600)]
        assert slide.properties["openslide.level[0].tile-width"] == "512"
        assert slide.objective_power is None
        assert np.abs(slide.read_region((1000, 1000), 0, (256, 256)).astype(int)
                      - big[1000:1256, 1000:1256]).mean() < 2.0  # fmt: skip


def test_generic_flavour_round_trip(tmp_path: Path, pixels: np.ndarray) -> None:
    image = SlideImage(pixels, mpp=(0.25, 0.5))  # anisotropic is fine in generic TIFF
    path = write_pyramidal_tiff(image, tmp_path / "g.tif", flavour="generic")
    with open_slide(path) as slide:
        assert slide.vendor == "generic-tiff"
        assert slide.mpp == pytest.approx((0.25, 0.5), rel=1e-6)
        assert slide.level_dimensions[:3] == [(2000, 1500), (1000, 750), (500, 375)]
        assert np.abs(slide.read_level(0).astype(int) - pixels).mean() < 1.0
        assert not slide.properties.get("openslide.comment", "").startswith("Aperio")


@pytest.mark.parametrize("flavour", ["aperio", "generic"])
@pytest.mark.parametrize("compression", ["lzw", "deflate", "none"])
def test_lossless_compressions_are_exact(
    tmp_path: Path, pixels: np.ndarray, flavour: str, compression: str
) -> None:
    crop = np.ascontiguousarray(pixels[:600, :700])
    path = write_pyramidal_tiff(
        SlideImage(crop, mpp=(1.0, 1.0)),
        tmp_path / "l.tif",
        flavour=flavour,  # type: ignore[arg-type]
        compression=compression,  # type: ignore[arg-type]
    )
    with open_slide(path) as slide:
        np.testing.assert_array_equal(slide.read_level(0), crop)
        assert slide.mpp == pytest.approx((1.0, 1.0))


@pytest.mark.parametrize("flavour", ["aperio", "generic"])
def test_no_mpp_means_no_mpp(tmp_path: Path, pixels: np.ndarray, flavour: str) -> None:
    path = write_pyramidal_tiff(
        SlideImage(pixels[:300, :300], mpp=None),
        tmp_path / "n.tif",
        flavour=flavour,  # type: ignore[arg-type]
    )
    with open_slide(path) as slide:
        assert slide.mpp is None  # not libvips' default 1 px/mm, read as 1000 um


def test_pyvips_grey_and_alpha_inputs(tmp_path: Path, pixels: np.ndarray) -> None:
    lazy = pyvips.Image.new_from_array(pixels).resize(0.5)  # a lazy pipeline, never materialised
    path = write_pyramidal_tiff(SlideImage(lazy, mpp=(1.0, 1.0)), tmp_path / "lazy.svs")
    with open_slide(path) as slide:
        assert slide.dimensions == (1000, 750)
        ref = lazy.numpy().astype(int)
        assert np.abs(slide.read_level(0).astype(int) - ref).mean() < 1.0

    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:32, :, 3] = 255  # top half opaque red-ish, bottom transparent
    path = write_pyramidal_tiff(
        SlideImage(rgba, mpp=(1.0, 1.0)), tmp_path / "rgba.tif", compression="lzw"
    )
    with open_slide(path) as slide:
        level0 = slide.read_level(0)
        assert tuple(level0[0, 0]) == (200, 0, 0)
        assert tuple(level0[-1, -1]) == (255, 255, 255)

    grey = np.full((40, 50), 77, dtype=np.uint8)
    path = write_pyramidal_tiff(
        SlideImage(grey, mpp=(1.0, 1.0)), tmp_path / "grey.tif", compression="none"
    )
    with open_slide(path) as slide:
        assert (slide.read_level(0) == 77).all()


def test_source_description_is_not_inherited(tmp_path: Path, pixels: np.ndarray) -> None:
    """A pyvips image loaded from an Aperio file carries its ImageDescription: drop it."""
    src = write_pyramidal_tiff(SlideImage(pixels, mpp=(0.5, 0.5)), tmp_path / "src.svs")
    loaded = pyvips.Image.tiffload(str(src), page=0)
    assert loaded.get("image-description").startswith("Aperio")
    out = write_pyramidal_tiff(
        SlideImage(loaded, mpp=(2.0, 2.0)), tmp_path / "out.tif", flavour="generic"
    )
    with open_slide(out) as slide:
        assert slide.vendor == "generic-tiff"
        assert slide.mpp == pytest.approx((2.0, 2.0))


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path, pixels: np.ndarray) -> None:
    target = tmp_path / "slide.svs"
    write_pyramidal_tiff(SlideImage(pixels[:256, :256], mpp=(1.0, 1.0)), target)
    before = target.read_bytes()

    # pixels that fail while being computed: a lazy image over a TIFF with a damaged tile
    broken = tmp_path / "broken.tif"
    pyvips.Image.new_from_array(pixels).tiffsave(str(broken), tile=True, compression="jpeg")
    with tifffile.TiffFile(broken) as tf:
        offset, count = tf.pages[0].dataoffsets[0], tf.pages[0].databytecounts[0]
    with broken.open("r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00" * count)
    lazy = pyvips.Image.tiffload(str(broken))
    for flavour in ("aperio", "generic"):
        with pytest.raises(pyvips.Error, match="decompress error"):
            write_pyramidal_tiff(SlideImage(lazy, mpp=(1.0, 1.0)), target, flavour=flavour)  # type: ignore[arg-type]
    assert target.read_bytes() == before
    assert _folder_names(tmp_path) == {"slide.svs", "broken.tif"}


def test_atomic_write_cleans_up_after_late_failure(
    tmp_path: Path, pixels: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure in the Aperio rewrite (after the pyramid exists) leaves nothing behind."""
    target = tmp_path / "slide.svs"
    target.write_bytes(b"old contents")

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(tiff_module, "_aperio_from_pyramid", fail)
    with pytest.raises(OSError, match="simulated"):
        write_pyramidal_tiff(SlideImage(pixels, mpp=(1.0, 1.0)), target)
    assert target.read_bytes() == b"old contents"
    assert _folder_names(tmp_path) == {"slide.svs"}


def test_overwrite_keeps_permissions(tmp_path: Path, pixels: np.ndarray) -> None:
    target = tmp_path / "slide.svs"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    write_pyramidal_tiff(SlideImage(pixels[:128, :128], mpp=(1.0, 1.0)), target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    with open_slide(target) as slide:
        assert slide.dimensions == (128, 128)


def test_invalid_arguments(tmp_path: Path, pixels: np.ndarray) -> None:
    image = SlideImage(pixels[:64, :64], mpp=(1.0, 1.0))
    target = tmp_path / "x.svs"
    with pytest.raises(ValueError, match="flavour"):
        write_pyramidal_tiff(image, target, flavour="philips")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compression"):
        write_pyramidal_tiff(image, target, compression="webp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiple of 16"):
        write_pyramidal_tiff(image, target, tile_size=250)
    with pytest.raises(ValueError, match="quality"):
        write_pyramidal_tiff(image, target, quality=0)
    with pytest.raises(ValueError, match="anisotropic"):
        write_pyramidal_tiff(SlideImage(pixels[:64, :64], mpp=(0.25, 0.5)), target)
    with pytest.raises(ValueError, match="mpp"):
        write_pyramidal_tiff(SlideImage(pixels[:64, :64], mpp=(0.0, 0.0)), target)
    with pytest.raises(ValueError, match="reserved"):
        write_pyramidal_tiff(SlideImage(pixels[:64, :64], (1.0, 1.0), None, {"MPP": "3"}), target)
    with pytest.raises(ValueError, match="cannot be stored"):
        write_pyramidal_tiff(SlideImage(pixels[:64, :64], (1.0, 1.0), None, {"a": "b|c"}), target)
    with pytest.raises(ValueError, match="uint8"):
        write_pyramidal_tiff(SlideImage(pixels[:64, :64].astype(float), (1.0, 1.0)), target)
    with pytest.raises(TypeError, match="SlideImage"):
        write_pyramidal_tiff(pixels, target)  # type: ignore[arg-type]
    assert not target.exists()
    assert _folder_names(tmp_path) == set()


def test_large_array_writes_in_seconds(tmp_path: Path) -> None:
    """The demo's ~6000 x 8000 RGB arrays must write in a few seconds."""
    small = _tissue(750, 1000)
    big = pyvips.Image.new_from_array(small).resize(8).numpy()  # (6000, 8000, 3)
    assert big.shape == (6000, 8000, 3)
    start = time.perf_counter()
    path = write_pyramidal_tiff(SlideImage(big, mpp=(0.25, 0.25), app_mag=40), tmp_path / "l.svs")
    elapsed = time.perf_counter() - start
    with open_slide(path) as slide:
        assert slide.level_dimensions == [(8000, 6000), (2000, 1500), (500, 375)]
    assert elapsed < 15.0, f"writing took {elapsed:.1f} s"
