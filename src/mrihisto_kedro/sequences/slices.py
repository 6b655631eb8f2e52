"""The T1/T2 slices of one split of the ``t1_to_t2`` tile set, resizing, and the head mask.

Slices are single-channel axial slices, float32 in [0, 1], shaped ``(N, H, W)`` (the tile set's
A = T1, B = T2; 128 x 128 px of 2 mm voxels, zero-padded). No Kedro imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage

from mrihisto_kedro.imaging.tileset import TileSet

__all__ = ["SequenceSlices", "head_mask", "resize_slices", "split_slices"]


@dataclass(frozen=True)
class SequenceSlices:
    """The slices of one split.

    Attributes:
        manifest: the tile set's rows (``tile_id``, ``pair_id`` = ``slice_<i>``, ``slice_index``,
            ``split``, ...), in array order.
        t1: ``(N, H, W)`` float32 in [0, 1].
        t2: ``(N, H, W)`` float32 in [0, 1], voxel-aligned with ``t1``.
    """

    manifest: pd.DataFrame
    t1: np.ndarray
    t2: np.ndarray

    def __len__(self) -> int:
        """Number of slices."""
        return int(self.t1.shape[0])


def split_slices(tileset: TileSet, split: str) -> SequenceSlices:
    """One split of a paired single-channel float tile set in [0, 1] (the ``t1_to_t2`` set).

    Raises:
        ValueError: unpaired set, several channels, a non-float dtype, or no slice in ``split``.
    """
    if tileset.b is None:
        raise ValueError("missing_sequences needs a paired T1/T2 tile set")
    if tileset.a.shape[-1] != 1 or tileset.b.shape[-1] != 1:
        raise ValueError(
            f"expected single-channel slices, got A {tileset.a.shape} and B {tileset.b.shape}"
        )
    if tileset.a.dtype.kind != "f" or tileset.b.dtype.kind != "f":
        raise ValueError(f"expected float slices in [0, 1], got {tileset.a.dtype}")
    rows = np.flatnonzero(tileset.manifest["split"].to_numpy() == split)
    if rows.size == 0:
        raise ValueError(f"no slices in split {split!r}; the tile set has {tileset.splits}")
    return SequenceSlices(
        manifest=tileset.manifest.iloc[rows].reset_index(drop=True),
        t1=np.clip(np.asarray(tileset.a[rows], dtype=np.float32)[..., 0], 0.0, 1.0),
        t2=np.clip(np.asarray(tileset.b[rows], dtype=np.float32)[..., 0], 0.0, 1.0),
    )


def resize_slices(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W)`` -> ``(N, size, size)``, float32 in [0, 1].

    Area averaging when shrinking (no aliasing), bilinear (``align_corners=False``) when growing;
    the same array (as float32) when the size already matches.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected slices (N, H, W), got {x.shape}")
    if x.shape[1:] == (size, size):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x))[:, None]
    if size <= min(x.shape[1:]):
        out = F.interpolate(t, size=(size, size), mode="area")
    else:
        out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return out[:, 0].clamp_(0.0, 1.0).numpy()


def head_mask(t1: np.ndarray, level: float = 0.1) -> np.ndarray:
    """``(N, H, W)`` bool: T1 above ``level`` (image units), holes filled slice by slice."""
    return np.stack([ndimage.binary_fill_holes(s > level) for s in np.asarray(t1)])
