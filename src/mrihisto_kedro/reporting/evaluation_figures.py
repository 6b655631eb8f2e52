"""Figures of the evaluation: ``input | real | generated`` panels and the seam comparison.

No Kedro imports; figures are ``matplotlib.figure.Figure`` objects built without ``pyplot``.
They draw what :mod:`mrihisto_kedro.evaluation.tiles` returns (:class:`EvaluatedSplit`); the
evaluation code never imports this module (the figure nodes of ``pipelines/evaluation`` call it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from mrihisto_kedro.evaluation.tiles import EvaluatedSplit, to_rgb

__all__ = ["tile_panels", "whole_slide_panels"]


def _show(ax, image: np.ndarray, title: str | None = None) -> None:  # noqa: ANN001
    ax.imshow(np.clip(to_rgb(image[None])[0], 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def tile_panels(splits: Sequence[EvaluatedSplit], n: int, title: str) -> Figure:
    """Rows ``input | real target | generated`` for the first ``n`` tiles of each split.

    Args:
        splits: evaluated splits (images in [0, 1], channels last).
        n: tiles per split.
        title: figure title.
    """
    rows = [(s, i) for s in splits for i in range(min(n, s.a.shape[0]))]
    fig = Figure(figsize=(6, 2 * max(1, len(rows))), dpi=100)
    axes = fig.subplots(max(1, len(rows)), 3, squeeze=False)
    for r, (s, i) in enumerate(rows):
        for c, (image, label) in enumerate(
            ((s.a[i], "input"), (s.b[i], "real"), (s.generated[i], "generated"))
        ):
            _show(axes[r, c], image, label if r == 0 else None)
        tile_id = str(s.manifest.loc[i, "tile_id"])
        axes[r, 0].set_ylabel(f"{s.split} {tile_id}", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def whole_slide_panels(
    rows: Sequence[tuple[str, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]],
    title: str,
) -> Figure:
    """One row per slide: ``MRI | real histology | stitched (no blending) | stitched (blended)``.

    Args:
        rows: ``(label, mri (H, W, C), real (H, W, 3) or None, plain (H, W, 3),
            blended (H, W, 3))``, all in [0, 1].
        title: figure title (e.g. with the seam scores).
    """
    fig = Figure(figsize=(12, 3 * max(1, len(rows))), dpi=100)
    axes = fig.subplots(max(1, len(rows)), 4, squeeze=False)
    names = ("MRI", "real histology", "stitched, no blending", "stitched, blended")
    for r, (label, mri, real, plain, blended) in enumerate(rows):
        for c, image in enumerate((mri, real, plain, blended)):
            if image is None:
                axes[r, c].axis("off")
                continue
            _show(axes[r, c], image, names[c] if r == 0 else None)
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
