"""Quality-control figures for a pair (no Kedro imports). Axes are in millimetres.

Figures are ``matplotlib.figure.Figure`` objects built without ``pyplot``, as in the other
reporting modules: importing this module used to switch the whole process to the Agg
backend, which left a notebook that loaded the project (``%load_ext kedro.ipython``) without
inline figures.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def _extent(shape: tuple[int, ...], spacing_mm: tuple[float, float]) -> tuple[float, ...]:
    rows, cols = shape[:2]
    return (0.0, cols * spacing_mm[0], rows * spacing_mm[1], 0.0)


def _outline(ax: Axes, mask: np.ndarray, spacing_mm: tuple[float, float], color: str) -> None:
    """Draw the 0.5 iso-line of ``mask`` at pixel centres, in mm, on an image axis (y down)."""
    rows, cols = mask.shape
    xs = (np.arange(cols) + 0.5) * spacing_mm[0]
    ys = (np.arange(rows) + 0.5) * spacing_mm[1]
    ax.contour(xs, ys, mask.astype(float), levels=[0.5], colors=color, linewidths=0.8)


def pair_qc_figure(
    pair_id: str,
    mri: np.ndarray,
    mri_spacing_mm: tuple[float, float],
    mri_mask: np.ndarray,
    slide_rgb: np.ndarray,
    slide_spacing_mm: tuple[float, float],
    slide_mask: np.ndarray,
    slide_mask_spacing_mm: tuple[float, float],
    notes: str = "",
) -> Figure:
    """MRI slice beside the downsampled slide, each with its tissue mask outlined.

    Args:
        pair_id: shown in the title.
        mri: 2-D MRI slice, shape ``(rows, cols)``, any range (shown min-max).
        mri_spacing_mm: ``(col, row)`` pixel size of ``mri`` in mm.
        mri_mask: boolean ``(rows, cols)`` tissue mask on the MRI grid.
        slide_rgb: downsampled slide, ``(H, W, 3)`` uint8.
        slide_spacing_mm: ``(x, y)`` pixel size of ``slide_rgb`` in mm.
        slide_mask: boolean tissue mask of the slide (may be on a coarser grid).
        slide_mask_spacing_mm: ``(x, y)`` pixel size of ``slide_mask`` in mm.
        notes: extra text under the title (sizes, thresholds).

    Returns:
        A matplotlib figure (the caller saves and closes it).
    """
    fig = Figure(figsize=(12, 5.5), dpi=100)
    axes = fig.subplots(1, 2)
    ax_mri, ax_slide = axes
    ax_mri.imshow(mri, cmap="gray", extent=_extent(mri.shape, mri_spacing_mm))
    _outline(ax_mri, mri_mask, mri_spacing_mm, "lime")
    ax_mri.set_title(
        f"MRI slice {mri.shape[1]}x{mri.shape[0]} px, "
        f"{mri_spacing_mm[0]:.3g}x{mri_spacing_mm[1]:.3g} mm"
    )
    ax_slide.imshow(slide_rgb, extent=_extent(slide_rgb.shape, slide_spacing_mm))
    _outline(ax_slide, slide_mask, slide_mask_spacing_mm, "magenta")
    ax_slide.set_title(
        f"downsampled slide {slide_rgb.shape[1]}x{slide_rgb.shape[0]} px, "
        f"{slide_spacing_mm[0] * 1000:.4g} um/px"
    )
    for ax in axes:
        ax.set_xlabel("mm")
        ax.set_ylabel("mm")
    fig.suptitle(f"{pair_id}\n{notes}" if notes else pair_id, fontsize=10)
    fig.tight_layout()
    return fig
