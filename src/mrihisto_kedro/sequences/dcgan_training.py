"""The study's DCGAN: trained on one split's T2 slices, sampled, and asked "real or fake?".

The network, its loop and its state are :mod:`mrihisto_kedro.nn.dcgan`; here the slices are
resized to the DCGAN's side, the training is timed, and the saved state records the split it
learnt from (the table measures its discriminator on the other slices). No Kedro imports.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from mrihisto_kedro.nn.dcgan import DCGAN, DCGANConfig, EpochCallback, train_dcgan
from mrihisto_kedro.sequences.params import DCGANTrainingParams, DiscriminatorNorm
from mrihisto_kedro.sequences.slices import SequenceSlices, resize_slices

__all__ = [
    "TRAINING_SPLIT_KEY",
    "DCGANTraining",
    "dcgan_outputs",
    "discriminator_probabilities",
    "train_sequence_dcgan",
    "train_split_dcgan",
    "training_split",
]

#: the key :attr:`DCGANTraining.state` adds to :meth:`~mrihisto_kedro.nn.dcgan.DCGAN.state_dict`
TRAINING_SPLIT_KEY = "training_split"


def train_sequence_dcgan(
    t2_slices: np.ndarray,
    config: DCGANConfig,
    callback: EpochCallback | None = None,
) -> tuple[DCGAN, pd.DataFrame]:
    """Train the DCGAN on T2 slices ``(N, H, W)`` in [0, 1], resized to ``config.image_size``.

    Args:
        t2_slices: the training split's T2 slices.
        config: DCGAN options (``image_size`` is the side it trains at).
        callback: ``callback(epoch, epoch_means, model)`` after each epoch (e.g. MLflow).

    Returns:
        ``(model, history)``: one row per epoch with the epoch means of the losses and the
        discriminator's mean outputs (:func:`mrihisto_kedro.nn.dcgan.train_dcgan`), plus
        ``seconds`` (wall-clock time since the start, s) and ``n_images``.
    """
    images = resize_slices(t2_slices, config.image_size)
    start = time.perf_counter()
    stamps: list[float] = []

    def on_epoch(epoch: int, means: Mapping[str, float], model: DCGAN) -> None:
        stamps.append(time.perf_counter() - start)
        if callback is not None:
            callback(epoch, means, model)

    model, history = train_dcgan(images, config, on_epoch)
    frame = pd.DataFrame(history)
    frame["seconds"] = stamps[: len(frame)]
    frame["n_images"] = images.shape[0]
    return model, frame


@dataclass(frozen=True)
class DCGANTraining:
    """A DCGAN trained on one split's T2 slices.

    Attributes:
        model: the trained DCGAN.
        history: one row per epoch (:func:`train_sequence_dcgan`).
        split: the split it learnt from; n_slices: how many slices that split has.
    """

    model: DCGAN
    history: pd.DataFrame
    split: str
    n_slices: int

    @property
    def seconds(self) -> float:
        """Wall-clock training time (s); 0 without epochs."""
        return float(self.history["seconds"].iloc[-1]) if len(self.history) else 0.0

    @property
    def state(self) -> dict[str, Any]:
        """:meth:`~mrihisto_kedro.nn.dcgan.DCGAN.state_dict` plus ``training_split`` (plain
        types and tensors: loads with ``torch.load(weights_only=True)``)."""
        return {**self.model.state_dict(), TRAINING_SPLIT_KEY: self.split}


def train_split_dcgan(
    slices: SequenceSlices, params: DCGANTrainingParams, callback: EpochCallback | None = None
) -> DCGANTraining:
    """Train the DCGAN of ``params.model`` on the T2 slices of split ``params.split``.

    Args:
        slices: that split's slices (``split_slices(tileset, params.split)``).
        params: the split and the DCGAN options.
        callback: ``callback(epoch, epoch_means, model)`` after each epoch (e.g. MLflow).
    """
    model, history = train_sequence_dcgan(slices.t2, params.model, callback)
    return DCGANTraining(model=model, history=history, split=params.split, n_slices=len(slices))


def training_split(state: Mapping[str, Any]) -> str:
    """The split a saved DCGAN state learnt from (``train`` for states that do not say)."""
    return str(state.get(TRAINING_SPLIT_KEY, "train"))


def dcgan_outputs(model: DCGAN, n: int, seed: int, size: int) -> np.ndarray:
    """``n`` DCGAN samples (noise seeded with ``seed``) as ``(n, size, size)`` in [0, 1]."""
    images = model.generate_images(n, seed=seed)
    if images.ndim == 4:  # several channels: the first one (an MRI sequence has one)
        images = images[:, 0]
    return resize_slices(images, size)


@torch.no_grad()
def discriminator_probabilities(
    model: DCGAN, images: np.ndarray, norm: DiscriminatorNorm = DiscriminatorNorm.BATCH
) -> np.ndarray:
    """The DCGAN discriminator's probability "real" for each slice of one set.

    Args:
        model: a trained DCGAN.
        images: ``(N, H, W)`` in [0, 1]; resized to the DCGAN's size (area averaging).
        norm: batch-norm statistics (:class:`~mrihisto_kedro.sequences.params.DiscriminatorNorm`).
            ``batch`` runs the whole set as one batch through a copy of D in training mode (so
            the result depends on the set, as D's decisions did in training).

    Returns:
        ``(N,)`` float64 in [0, 1].
    """
    x = torch.from_numpy(resize_slices(images, model.config.image_size))[:, None] * 2.0 - 1.0
    if x.shape[0] == 0:
        return np.zeros(0)
    if norm is DiscriminatorNorm.RUNNING:
        return model.probability_real(x)
    net = copy.deepcopy(model.D).train()
    return torch.sigmoid(net(x.to(model.device))).double().cpu().numpy()
