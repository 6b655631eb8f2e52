"""Builders of the evaluation pipeline's test inputs (fixtures in ``conftest``).

Everything is small: 12 tiles of 32 px on 3 slides, a 5-level U-Net with 8 filters (CPU,
fp32), slides of 48 x 40 px.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from mrihisto_kedro.imaging.input_spec import InputKind, InputSpec
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.models import Pix2Pix, Pix2PixConfig

#: evaluation parameters that run in seconds: no Inception (FID/KID), 10 bootstrap replicates
FAST_EVALUATION: dict[str, Any] = {"set_metrics": False, "n_boot": 10, "tiles": {"device": "cpu"}}


def tiny_tileset(scale: float = 1.0, n_per_slide: int = 4, slides: int = 3) -> TileSet:
    """Paired tiles ``(N, 32, 32, 1)`` float32 MRI -> ``(N, 32, 32, 3)`` uint8 histology; the
    first two slides are ``train``, the others ``test``; every tile has ``scale``."""
    rng = np.random.default_rng(0)
    n = n_per_slide * slides
    a = rng.random((n, 32, 32, 1), dtype=np.float32)
    b = (np.repeat(a, 3, axis=-1) * 200 + rng.integers(0, 50, (n, 32, 32, 3))).astype(np.uint8)
    manifest = pd.DataFrame(
        {
            "tile_id": [f"t{i:02d}" for i in range(n)],
            "pair_id": [f"slide{i // n_per_slide}" for i in range(n)],
            "specimen_id": [f"spec{i // n_per_slide}" for i in range(n)],
            "split": ["train" if i < 2 * n_per_slide else "test" for i in range(n)],
            "x": [32 * i for i in range(n)],
            "y": [0] * n,
            "size": [32] * n,
            "scale": [scale] * n,
        }
    )
    return TileSet(manifest=manifest, a=a, b=b)


def tiny_pix2pix() -> Pix2Pix:
    """An untrained pix2pix U-Net (1 -> 3 channels, 5 levels, 8 filters; CPU, fp32)."""
    torch.manual_seed(0)
    config = Pix2PixConfig(
        generator="unet",
        num_downs=5,
        ngf=8,
        ndf=8,
        in_channels=1,
        out_channels=3,
        device="cpu",
        precision="fp32",
    )
    return Pix2Pix(config)


#: what the tiny generators were "trained on": 270 µm per pixel
SPEC = InputSpec(kind=InputKind.SLICE_TO_SLIDE, pixel_size_um=(270.0, 270.0)).to_dict()


def training_summary(experiment: str, run_id: str | None, **columns: Any) -> pd.DataFrame:
    """A one-row training summary as modelling writes it (only what evaluation reads)."""
    return pd.DataFrame(
        [{"experiment": experiment, "run_id": run_id, "trained_with": "cpu fp32", **columns}]
    )
