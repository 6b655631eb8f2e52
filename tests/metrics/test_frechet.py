import warnings

import numpy as np
import pytest
from pytorch_fid import fid_score
from scipy import linalg

from mrihisto_kedro.metrics.frechet import (
    bootstrap_interval,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    kernel_inception_distance,
    polynomial_mmd2_unbiased,
)


def _random_features(rng, n, d, shift=0.0):
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + shift


def _eigen_frechet(mu1, s1, mu2, s2):
    # independent formula: Tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1)))
    w, v = linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = linalg.eigvalsh(root1 @ s2 @ root1)
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum()


def test_feature_statistics():
    rng = np.random.default_rng(0)
    f = _random_features(rng, 50, 6)
    mu, sigma = feature_statistics(f.astype(np.float32))
    assert mu.dtype == np.float64 and sigma.shape == (6, 6)
    np.testing.assert_allclose(mu, f.mean(0), rtol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(f, rowvar=False), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        feature_statistics(f[:1])


@pytest.mark.parametrize("d,n1,n2", [(16, 200, 150), (64, 300, 300), (32, 20, 25)])
def test_frechet_matches_pytorch_fid(d, n1, n2):
    rng = np.random.default_rng(d + n1)
    mu1, s1 = feature_statistics(_random_features(rng, n1, d))
    mu2, s2 = feature_statistics(_random_features(rng, n2, d, shift=0.3))
    ref = float(fid_score.calculate_frechet_distance(mu1, s1, mu2, s2))
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(ref, rel=1e-6)
    if n1 > d and n2 > d:  # full-rank covariances: the eigen formula is well conditioned
        assert ours == pytest.approx(_eigen_frechet(mu1, s1, mu2, s2), rel=1e-6)


@pytest.mark.parametrize("d,n1,n2", [(16, 200, 150), (64, 40, 30), (256, 60, 45)])
def test_frechet_from_features_equals_pytorch_fid(d, n1, n2):
    """Full rank (N > D) and the small-N case (N < D: singular covariances)."""
    rng = np.random.default_rng(d + n2)
    f1 = _random_features(rng, n1, d)
    f2 = _random_features(rng, n2, d, shift=0.2)
    mu1, s1 = feature_statistics(f1)
    mu2, s2 = feature_statistics(f2)
    with warnings.catch_warnings():  # pytorch-fid warns on the singular product (N < D)
        warnings.simplefilter("ignore")
        ref = float(fid_score.calculate_frechet_distance(mu1, s1, mu2, s2))
    ours = frechet_distance_from_features(f1, f2)
    assert ours == pytest.approx(ref, rel=1e-5)
    assert frechet_distance_from_features(f1, f1) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance_from_features(f1[:1], f2)


def test_frechet_identical_is_zero_and_shape_errors():
    rng = np.random.default_rng(3)
    mu, s = feature_statistics(_random_features(rng, 100, 8))
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-8
    with pytest.raises(ValueError):
        frechet_distance(mu, s, mu[:-1], s)
    with pytest.raises(ValueError):
        frechet_distance(mu, s, mu, s[:-1, :-1])


@pytest.mark.filterwarnings("ignore")
def test_frechet_singular_covariances_match_pytorch_fid():
    rng = np.random.default_rng(8)
    d = 6
    a = rng.normal(size=(3, d))
    rank_deficient = a.T @ a
    cases = [
        (np.zeros(d), np.zeros((d, d)), np.ones(d), np.eye(d)),
        (np.zeros(d), rank_deficient, np.full(d, 0.5), rank_deficient),
    ]
    for mu1, s1, mu2, s2 in cases:
        ref = float(fid_score.calculate_frechet_distance(mu1, s1, mu2, s2))
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)


def _hand_mmd2(x, y):
    m, d = x.shape

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_mmd2_equals_hand_computation():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, 5))
    y = rng.normal(size=(7, 5)) + 0.5
    assert polynomial_mmd2_unbiased(x, y) == pytest.approx(_hand_mmd2(x, y), rel=1e-12)
    # one subset covering all rows = the plain unbiased MMD^2
    mean, std = kernel_inception_distance(x, y, subset_size=7, n_subsets=1, seed=0)
    assert mean == pytest.approx(_hand_mmd2(x, y), rel=1e-12)
    assert std == 0.0


def test_kid_same_vs_shifted_distribution():
    rng = np.random.default_rng(5)
    d = 32
    a = rng.normal(size=(400, d))
    b = rng.normal(size=(400, d))
    c = rng.normal(size=(400, d)) + 0.5
    same, same_std = kernel_inception_distance(a, b, subset_size=100, n_subsets=20, seed=0)
    shifted, _ = kernel_inception_distance(a, c, subset_size=100, n_subsets=20, seed=0)
    assert abs(same) < 0.05
    assert shifted > 0.5
    assert shifted > 10 * (abs(same) + same_std)
    # deterministic for a seed; subset_size is capped at min(N, M)
    assert kernel_inception_distance(a, c, subset_size=100, n_subsets=5, seed=1) == (
        kernel_inception_distance(a, c, subset_size=100, n_subsets=5, seed=1)
    )
    capped = kernel_inception_distance(a[:30], c, subset_size=1000, n_subsets=3, seed=0)
    assert np.isfinite(capped[0])


def test_kid_of_whole_sets_is_the_mmd_of_any_permutation():
    # subset_size >= N = M: every subset is a permutation of both sets, computed once
    rng = np.random.default_rng(8)
    x = rng.normal(size=(12, 6))
    y = rng.normal(size=(12, 6)) + 0.3
    mean, std = kernel_inception_distance(x, y, subset_size=100, n_subsets=50, seed=0)
    assert std == 0.0
    assert mean == pytest.approx(_hand_mmd2(x, y), rel=1e-12)
    px, py = rng.permutation(12), rng.permutation(12)
    assert mean == pytest.approx(_hand_mmd2(x[px], y[py]), rel=1e-12)
    # unequal sizes still draw subsets
    _, std_unequal = kernel_inception_distance(x[:10], y, subset_size=100, n_subsets=5, seed=0)
    assert std_unequal > 0.0


def test_bootstrap_contains_full_statistic_and_narrows():
    rng = np.random.default_rng(6)
    few = rng.normal(10.0, 2.0, size=5)
    many = rng.normal(10.0, 2.0, size=80)
    lo_f, hi_f = bootstrap_interval(few, n_boot=2000, alpha=0.05, seed=0)
    lo_m, hi_m = bootstrap_interval(many, n_boot=2000, alpha=0.05, seed=0)
    assert lo_f <= few.mean() <= hi_f
    assert lo_m <= many.mean() <= hi_m
    assert hi_m - lo_m < 0.6 * (hi_f - lo_f)


def test_bootstrap_callable_over_slides():
    rng = np.random.default_rng(7)
    d = 4
    slides_gen = [rng.normal(size=(30, d)) + 0.4 for _ in range(6)]
    slides_real = [rng.normal(size=(30, d)) for _ in range(6)]

    def fid_on(idx):
        g = np.concatenate([slides_gen[i] for i in idx])
        r = np.concatenate([slides_real[i] for i in idx])
        return frechet_distance(*feature_statistics(g), *feature_statistics(r))

    full = fid_on(np.arange(6))
    lo, hi = bootstrap_interval(fid_on, n_slides=6, n_boot=200, alpha=0.1, seed=0)
    assert lo <= full <= hi
    assert lo > 0
    with pytest.raises(ValueError, match="n_slides"):
        bootstrap_interval(fid_on, n_boot=10)
