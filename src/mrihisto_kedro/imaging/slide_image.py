"""In-memory or lazy slide pixels together with their physical pixel size.

`SlideImage` is what nodes return when they produce a slide (the demo's virtual sections, a
downsampled slide) and what :class:`mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset`
writes as a tiled, pyramidal TIFF.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SlideImage:
    """Slide pixels and their pixel size.

    Attributes:
        pixels: RGB(A) pixels, either a ``numpy.ndarray`` of shape ``(H, W, 3)`` (uint8) or a lazy
            ``pyvips.Image`` with 3 bands. Level-0 pixels of the slide to be written.
        mpp: microns per pixel ``(x, y)`` at level 0, or ``None`` when unknown.
        app_mag: objective magnification to record (Aperio ``AppMag``), or ``None``.
        description: free-form key/value metadata written into the Aperio ImageDescription.
    """

    pixels: Any
    mpp: tuple[float, float] | None
    app_mag: float | None = None
    description: dict[str, str] = field(default_factory=dict)

    @property
    def width(self) -> int:
        """Level-0 width in pixels."""
        if isinstance(self.pixels, np.ndarray):
            return int(self.pixels.shape[1])
        return int(self.pixels.width)

    @property
    def height(self) -> int:
        """Level-0 height in pixels."""
        if isinstance(self.pixels, np.ndarray):
            return int(self.pixels.shape[0])
        return int(self.pixels.height)


def nominal_magnification(mpp_um: float) -> float:
    """The objective power a slide of ``mpp_um`` microns per pixel is labelled with.

    Scanners label 0.25 µm/px as 40x and 0.5 µm/px as 20x (Aperio's ``AppMag``), so this is
    ``10 / mpp`` (to 6 significant digits): what viewers such as QuPath show as the
    magnification. A synthetic slide at 300 µm/px is labelled 0.0333333x, telling the truth
    about its scale.
    """
    if not mpp_um > 0:
        raise ValueError(f"mpp must be positive, got {mpp_um}")
    return float(f"{10.0 / float(mpp_um):.6g}")
