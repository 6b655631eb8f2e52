"""Images with more than 8 bits per sample are refused where a reader would crush them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pyvips
from PIL import Image

from mrihisto_kedro.imaging.bit_depth import BitDepthError, pil_rgb8, png_bit_depth


def _png(path: Path, array: np.ndarray, interpretation: str) -> Path:
    pyvips.Image.new_from_array(array).copy(interpretation=interpretation).pngsave(str(path))
    return path


def test_sixteen_bit_rgb_png_is_refused(tmp_path: Path) -> None:
    """Pillow opens a 48-bit PNG as mode RGB holding only the high bytes: the mode alone does
    not tell, the PNG header does."""
    rgb16 = np.random.default_rng(0).integers(0, 65535, (32, 32, 3)).astype(np.uint16)
    path = _png(tmp_path / "he_16bit.png", rgb16, "rgb16")
    image = Image.open(path)
    assert image.mode == "RGB"
    assert (np.asarray(image.convert("RGB")) == rgb16 >> 8).all()  # what it would hand on
    assert png_bit_depth(path) == 16
    with pytest.raises(BitDepthError, match=r"he_16bit\.png: the PNG stores 16 bits"):
        pil_rgb8(image, "pair p1")


def test_sixteen_bit_grey_png_is_refused(tmp_path: Path) -> None:
    grey = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    image = Image.open(_png(tmp_path / "grey16.png", grey, "grey16"))
    assert image.mode.startswith("I")
    with pytest.raises(BitDepthError, match=r"grey16\.png: mode 'I;16' holds more than 8 bits"):
        pil_rgb8(image, "pair p1")


def test_eight_bit_png_passes_unchanged(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 255, (16, 24, 3)).astype(np.uint8)
    path = _png(tmp_path / "he.png", rgb, "srgb")
    assert png_bit_depth(path) == 8
    out = pil_rgb8(Image.open(path), "pair p1")
    assert out.dtype == np.uint8 and (out == rgb).all()
