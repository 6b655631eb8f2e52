"""Figures of the missing-sequences study (seed 002): example slices of every method.

No Kedro imports; figures are ``matplotlib.figure.Figure`` objects built without ``pyplot``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from mrihisto_kedro.sequences.synthesis import Synthesis

__all__ = ["example_figure"]


def example_figure(synthesis: Synthesis, n: int, title: str) -> Figure:
    """Rows = ``n`` test slices (evenly spaced); columns = T1, real T2, every method.

    Images are shown in grey on [0, 1]. The DCGAN columns show sample ``i`` beside slice ``i``
    (they are not paired).

    Args:
        synthesis: the split's real slices and every method's ``(N, H, W)`` slices.
        n: slices shown (at most the split's).
        title: the figure's title.
    """
    slices = synthesis.slices
    picks = np.unique(np.linspace(0, len(slices) - 1, min(n, len(slices))).round().astype(int))
    columns = [("T1 (input)", slices.t1), ("T2 (real)", slices.t2)]
    columns += [(name, images) for name, images in synthesis.outputs.items()]
    fig = Figure(figsize=(1.6 * len(columns), 1.7 * len(picks) + 0.4), dpi=100)
    axes = fig.subplots(len(picks), len(columns), squeeze=False)
    ids = slices.manifest["pair_id"].astype(str).to_numpy()
    for r, i in enumerate(picks):
        for c, (label, images) in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(ids[i], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
