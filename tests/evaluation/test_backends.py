"""Feature backends: the Inception feature cache and switching FID/KID off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrihisto_kedro.evaluation.backends import FeatureCache, WeightPaths, load_backends


def _features(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).mean(axis=1, keepdims=True).astype(np.float64)


def test_cache_returns_the_computed_features_once_per_batch() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((4, 8, 8, 3), dtype=np.float32)
    b = a.copy()
    b[0, 0, 0, 0] += 0.5  # one pixel differs: a different batch
    cache = FeatureCache(max_entries=2)
    calls: list[int] = []

    def compute(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return _features(x)

    first = cache("w", a, compute)
    again = cache("w", a.copy(), compute)  # equal bytes, another array
    np.testing.assert_array_equal(first, again)
    assert (cache.hits, cache.misses, len(calls)) == (1, 1, 1)
    other = cache("w", b, compute)
    assert not np.array_equal(other, first) and len(calls) == 2
    cache("other-weights", a, compute)  # other weights: computed again
    assert len(calls) == 3
    # bounded: a's entry for "w" was the oldest of three and went first
    cache("w", a, compute)
    assert len(calls) == 4
    # a caller modifying its result does not modify the cache
    again[:] = -1
    np.testing.assert_array_equal(cache("w", a, compute), first)


def test_same_bytes_other_shape_is_another_key() -> None:
    x = np.zeros((2, 4, 4, 3), dtype=np.float32)
    assert FeatureCache.key("w", x) != FeatureCache.key("w", x.reshape(4, 2, 4, 3))
    assert FeatureCache.key("w", x) != FeatureCache.key("w", x.astype(np.float64))


def test_without_inception_nothing_is_reported_missing_for_fid(tmp_path: Path) -> None:
    empty = tmp_path / "no-weights.pth"
    backends = load_backends(WeightPaths(alexnet=str(empty)), device="cpu", inception=False)
    assert backends.inception is None
    assert "FID" not in backends.missing and "KID" not in backends.missing
    assert "LPIPS" in backends.missing  # the explicit AlexNet file does not exist


def test_cached_inception_features_equal_uncached(monkeypatch: pytest.MonkeyPatch) -> None:
    from mrihisto_kedro.evaluation import backends as module
    from mrihisto_kedro.metrics.weights import find_weights

    if find_weights("fid") is None:
        pytest.skip("no FID Inception weights in the torch hub cache (run mrihisto-weights)")
    monkeypatch.setattr(module, "INCEPTION_CACHE", FeatureCache())
    images = np.random.default_rng(1).random((2, 64, 64, 3), dtype=np.float32)
    fn = load_backends(WeightPaths(), device="cpu").inception
    assert fn is not None
    first, second = fn(images), fn(images)
    np.testing.assert_array_equal(first, second)
    assert module.INCEPTION_CACHE.hits == 1 and first.shape == (2, 2048)
