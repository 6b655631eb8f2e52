"""Training a DCGAN on a set of slices, and checking slices against a model's configuration.

:func:`train_dcgan` visits the images once per epoch in a fresh random order from a ``numpy``
generator seeded with ``config.seed`` (the noise comes from the model's own seeded generator), so
it is deterministic on CPU for a given seed, data and thread count.

Checkpoints: with ``checkpoint_dir`` every epoch ends with ``<checkpoint_dir>/last.pt`` written
atomically (:func:`~mrihisto_kedro.nn.training.save_checkpoint`): the model's state (networks,
optimisers, noise generator, grad scaler, config), the epoch and the history. ``resume=True``
continues from it; the epoch orders are replayed from the seed, so a resumed run ends with the
weights of an uninterrupted one (bit for bit on CPU).

Data-parallel (inside a ``torch.distributed`` process group of ``W`` > 1 ranks,
:mod:`mrihisto_kedro.nn.distributed`): every rank calls :func:`train_dcgan` with all the images.
Each epoch's permutation (the same on every rank) is cut by a ``DistributedSampler``
(``shuffle=False``: it shards the DCGAN's own order) into ``W`` interleaved parts, rank ``r``
taking positions ``r, r + W, ...`` (the last part padded by repetition, so every rank takes as
many steps); ``config.batch_size`` is the per-process batch, the global batch ``W`` times it.
``G`` and ``D`` train wrapped in ``DistributedDataParallel``
(:class:`~mrihisto_kedro.nn.distributed.DistributedNets`): gradients are averaged over the ranks
and rank 0's batch-norm running statistics are broadcast to every rank at each forward and at
each epoch's end. A step's noise is drawn for the global batch and split the same way
(:meth:`~mrihisto_kedro.nn.dcgan.model.DCGAN.train_step`). Batch norm normalises with the
per-process batch's statistics: ``SyncBatchNorm`` (the global batch's) on CUDA, plain batch norm
with a warning on CPU, where torch's ``SyncBatchNorm`` refuses to run. So on CPU ``W`` processes
x batch ``b`` do not compute the updates of one process x batch ``W b``; without batch norm they
do, to rounding (``tests/nn/test_distributed.py``). The epoch means are averaged over the
ranks; rank 0 alone writes the checkpoint and calls ``callback``; every rank returns rank 0's
history and holds the same weights.

Pure PyTorch + numpy (no Kedro).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from mrihisto_kedro.nn.dcgan.config import DCGANConfig
from mrihisto_kedro.nn.dcgan.model import DCGAN
from mrihisto_kedro.nn.distributed import (
    DistributedNets,
    World,
    all_reduce_mean,
    distributed_sampler,
    from_main,
    world,
)
from mrihisto_kedro.nn.safe_load import load_versioned
from mrihisto_kedro.nn.training import CHECKPOINT_NAME, save_checkpoint

__all__ = [
    "CHECKPOINT_FORMAT",
    "EpochCallback",
    "as_image_tensor",
    "load_dcgan_checkpoint",
    "train_dcgan",
]

log = logging.getLogger(__name__)

#: the ``format`` entry of a DCGAN training checkpoint (``<checkpoint_dir>/last.pt``)
CHECKPOINT_FORMAT = "mrihisto-dcgan-checkpoint"
_CHECKPOINT_VERSION = 1

_RANGE_TOL = 1e-6

EpochCallback = Callable[[int, Mapping[str, float], DCGAN], None]
"""``callback(epoch, epoch_means, model)`` after each epoch (0-based epoch)."""


def as_image_tensor(
    images: np.ndarray | torch.Tensor, config: DCGANConfig, name: str
) -> torch.Tensor:
    """(N, S, S) or (N, C, S, S) images in [0, 1] -> float32 CPU tensor (N, C, S, S) in [-1, 1].

    Raises:
        ValueError: wrong shape, non-finite values or values outside [0, 1] (named ``name``).
    """
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    t = t.detach().to("cpu", torch.float32)
    if t.dim() == 3:
        t = t[:, None]
    s, c = config.image_size, config.channels
    if t.dim() != 4 or tuple(t.shape[1:]) != (c, s, s):
        want = f"(N, {s}, {s})" if c == 1 else f"(N, {c}, {s}, {s})"
        raise ValueError(
            f"{name} must be {want} images matching image_size={s}, channels={c}; got shape "
            f"{tuple(np.shape(images))} (resize the slices first)"
        )
    if t.numel():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
            raise ValueError(f"{name} must be float images in [0, 1], got values in [{lo}, {hi}]")
    return t.clamp(0.0, 1.0) * 2.0 - 1.0


def load_dcgan_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint :func:`train_dcgan` wrote (``weights_only=True``, tensors on CPU).

    Returns:
        ``{"format", "format_version", "epoch", "epochs", "model", "history"}``: ``model`` is a
        :meth:`~mrihisto_kedro.nn.dcgan.model.DCGAN.state_dict`, ``epoch`` the epochs completed.

    Raises:
        ValueError: the file is not a DCGAN checkpoint of this version.
    """
    return load_versioned(path, "DCGAN checkpoint", CHECKPOINT_FORMAT, _CHECKPOINT_VERSION)


