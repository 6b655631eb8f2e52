"""Distribution distances between feature sets: Frechet distance (FID), KID, bootstrap intervals.

No Kedro or torch imports; everything is float64 numpy/scipy so that it can be used in a notebook
on pre-computed features (e.g. the 2048-d InceptionV3 pool3 features of pytorch-fid).

- :func:`frechet_distance` is numerically the same as
  ``pytorch_fid.fid_score.calculate_frechet_distance``.
- :func:`kernel_inception_distance` is the unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x . y / D + 1)^3`` averaged over random subsets, as in Binkowski et al. (2018)
  and ``torch-fidelity``; unlike FID it is unbiased at small N.
- :func:`bootstrap_interval` gives a percentile interval for a statistic over slides, resampling
  whole slides with replacement (tiles of a slide are not independent).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import linalg

__all__ = [
    "bootstrap_interval",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "kernel_inception_distance",
    "polynomial_mmd2_unbiased",
]


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a feature matrix, as pytorch-fid computes them.

    Args:
        features: ``(N, D)`` array of real features (N >= 2 samples, D dimensions).

    Returns:
        ``(mu, sigma)``: float64 mean ``(D,)`` and sample covariance ``(D, D)``
        (``np.cov(features, rowvar=False)``, normalised by N - 1).

    Raises:
        ValueError: ``features`` is not 2-D or has fewer than 2 rows.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {f.shape}")
    return np.mean(f, axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = 1e-6,
) -> float:
    """Frechet distance between two Gaussians, ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrt(S1 S2))``.

    Same computation as pytorch-fid's ``calculate_frechet_distance`` (Dougal Sutherland's stable
    version), in float64: ``scipy.linalg.sqrtm`` of ``sigma1 @ sigma2``; if that is not finite
    (singular product), ``eps`` is added to both diagonals and the root recomputed (with a
    warning); a complex root whose diagonal has an imaginary part above 1e-3 is an error,
    otherwise its real part is used.

    Args:
        mu1: mean feature vector ``(D,)`` of the first set (e.g. generated images).
        sigma1: covariance ``(D, D)`` of the first set.
        mu2: mean feature vector ``(D,)`` of the second set (e.g. real images).
        sigma2: covariance ``(D, D)`` of the second set.
        eps: diagonal offset used only when the covariance product is singular.

    Returns:
        The squared Frechet distance (the "FID" value when the features are Inception pool3),
        >= 0 up to rounding.

    Raises:
        ValueError: mismatched shapes, or a significant imaginary component in the root.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors have different shapes: {mu1.shape} and {mu2.shape}")
    if sigma1.shape != sigma2.shape:
        raise ValueError(f"covariances have different shapes: {sigma1.shape} and {sigma2.shape}")
    if sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariance shape {sigma1.shape} does not match mean shape {mu1.shape}")

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(
            f"fid calculation produces singular product; adding {eps} to diagonal of cov estimates",
            RuntimeWarning,
            stacklevel=2,
        )
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))

    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"Imaginary component {m}")
        covmean = covmean.real

    tr_covmean = np.trace(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def frechet_distance_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets, fast at small N.

    Mathematically equal to ``frechet_distance(*feature_statistics(f1),
    *feature_statistics(f2))``, but the trace of ``sqrt(S1 S2)`` is computed from the
    small ``(N, M)`` cross-product of the centred features: with ``S1 = X1^T X1 / (N - 1)`` and
    ``S2 = X2^T X2 / (M - 1)``, the non-zero eigenvalues of ``S1 S2`` are the squared singular
    values of ``X1 X2^T / sqrt((N - 1)(M - 1))``. At N, M < D (a few hundred tiles against
    2048 Inception features, the normal case here) this is exact where ``sqrtm`` of the
    singular ``S1 S2`` is not, and fast enough to bootstrap over slides.

    Args:
        f1: ``(N, D)`` features of the first set, N >= 2.
        f2: ``(M, D)`` features of the second set, M >= 2, same D.

    Returns:
        The squared Frechet distance, >= 0 up to rounding.
    """
    x = np.asarray(f1, dtype=np.float64)
    y = np.asarray(f2, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need (N, D) and (M, D) feature arrays, got {x.shape} and {y.shape}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"need at least 2 samples per set, got {x.shape[0]} and {y.shape[0]}")
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mu1, y - mu2
    n, m = x.shape[0] - 1, y.shape[0] - 1
    diff = mu1 - mu2
    trace1 = float(np.einsum("ij,ij->", xc, xc)) / n
    trace2 = float(np.einsum("ij,ij->", yc, yc)) / m
    singular = np.linalg.svd(xc @ yc.T, compute_uv=False)
    tr_covmean = float(singular.sum()) / np.sqrt(n * m)
    return float(diff.dot(diff) + trace1 + trace2 - 2.0 * tr_covmean)


def polynomial_mmd2_unbiased(f1: np.ndarray, f2: np.ndarray) -> float:
    """Unbiased MMD^2 between two equal-size samples with the kernel ``(x . y / D + 1)^3``.

    ``MMD^2 = (sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j)) / (m (m - 1))
    - 2 sum_{i, j} k(x_i, y_j) / m^2`` (torch-fidelity's ``mmd2``).

    Args:
        f1: ``(m, D)`` features, m >= 2.
        f2: ``(m, D)`` features (same m and D).

    Returns:
        The unbiased MMD^2 estimate (can be slightly negative when both samples come from the
        same distribution).
    """
    x = np.asarray(f1, dtype=np.float64)
    y = np.asarray(f2, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape or x.shape[0] < 2:
        raise ValueError(f"need two (m, D) arrays of equal shape, m >= 2; got {x.shape}, {y.shape}")
    m, d = x.shape
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    f1: np.ndarray,
    f2: np.ndarray,
    *,
    subset_size: int = 1000,
    n_subsets: int = 100,
    seed: int,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased polynomial-kernel MMD^2 averaged over random subsets.

    As in torch-fidelity: for each of ``n_subsets`` subsets, ``subset_size`` rows are drawn
    without replacement from each feature set (``np.random.RandomState(seed)``), the unbiased
    MMD^2 (:func:`polynomial_mmd2_unbiased`) is computed, and the mean and the (population)
    standard deviation over subsets are returned. Unlike torch-fidelity, a ``subset_size``
    larger than ``min(N, M)`` is reduced to ``min(N, M)`` instead of failing (small N is the
    normal case with a handful of slides); when that takes both whole sets, every subset is the
    same and the MMD^2 is computed once (std 0).

    Args:
        f1: ``(N, D)`` features of the first set (e.g. generated tiles), N >= 2.
        f2: ``(M, D)`` features of the second set, M >= 2, same D.
        subset_size: rows per subset (capped at ``min(N, M)``).
        n_subsets: number of random subsets, >= 1.
        seed: seed of the subset sampling (keyword only, required).

    Returns:
        ``(mean, std)`` of MMD^2 over subsets; about 0 for samples of one distribution.
    """
    x = np.asarray(f1, dtype=np.float64)
    y = np.asarray(f2, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need (N, D) and (M, D) feature arrays, got {x.shape} and {y.shape}")
    m = min(int(subset_size), x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError(f"need at least 2 samples per set, got {x.shape[0]} and {y.shape[0]}")
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be >= 1, got {n_subsets}")
    if m == x.shape[0] == y.shape[0]:
        # every subset is a permutation of both whole sets, and MMD^2 does not depend on the
        # order of the rows: all subsets give the same value (the common small-N case)
        return float(polynomial_mmd2_unbiased(x, y)), 0.0
    rng = np.random.RandomState(seed)
    mmds = np.empty(n_subsets, dtype=np.float64)
    for i in range(n_subsets):
        sx = x[rng.choice(x.shape[0], m, replace=False)]
        sy = y[rng.choice(y.shape[0], m, replace=False)]
        mmds[i] = polynomial_mmd2_unbiased(sx, sy)
    return float(mmds.mean()), float(mmds.std())


def bootstrap_interval(
    values: Sequence[float] | np.ndarray | Callable[[np.ndarray], float],
    *,
    n_slides: int | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] = np.mean,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic over slides (slides resampled with replacement).

    Two forms:

    - ``values`` is a 1-D array of one value per slide (length S >= 1); each bootstrap replicate
      is ``statistic(values[idx])`` for ``idx`` drawn with replacement from ``0 .. S - 1``.
    - ``values`` is a callable taking the resampled slide indices (int array of length
      ``n_slides``, with repeats) and returning the statistic, e.g. an FID computed on the
      pooled tiles of those slides; ``n_slides`` is then required.

    Args:
        values: per-slide values ``(S,)`` or a callable over resampled slide indices.
        n_slides: number of slides when ``values`` is a callable (ignored otherwise).
        n_boot: number of bootstrap replicates, >= 1.
        alpha: two-sided level in (0, 1); the interval covers ``1 - alpha``.
        seed: seed of the resampling (``np.random.default_rng``).
        statistic: reduction applied to resampled per-slide values (default mean).

    Returns:
        ``(low, high)``: the ``alpha / 2`` and ``1 - alpha / 2`` quantiles of the replicates
        (non-finite replicates are dropped; ``(nan, nan)`` if none is finite).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if callable(values):
        if n_slides is None or n_slides < 1:
            raise ValueError("n_slides (>= 1) is required when values is a callable")
        fn = values
        count = int(n_slides)
    else:
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1 or arr.size < 1:
            raise ValueError(f"values must be a non-empty 1-D array, got shape {arr.shape}")

        def fn(idx: np.ndarray) -> float:
            return float(statistic(arr[idx]))

        count = arr.size
    rng = np.random.default_rng(seed)
    reps = np.array([fn(rng.integers(0, count, size=count)) for _ in range(n_boot)], dtype=float)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)
