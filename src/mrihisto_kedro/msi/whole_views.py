"""Whole-specimen views of registered MSI/H&E pairs: paper 003's own design.

Paper 003 trained pix2pix on whole specimen images resized to one size, off-tissue glass and
the padding around the MSI included, and applied the patch-trained U-Net regression to the
same whole images. :func:`whole_specimen_views` makes that set from the registered pairs the
tile pipeline uses (:class:`~mrihisto_kedro.msi.tiles.MsiAlignedPair`): one view per specimen,
the working grid padded to a square (the MSI with its padding colour, the H&E with its own
border pixels, i.e. glass) and resized to ``size`` x ``size`` px.

The views are a :class:`~mrihisto_kedro.imaging.tileset.TileSet` like any other, so the same
training and evaluation nodes read them; its ``scale`` and ``mpp`` columns say how coarse the
resized views are (the demo's 128 px grid is kept as it is: scale 4, 2 µm per pixel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pandas as pd
from skimage.transform import resize

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.imaging.tiling import level0_pixels
from mrihisto_kedro.msi.padding import pad_value
from mrihisto_kedro.msi.reduction import PadColour
from mrihisto_kedro.msi.tiles import MsiAlignedPair
from mrihisto_kedro.params import Params, Range

__all__ = ["MsiWholeViewParams", "square_pad", "whole_specimen_views"]


@dataclass(frozen=True)
class MsiWholeViewParams(Params):
    """``msi_data_engineering.whole_views``: the size of the whole-specimen views.

    Attributes:
        size: stored pixels per side of every view (paper 003: 256). A U-Net generator of
            ``num_downs`` levels needs a multiple of ``2 ** num_downs``.
    """

    size: Annotated[int, Range(ge=16)] = 128


def square_pad(
    pair: MsiAlignedPair, padding: PadColour | str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """The pair's grid padded to a square, centred.

    Returns:
        ``(msi, histology, coverage, (top, left))``: float32 ``(S, S, 3)`` MSI padded with
        ``padding``'s value, uint8 ``(S, S, 3)`` H&E padded by repeating its border pixels,
        bool ``(S, S)`` coverage padded with ``False``, and the rows and columns added before
        the grid (``S`` = the grid's longer side, in grid pixels).
    """
    h, w = pair.coverage.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    spec = ((top, side - h - top), (left, side - w - left))
    msi = np.pad(pair.msi, (*spec, (0, 0)), constant_values=pad_value(padding))
    histology = np.pad(pair.histology, (*spec, (0, 0)), mode="edge")
    coverage = np.pad(pair.coverage, spec, constant_values=False)
    return msi.astype(np.float32), histology, coverage, (top, left)


def _resized(array: np.ndarray, size: int) -> np.ndarray:
    if array.shape[0] == size:
        return array
    return resize(
        array.astype(np.float32),
        (size, size, array.shape[2]),
        order=1,
        anti_aliasing=array.shape[0] > size,
        preserve_range=True,
    )


def whole_specimen_views(
    pairs: Sequence[MsiAlignedPair], params: MsiWholeViewParams, padding: PadColour | str
) -> TileSet:
    """One whole view per registered specimen, padded to a square and resized.

    Returns:
        A :class:`TileSet`: ``a`` float32 ``(N, S, S, 3)`` MSI in [0, 1], ``b`` uint8
        ``(N, S, S, 3)`` H&E (``S`` = ``params.size``, ``N`` = number of pairs); manifest as
        :func:`~mrihisto_kedro.msi.tiles.msi_pair_tiles` (``x, y, size`` in histology level-0
        pixels: the padded square, so ``x``/``y`` are negative where padding was added;
        ``scale`` = level-0 pixels per stored pixel; ``mpp`` = µm per stored pixel;
        ``msi_fraction`` = the share of the view covered by MSI pixels).

    Raises:
        ValueError: no pairs.
    """
    if not pairs:
        raise ValueError("no registered MSI pairs to make whole-specimen views of")
    padding = PadColour(padding)
    size = params.size
    rows, a_views, b_views = [], [], []
    for pair in pairs:
        msi, histology, coverage, (top, left) = square_pad(pair, padding)
        side = coverage.shape[0]
        a_views.append(np.clip(_resized(msi, size), 0.0, 1.0).astype(np.float32))
        b_views.append(np.clip(np.rint(_resized(histology, size)), 0, 255).astype(np.uint8))
        rows.append(
            {
                "tile_id": f"{pair.pair_id}_whole",
                "pair_id": pair.pair_id,
                "specimen_id": pair.specimen_id,
                "split": pair.split,
                "x": level0_pixels(-left, pair.downsample),
                "y": level0_pixels(-top, pair.downsample),
                "size": level0_pixels(side, pair.downsample),
                "scale": side * pair.downsample / size,
                "msi_fraction": float(coverage.mean()),
                "padding": padding.value,
                "mpp": pair.mpp * side / size,
            }
        )
    return TileSet(manifest=pd.DataFrame(rows), a=np.stack(a_views), b=np.stack(b_views))
