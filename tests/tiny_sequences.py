"""Tiny T1/T2 slices and networks for the missing-sequences tests (library, nodes, pipeline).

Imported by ``tests/sequences/`` and ``tests/pipelines/missing_sequences/`` (``tests/`` is on
``sys.path``: it holds the root ``conftest.py``). Everything is small enough for one CPU thread:
32 px slices, a VGG16-shaped trunk with 1/16 of the channels and random weights, a 32 px DCGAN
and U-Net generators with 4 filters.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import torch

from mrihisto_kedro.evaluation.tiles import FeatureBackends
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.models import Pix2PixConfig, build_model
from mrihisto_kedro.nn.style_transfer import VGG_CONFIGS, VGGFeatures, vgg_trunk
from mrihisto_kedro.nn.training import export_generator

#: side of the tiny slices (px)
SIZE = 32
#: VGG16's configuration with 1/16 of the channels
TINY_VGG = tuple(c if c == "M" else int(c) // 16 for c in VGG_CONFIGS["vgg16"])
#: ``DCGANConfig`` keys of a 32 px DCGAN with 4 filters (add ``epochs``)
TINY_DCGAN: dict[str, Any] = {
    "image_size": 32,
    "ngf": 4,
    "ndf": 4,
    "nz": 8,
    "batch_size": 4,
    "device": "cpu",
}


def heads(n: int, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic T1/T2 pairs ``(n, size, size)`` float32 in [0, 1]: a head (bright ring, grey
    tissue, dark ventricle in T1) on a 0.05 field-of-view box; T2 has the tissue contrast
    inverted."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(yy, xx)
    t1 = np.zeros((n, size, size), np.float32)
    t2 = np.zeros_like(t1)
    box = (np.abs(yy) < size * 0.45) & (np.abs(xx) < size * 0.45)
    for i in range(n):
        radius = size * rng.uniform(0.3, 0.4)
        ring = (r < radius) & (r > radius - 2)
        tissue = r <= radius - 2
        ventricle = r < radius * 0.3
        t1[i][box] = t2[i][box] = 0.05
        t1[i][tissue], t2[i][tissue] = 0.7, 0.35
        t1[i][ventricle], t2[i][ventricle] = 0.15, 0.9
        t1[i][ring] = t2[i][ring] = 0.8
    return t1, t2


def tileset(n_train: int = 8, n_test: int = 4) -> TileSet:
    """A ``t1_to_t2``-like tile set: ``n_train`` train, 2 val, ``n_test`` test slices (A = T1,
    B = T2, ``(N, 32, 32, 1)`` float32) with ``slice_index`` 0..N-1 in that order."""
    t1, t2 = heads(n_train + 2 + n_test)
    splits = ["train"] * n_train + ["val"] * 2 + ["test"] * n_test
    manifest = pd.DataFrame(
        {
            "tile_id": [f"axial_{i:03d}" for i in range(len(splits))],
            "pair_id": [f"slice_{i:03d}" for i in range(len(splits))],
            "specimen_id": [f"slab_{s}" for s in splits],
            "split": splits,
            "x": 0,
            "y": 0,
            "size": SIZE,
            "scale": 1.0,
            "slice_index": range(len(splits)),
        }
    )
    return TileSet(manifest=manifest, a=t1[..., None], b=t2[..., None])


def generator_payload(seed: int) -> dict[str, Any]:
    """An untrained 1 -> 1 channel U-Net generator (5 downsamplings, 4 filters), exported as the
    modelling pipeline exports its generators."""
    config = Pix2PixConfig(
        in_channels=1,
        out_channels=1,
        generator="unet",
        num_downs=5,
        ngf=4,
        ndf=4,
        device="cpu",
        precision="fp32",
        seed=seed,
    )
    return export_generator(build_model(config))


def tiny_vgg() -> VGGFeatures:
    """A VGG16-shaped trunk with 1/16 of the channels, average pooling and seeded weights."""
    return vgg_trunk(TINY_VGG, "avg", generator=torch.Generator().manual_seed(0))


def tiny_vgg_features(
    weights: object = None,
    pooling: object = None,
    device: str | torch.device = "cpu",
    **kwargs: object,
) -> VGGFeatures:
    """Stands in for :func:`mrihisto_kedro.nn.style_transfer.vgg_features` (same call) in tests
    that must not load the ImageNet VGG16."""
    return tiny_vgg().to(device)


def missing_file(folder: os.PathLike[str] | str) -> str:
    """A weights path that does not exist (the metric or refinement is then reported missing)."""
    return os.fspath(os.path.join(folder, "no-such-weights.pth"))


def fake_backends(lpips: bool = False) -> FeatureBackends:
    """An 'Inception' of 16-d mean-pooled grey levels plus a random projection of 32 px
    images; LPIPS a mean absolute difference, or missing."""
    rng = np.random.default_rng(0)
    projection = rng.normal(size=(SIZE * SIZE, 8))

    def features(images: np.ndarray) -> np.ndarray:
        grey = images.mean(axis=-1).reshape(len(images), -1)
        pooled = grey.reshape(len(images), 16, -1).mean(axis=-1)
        return np.concatenate([pooled, grey @ projection], axis=1).astype(np.float64)

    backends = FeatureBackends(inception=features)
    if lpips:
        backends.lpips = lambda x, y: np.abs(x - y).mean(axis=(1, 2, 3)).astype(np.float64)
    else:
        backends.missing["LPIPS"] = "AlexNet weights missing (test)"
    return backends
