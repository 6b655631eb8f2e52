"""Tiny inputs of the modelling tests: a 10-tile 32 px paired tile set and one-epoch training
parameters (a 4-filter U-Net pix2pix, fp32 on the CPU)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mrihisto_kedro.imaging.tileset import TileSet

#: ``<experiment>.training`` of the tiny tests: a 32 px U-Net pix2pix, one epoch
TINY_TRAINING: dict[str, Any] = {
    "model_type": "pix2pix",
    "model": {
        "generator": "unet",
        "num_downs": 5,
        "ngf": 4,
        "ndf": 4,
        "n_epochs": 1,
        "n_epochs_decay": 0,
        "device": "cpu",
        "precision": "fp32",
        "seed": 0,
    },
    "data": {"batch_size": 4, "val_split": "val"},
    "sample_every": 0,
}


def tiny_tileset(n: int = 10, splits: list[str] | None = None) -> TileSet:
    """``n`` paired 32 px tiles of ``n // 2`` specimens: A float32 ``(n, 32, 32, 1)`` in
    [0, 1], B uint8 ``(n, 32, 32, 3)``; splits 6 train + 4 val unless given."""
    rng = np.random.default_rng(0)
    a01 = np.kron(rng.random((n, 4, 4)), np.ones((8, 8)))
    b = np.stack([a01, 1 - a01, 0.5 * a01 + 0.25], axis=-1)
    manifest = pd.DataFrame(
        {
            "tile_id": [f"t{i}" for i in range(n)],
            "pair_id": [f"p{i % 5}" for i in range(n)],
            "specimen_id": [f"s{i % 5}" for i in range(n)],
            "split": splits or ["train"] * 6 + ["val"] * (n - 6),
            "x": np.arange(n) * 32,
            "y": 0,
            "size": 32,
            "scale": 1.0,
        }
    )
    return TileSet(
        manifest=manifest, a=a01[..., None].astype(np.float32), b=np.round(b * 255).astype(np.uint8)
    )
