"""MSI registration quality-control figures: H&E | registered MSI | overlay (seed 003).

Drawn from what :func:`~mrihisto_kedro.msi.registration_study.register_msi_study` returns:
:func:`msi_registration_figures` draws one figure per pair for the ``msi_data_engineering``
pipeline's ``msi_registration_qc`` folder.

No Kedro imports. Figures are ``matplotlib.figure.Figure`` objects built without ``pyplot`` (never
registered with a GUI backend; saving renders with Agg).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from matplotlib.figure import Figure

from mrihisto_kedro.msi.reduction import PadColour
from mrihisto_kedro.msi.registration_study import MsiRegistrationStudy

__all__ = ["msi_registration_figures", "registration_figure"]


def registration_figure(
    pair_id: str,
    histology: np.ndarray,
    registered: np.ndarray,
    coverage: np.ndarray,
    title: str = "",
) -> Figure:
    """Histology | registered MSI | overlay (H&E with the MSI footprint outline).

    Args:
        pair_id: shown in the title.
        histology: uint8 ``(H, W, 3)`` working-grid H&E.
        registered: float32 ``(H, W, 3)`` registered MSI in [0, 1].
        coverage: bool ``(H, W)``.
        title: extra title text (e.g. the TRE).
    """
    fig = Figure(figsize=(9, 3.3))
    axes = fig.subplots(1, 3)
    axes[0].imshow(histology)
    axes[0].set_title("H&E (working grid)")
    axes[1].imshow(np.clip(registered, 0, 1))
    axes[1].set_title("registered MSI (3 channels)")
    blend = 0.5 * histology.astype(np.float32) / 255.0 + 0.5 * np.clip(registered, 0, 1)
    axes[2].imshow(blend)
    axes[2].contour(coverage.astype(float), levels=[0.5], colors="yellow", linewidths=0.8)
    axes[2].set_title("overlay, MSI footprint")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"{pair_id} {title}".strip())
    fig.tight_layout()
    return fig


def msi_registration_figures(study: MsiRegistrationStudy) -> dict[str, Figure]:
    """One :func:`registration_figure` per registered pair (black padding), titled with its mode
    and TRE.

    Returns:
        ``{"<pair_id>.png": figure}`` in the study's pair order.
    """
    return {
        f"{pair.pair_id}.png": registration_figure(
            pair.pair_id,
            sitk.GetArrayFromImage(pair.histology_grid),
            sitk.GetArrayFromImage(pair.registered[PadColour.BLACK]),
            sitk.GetArrayFromImage(pair.coverage) > 0,
            pair.title,
        )
        for pair in study.pairs
    }
