"""``<experiment>.tiling``: how an experiment cuts its tile set (parameter types; no Kedro).

Two kinds of experiment cut their own tiles: MRI -> histology experiments from the registered
pairs (:class:`PairTilingParams`: tiles of a fixed size, or one whole view per pair) and
volume-pair experiments from two voxel-aligned volumes (:class:`VolumeTilingParams`). The
modelling pipeline's ``build_tiles`` nodes parse their parameters into these types
(:func:`mrihisto_kedro.params.parse_params`, errors naming the dotted key); both are
:class:`~mrihisto_kedro.params.Params`, checked when parsed, so at the start of a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from mrihisto_kedro.imaging.mri import Plane
from mrihisto_kedro.imaging.slabs import SliceLayout
from mrihisto_kedro.imaging.tiling import TilingParams
from mrihisto_kedro.params import Params, Range, fail

__all__ = ["PairTilingParams", "TileKind", "VolumeTilingParams"]


#: a share of the slices, >= 0
_Share = Annotated[float, Range(ge=0.0)]


class TileKind(StrEnum):
    """Tiles of a fixed size, or one whole-slide view per pair."""

    TILES = "tiles"
    WHOLE = "whole"


@dataclass(frozen=True)
class PairTilingParams(Params):
    """``<experiment>.tiling`` for MRI -> histology experiments.

    Attributes:
        kind: ``tiles`` (a grid of ``tile_size`` px tiles) or ``whole`` (one view per pair).
        tile_size, stride, min_tissue_fraction, output_size: the grid, in pixels of the
            downsampled histology grid (:class:`~mrihisto_kedro.imaging.tiling.TilingParams`,
            whose ranges apply with ``kind: tiles``).
        load_size: side in pixels of a whole view (``kind: whole`` only).
        include_flagged_pairs: also tile the pairs whose registration was flagged by QC or did
            not converge (``registration_report.csv``); by default they are left out, by name.
        read_workers: threads reading a pair's slide windows at once (tiles only; the tiles are
            the same for any value, see :class:`~mrihisto_kedro.imaging.tiling.TilingParams`).
    """

    kind: TileKind = TileKind.TILES
    tile_size: int = 256
    stride: int | None = None
    min_tissue_fraction: float = 0.5
    output_size: int | None = None
    load_size: int = 256  # whole views only
    include_flagged_pairs: bool = False
    read_workers: Annotated[int, Range(ge=1)] = 2

    def validate(self) -> None:
        """Tiles: the grid's ranges (:class:`~mrihisto_kedro.imaging.tiling.TilingParams`)."""
        if self.kind is TileKind.TILES:
            self.grid()

    def grid(self) -> TilingParams:
        """The tile grid these parameters describe (validated there)."""
        return TilingParams(
            self.tile_size,
            self.stride,
            self.min_tissue_fraction,
            self.output_size,
            self.read_workers,
        )


@dataclass(frozen=True)
class VolumeTilingParams(Params):
    """``<experiment>.tiling`` for volume-pair experiments (T1 -> T2 on one template).

    Attributes:
        plane: the slicing plane (``axial``, ``coronal`` or ``sagittal``).
        min_brain_fraction: keep a slice only if at least this fraction of it is brain.
        fractions: train/val/test shares of the kept slices (each >= 0, sum 1).
        layout: ``interleaved`` (blocks of ``block`` slices spread along the axis) or ``slabs``
            (one contiguous slab per split); ``gap`` slices are dropped wherever two splits
            meet (:mod:`mrihisto_kedro.imaging.slabs`).
        block: slices per block of the interleaved layout (>= 1 with that layout).
        gap: slices dropped between two splits (>= 0).
        pad_to: side in voxels each slice is zero-padded to.
    """

    plane: Plane = Plane.AXIAL
    min_brain_fraction: float = 0.15
    fractions: tuple[_Share, _Share, _Share] = (0.7, 0.1, 0.2)
    layout: SliceLayout = SliceLayout.INTERLEAVED
    block: int = 8
    gap: Annotated[int, Range(ge=0)] = 3
    pad_to: int = 128

    def validate(self) -> None:
        """The fractions sum to 1; the interleaved layout has blocks of at least one slice."""
        if abs(sum(self.fractions) - 1.0) > 1e-6:
            fail("fractions", f"must sum to 1, got {list(self.fractions)}")
        if self.layout is SliceLayout.INTERLEAVED and self.block < 1:
            fail("block", f"must be >= 1 with layout 'interleaved', got {self.block}")
