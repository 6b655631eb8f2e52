"""Split one MRI volume into blocks of slices for train / val / test (no Kedro).

A single template volume (the ICBM152 T1/T2 pair) has no specimens to split by; neighbouring
slices are nearly identical, so a random slice split would leak. Two layouts, each with a gap of
unused slices wherever two splits meet:

- :func:`slab_splits`: one contiguous slab per split (train at the bottom of the head, test at
  the top). The test slab then holds anatomy the training never saw (the vertex: skull and
  cortex, no ventricles), a distribution shift rather than a held-out sample.
- :func:`interleaved_splits`: short blocks dealt to the splits in proportion along the whole
  axis, so every split samples the bottom, middle and top of the head.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.imaging.input_spec import InputKind, InputSpec
from mrihisto_kedro.imaging.mri import Plane, extract_slice, slice_count
from mrihisto_kedro.imaging.tileset import TileSet


class SliceLayout(StrEnum):
    """How the slices of one volume are dealt to the splits."""

    SLABS = "slabs"  # one contiguous slab per split: slab_splits
    INTERLEAVED = "interleaved"  # short blocks spread along the axis: interleaved_splits


def volume_splits(
    indices: list[int],
    layout: SliceLayout | str,
    fractions: tuple[float, float, float],
    gap: int,
    block: int,
) -> dict[str, list[int]]:
    """The train / val / test slices of ``indices`` in ``layout`` (``block`` is used only by
    :attr:`SliceLayout.INTERLEAVED`)."""
    if SliceLayout(layout) is SliceLayout.SLABS:
        return slab_splits(indices, fractions, gap)
    return interleaved_splits(indices, fractions, block, gap)


def slab_splits(
    indices: list[int], fractions: tuple[float, float, float], gap: int
) -> dict[str, list[int]]:
    """Contiguous train / val / test slabs of ``indices`` with ``gap`` slices dropped between.

    Args:
        indices: usable slice indices in anatomical order (e.g. slices with brain).
        fractions: ``(train, val, test)`` shares of the slices left after the gaps; sum 1.
        gap: slices left out between two consecutive non-empty splits (>= 0).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` (val may be empty when its fraction
        is 0); no index is in two splits and any two splits are at least ``gap + 1`` apart.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {fractions}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    names = ("train", "val", "test")
    active = [n for n, f in zip(names, fractions, strict=True) if f > 0]
    usable = len(indices) - gap * (len(active) - 1)
    if usable < len(active):
        raise ValueError(
            f"{len(indices)} slices are too few for {len(active)} splits with gap {gap}"
        )
    counts = {n: int(np.floor(f * usable)) for n, f in zip(names, fractions, strict=True)}
    counts["train"] += usable - sum(counts.values())
    out: dict[str, list[int]] = {n: [] for n in names}
    start = 0
    for name in names:
        if name not in active:
            continue
        out[name] = list(indices[start : start + counts[name]])
        start += counts[name] + gap
    return out


def interleaved_splits(
    indices: list[int], fractions: tuple[float, float, float], block: int, gap: int
) -> dict[str, list[int]]:
    """Blocks of about ``block`` consecutive slices dealt to train / val / test along the axis.

    The slices are cut into ``round(len(indices) / block)`` near-equal blocks; each split gets
    its share of blocks (largest remainders, at least one block per split with a fraction > 0),
    and the blocks are dealt in order to the split furthest behind its share, so val and test
    blocks are spread between training blocks rather than stacked at one end. Where two splits
    meet, ``gap`` slices are dropped from the side of the split with the larger fraction (the
    training side), so val and test keep their blocks whole.

    Args:
        indices: usable slice indices in anatomical order (e.g. slices with brain).
        fractions: ``(train, val, test)`` shares of the blocks; sum 1.
        block: slices per block (>= 1), before gaps.
        gap: slices dropped at every boundary between two splits (>= 0).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` in anatomical order; no index is in two
        splits and slices of two different splits are at least ``gap + 1`` apart.

    Raises:
        ValueError: fractions that are negative or do not sum to 1, ``block < 1``, ``gap < 0``,
            fewer blocks than splits, or a training block that the gaps would use up.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {fractions}")
    if block < 1 or gap < 0:
        raise ValueError(f"block must be >= 1 and gap >= 0, got block={block}, gap={gap}")
    names = ("train", "val", "test")
    share = dict(zip(names, fractions, strict=True))
    n_blocks = max(1, round(len(indices) / block))
    active = [n for n in names if share[n] > 0]
    if n_blocks < len(active):
        raise ValueError(
            f"{len(indices)} slices make {n_blocks} block(s) of ~{block}: too few for "
            f"{len(active)} splits"
        )
    counts = _block_counts(share, active, n_blocks)
    owners: list[str] = []
    dealt = dict.fromkeys(names, 0)
    for k in range(n_blocks):
        left = [n for n in active if dealt[n] < counts[n]]
        owner = max(left, key=lambda n: (counts[n] * (k + 1) / n_blocks - dealt[n], -share[n]))
        owners.append(owner)
        dealt[owner] += 1
    blocks = [list(b) for b in np.array_split(np.asarray(indices), n_blocks)]
    for k in range(1, n_blocks):
        if owners[k] == owners[k - 1] or gap == 0:
            continue
        lower = k - 1 if share[owners[k - 1]] >= share[owners[k]] else k
        if len(blocks[lower]) <= gap:
            raise ValueError(
                f"a gap of {gap} slices uses up a whole {owners[lower]} block of "
                f"{len(blocks[lower])}: use larger blocks or a smaller gap"
            )
        blocks[lower] = blocks[lower][:-gap] if lower == k - 1 else blocks[lower][gap:]
    out: dict[str, list[int]] = {n: [] for n in names}
    for owner, values in zip(owners, blocks, strict=True):
        out[owner].extend(int(v) for v in values)
    return out