def _epoch_order(order_rng: np.random.Generator, n: int, here: World) -> torch.Tensor:
    """This rank's image indices for one epoch: the epoch's permutation (the same draw on every
    rank), sharded by a ``DistributedSampler`` without shuffling in a process group."""
    perm = torch.from_numpy(order_rng.permutation(n))
    if not here.distributed:
        return perm
    sampler = distributed_sampler(TensorDataset(perm), seed=0, shuffle=False)
    return perm[torch.tensor(list(sampler), dtype=torch.long)]


def train_dcgan(
    images: np.ndarray | torch.Tensor,
    config: DCGANConfig | None = None,
    callback: EpochCallback | None = None,
    *,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> tuple[DCGAN, list[dict[str, float]]]:
    """Train a DCGAN on a set of slices (data-parallel inside a process group: module docstring).

    Each epoch visits the images once in a fresh random order (``numpy`` generator seeded with
    ``config.seed``) in batches of ``config.batch_size``; a trailing batch of a single image is
    skipped (batch norm). Images are scaled from [0, 1] to [-1, 1].

    Args:
        images: (N, S, S) (one channel) or (N, channels, S, S) float images in [0, 1], S =
            ``config.image_size``, N >= 2.
        config: options (default :class:`~mrihisto_kedro.nn.dcgan.config.DCGANConfig`).
        callback: called after each epoch (on rank 0 only) with ``(epoch, epoch_means,
            model)``; an exception it raises stops training (after that epoch's checkpoint).
        checkpoint_dir: folder of the rolling checkpoint ``last.pt`` (``None``: none written).
        resume: continue from ``checkpoint_dir/last.pt`` if it exists (else start fresh); the
            checkpoint's config must be this one but for ``device``, ``precision``,
            ``channels_last`` and ``epochs``.

    Returns:
        ``(model, history)``: the trained :class:`~mrihisto_kedro.nn.dcgan.model.DCGAN` and one
        dict per epoch (including epochs before a resume) with ``"epoch"`` (1-based) and the
        epoch means of the :meth:`~mrihisto_kedro.nn.dcgan.model.DCGAN.train_step` values (each
        iteration counts once; averaged over the ranks).

    Raises:
        ValueError: images of the wrong shape or range, fewer than two images, ``resume``
            without ``checkpoint_dir``, or a checkpoint of another config or of more epochs.
    """
    config = config if config is not None else DCGANConfig()
    data = as_image_tensor(images, config, "images")
    n = data.shape[0]
    if n < 2:
        raise ValueError(f"train_dcgan needs at least 2 images (batch norm), got {n}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    here = world()
    model = DCGAN(config)
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_NAME
    history: list[dict[str, float]] = []
    start = 0
    if resume and ckpt is not None and ckpt.is_file():
        payload = load_dcgan_checkpoint(ckpt)
        model.load_state_dict(payload["model"])
        start = int(payload["epoch"])
        history = [dict(row) for row in payload["history"]]
        if start > config.epochs:
            raise ValueError(f"the checkpoint has {start} epochs, more than epochs={config.epochs}")
        log.info("DCGAN resumed from %s after epoch %d of %d", ckpt, start, config.epochs)
    order_rng = np.random.default_rng(config.seed)
    for _ in range(start):  # replay the orders of the epochs done
        order_rng.permutation(n)
    ddp = DistributedNets(model)  # a no-op in one process
    share = here if here.distributed else None
    for epoch in range(start, config.epochs):
        order = _epoch_order(order_rng, n, here)
        sums: dict[str, float] = {}
        steps = 0
        with ddp.training():
            for first in range(0, order.numel(), config.batch_size):
                index = order[first : first + config.batch_size]
                if index.numel() < 2:
                    continue
                losses = model.train_step(data[index], share)
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value
                steps += 1
        means = {
            "epoch": float(epoch + 1),
            **all_reduce_mean({k: v / steps for k, v in sums.items()}),
        }
        history.append(means)
        if not here.main:  # rank 0 writes and reports; the others train on
            continue
        if ckpt is not None:
            save_checkpoint(
                {
                    "format": CHECKPOINT_FORMAT,
                    "format_version": _CHECKPOINT_VERSION,
                    "epoch": epoch + 1,
                    "epochs": config.epochs,
                    "model": model.state_dict(),
                    "history": history,
                },
                ckpt,
            )
        if callback is not None:
            callback(epoch, means, model)
    if here.distributed:
        history = from_main(lambda: history)
    return model, history
