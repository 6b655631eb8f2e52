"""Registration quality-control figure: checkerboard and edge overlay, before and after.

Drawn from the images a registration returns
(:class:`~mrihisto_kedro.imaging.registration.qc.QcImages`): :func:`registration_qc_figures`
draws one figure per pair for the ``registration`` pipeline's ``registration_qc`` folder.

No Kedro imports. The figure is a ``matplotlib.figure.Figure`` built without ``pyplot`` (so it is
never registered with a GUI backend or kept alive by pyplot's figure manager; saving it renders
with Agg). Axes are in millimetres of the fixed (histology) grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from skimage.feature import canny

from mrihisto_kedro.imaging.registration.qc import QcImages, block_mean

__all__ = ["checkerboard", "qc_figure", "registration_qc_figure", "registration_qc_figures"]


def _normalise(image: np.ndarray) -> np.ndarray:
    """Scale to ``[0, 1]`` between the 1st and 99th percentiles (constant -> zeros)."""
    lo, hi = np.percentile(image, [1.0, 99.0])
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.float32)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def checkerboard(a: np.ndarray, b: np.ndarray, squares: int = 8) -> np.ndarray:
    """Interleave two images of the same shape in a checkerboard.

    Args:
        a: 2-D array ``(H, W)`` shown in the "white" squares (top-left square included).
        b: 2-D array of the same shape shown in the other squares.
        squares: number of squares along the longer side (square tiles, >= 1).

    Returns:
        Array ``(H, W)`` of ``a``'s dtype promoted with ``b``'s.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two 2-D arrays of the same shape, got {a.shape} and {b.shape}")
    if squares < 1:
        raise ValueError(f"squares must be >= 1, got {squares}")
    tile = max(1, math.ceil(max(a.shape) / squares))
    rows = (np.arange(a.shape[0]) // tile)[:, None]
    cols = (np.arange(a.shape[1]) // tile)[None, :]
    return np.where((rows + cols) % 2 == 0, a, b)


def registration_qc_figure(
    fixed_gray: np.ndarray,
    moving_before: np.ndarray,
    moving_after: np.ndarray,
    *,
    spacing_mm: tuple[float, float] = (1.0, 1.0),
    title: str = "",
    notes: str = "",
    squares: int = 8,
    edge_sigma: float = 2.0,
    max_size: int = 1024,
) -> Figure:
    """Checkerboard and edge overlay of a registration, before and after.

    Top row: before registration; bottom row: after. Left: checkerboard of the fixed image and
    the resampled moving image (each scaled to its own 1st..99th percentile); right: the fixed
    image in grey with the moving image's Canny edges in magenta.

    Args:
        fixed_gray: fixed (histology) channel on its grid, 2-D ``(H, W)``, any real range (e.g.
            optical density).
        moving_before: moving (MRI) image resampled onto the same grid with the initial
            transform (or identity), ``(H, W)``.
        moving_after: moving image resampled with the registration transform, ``(H, W)``.
        spacing_mm: ``(x, y)`` pixel size of the grid in mm (axis units).
        title: figure title (e.g. the pair id).
        notes: extra line under the title (e.g. Dice and MI before/after, bins, thresholds).
        squares: checkerboard squares along the longer side.
        edge_sigma: Gaussian sigma of the Canny edge detector, in displayed pixels.
        max_size: arrays are block-averaged to at most about this many pixels on the long side
            before drawing (a 6000 x 10000 slide is reduced tenfold).

    Returns:
        A ``Figure`` (12 x 9.5 inches at 100 dpi); the caller saves it (``fig.savefig``).
    """
    arrays = [np.asarray(x, dtype=np.float64) for x in (fixed_gray, moving_before, moving_after)]
    if any(x.ndim != 2 for x in arrays) or len({x.shape for x in arrays}) != 1:
        raise ValueError(
            "fixed_gray, moving_before and moving_after must be 2-D arrays of one shape, got "
            f"{[x.shape for x in arrays]}"
        )
    if any(not np.all(np.isfinite(x)) for x in arrays):
        raise ValueError("images must be finite (no NaN/inf)")
    if max_size < 16:
        raise ValueError(f"max_size must be >= 16, got {max_size}")
    factor = max(1, math.ceil(max(arrays[0].shape) / max_size))
    fixed, before, after = (_normalise(block_mean(x, factor)) for x in arrays)
    sx, sy = (float(spacing_mm[0]) * factor, float(spacing_mm[1]) * factor)
    extent = (0.0, fixed.shape[1] * sx, fixed.shape[0] * sy, 0.0)

    fig = Figure(figsize=(12, 9.5), dpi=100)
    axes = fig.subplots(2, 2)
    for row, (label, moving) in enumerate((("before", before), ("after", after))):
        ax_check, ax_edge = axes[row]
        ax_check.imshow(checkerboard(fixed, moving, squares), cmap="gray", extent=extent)
        ax_check.set_title(f"{label}: checkerboard fixed / moving")
        edges = canny(moving, sigma=edge_sigma)
        overlay = np.zeros((*edges.shape, 4), dtype=np.float32)
        overlay[edges] = (1.0, 0.0, 1.0, 1.0)
        ax_edge.imshow(fixed, cmap="gray", extent=extent)
        ax_edge.imshow(overlay, extent=extent, interpolation="nearest")
        ax_edge.set_title(f"{label}: moving edges (magenta) on fixed")
        for ax in (ax_check, ax_edge):
            ax.set_xlabel("x (mm)")
            ax.set_ylabel("y (mm)")
    heading = title if not notes else f"{title}\n{notes}" if title else notes
    if heading:
        fig.suptitle(heading)
    fig.tight_layout()
    return fig


def qc_figure(images: QcImages) -> Figure:
    """The QC figure of one registered pair (:func:`registration_qc_figure` of its images)."""
    return registration_qc_figure(
        images.fixed,
        images.before,
        images.after,
        spacing_mm=images.spacing_mm,
        title=images.title,
        notes=images.notes,
    )


def registration_qc_figures(qc: Mapping[str, QcImages]) -> dict[str, Figure]:
    """One QC figure per pair, keyed ``<pair_id>.png`` (file names in the ``registration_qc``
    folder)."""
    return {f"{pair_id}.png": qc_figure(images) for pair_id, images in qc.items()}
