"""Nodes of the data_engineering pipeline on slides the demo never produces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import open_slide
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff
from mrihisto_kedro.pipelines.data_engineering.nodes import DataEngineeringParams, _slide_mask_input


def _tissue(h: int, w: int) -> np.ndarray:
    """Tissue-like RGB ``(h, w, 3)`` uint8: pink/purple blobs on white."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.sin(x / 97.0) + np.sin(y / 131.0) + 0.7 * np.sin((x + 2 * y) / 71.0)
    rgb = np.stack([230 - 25 * f, 170 - 45 * f, 215 - 20 * f], axis=-1)
    rgb[f <= -0.6] = 245
    return np.clip(rgb, 0, 255).astype(np.uint8)


def test_slide_longer_than_the_mask_size_is_masked_on_a_thumbnail(tmp_path: Path) -> None:
    """Issue 14: a 40x Aperio slide (35544 px wide) downsampled 15x is 2370 px wide, longer
    than ``slide_mask.max_size`` (2048): the mask input is a thumbnail, its mm per pixel
    scaled so that the physical extent stays the slide's (it crashed with a TypeError)."""
    width, height, mpp = 2370, 1902, 0.2527 * 15  # µm/px of the 15x-downsampled grid
    path = tmp_path / "pair_01.tiff"
    write_pyramidal_tiff(SlideImage(_tissue(height, width), mpp=(mpp, mpp)), path)
    max_size = DataEngineeringParams().slide_mask.max_size
    assert max(width, height) > max_size
    with open_slide(path) as slide:
        rgb, spacing_mm = _slide_mask_input(slide, max_size)
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3
    assert max(rgb.shape[:2]) == pytest.approx(max_size, abs=1)
    # the same physical extent in mm as the slide (width x mpp), to within one pixel
    assert rgb.shape[1] * spacing_mm[0] == pytest.approx(width * mpp / 1000, abs=spacing_mm[0])
    assert rgb.shape[0] * spacing_mm[1] == pytest.approx(height * mpp / 1000, abs=spacing_mm[1])
    # a slide within the size is used at level 0, spacing = its mpp
    with open_slide(path) as slide:
        full, full_spacing = _slide_mask_input(slide, 4096)
    assert full.shape[:2] == (height, width)
    assert full_spacing == pytest.approx((mpp / 1000, mpp / 1000), rel=1e-3)


def test_blank_glass_stops_before_registration_naming_the_pair_and_file(tmp_path: Path) -> None:
    """Issue 15: blank glass gave tissue fraction 0.0 without a word, and registration then
    failed and took the good pairs' results with it."""
    import pandas as pd
    import SimpleITK as sitk

    from mrihisto_kedro.pipelines.data_engineering.nodes import tissue_masks

    mpp = 0.5 * 15
    paths = {}
    for pair_id, pixels in (
        ("good", _tissue(600, 800)),
        ("glass", np.full((600, 800, 3), 244, np.uint8)),
    ):
        paths[pair_id] = tmp_path / f"{pair_id}.tiff"
        write_pyramidal_tiff(SlideImage(pixels, mpp=(mpp, mpp)), paths[pair_id])
    y, x = np.mgrid[0:64, 0:80]
    blob = (((y - 32) / 24.0) ** 2 + ((x - 40) / 30.0) ** 2 < 1).astype(np.float32)
    mri = sitk.GetImageFromArray(blob)
    mri.SetSpacing((0.4, 0.4))
    pairs = pd.DataFrame(
        {
            "pair_id": ["good", "glass"],
            "specimen_id": ["a", "b"],
            "split": ["train", "test"],
            "slide": ["case_07_gfap.svs", "case_08_gfap.svs"],
        }
    )
    loaders = {k: (lambda p=p: open_slide(p)) for k, p in paths.items()}
    with pytest.raises(ValueError) as refused:
        tissue_masks(pairs, loaders, {"good": lambda: mri, "glass": lambda: mri}, {})
    message = str(refused.value)
    assert message.startswith("pair glass: slide case_08_gfap.svs shows tissue on 0.00 %")
    assert "min_tissue_fraction = 0.001" in message
    assert "pair good" not in message
