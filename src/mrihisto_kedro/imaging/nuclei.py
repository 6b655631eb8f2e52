"""Nucleus sizes in µm from RGB histology: a physical check of a slide's pixel size.

Nuclei of brain tissue measure about 5-10 µm across whatever the scanner; a slide whose nuclei
measure 60 µm at its stated mpp is either drawn too large (the miniature demo, whose ground truth
says by how much) or states the wrong mpp. :func:`nucleus_diameters_um` finds the haematoxylin
blobs by colour deconvolution (Ruifrok & Johnston, ``skimage.color.rgb2hed``), smoothed over
1 µm so that chromatin texture does not split a nucleus, and returns their equivalent diameters.

Measured (median, top 3 %): the real H&E of CMU-1-Small-Region 4.1 µm at its 0.499 µm/px and
4.1 µm block-averaged to 0.998 µm/px (the dense core of each nucleus: it reads smaller than the
outline); the physically true virtual GFAP 6.9 µm; the miniature demo 61 µm at 18 µm/px.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.color import rgb2hed

__all__ = ["nucleus_diameters_um"]


def nucleus_diameters_um(
    rgb: np.ndarray,
    mpp: float,
    *,
    top_fraction: float = 0.03,
    smoothing_um: float = 1.0,
    min_diameter_um: float = 3.0,
    glass_level: float = 220.0,
) -> np.ndarray:
    """Equivalent diameters of the nuclei in ``rgb``, in µm.

    Args:
        rgb: uint8 ``(H, W, 3)`` pixels (one region of one level).
        mpp: µm per pixel of ``rgb``.
        top_fraction: the share of the tissue's pixels, highest in haematoxylin, taken as nuclei.
        smoothing_um: Gaussian sigma applied to the haematoxylin channel first, in µm.
        min_diameter_um: smaller blobs are dropped (noise, fragments), in µm.
        glass_level: pixels whose mean RGB is at least this are glass, not tissue.

    Returns:
        float64 ``(N,)``: ``2 * sqrt(area / pi) * mpp`` per blob of at least
        ``min_diameter_um`` (touching nuclei merge).

    Raises:
        ValueError: ``mpp`` not positive, or no tissue in ``rgb``.
    """
    if not mpp > 0:
        raise ValueError(f"mpp must be > 0 µm per pixel, got {mpp}")
    haem = ndimage.gaussian_filter(rgb2hed(np.asarray(rgb)[..., :3])[..., 0], smoothing_um / mpp)
    tissue = np.asarray(rgb)[..., :3].mean(axis=2) < glass_level
    if not tissue.any():
        raise ValueError("the region holds no tissue (every pixel is glass)")
    threshold = np.quantile(haem[tissue], 1.0 - top_fraction)
    labels, n = ndimage.label((haem > threshold) & tissue)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
    diameters = 2.0 * np.sqrt(areas / np.pi) * float(mpp)
    return diameters[diameters >= min_diameter_um]
