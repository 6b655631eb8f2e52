"""Paired tiles and whole-slide views from aligned MRI / histology pairs (no Kedro imports).

Inputs are the registration pipeline's products on the downsampled histology grid: the aligned
MRI slice (float32 ``(H, W)`` in ``[0, 1]``), the downsampled slide (uint8 ``(H, W, 3)``) and
the slide's tissue mask. Tile coordinates are recorded in level-0 pixels of the original slide
(``x = round(col * downsample)``, :func:`level0_pixels`), so a tile can always be found again in
the full-resolution slide.

:func:`grid_tiles` (the regular grid and its mask filter), :func:`level0_pixels` (the one
rounding) and :func:`tile_record` (the shared manifest columns) are also what the MSI/H&E tiles of
:mod:`mrihisto_kedro.msi.tiles` are cut with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import numpy as np
import pandas as pd
from skimage.transform import resize

from mrihisto_kedro.imaging.input_spec import InputKind, InputSpec
from mrihisto_kedro.imaging.level_array import LevelArray
from mrihisto_kedro.imaging.tileset import TileSet, TileSetWriter
from mrihisto_kedro.params import Params, Range

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TilingParams(Params):
    """How tiles are cut.

    Attributes:
        tile_size: tile side in pixels of the downsampled grid the pairs live on (>= 8).
        stride: step between tiles in pixels (``None``: ``tile_size``, i.e. non-overlapping).
        min_tissue_fraction: keep a tile only if at least this fraction of it is tissue.
        output_size: tiles are resized to this side before storage (``None``: ``tile_size``).
        read_workers: threads reading a slide's windows at once when the histology is a
            :class:`~mrihisto_kedro.imaging.level_array.LevelArray` (batched reads,
            :meth:`~mrihisto_kedro.imaging.level_array.LevelArray.iter_windows`); the tiles are
            the same for any value. 2 measured fastest on 2 cores
            (``benchmarks/bench_tile_reads.py``, tiling of one pair).
    """

    tile_size: Annotated[int, Range(ge=8)] = 256
    stride: Annotated[int, Range(ge=1)] | None = None
    min_tissue_fraction: Annotated[float, Range(ge=0.0, le=1.0)] = 0.5
    output_size: int | None = None
    read_workers: Annotated[int, Range(ge=1)] = 2


@dataclass(frozen=True)
class AlignedPair:
    """One registered pair on the downsampled histology grid.

    Attributes:
        pair_id, specimen_id, split: from the pairs manifest.
        mri: aligned MRI, float32 ``(H, W)`` in ``[0, 1]``.
        histology: downsampled slide, uint8 ``(H, W, 3)``: an array, or a
            :class:`~mrihisto_kedro.imaging.level_array.LevelArray` that reads the windows
            tiling cuts by region (the pipeline's pairs: no whole level in memory).
        tissue: boolean tissue mask ``(H, W)`` (histology tissue and MRI coverage).
        downsample: level-0 pixels per grid pixel (e.g. 15).
    """

    pair_id: str
    specimen_id: str
    split: str
    mri: np.ndarray
    histology: np.ndarray | LevelArray
    tissue: np.ndarray
    downsample: float

    def __post_init__(self) -> None:
        h, w = self.mri.shape
        if self.histology.shape != (h, w, 3) or self.tissue.shape != (h, w):
            raise ValueError(
                f"pair {self.pair_id}: MRI {self.mri.shape}, histology {self.histology.shape} "
                f"and tissue {self.tissue.shape} must share one (H, W) grid"
            )


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` along an axis of ``length`` pixels (no overhang)."""
    if length < tile:
        return []
    return list(range(0, length - tile + 1, stride))


class GridTile(NamedTuple):
    """A window of a regular tile grid that the mask filter kept.

    Attributes:
        y: top row of the window, in grid pixels.
        x: left column of the window, in grid pixels.
        fraction: share of the window's pixels that the mask covers, in [0, 1].
    """

    y: int
    x: int
    fraction: float


def grid_tiles(
    mask: np.ndarray, tile_size: int, stride: int | None, min_fraction: float
) -> list[GridTile]:
    """The windows of a regular grid over ``mask`` that the mask covers enough of.

    The one grid and filter of every paired tile set: MRI/histology tiles (:func:`plan_tiles`,
    mask = tissue) and MSI/H&E tiles (:func:`mrihisto_kedro.msi.tiles.msi_pair_tiles`, mask =
    MSI coverage).

    Args:
        mask: bool ``(H, W)`` on the grid the tiles are cut from.
        tile_size: window side in grid pixels.
        stride: step between windows in grid pixels (``None``: ``tile_size``, non-overlapping).
        min_fraction: keep a window when ``mask`` covers at least this share of it.

    Returns:
        The kept windows, row-major (``y`` then ``x``); windows never overhang the grid
        (:func:`tile_origins`).
    """
    step = stride or tile_size
    h, w = mask.shape
    kept = []
    for y in tile_origins(h, tile_size, step):
        for x in tile_origins(w, tile_size, step):
            fraction = float(mask[y : y + tile_size, x : x + tile_size].mean())
            if fraction >= min_fraction:
                kept.append(GridTile(y, x, fraction))
    return kept


def level0_pixels(grid_pixels: float, downsample: float) -> int:
    """A grid offset or length in level-0 pixels: ``round(grid_pixels * downsample)``.

    The one rounding of tile coordinates (MRI and MSI tile sets): to the NEAREST level-0 pixel
    (Python's ``round``, so an exact ``.5`` goes to the even neighbour), not truncation
    (``int``). The product of a grid offset and a downsample factor that is an integer in
    principle can fall a hair below it in floating point (``32 * 14.999999999999998`` is
    ``479.99999999999994``): truncation would put such a tile one level-0 pixel up or left of
    its grid pixel, and for a fractional factor (``15.37``) it is off by up to a whole pixel,
    always in the same direction; the nearest pixel is off by at most half a pixel, either way.
    For an integer factor (the MSI working grid's) both give the same exact product.

    Args:
        grid_pixels: offset or length in pixels of the downsampled grid.
        downsample: level-0 pixels per grid pixel.

    Returns:
        Level-0 pixels (an ``int``).
    """
    return round(grid_pixels * downsample)


def tile_record(
    pair_id: str,
    specimen_id: str,
    split: str,
    tile: GridTile,
    tile_size: int,
    downsample: float,
    stored_size: int,
) -> dict[str, Any]:
    """The manifest columns every paired tile set shares, for one kept window.

    Args:
        pair_id, specimen_id, split: the pair's, from its manifest.
        tile: the window (grid pixels).
        tile_size: window side in grid pixels.
        downsample: level-0 pixels per grid pixel.
        stored_size: side of the stored tile in pixels (``tile_size`` unless resized).

    Returns:
        ``tile_id`` (``<pair_id>_x<x:05d>_y<y:05d>``, grid pixels), ``pair_id``,
        ``specimen_id``, ``split``, ``x``, ``y``, ``size`` (level-0 pixels, see
        :func:`level0_pixels`) and ``scale`` (level-0 pixels per stored pixel).
    """
    return {
        "tile_id": f"{pair_id}_x{tile.x:05d}_y{tile.y:05d}",
        "pair_id": pair_id,
        "specimen_id": specimen_id,
        "split": split,
        "x": level0_pixels(tile.x, downsample),
        "y": level0_pixels(tile.y, downsample),
        "size": level0_pixels(tile_size, downsample),
        "scale": tile_size * downsample / stored_size,
    }


def _resize(array: np.ndarray, size: int, *, order: int) -> np.ndarray:
    if array.shape[0] == size and array.shape[1] == size:
        return array
    out = resize(
        array.astype(np.float32),
        (size, size) + array.shape[2:],
        order=order,
        anti_aliasing=order > 0,
        preserve_range=True,
    )
    return out


def paired_tiles(pairs: list[AlignedPair], params: TilingParams) -> TileSet:
    """Cut every pair into tiles and keep those with enough tissue.

    Args:
        pairs: the aligned pairs.
        params: tile size, stride, tissue fraction, stored size.

    Returns:
        A :class:`TileSet` with ``a`` float32 ``(N, S, S, 1)`` MRI in ``[0, 1]``, ``b`` uint8
        ``(N, S, S, 3)`` histology, and one manifest row per tile (``tile_id, pair_id,
        specimen_id, split, x, y, size, scale, tissue_fraction``; ``x, y, size`` in level-0
        pixels; ``scale`` = level-0 pixels per stored pixel).
    """
    rows, a_tiles, b_tiles, empty = [], [], [], []
    for pair in pairs:
        plan = plan_tiles(pair, params)
        rows += tile_rows(pair, params, plan)
        if not plan:
            empty.append(why_no_tiles(pair, params))
        for a, b in cut_tiles(pair, params, plan):
            a_tiles.append(a)
            b_tiles.append(b)
    warn_pairs_without_tiles(empty, len(pairs))
    if not rows:
        raise _no_tiles(params, len(pairs))
    return TileSet(
        manifest=pd.DataFrame(rows),
        a=np.stack(a_tiles).astype(np.float32),
        b=np.stack(b_tiles),
    )


def _no_tiles(params: TilingParams, n_pairs: int) -> ValueError:
    return ValueError(
        f"no tile of {params.tile_size} px has tissue fraction >= "
        f"{params.min_tissue_fraction} in {n_pairs} pair(s)"
    )


def why_no_tiles(pair: AlignedPair, params: TilingParams) -> str:
    """``"<pair_id> (<reason>)"`` for a pair whose plan is empty (see :func:`plan_tiles`)."""
    h, w = pair.mri.shape
    if min(h, w) < params.tile_size:
        return (
            f"{pair.pair_id} (its {w} x {h} px grid is smaller than the {params.tile_size} px tile)"
        )
    return (
        f"{pair.pair_id} (tissue covers {pair.tissue.mean():.1%} of its grid; no "
        f"{params.tile_size} px window reaches min_tissue_fraction {params.min_tissue_fraction})"
    )


def warn_pairs_without_tiles(reasons: list[str], n_pairs: int) -> None:
    """One warning naming every pair that gave no tile (it is then absent from the tile set)."""
    if reasons:
        logger.warning(
            "%d of %d pairs gave no tile and are not in the tile set: %s",
            len(reasons),
            n_pairs,
            "; ".join(reasons),
        )


def plan_tiles(pair: AlignedPair, params: TilingParams) -> list[GridTile]:
    """The ``(y, x, tissue_fraction)`` grid offsets of the tiles kept from ``pair``."""
    return grid_tiles(pair.tissue, params.tile_size, params.stride, params.min_tissue_fraction)


def tile_rows(
    pair: AlignedPair, params: TilingParams, plan: list[GridTile]
) -> list[dict[str, Any]]:
    """Manifest rows of the planned tiles (level-0 coordinates, see :func:`paired_tiles`)."""
    out_size = params.output_size or params.tile_size
    return [
        {
            **tile_record(
                pair.pair_id,
                pair.specimen_id,
                pair.split,
                tile,
                params.tile_size,
                pair.downsample,
                out_size,
            ),
            "tissue_fraction": tile.fraction,
        }
        for tile in plan
    ]


def histology_windows(
    pair: AlignedPair, params: TilingParams, plan: list[GridTile]
) -> Iterator[np.ndarray]:
    """The planned histology windows, uint8 ``(tile_size, tile_size, 3)`` each, in plan order.

    A :class:`LevelArray` is read in bounded batches of windows through
    :meth:`LevelArray.iter_windows` (``params.read_workers`` threads); an in-memory array is
    sliced. Both give the same pixels.
    """
    side = params.tile_size
    if isinstance(pair.histology, LevelArray):
        corners = [(tile.y, tile.x) for tile in plan]
        yield from pair.histology.iter_windows(corners, (side, side), workers=params.read_workers)
    else:
        for y, x, _ in plan:
            yield pair.histology[y : y + side, x : x + side]


def cut_tiles(
    pair: AlignedPair, params: TilingParams, plan: list[GridTile]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The planned tiles, resized: ``a`` float32 ``(S, S, 1)``, ``b`` uint8 ``(S, S, 3)``."""
    out_size = params.output_size or params.tile_size
    side = params.tile_size
    windows = histology_windows(pair, params, plan)
    for (y, x, _), histology in zip(plan, windows, strict=True):
        a = _resize(pair.mri[y : y + side, x : x + side], out_size, order=1)
        b = _resize(histology, out_size, order=1)
        yield a[..., None].astype(np.float32), _as_uint8(b)


def _as_uint8(pixels: np.ndarray) -> np.ndarray:
    """Resized pixels rounded to the nearest uint8 (a new array; uint8 input is copied as is).

    ``np.rint`` of a uint8 array computes in float16 (slow in numpy: 2 ms for a 256 px RGB
    tile) and gives back the same integers, so uint8 pixels (tiles stored at the size they are
    cut) skip it.
    """
    if pixels.dtype == np.uint8:
        return pixels.copy()
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


@dataclass
class PairTilesJob:
    """Paired tiles of many pairs written into a tile-set folder, one pair in memory at a time.

    What :func:`paired_tiles` returns in memory, but bounded by one pair's grid instead of
    every pair's tiles: the first pass loads each pair to plan its tiles (tissue fractions
    only: a pair whose histology is a :class:`LevelArray` reads no slide pixels here), the
    second loads it again and writes its tiles into a :class:`TileSetWriter`, reading the
    histology in bounded batches of windows (:func:`histology_windows`). The folder is
    replaced only when complete. ``TileSetDataset.save`` runs :meth:`write`.

    Attributes:
        loaders: one callable per pair returning ``(AlignedPair, level-0 mpp (x, y))``.
        params: how tiles are cut.
        lower_percentile, upper_percentile: the MRI normalisation (for the input spec).
    """

    loaders: list[Callable[[], tuple[AlignedPair, tuple[float, float]]]]
    params: TilingParams
    lower_percentile: float = 1.0
    upper_percentile: float = 99.5

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Plan, write and commit the tile set at ``folder``; return it."""
        plans, rows, level0_mpp, empty = [], [], {}, []
        for load in self.loaders:
            pair, mpp = load()
            plans.append(plan_tiles(pair, self.params))
            rows += tile_rows(pair, self.params, plans[-1])
            level0_mpp[pair.pair_id] = mpp
            if not plans[-1]:
                empty.append(why_no_tiles(pair, self.params))
            del pair
        warn_pairs_without_tiles(empty, len(self.loaders))
        if not rows:
            raise _no_tiles(self.params, len(self.loaders))
        manifest = pd.DataFrame(rows)
        spec = slide_tiles_input_spec(
            manifest, 1, level0_mpp, self.lower_percentile, self.upper_percentile
        )
        side = self.params.output_size or self.params.tile_size
        with TileSetWriter(
            folder, len(rows), a=((side, side, 1), np.float32), b=((side, side, 3), np.uint8)
        ) as writer:
            i = 0
            for load, plan in zip(self.loaders, plans, strict=True):
                pair, _ = load()
                for a, b in cut_tiles(pair, self.params, plan):
                    writer.a[i] = a
                    writer.b[i] = b  # type: ignore[index]  # paired tiles: the writer was opened with b
                    i += 1
                del pair
            path = writer.commit(manifest, {"input_spec": spec.to_dict()})
        counts = manifest.groupby("split").size().to_dict()
        logger.info("tile set %s: %d tiles %s of %d px", path, len(rows), counts, side)
        return path


def whole_views(pairs: list[AlignedPair], load_size: int) -> TileSet:
    """One whole-slide view per pair: the full grid padded to a square and resized.

    Padding (MRI 0, histology white) keeps the aspect ratio, as the paper's whole-slide
    experiment resized each registered slide to one square image.

    Returns:
        A :class:`TileSet` like :func:`paired_tiles` with one row per pair (``x = y = 0``,
        ``size`` = padded side in level-0 pixels).
    """
    rows, a_tiles, b_tiles = [], [], []
    for pair in pairs:
        h, w = pair.mri.shape
        side = max(h, w)
        mri = np.zeros((side, side), np.float32)
        hist = np.full((side, side, 3), 255, np.uint8)
        mri[:h, :w] = pair.mri
        hist[:h, :w] = pair.histology
        a_tiles.append(_resize(mri, load_size, order=1)[..., None])
        b_tiles.append(np.clip(np.rint(_resize(hist, load_size, order=1)), 0, 255).astype(np.uint8))
        rows.append(
            {
                "tile_id": f"{pair.pair_id}_whole",
                "pair_id": pair.pair_id,
                "specimen_id": pair.specimen_id,
                "split": pair.split,
                "x": 0,
                "y": 0,
                "size": level0_pixels(side, pair.downsample),
                "scale": side * pair.downsample / load_size,
                "tissue_fraction": float(pair.tissue.mean()),
            }
        )
    return TileSet(
        manifest=pd.DataFrame(rows), a=np.stack(a_tiles).astype(np.float32), b=np.stack(b_tiles)
    )


def slide_tiles_input_spec(
    manifest: pd.DataFrame,
    channels: int,
    level0_mpp: dict[str, tuple[float, float]],
    lower_percentile: float = 1.0,
    upper_percentile: float = 99.5,
) -> InputSpec:
    """The input a model trained on ``tiles`` (MRI on the histology grid) expects.

    Args:
        manifest: of tiles from :func:`paired_tiles` or :func:`whole_views` (``scale`` =
            level-0 pixels per stored pixel).
        channels: channels of the ``a`` tiles.
        level0_mpp: ``{pair_id: (x, y)}`` level-0 microns per pixel of each pair's slide.
        lower_percentile, upper_percentile: data_engineering's per-slice MRI normalisation.

    Returns:
        An :class:`InputSpec` whose pixel size is the median over tiles of ``mpp * scale`` (µm
        per stored pixel). Whole views of slides of different sizes differ in pixel size; the
        spread is logged when above 5 %.
    """
    m = manifest
    try:
        mpp = np.array([level0_mpp[str(p)] for p in m["pair_id"]], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"no level-0 mpp for pair {exc.args[0]!r}") from exc
    pixel = mpp * m["scale"].to_numpy(dtype=np.float64)[:, None]
    median = np.median(pixel, axis=0)
    spread = float(np.max(np.abs(pixel / median - 1.0))) if len(pixel) else 0.0
    if spread > 0.05:
        logger.warning(
            "tiles differ in pixel size by up to %.0f %% from the median %.3g um; the model "
            "file records the median",
            100 * spread,
            median[0],
        )
    return InputSpec(
        kind=InputKind.SLICE_TO_SLIDE,
        pixel_size_um=(float(median[0]), float(median[1])),
        channels=int(channels),
        lower_percentile=float(lower_percentile),
        upper_percentile=float(upper_percentile),
        normalisation_scope="slice",
    )
