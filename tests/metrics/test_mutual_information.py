"""Histogram mutual information against scikit-learn and information-theory identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from mrihisto_kedro.metrics.mutual_information import bin_indices, mutual_information


def _labels(x: np.ndarray, bins: int) -> np.ndarray:
    """Bin labels built independently of the module: numpy's edges and ``np.digitize``."""
    edges = np.histogram_bin_edges(x, bins=bins)
    return np.digitize(x.ravel(), edges[1:-1])


@pytest.fixture(scope="module")
def image_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two related 64x80 images: a smooth pattern and a non-monotonic function of it + noise."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:64, 0:80]
    a = np.sin(xx / 9.0) * np.cos(yy / 7.0) + 0.1 * rng.standard_normal((64, 80))
    b = (1.0 - a) ** 2 + 0.2 * rng.standard_normal((64, 80))
    return a.astype(np.float32), b


@pytest.mark.parametrize("bins", [2, 8, 20, 64])
def test_equals_sklearn_on_binned_images(image_pair: tuple[np.ndarray, np.ndarray], bins: int):
    a, b = image_pair
    expected = mutual_info_score(_labels(a, bins), _labels(b, bins))
    assert mutual_information(a, b, bins=bins) == pytest.approx(expected, abs=1e-10)


def test_log_base_two_is_nats_over_ln2(image_pair: tuple[np.ndarray, np.ndarray]):
    a, b = image_pair
    nats = mutual_information(a, b, bins=20)
    bits = mutual_information(a, b, bins=20, base=2)
    assert bits == pytest.approx(nats / math.log(2), rel=1e-12)
    expected = mutual_info_score(_labels(a, 20), _labels(b, 20)) / math.log(2)
    assert bits == pytest.approx(expected, abs=1e-10)


def test_mask_restricts_values_and_ranges(image_pair: tuple[np.ndarray, np.ndarray]):
    a, b = image_pair
    mask = np.zeros(a.shape, dtype=bool)
    mask[10:50, 5:60] = True
    masked = mutual_information(a, b, bins=16, mask=mask)
    assert masked == pytest.approx(mutual_information(a[mask], b[mask], bins=16), abs=1e-15)
    expected = mutual_info_score(_labels(a[mask], 16), _labels(b[mask], 16))
    assert masked == pytest.approx(expected, abs=1e-10)


def test_identities():
    rng = np.random.default_rng(3)
    x = rng.random((100, 100))
    # MI(x, x) = H(binned x); uniform data in 10 bins has entropy close to log(10)
    labels = bin_indices(x.ravel(), 10)
    p = np.bincount(labels) / labels.size
    entropy = float(-np.sum(p * np.log(p)))
    assert mutual_information(x, x, bins=10) == pytest.approx(entropy, abs=1e-12)
    assert mutual_information(x, x, bins=10) <= math.log(10)
    # independent noise: nearly 0 (bias ~ (bins-1)^2 / (2N) nats)
    y = rng.random((100, 100))
    assert 0.0 <= mutual_information(x, y, bins=10) < 0.01
    # symmetric, invariant to monotonic rescaling of either image
    assert mutual_information(x, y, bins=10) == pytest.approx(mutual_information(y, x, bins=10))
    assert mutual_information(3 * x + 1, y, bins=10) == pytest.approx(
        mutual_information(x, y, bins=10), abs=1e-12
    )
    # a constant image carries no information
    assert mutual_information(np.full((10, 10), 2.0), x[:10, :10], bins=10) == 0.0


def test_binning_matches_numpy_histogram():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(1000), [-3.0, 4.0]])
    for bins in (3, 17, 50):
        counts = np.bincount(bin_indices(x, bins), minlength=bins)
        np.testing.assert_array_equal(counts, np.histogram(x, bins=bins)[0])


def test_any_shape_and_integer_input():
    a = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    b = (a % 5).astype(np.int16)
    expected = mutual_info_score(_labels(a.astype(float), 6), _labels(b.astype(float), 6))
    assert mutual_information(a, b, bins=6) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"b": np.zeros((4, 5))}, "same shape"),
        ({"bins": 1}, "bins"),
        ({"bins": 2.5}, "bins"),
        ({"base": 1.0}, "base"),
        ({"base": -2.0}, "base"),
        ({"mask": np.zeros((4, 4), dtype=bool)}, "empty mask"),
        ({"mask": np.ones((2, 2), dtype=bool)}, "mask shape"),
    ],
)
def test_bad_input_raises(kwargs: dict, message: str):
    args = {"a": np.arange(16.0).reshape(4, 4), "b": np.ones((4, 4))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        mutual_information(**args)


def test_non_finite_raises():
    a = np.arange(16.0).reshape(4, 4)
    b = a.copy()
    b[1, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        mutual_information(a, b)
