"""Peak stack -> 3 channels (PCA, t-SNE, UMAP), channel scaling, padding to a histology size."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mrihisto_kedro.msi.reduction import (
    PadColour,
    Placement,
    ReductionMethod,
    embed_pixels,
    pad_to_shape,
    reduce_to_rgb,
    scale_channels,
)


def _stack(height: int = 12, width: int = 10, n_peaks: int = 8) -> np.ndarray:
    """Two tissue classes (left/right halves) with different peak profiles, plus noise."""
    rng = np.random.default_rng(0)
    profile_a, profile_b = rng.random(n_peaks), rng.random(n_peaks)
    stack = np.empty((n_peaks, height, width), dtype=np.float32)
    stack[:, :, : width // 2] = profile_a[:, None, None]
    stack[:, :, width // 2 :] = profile_b[:, None, None]
    return stack + rng.normal(0.0, 0.02, stack.shape).astype(np.float32)


def test_pca_shape_range_and_determinism() -> None:
    stack = _stack()
    rgb = reduce_to_rgb(stack, ReductionMethod.PCA)
    assert rgb.shape == (12, 10, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert rgb.min() == 0.0 and rgb.max() == 1.0  # robust scaling spans the range
    np.testing.assert_array_equal(rgb, reduce_to_rgb(stack, "pca"))
    # the first component separates the two halves
    first = rgb[..., 0]
    assert abs(first[:, :5].mean() - first[:, 5:].mean()) > 0.6


def test_mask_and_background() -> None:
    stack = _stack()
    mask = np.zeros((12, 10), dtype=bool)
    mask[2:10, 2:8] = True
    rgb = reduce_to_rgb(stack, "pca", mask=mask, background=1.0, percentiles=(0.0, 100.0))
    assert np.all(rgb[~mask] == 1.0)
    inside = rgb[mask]
    assert inside.min() == 0.0 and inside.max() == 1.0
    with pytest.raises(ValueError, match="mask shape"):
        reduce_to_rgb(stack, "pca", mask=np.ones((3, 3), dtype=bool))


def test_scale_channels() -> None:
    values = np.column_stack([np.arange(101.0), np.full(101, 7.0)])
    scaled = scale_channels(values, (10.0, 90.0))
    assert scaled.dtype == np.float32
    assert scaled[10, 0] == 0.0 and scaled[90, 0] == 1.0 and scaled[50, 0] == pytest.approx(0.5)
    assert scaled[0, 0] == 0.0 and scaled[100, 0] == 1.0  # clipped
    assert np.all(scaled[:, 1] == 0.0)  # constant channel
    with pytest.raises(ValueError, match="percentiles"):
        scale_channels(values, (90.0, 10.0))


def test_embed_validation() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        embed_pixels(np.ones((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        embed_pixels(np.array([[np.nan, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="umap2"):
        embed_pixels(np.ones((5, 4)), "umap2")
    # fewer features than components: missing components are zero
    out = embed_pixels(np.random.default_rng(0).random((6, 2)), "pca")
    assert out.shape == (6, 3) and np.all(out[:, 2] == 0.0)


def test_tsne_tiny_and_deterministic() -> None:
    stack = _stack(8, 8, 6)
    # one OpenMP thread: on a busy shared machine spinning threads make tiny inputs 5x slower
    with threadpool_limits(1):
        a = reduce_to_rgb(stack, ReductionMethod.TSNE, seed=3, tsne_max_iter=250)
        b = reduce_to_rgb(stack, "tsne", seed=3, tsne_max_iter=250)
    assert a.shape == (8, 8, 3) and a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_umap_tiny_and_deterministic() -> None:
    """The only UMAP test; slow because UMAP's first call in a process compiles numba code
    (20-35 s on 2 shared cores, whatever the input size). Run with ``-m slow``."""
    pytest.importorskip("umap")
    stack = _stack(8, 8, 6)
    a = reduce_to_rgb(stack, ReductionMethod.UMAP, seed=3, n_neighbors=8)
    b = reduce_to_rgb(stack, "umap", seed=3, n_neighbors=8)
    assert a.shape == (8, 8, 3) and a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)


def test_pad_black_and_white_float() -> None:
    image = np.full((4, 6, 3), 0.5, dtype=np.float32)
    black, placement = pad_to_shape(image, (10, 12), colour=PadColour.BLACK)
    assert black.shape == (10, 12, 3) and black.dtype == np.float32
    assert placement == Placement(3, 3, 4, 6, 10, 12)
    np.testing.assert_array_equal(black[placement.slices], image)
    outside = np.ones((10, 12), dtype=bool)
    outside[placement.slices] = False
    assert np.all(black[outside] == 0.0)

    white, placement = pad_to_shape(image, (10, 12), colour="white", offset=(0, 6))
    assert (placement.top, placement.left) == (0, 6)
    assert np.all(white[:4, 6:] == 0.5)
    assert np.all(white[4:] == 1.0) and np.all(white[:, :6] == 1.0)


def test_pad_integer_and_errors() -> None:
    image = np.zeros((2, 2), dtype=np.uint8)
    white, _ = pad_to_shape(image, (3, 3), colour="white", offset=(1, 1))
    assert white.dtype == np.uint8 and white[0, 0] == 255 and white[2, 2] == 0
    same, placement = pad_to_shape(image, (2, 2))
    assert placement.top == placement.left == 0 and same.shape == (2, 2)
    with pytest.raises(ValueError, match="larger than the target"):
        pad_to_shape(image, (1, 5))
    with pytest.raises(ValueError, match="outside"):
        pad_to_shape(image, (3, 3), offset=(2, 0))
    with pytest.raises(ValueError, match="grey"):
        pad_to_shape(image, (3, 3), colour="grey")
