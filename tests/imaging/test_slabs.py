"""Contiguous slab splits of one volume, with gaps, and the T1/T2 slice set."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from mrihisto_kedro.demo.icbm152 import read_icbm152_pair
from mrihisto_kedro.imaging.slabs import (
    brain_slices,
    interleaved_splits,
    slab_splits,
    volume_pair_tiles,
    volume_splits,
)


def test_slabs_are_contiguous_disjoint_and_gapped() -> None:
    splits = slab_splits(list(range(100)), (0.7, 0.1, 0.2), gap=4)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [65, 9, 18]
    assert splits["val"][0] - splits["train"][-1] == 5
    assert splits["test"][0] - splits["val"][-1] == 5
    for values in splits.values():
        assert values == list(range(values[0], values[-1] + 1))


def test_slabs_without_val_and_errors() -> None:
    splits = slab_splits(list(range(20)), (0.5, 0.0, 0.5), gap=2)
    assert splits["val"] == [] and splits["test"][0] - splits["train"][-1] == 3
    with pytest.raises(ValueError, match="sum to 1"):
        slab_splits(list(range(20)), (0.5, 0.1, 0.1), gap=2)
    with pytest.raises(ValueError, match="too few"):
        slab_splits(list(range(3)), (0.4, 0.3, 0.3), gap=2)


def _min_distance(a: list[int], b: list[int]) -> int:
    return min(abs(x - y) for x in a for y in b)


def test_interleaved_blocks_spread_every_split_along_the_axis() -> None:
    # the demo's 87 brain slices of ICBM152 at 2 mm (0..86), its parameters
    splits = interleaved_splits(list(range(87)), (0.7, 0.1, 0.2), block=8, gap=3)
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert len(set(train) | set(val) | set(test)) == len(train) + len(val) + len(test)
    assert (len(train), len(val), len(test)) == (45, 8, 16)
    # val and test keep whole blocks; the gaps come out of the training side
    assert val == list(range(40, 48)) and test == [*range(16, 24), *range(64, 72)]
    for a, b in ((train, val), (train, test), (val, test)):
        assert _min_distance(a, b) >= 4
    # every split has slices from the lower and the upper half of the head, and training
    # surrounds each held-out block (no extrapolation to an end of the head)
    for values in (train, val + test):
        assert min(values) < 43 < max(values)
    assert min(train) < min(val + test) and max(train) > max(val + test)


def test_interleaved_gap_zero_errors_and_layout_dispatch() -> None:
    splits = interleaved_splits(list(range(30)), (0.5, 0.0, 0.5), block=5, gap=0)
    assert splits["val"] == [] and sorted(splits["train"] + splits["test"]) == list(range(30))
    assert len(splits["train"]) == len(splits["test"]) == 15
    with pytest.raises(ValueError, match="too few"):
        interleaved_splits(list(range(10)), (0.7, 0.1, 0.2), block=8, gap=1)
    with pytest.raises(ValueError, match="uses up a whole"):
        interleaved_splits(list(range(30)), (0.6, 0.2, 0.2), block=3, gap=3)
    with pytest.raises(ValueError, match="sum to 1"):
        interleaved_splits(list(range(30)), (0.6, 0.2, 0.3), block=3, gap=1)
    indices = list(range(50))
    assert volume_splits(indices, "slabs", (0.7, 0.1, 0.2), 4, 8) == slab_splits(
        indices, (0.7, 0.1, 0.2), 4
    )
    assert volume_splits(indices, "interleaved", (0.7, 0.1, 0.2), 2, 8) == interleaved_splits(
        indices, (0.7, 0.1, 0.2), 8, 2
    )
    with pytest.raises(ValueError, match="layout|is not a valid"):
        volume_splits(indices, "random", (0.7, 0.1, 0.2), 2, 8)


def test_icbm152_pair_slices_are_voxel_aligned_and_split_by_slab() -> None:
    t1, t2, copying = read_icbm152_pair()
    assert "McGill" in copying and t1.GetSize() == t2.GetSize() == (96, 114, 96)
    indices = brain_slices(t1, "axial")
    splits = slab_splits(indices, (0.7, 0.1, 0.2), gap=4)
    tiles = volume_pair_tiles(t1, t2, "axial", splits, pad_to=128)
    assert tiles.a.shape == tiles.b.shape == (len(tiles), 128, 128, 1)
    assert 0.0 <= tiles.a.min() and tiles.a.max() <= 1.0
    m = tiles.manifest
    train, test = set(m[m.split == "train"].slice_index), set(m[m.split == "test"].slice_index)
    assert min(abs(a - b) for a in train for b in test) > 4
    # T1 and T2 differ in contrast (CSF dark in T1, bright in T2) but share the head outline
    a, b = tiles.a[..., 0], tiles.b[..., 0]
    assert np.corrcoef((a > 0.05).ravel(), (b > 0.05).ravel())[0, 1] > 0.8
    assert sitk.GetArrayFromImage(t1).std() > 0
