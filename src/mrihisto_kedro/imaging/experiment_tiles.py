"""An experiment's own tile set, from its ``tiling`` parameters (no Kedro).

- :func:`pair_tile_set`: MRI -> histology pairs, as tiles of a fixed size (a
  :class:`~mrihisto_kedro.imaging.tiling.PairTilesJob` that the tile-set dataset writes one pair
  at a time) or as one whole view per pair (a :class:`TileSet` in memory).
- :func:`volume_tile_set`: the slices of two voxel-aligned volumes dealt to train/val/test in
  blocks with gaps (:mod:`mrihisto_kedro.imaging.slabs`).

Both record the input a model trained on the tiles expects (``attrs["input_spec"]``).
"""

from __future__ import annotations

import logging

import SimpleITK as sitk

from mrihisto_kedro.imaging.aligned_pairs import PairLoader
from mrihisto_kedro.imaging.mri import MriNormalisation
from mrihisto_kedro.imaging.slabs import (
    brain_slices,
    volume_pair_tiles,
    volume_splits,
    volume_tiles_input_spec,
)
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.imaging.tiling import PairTilesJob, slide_tiles_input_spec, whole_views
from mrihisto_kedro.imaging.tiling_params import PairTilingParams, TileKind, VolumeTilingParams

__all__ = ["pair_tile_set", "slice_runs", "volume_tile_set"]

logger = logging.getLogger(__name__)


def pair_tile_set(
    loaders: list[PairLoader], params: PairTilingParams, normalisation: MriNormalisation
) -> TileSet | PairTilesJob:
    """Paired MRI/histology tiles (or whole views) of the pairs ``loaders`` load.

    Args:
        loaders: one per pair (:func:`~mrihisto_kedro.imaging.aligned_pairs.aligned_pair_loaders`).
        params: ``tiles``: a grid of tiles; ``whole``: one ``load_size`` px view per pair.
        normalisation: the MRI slices' percentile normalisation, as their files record it
            (:func:`~mrihisto_kedro.imaging.aligned_pairs.recorded_pair_normalisation`);
            recorded in the input spec.

    Returns:
        Tiles: a :class:`PairTilesJob` (bounded by one pair's grid, not by the whole set);
        whole views: a :class:`TileSet` with A float32 ``(N, S, S, 1)`` in [0, 1] and B uint8
        ``(N, S, S, 3)``, ``S = load_size``.
    """
    lower, upper = normalisation.lower_percentile, normalisation.upper_percentile
    if params.kind is not TileKind.WHOLE:
        return PairTilesJob(loaders, params.grid(), lower, upper)
    loaded = [load() for load in loaders]
    tiles = whole_views([pair for pair, _ in loaded], params.load_size)
    mpp = {pair.pair_id: m for pair, m in loaded}
    spec = slide_tiles_input_spec(tiles.manifest, tiles.a.shape[-1], mpp, lower, upper)
    tiles.attrs["input_spec"] = spec.to_dict()
    counts = tiles.manifest.groupby("split").size().to_dict()
    logger.info("tile set: %d views %s, shape %s", len(tiles), counts, tiles.a.shape[1:])
    return tiles


def volume_tile_set(
    volume_a: sitk.Image, volume_b: sitk.Image, params: VolumeTilingParams
) -> TileSet:
    """Slices of two voxel-aligned volumes dealt to train/val/test in blocks, with gaps.

    Only slices with at least ``min_brain_fraction`` brain in ``volume_a`` are used; each is
    zero-padded to ``pad_to`` voxels square (A from ``volume_a``, B from ``volume_b``).
    """
    p = params
    indices = brain_slices(volume_a, p.plane, p.min_brain_fraction)
    splits = volume_splits(indices, p.layout, p.fractions, p.gap, p.block)
    logger.info("%s slices: %s", p.layout, {k: slice_runs(v) for k, v in splits.items() if v})
    tiles = volume_pair_tiles(volume_a, volume_b, p.plane, splits, pad_to=p.pad_to)
    tiles.attrs["input_spec"] = volume_tiles_input_spec(volume_a, p.plane, p.pad_to).to_dict()
    return tiles


def slice_runs(indices: list[int]) -> str:
    """Sorted slice indices as runs: ``[0, 1, 2, 7, 8]`` -> ``"0-2, 7-8"``."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)
