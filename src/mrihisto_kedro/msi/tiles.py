"""Paired MSI/H&E tiles on the working grid (no Kedro).

Step 7 of paper 003's data preparation: every registered specimen
(:class:`MsiAlignedPair`, read back by :func:`aligned_pairs`) is cut into tiles on the shared
grid of :func:`mrihisto_kedro.imaging.tiling.grid_tiles`, keeping those that MSI pixels cover
enough of (A = 3-channel MSI float32 in [0, 1], B = uint8 RGB H&E). Coordinates are recorded in
histology level-0 pixels by the same rounding as the MRI tiles
(:func:`~mrihisto_kedro.imaging.tiling.level0_pixels`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.imaging.input_spec import InputKind, InputSpec
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.imaging.tiling import grid_tiles, tile_record
from mrihisto_kedro.msi.geometry import image_to_array
from mrihisto_kedro.msi.joint_reduction import ReductionRecord, ReductionRecordError
from mrihisto_kedro.msi.manifest import pair_rows, validate_msi_pairs
from mrihisto_kedro.msi.params import MsiTilingParams
from mrihisto_kedro.msi.reduction import PadColour

__all__ = [
    "MsiAlignedPair",
    "aligned_pairs",
    "msi_pair_tiles",
    "msi_tiles_input_spec",
    "with_input_spec",
]


@dataclass(frozen=True)
class MsiAlignedPair:
    """One registered specimen on the working grid.

    Attributes:
        pair_id, specimen_id, split: from the manifest.
        msi: float32 ``(H, W, 3)`` in [0, 1]: the padded, registered, reduced MSI.
        histology: uint8 ``(H, W, 3)``: the working-grid H&E.
        coverage: bool ``(H, W)``: grid pixels covered by MSI pixels (the rest is padding).
        downsample: histology level-0 pixels per grid pixel.
        mpp: µm per grid pixel (x).
        reduction: how the MSI was reduced, as its registered image records it (``None``: not
            read from a file).
    """

    pair_id: str
    specimen_id: str
    split: str
    msi: np.ndarray
    histology: np.ndarray
    coverage: np.ndarray
    downsample: int
    mpp: float
    reduction: ReductionRecord | None = None

    def __post_init__(self) -> None:
        h, w = self.coverage.shape
        if self.msi.shape != (h, w, 3) or self.histology.shape != (h, w, 3):
            raise ValueError(
                f"pair {self.pair_id}: MSI {self.msi.shape}, histology {self.histology.shape} "
                f"and coverage {self.coverage.shape} must share one (H, W) grid"
            )


def aligned_pairs(
    pairs: pd.DataFrame,
    histology_grid: Mapping[str, Callable[[], sitk.Image]],
    registered: Mapping[str, Callable[[], sitk.Image]],
    coverage: Mapping[str, Callable[[], sitk.Image]],
) -> list[MsiAlignedPair]:
    """Every registered specimen of the manifest on its working grid, in manifest order.

    Args:
        pairs: the MSI pairs manifest with splits (``pair_id, specimen_id, mpp_x, split``).
        histology_grid: ``{pair_id: callable returning the working-grid H&E}`` (vector uint8,
            spacing in mm).
        registered: ``{pair_id: callable returning the padded, registered MSI}`` (vector float32
            on the same grid).
        coverage: ``{pair_id: callable returning the MSI footprint on the grid}`` (0/1).

    Returns:
        One :class:`MsiAlignedPair` per row; ``downsample`` = the grid's µm per pixel over the
        level-0 ``mpp_x``, rounded to an integer; ``mpp`` = the grid's µm per pixel (x).
    """
    aligned = []
    for row in pair_rows(validate_msi_pairs(pairs)):
        grid = histology_grid[row.pair_id]()
        grid_mpp = float(grid.GetSpacing()[0]) * 1000.0
        msi = registered[row.pair_id]()
        aligned.append(
            MsiAlignedPair(
                pair_id=row.pair_id,
                specimen_id=row.specimen_id,
                split=row.split,
                msi=image_to_array(msi).astype(np.float32),
                histology=image_to_array(grid),
                coverage=image_to_array(coverage[row.pair_id]()) > 0,
                downsample=round(grid_mpp / row.mpp_x),
                mpp=grid_mpp,
                reduction=ReductionRecord.read(msi, f"registered MSI of pair {row.pair_id}"),
            )
        )
    return aligned


def msi_pair_tiles(
    pairs: Sequence[MsiAlignedPair], params: MsiTilingParams, padding: PadColour | str
) -> TileSet:
    """Cut every registered pair into tiles, keeping those with enough MSI coverage.

    The grid and the coverage filter are :func:`~mrihisto_kedro.imaging.tiling.grid_tiles`
    (mask = the MSI coverage), the shared columns
    :func:`~mrihisto_kedro.imaging.tiling.tile_record`.

    Returns:
        A :class:`~mrihisto_kedro.imaging.tileset.TileSet`: ``a`` float32 ``(N, S, S, 3)`` MSI
        in [0, 1], ``b`` uint8 ``(N, S, S, 3)`` H&E; manifest ``tile_id, pair_id, specimen_id,
        split, x, y, size, scale, msi_fraction, padding, mpp`` (``x, y, size`` in histology
        level-0 pixels; ``scale`` = level-0 pixels per stored pixel, as
        :func:`mrihisto_kedro.imaging.tiling.paired_tiles`; ``mpp`` = µm per stored pixel).

    Raises:
        ValueError: no tile passes ``min_msi_fraction``.
    """
    padding = PadColour(padding)
    size = params.tile_size
    rows, a_tiles, b_tiles = [], [], []
    for pair in pairs:
        for tile in grid_tiles(pair.coverage, size, params.stride, params.min_msi_fraction):
            window = (slice(tile.y, tile.y + size), slice(tile.x, tile.x + size))
            a_tiles.append(pair.msi[window])
            b_tiles.append(pair.histology[window])
            record = tile_record(
                pair.pair_id, pair.specimen_id, pair.split, tile, size, pair.downsample, size
            )
            rows.append(
                {**record, "msi_fraction": tile.fraction, "padding": padding.value, "mpp": pair.mpp}
            )
    if not rows:
        raise ValueError(
            f"no tile of {size} px has MSI coverage >= {params.min_msi_fraction} in "
            f"{len(pairs)} pair(s)"
        )
    return TileSet(
        manifest=pd.DataFrame(rows),
        a=np.stack(a_tiles).astype(np.float32),
        b=np.stack(b_tiles).astype(np.uint8),
    )


def msi_tiles_input_spec(manifest: pd.DataFrame, reduction: ReductionRecord) -> InputSpec:
    """What a generator trained on an MSI tile set takes as input (stored in ``generator.pt``).

    Args:
        manifest: the tile manifest of :func:`msi_pair_tiles` (its ``mpp``: µm per stored
            pixel, the H&E grid's).
        reduction: how the peak stacks were reduced to the 3 input channels, as the registered
            images record it.
    """
    mpp = float(np.median(manifest["mpp"]))
    return InputSpec(
        kind=InputKind.MSI_TO_SLIDE,
        pixel_size_um=(mpp, mpp),
        channels=3,
        lower_percentile=reduction.lower_percentile,
        upper_percentile=reduction.upper_percentile,
        normalisation_scope="dataset",
        embedding=str(reduction.embedding),
    )


def with_input_spec(tiles: TileSet, pairs: Sequence[MsiAlignedPair]) -> TileSet:
    """``tiles`` with its input spec recorded in ``attrs["input_spec"]`` (training stores it in
    ``generator.pt``; see :func:`msi_tiles_input_spec`); the same object, returned.

    The reduction is the one every pair's registered image records.

    Raises:
        ReductionRecordError: a pair without the record, or pairs reduced differently.
    """
    records = []
    for pair in pairs:
        if pair.reduction is None:
            raise ReductionRecordError(f"pair {pair.pair_id}: its MSI reduction is not known")
        records.append((pair.pair_id, pair.reduction))
    reduction = ReductionRecord.agreed(records)
    tiles.attrs["input_spec"] = msi_tiles_input_spec(tiles.manifest, reduction).to_dict()
    return tiles
