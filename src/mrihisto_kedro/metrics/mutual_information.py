"""Mutual information of two images from their joint histogram (no Kedro imports).

Plain histogram MI, as used in the reports of the registration and evaluation pipelines (paper
003 scores generated images with it): each array is binned into ``bins`` equal-width bins over
*its own* minimum..maximum (inside the mask, when one is given), the joint histogram of the bin
pairs is normalised to a probability table ``p(i, j)``, and

    MI = sum_ij p(i, j) * log(p(i, j) / (p(i) p(j))) / log(base)

with ``0 log 0 = 0``. ``base=math.e`` gives nats, ``base=2`` bits. The binning is the one of
``numpy.histogram``: bin ``k`` is ``[edge_k, edge_{k+1})`` with ``edges = linspace(min, max,
bins + 1)``, the last bin closed on the right. A constant array falls in one bin and gives MI 0.
The value depends on ``bins`` (a finer binning gives a larger, more biased estimate from few
samples), so reports print the ``bins`` and ``base`` they used.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bin_indices", "mutual_information"]


def bin_indices(values: np.ndarray, bins: int) -> np.ndarray:
    """Index of the equal-width bin (over ``values.min()..values.max()``) of every value.

    Args:
        values: 1-D array of finite numbers (any real dtype), at least one value.
        bins: number of bins, >= 1.

    Returns:
        int64 array of the same length with values in ``0 .. bins - 1`` (the maximum falls in
        the last bin; a constant array is all zeros), identical to the bins ``numpy.histogram``
        uses for ``bins`` equal-width bins.
    """
    data = np.asarray(values, dtype=np.float64)
    lo = float(data.min())
    hi = float(data.max())
    if hi <= lo:
        return np.zeros(data.shape, dtype=np.int64)
    edges = np.linspace(lo, hi, bins + 1)
    index = np.searchsorted(edges, data, side="right") - 1
    np.clip(index, 0, bins - 1, out=index)
    return index.astype(np.int64, copy=False)


def mutual_information(
    a: np.ndarray,
    b: np.ndarray,
    bins: int = 20,
    base: float = math.e,
    mask: np.ndarray | None = None,
) -> float:
    """Mutual information between two images (or any two arrays) from their joint histogram.

    Args:
        a: array of any shape and real dtype (e.g. an MRI slice ``(H, W)`` in ``[0, 1]``, a
            grey histology channel, a flattened feature); values must be finite where used.
        b: array of the same shape as ``a``; its own range is binned independently of ``a``'s.
        bins: number of equal-width bins per array, >= 2.
        base: logarithm base of the result: ``math.e`` (nats, default) or ``2`` (bits), > 0 and
            != 1.
        mask: optional boolean array of the same shape; only positions where it is ``True``
            count, and the bin ranges are taken over those positions only.

    Returns:
        Mutual information in units of ``log(base)``; ``>= 0`` and at most
        ``log(bins) / log(base)``.

    Raises:
        ValueError: shapes differ, the mask selects nothing, non-finite values, or bad
            ``bins``/``base``.
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if not (base > 0 and base != 1 and math.isfinite(base)):
        raise ValueError(f"base must be a finite number > 0 and != 1, got {base!r}")
    a_arr = np.asarray(a)
    b_arr = np.asarray(b)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"arrays must have the same shape, got {a_arr.shape} and {b_arr.shape}")
    if mask is not None:
        mask_arr = np.asarray(mask)
        if mask_arr.shape != a_arr.shape:
            raise ValueError(f"mask shape {mask_arr.shape} differs from image shape {a_arr.shape}")
        mask_arr = mask_arr.astype(bool, copy=False)
        a_arr = a_arr[mask_arr]
        b_arr = b_arr[mask_arr]
    a_flat = a_arr.reshape(-1)
    b_flat = b_arr.reshape(-1)
    if a_flat.size == 0:
        raise ValueError("no values to compare (empty arrays or an empty mask)")
    for name, values in (("a", a_flat), ("b", b_flat)):
        if not np.all(np.isfinite(values)):
            n_bad = int(values.size - np.count_nonzero(np.isfinite(values)))
            raise ValueError(f"array {name} has {n_bad} non-finite values (NaN/inf)")
    n_bins = int(bins)
    ia = bin_indices(a_flat, n_bins)
    ib = bin_indices(b_flat, n_bins)
    joint = np.bincount(ia * n_bins + ib, minlength=n_bins * n_bins).reshape(n_bins, n_bins)
    p_xy = joint / float(a_flat.size)
    p_x = p_xy.sum(axis=1)
    p_y = p_xy.sum(axis=0)
    nz = p_xy > 0
    outer = np.outer(p_x, p_y)
    mi_nats = float(np.sum(p_xy[nz] * (np.log(p_xy[nz]) - np.log(outer[nz]))))
    return max(mi_nats, 0.0) / math.log(base)
