"""Reduce an MSI peak stack to a 3-channel image, and pad it to a histology size.

:func:`reduce_to_rgb` embeds every (tissue) pixel's peak vector in 3 dimensions with PCA, t-SNE or
UMAP (:class:`ReductionMethod`) and scales each channel to ``[0, 1]`` between robust percentiles:
the 3-channel MSI representation of the MSI -> H&E paper (seed 003). :func:`pad_to_shape` places an
image on a black or white canvas of a target size (:class:`PadColour`) and returns where it went.

Cost: PCA is linear in the pixel count; t-SNE (Barnes-Hut) and UMAP are ``O(N log N)`` but with
large constants (minutes for ~1e5 pixels); pass a ``mask`` to embed tissue pixels only. UMAP's first
call in a process compiles numba code (~10-20 s).
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PadColour",
    "Placement",
    "ReductionMethod",
    "embed_pixels",
    "pad_to_shape",
    "reduce_to_rgb",
    "scale_channels",
]


class ReductionMethod(enum.StrEnum):
    """Dimensionality reduction of the peak vectors: ``pca``, ``tsne`` or ``umap``."""

    PCA = "pca"
    TSNE = "tsne"
    UMAP = "umap"


class PadColour(enum.StrEnum):
    """Padding colour: ``black`` (0) or ``white`` (1.0 for float images, dtype max for integers)."""

    BLACK = "black"
    WHITE = "white"


def embed_pixels(
    features: np.ndarray,
    method: ReductionMethod | str = ReductionMethod.PCA,
    *,
    n_components: int = 3,
    seed: int = 0,
    standardise: bool = True,
    perplexity: float = 30.0,
    n_neighbors: int = 15,
    tsne_max_iter: int = 1000,
) -> np.ndarray:
    """Embed feature vectors in ``n_components`` dimensions.

    Args:
        features: float ``(N, C)``: one row per pixel (``N >= 2``).
        method: :class:`ReductionMethod`.
        n_components: output dimensions (PCA: at most ``min(N, C)``; missing ones are zero).
        seed: random seed (t-SNE, UMAP); results are deterministic for a given seed.
        standardise: scale each feature to zero mean and unit variance first (constant features
            become 0), so that intense peaks do not dominate.
        perplexity: t-SNE perplexity (clamped to ``(N - 1) / 3`` for small inputs).
        n_neighbors: UMAP neighbourhood size (clamped to ``N - 1``).
        tsne_max_iter: t-SNE optimisation iterations (>= 250).

    Returns:
        float64 ``(N, n_components)``.
    """
    method = ReductionMethod(method)
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, C), got shape {x.shape}")
    n, c = x.shape
    if n < 2:
        raise ValueError(f"need at least 2 pixels to embed, got {n}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or infinite values")
    if standardise:
        std = x.std(axis=0)
        x = np.where(std > 0, (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0), 0.0)
    out = np.zeros((n, n_components), dtype=np.float64)
    if method is ReductionMethod.PCA:
        from sklearn.decomposition import PCA

        k = min(n_components, n, c)
        pca = PCA(n_components=k, svd_solver="full", random_state=seed)
        out[:, :k] = pca.fit_transform(x)
        return out
    if method is ReductionMethod.TSNE:
        from sklearn.manifold import TSNE

        if n < 4:
            raise ValueError(f"t-SNE needs at least 4 pixels, got {n}")
        tsne = TSNE(
            n_components=n_components,
            perplexity=float(min(perplexity, max(1.0, (n - 1) / 3.0))),
            init="pca",
            random_state=seed,
            method="barnes_hut" if n_components < 4 else "exact",
            max_iter=int(tsne_max_iter),
        )
        return tsne.fit_transform(x).astype(np.float64)
    if n < 4:
        raise ValueError(f"UMAP needs at least 4 pixels, got {n}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a seed disables parallelism
        import umap

        reducer = umap.UMAP(
            n_components=n_components,
            n_neighbors=int(min(n_neighbors, n - 1)),
            random_state=seed,
            init="spectral" if n > n_components + 1 else "random",
        )
        return np.asarray(reducer.fit_transform(x), dtype=np.float64)


def scale_channels(
    values: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)
) -> np.ndarray:
    """Scale each column of ``(N, K)`` values to ``[0, 1]`` between its robust percentiles.

    ``(v - p_lo) / (p_hi - p_lo)`` clipped to ``[0, 1]``; a constant column becomes 0.

    Args:
        values: float ``(N, K)``.
        percentiles: ``(lo, hi)`` in ``[0, 100]``, ``lo < hi``; ``(0, 100)`` is min-max scaling.

    Returns:
        float32 ``(N, K)`` in ``[0, 1]``.
    """
    lo_p, hi_p = float(percentiles[0]), float(percentiles[1])
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {percentiles}")
    v = np.asarray(values, dtype=np.float64)
    lo, hi = np.percentile(v, [lo_p, hi_p], axis=0)
    span = hi - lo
    scaled = np.where(span > 0, (v - lo) / np.where(span > 0, span, 1.0), 0.0)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def reduce_to_rgb(
    stack: np.ndarray,
    method: ReductionMethod | str = ReductionMethod.PCA,
    *,
    mask: np.ndarray | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
    seed: int = 0,
    standardise: bool = True,
    log_transform: bool = False,
    background: float = 0.0,
    perplexity: float = 30.0,
    n_neighbors: int = 15,
    tsne_max_iter: int = 1000,
) -> np.ndarray:
    """Reduce a peak stack to a 3-channel image.

    Args:
        stack: float ``(n_peaks, H, W)`` ion images (e.g. :attr:`PeakStack.images`).
        method: :class:`ReductionMethod`.
        mask: optional bool ``(H, W)``: embed and scale only pixels where True (e.g. tissue); the
            others are set to ``background``. ``None`` uses every pixel.
        percentiles: per-channel robust scaling, see :func:`scale_channels`.
        seed: random seed; the output is deterministic for a given seed.
        standardise: z-score each peak over the used pixels first (see :func:`embed_pixels`).
        log_transform: apply ``log1p`` to the (non-negative) intensities first.
        background: value of the pixels outside ``mask``, in ``[0, 1]``.
        perplexity: t-SNE perplexity.
        n_neighbors: UMAP neighbourhood size.
        tsne_max_iter: t-SNE optimisation iterations.

    Returns:
        float32 ``(H, W, 3)`` in ``[0, 1]``.
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"stack must be (n_peaks, H, W), got shape {stack.shape}")
    if not 0.0 <= background <= 1.0:
        raise ValueError(f"background must be in [0, 1], got {background}")
    _, height, width = stack.shape
    if mask is None:
        mask = np.ones((height, width), dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (height, width):
        raise ValueError(f"mask shape {mask.shape} differs from the stack's {(height, width)}")
    features = stack[:, mask].T.astype(np.float64)  # (N, n_peaks)
    if log_transform:
        features = np.log1p(np.clip(features, 0.0, None))
    embedded = embed_pixels(
        features,
        method,
        n_components=3,
        seed=seed,
        standardise=standardise,
        perplexity=perplexity,
        n_neighbors=n_neighbors,
        tsne_max_iter=tsne_max_iter,
    )
    rgb = np.full((height, width, 3), background, dtype=np.float32)
    rgb[mask] = scale_channels(embedded, percentiles)
    return rgb


@dataclass(frozen=True)
class Placement:
    """Where :func:`pad_to_shape` put an image on its canvas (pixels).

    Attributes:
        top: row of the image's first row on the canvas.
        left: column of the image's first column on the canvas.
        height: image height.
        width: image width.
        canvas_height: canvas height.
        canvas_width: canvas width.
    """

    top: int
    left: int
    height: int
    width: int
    canvas_height: int
    canvas_width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the image on the canvas."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def pad_to_shape(
    image: np.ndarray,
    target_shape: tuple[int, int],
    *,
    colour: PadColour | str = PadColour.BLACK,
    offset: tuple[int, int] | None = None,
) -> tuple[np.ndarray, Placement]:
    """Place ``image`` on a black or white canvas of ``target_shape``.

    Args:
        image: ``(h, w)`` or ``(h, w, C)``, any dtype; floats are assumed in ``[0, 1]``.
        target_shape: canvas ``(H, W)``, at least the image size.
        colour: :class:`PadColour`: black = 0; white = 1.0 for float dtypes, the dtype's maximum
            for integer dtypes (255 for uint8), True for bool.
        offset: ``(top, left)`` of the image on the canvas; ``None`` centres it (rounded down).

    Returns:
        ``(canvas, placement)``: the canvas (``(H, W)`` or ``(H, W, C)``, the image's dtype) and
        the :class:`Placement`.
    """
    colour = PadColour(colour)
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (h, w) or (h, w, C), got shape {image.shape}")
    h, w = image.shape[:2]
    big_h, big_w = int(target_shape[0]), int(target_shape[1])
    if h > big_h or w > big_w:
        raise ValueError(f"image {h}x{w} (h x w) is larger than the target {big_h}x{big_w}")
    if offset is None:
        top, left = (big_h - h) // 2, (big_w - w) // 2
    else:
        top, left = int(offset[0]), int(offset[1])
        if top < 0 or left < 0 or top + h > big_h or left + w > big_w:
            raise ValueError(
                f"offset (top {top}, left {left}) puts the {h}x{w} image outside the "
                f"{big_h}x{big_w} canvas"
            )
    if colour is PadColour.BLACK:
        fill: float | int | bool = 0
    elif image.dtype == bool:
        fill = True
    elif np.issubdtype(image.dtype, np.integer):
        fill = int(np.iinfo(image.dtype).max)
    else:
        fill = 1.0
    canvas = np.full((big_h, big_w, *image.shape[2:]), fill, dtype=image.dtype)
    placement = Placement(top, left, h, w, big_h, big_w)
    canvas[placement.slices] = image
    return canvas, placement
