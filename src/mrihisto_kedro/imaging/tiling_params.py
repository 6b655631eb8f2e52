"""``<experiment>.tiling``: how an experiment cuts its tile set (parameter types; no Kedro).

Two kinds of experiment cut their own tiles: MRI -> histology experiments from the registered
pairs (:class:`PairTilingParams`: tiles of a fixed size, or one whole view per pair) and
volume-pair experiments from two voxel-aligned volumes (:class:`VolumeTilingParams`). The
modelling pipeline's ``build_tiles`` nodes parse their parameters into these types
(:func:`mrihisto_kedro.params.parse_params`, errors naming the dotted key).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mrihisto_kedro.imaging.mri import Plane
from mrihisto_kedro.imaging.slabs import SliceLayout
from mrihisto_kedro.imaging.tiling import TilingParams

__all__ = ["PairTilingParams", "TileKind", "VolumeTilingParams"]


class TileKind(StrEnum):
    """Tiles of a fixed size, or one whole-slide view per pair."""

    TILES = "tiles"
    WHOLE = "whole"


@dataclass(frozen=True)
class PairTilingParams:
    """``<experiment>.tiling`` for MRI -> histology experiments.

    Attributes:
        kind: ``tiles`` (a grid of ``tile_size`` px tiles) or ``whole`` (one view per pair).
        tile_size, stride, min_tissue_fraction, output_size: the grid, in pixels of the
            downsampled histology grid (:class:`~mrihisto_kedro.imaging.tiling.TilingParams`).
        load_size: side in pixels of a whole view (``kind: whole`` only).
        include_flagged_pairs: also tile the pairs whose registration was flagged by QC or did
            not converge (``registration_report.csv``); by default they are left out, by name.
    """

    kind: TileKind = TileKind.TILES
    tile_size: int = 256
    stride: int | None = None
    min_tissue_fraction: float = 0.5
    output_size: int | None = None
    load_size: int = 256  # whole views only
    include_flagged_pairs: bool = False

    def grid(self) -> TilingParams:
        """The tile grid these parameters describe (validated there)."""
        return TilingParams(self.tile_size, self.stride, self.min_tissue_fraction, self.output_size)


@dataclass(frozen=True)
class VolumeTilingParams:
    """``<experiment>.tiling`` for volume-pair experiments (T1 -> T2 on one template).

    Attributes:
        plane: the slicing plane (``axial``, ``coronal`` or ``sagittal``).
        min_brain_fraction: keep a slice only if at least this fraction of it is brain.
        fractions: train/val/test shares of the kept slices.
        layout: ``interleaved`` (blocks of ``block`` slices spread along the axis) or ``slabs``
            (one contiguous slab per split); ``gap`` slices are dropped wherever two splits
            meet (:mod:`mrihisto_kedro.imaging.slabs`).
        block: slices per block of the interleaved layout.
        gap: slices dropped between two splits.
        pad_to: side in voxels each slice is zero-padded to.
    """

    plane: Plane = Plane.AXIAL
    min_brain_fraction: float = 0.15
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    layout: SliceLayout = SliceLayout.INTERLEAVED
    block: int = 8
    gap: int = 3
    pad_to: int = 128