def _block_counts(share: dict[str, float], active: list[str], n_blocks: int) -> dict[str, int]:
    """Blocks per split: largest remainders of ``share * n_blocks``, at least one if active."""
    exact = {n: share[n] * n_blocks for n in share}
    counts = {n: (max(1, int(np.floor(exact[n]))) if n in active else 0) for n in share}
    while sum(counts.values()) < n_blocks:
        name = max(active, key=lambda n: exact[n] - counts[n])
        counts[name] += 1
    while sum(counts.values()) > n_blocks:
        name = max((n for n in active if counts[n] > 1), key=lambda n: counts[n] - exact[n])
        counts[name] -= 1
    return counts


def brain_slices(volume: sitk.Image, plane: Plane | str, min_fraction: float = 0.15) -> list[int]:
    """Indices of slices in ``plane`` whose foreground (above 10 % of the 99th percentile) covers
    at least ``min_fraction`` of the slice."""
    array = sitk.GetArrayFromImage(volume).astype(np.float32)
    level = 0.1 * float(np.percentile(array, 99))
    keep = []
    for i in range(slice_count(volume, plane)):
        image = sitk.GetArrayFromImage(extract_slice(volume, plane, i))
        if (image > level).mean() >= min_fraction:
            keep.append(i)
    return keep


def volume_pair_tiles(
    volume_a: sitk.Image,
    volume_b: sitk.Image,
    plane: Plane | str,
    splits: dict[str, list[int]],
    *,
    lower_percentile: float = 1.0,
    upper_percentile: float = 99.5,
    pad_to: int | None = None,
) -> TileSet:
    """Slices of two voxel-aligned volumes (e.g. T1 and T2) as a tile set, one row per slice.

    Each slice is scaled to ``[0, 1]`` by robust percentiles of its own volume (computed once
    over the volume) and zero-padded (centred) to ``pad_to`` pixels a side if given.

    Returns:
        ``a`` float32 ``(N, H, W, 1)`` from ``volume_a``, ``b`` float32 ``(N, H, W, 1)`` from
        ``volume_b``; manifest rows with ``pair_id = slice_<i>``, ``specimen_id = slab_<split>``,
        ``split``, ``x = y = 0``, ``size`` (px), ``scale = 1``.
    """
    if volume_a.GetSize() != volume_b.GetSize():
        raise ValueError(f"volumes differ in size: {volume_a.GetSize()} vs {volume_b.GetSize()}")
    ranges = []
    for vol in (volume_a, volume_b):
        arr = sitk.GetArrayFromImage(vol).astype(np.float64)
        ranges.append(np.percentile(arr, [lower_percentile, upper_percentile]))
    rows, a_list, b_list = [], [], []
    for split, indices in splits.items():
        for i in indices:
            images = []
            for vol, (lo, hi) in zip((volume_a, volume_b), ranges, strict=True):
                s = sitk.GetArrayFromImage(extract_slice(vol, plane, i)).astype(np.float64)
                images.append(np.clip((s - lo) / (hi - lo), 0.0, 1.0).astype(np.float32))
            if pad_to is not None:
                images = [_pad(im, pad_to) for im in images]
            a_list.append(images[0][..., None])
            b_list.append(images[1][..., None])
            rows.append(
                {
                    "tile_id": f"{plane}_{i:03d}",
                    "pair_id": f"slice_{i:03d}",
                    "specimen_id": f"slab_{split}",
                    "split": split,
                    "x": 0,
                    "y": 0,
                    "size": images[0].shape[0],
                    "scale": 1.0,
                    "slice_index": i,
                }
            )
    return TileSet(manifest=pd.DataFrame(rows), a=np.stack(a_list), b=np.stack(b_list))


def _pad(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape
    if h > size or w > size:
        raise ValueError(f"slice {image.shape} is larger than pad_to={size}")
    out = np.zeros((size, size), image.dtype)
    top, left = (size - h) // 2, (size - w) // 2
    out[top : top + h, left : left + w] = image
    return out


def volume_tiles_input_spec(
    volume: sitk.Image,
    plane: Plane | str,
    pad_to: int | None,
    lower_percentile: float = 1.0,
    upper_percentile: float = 99.5,
) -> InputSpec:
    """The input a model trained on :func:`volume_pair_tiles` of ``volume`` expects.

    The pixel size is the in-plane voxel spacing of ``plane`` slices (µm, (column, row)), the
    normalisation one pair of robust percentiles over the whole volume.
    """
    probe = extract_slice(volume, plane, 0)
    spacing = probe.GetSpacing()
    return InputSpec(
        kind=InputKind.VOLUME_TO_VOLUME,
        pixel_size_um=(float(spacing[0]) * 1000.0, float(spacing[1]) * 1000.0),
        channels=1,
        lower_percentile=float(lower_percentile),
        upper_percentile=float(upper_percentile),
        normalisation_scope="volume",
        plane=str(Plane(plane)),
        pad_to=pad_to,
    )
