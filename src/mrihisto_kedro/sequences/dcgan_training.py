"""The study's DCGAN: trained on one split's T2 slices, sampled, and asked "real or fake?".

The network, its loop and its state are :mod:`mrihisto_kedro.nn.dcgan`; here the slices are
resized to the DCGAN's side, the training is timed, and the saved state records the split it
learnt from (the table measures its discriminator on the other slices).

Data-parallel: under ``torchrun`` (``WORLD_SIZE`` > 1) :func:`train_split_dcgan` joins the
process group for the training; with ``processes: N`` it starts ranks 1 .. N-1 on this machine
itself (:func:`~mrihisto_kedro.nn.distributed.local_processes`), which train and write nothing.
Every rank returns rank 0's history and the same weights.

Checkpoints: given the experiment's :class:`~mrihisto_kedro.nn.checkpoint_store.CheckpointStore`,
:func:`train_split_dcgan` trains in the folder ``dcgan-<key>/dcgan/`` of the store, ``<key>``
the fingerprint of what decides the weights (:func:`dcgan_checkpoint_description`: the DCGAN's
config but ``epochs``, the split, its slices' content and the number of processes), where
:func:`~mrihisto_kedro.nn.dcgan.train_dcgan` writes ``last.pt`` after every epoch (rank 0). The
same call after a kill resumes from the last complete epoch and ends with the weights of an
uninterrupted training; so does a call with more ``epochs``, and one with the same ``epochs``
returns the finished model without training. Another key (a changed parameter or other slices)
removes the old folder and starts fresh, as ``resume: never`` does. The checkpoint sits one
level below the store's folder because the store reads ``<folder>/last.pt`` as a translation
model's checkpoint (and deletes one it cannot read). No Kedro imports.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mrihisto_kedro.nn.checkpoint_store import CheckpointStore, fingerprint
from mrihisto_kedro.nn.dcgan import DCGAN, DCGANConfig, EpochCallback, train_dcgan
from mrihisto_kedro.nn.dcgan.training import load_dcgan_checkpoint
from mrihisto_kedro.nn.distributed import (
    env_world,
    from_main,
    local_processes,
    process_group,
    world,
)
from mrihisto_kedro.nn.training import CHECKPOINT_NAME
from mrihisto_kedro.sequences.params import DCGANTrainingParams, DiscriminatorNorm
from mrihisto_kedro.sequences.slices import SequenceSlices, resize_slices

__all__ = [
    "TRAINING_SPLIT_KEY",
    "DCGANCheckpoint",
    "DCGANTraining",
    "dcgan_checkpoint_description",
    "dcgan_outputs",
    "discriminator_probabilities",
    "open_dcgan_checkpoint",
    "train_sequence_dcgan",
    "train_split_dcgan",
    "training_split",
]

logger = logging.getLogger(__name__)

#: the key :attr:`DCGANTraining.state` adds to :meth:`~mrihisto_kedro.nn.dcgan.DCGAN.state_dict`
TRAINING_SPLIT_KEY = "training_split"

#: the store's ``kind`` of the DCGAN's folders (``dcgan-<key>``) and the subfolder of its
#: ``last.pt`` (the store reads ``<folder>/last.pt`` as a translation model's checkpoint)
_KIND = "dcgan"
_SUBFOLDER = "dcgan"


def train_sequence_dcgan(
    t2_slices: np.ndarray,
    config: DCGANConfig,
    callback: EpochCallback | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> tuple[DCGAN, pd.DataFrame]:
    """Train the DCGAN on T2 slices ``(N, H, W)`` in [0, 1], resized to ``config.image_size``.

    Args:
        t2_slices: the training split's T2 slices.
        config: DCGAN options (``image_size`` is the side it trains at).
        callback: ``callback(epoch, epoch_means, model)`` after each epoch (e.g. MLflow; on
            rank 0 only in a process group); not called for epochs read from a checkpoint.
        checkpoint_dir: folder of the rolling ``last.pt`` (``None``: none written).
        resume: continue from ``checkpoint_dir/last.pt`` if it exists
            (:func:`mrihisto_kedro.nn.dcgan.train_dcgan`).

    Returns:
        ``(model, history)``: one row per epoch (resumed epochs included, each once) with the
        epoch means of the losses and the discriminator's mean outputs
        (:func:`mrihisto_kedro.nn.dcgan.train_dcgan`), plus ``seconds`` (wall-clock time since
        the start of this call on rank 0, s; NaN for the epochs read from a checkpoint) and
        ``n_images``.
    """
    images = resize_slices(t2_slices, config.image_size)
    start = time.perf_counter()
    stamps: list[float] = []

    def on_epoch(epoch: int, means: Mapping[str, float], model: DCGAN) -> None:
        stamps.append(time.perf_counter() - start)
        if callback is not None:
            callback(epoch, means, model)

    model, history = train_dcgan(
        images, config, on_epoch, checkpoint_dir=checkpoint_dir, resume=resume
    )
    stamps = from_main(lambda: stamps)  # rank 0 timed the epochs (no-op in one process)
    frame = pd.DataFrame(history)
    resumed = len(frame) - len(stamps)  # the epochs of the checkpoint come first
    frame["seconds"] = [float("nan")] * resumed + stamps
    frame["n_images"] = images.shape[0]
    return model, frame


@dataclass(frozen=True)
class DCGANTraining:
    """A DCGAN trained on one split's T2 slices.

    Attributes:
        model: the trained DCGAN.
        history: one row per epoch (:func:`train_sequence_dcgan`).
        split: the split it learnt from; n_slices: how many slices that split has.
        resumed_epoch: epochs read from a checkpoint before training on (0: trained from the
            start); checkpoint: the folder of its ``last.pt`` (``None``: none written).
    """

    model: DCGAN
    history: pd.DataFrame
    split: str
    n_slices: int
    resumed_epoch: int = 0
    checkpoint: Path | None = None

    @property
    def seconds(self) -> float:
        """Wall-clock time of this call's epochs (s); 0 when none was trained."""
        timed = self.history["seconds"].dropna()
        return float(timed.iloc[-1]) if len(timed) else 0.0

    def summary(self) -> str:
        """One line for the log: slices, side, epochs, time and where it resumed from."""
        config = self.model.config
        text = (
            f"{self.n_slices} {self.split} T2 slices at {config.image_size} px, "
            f"{config.epochs} epochs, {self.seconds:.1f} s"
        )
        if self.resumed_epoch:
            text += f" (resumed after epoch {self.resumed_epoch} from {self.checkpoint})"
        return text

    @property
    def state(self) -> dict[str, Any]:
        """:meth:`~mrihisto_kedro.nn.dcgan.DCGAN.state_dict` plus ``training_split`` (plain
        types and tensors: loads with ``torch.load(weights_only=True)``)."""
        return {**self.model.state_dict(), TRAINING_SPLIT_KEY: self.split}


@dataclass(frozen=True)
class DCGANCheckpoint:
    """Where a DCGAN training keeps its ``last.pt`` and what it holds.

    Attributes:
        folder: the ``checkpoint_dir`` of :func:`~mrihisto_kedro.nn.dcgan.train_dcgan`.
        epoch: the epochs ``last.pt`` holds (0: none, training starts from epoch 0).
    """

    folder: Path
    epoch: int

    @property
    def resume(self) -> bool:
        """Whether there is a checkpoint to continue from."""
        return self.epoch > 0


def dcgan_checkpoint_description(
    slices: SequenceSlices, params: DCGANTrainingParams, processes: int
) -> dict[str, Any]:
    """What decides a DCGAN training's weights, epoch by epoch: its checkpoint's fingerprint.

    The DCGAN's config without ``epochs`` (epoch ``e`` of a longer training is epoch ``e`` of a
    shorter one: the orders are replayed from the seed), the split, the content of its slices
    (SHA-256 of the manifest and of the T2 pixels: a re-made tile set of other values is other
    data) and the number of processes (the global batch).
    """
    digest = hashlib.sha256(slices.manifest.to_csv(index=False).encode())
    t2 = np.ascontiguousarray(slices.t2)
    digest.update(f"{t2.shape}{t2.dtype.str}".encode())
    digest.update(t2.tobytes())
    model = {k: v for k, v in params.model.to_dict().items() if k != "epochs"}
    return {
        "model": model,
        "split": params.split,
        "slices": digest.hexdigest()[:16],
        "processes": processes,
    }


def open_dcgan_checkpoint(
    store: CheckpointStore, slices: SequenceSlices, params: DCGANTrainingParams
) -> DCGANCheckpoint:
    """The checkpoint folder of this training in ``store`` (module docstring).

    Opens the store's ``dcgan-<key>`` folder (removing those of other keys, and this one under
    ``resume: never``) and reads how many epochs its ``last.pt`` holds. A checkpoint that cannot
    be read, or holds more epochs than ``params.model.epochs``, is removed with a warning and
    the training starts from epoch 0. In a process group rank 0 decides, every rank gets the
    answer (call it inside the group).
    """
    described = dcgan_checkpoint_description(slices, params, world().size)
    opened = store.training(fingerprint(described), described, params.resume, kind=_KIND)
    folder = opened.folder / _SUBFOLDER
    epoch = from_main(lambda: _held_epochs(folder / CHECKPOINT_NAME, params.model.epochs))
    return DCGANCheckpoint(folder, epoch)


def _held_epochs(path: Path, epochs: int) -> int:
    """Epochs the DCGAN checkpoint at ``path`` holds; 0 (and the file removed) if it cannot
    be read or holds more than ``epochs``. Rank 0 only."""
    if not path.is_file():
        return 0
    try:
        held = int(load_dcgan_checkpoint(path)["epoch"])
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint is retrained, and said so
        logger.warning("DCGAN checkpoint %s cannot be read (%s): training from epoch 0", path, exc)
        path.unlink()
        return 0
    if held > epochs:
        logger.warning(
            "DCGAN checkpoint %s holds %d epochs, more than epochs=%d: training from epoch 0",
            path,
            held,
            epochs,
        )
        path.unlink()
        return 0
    if held == epochs:
        logger.info(
            "DCGAN: %s holds all %d epochs: the trained model is reused "
            "(resume: never trains again)",
            path,
            held,
        )
    else:
        logger.info("DCGAN: resuming from %s after epoch %d of %d", path, held, epochs)
    return held


def train_split_dcgan(
    slices: SequenceSlices,
    params: DCGANTrainingParams,
    callback: EpochCallback | None = None,
    checkpoints: CheckpointStore | None = None,
) -> DCGANTraining:
    """Train the DCGAN of ``params.model`` on the T2 slices of split ``params.split``.

    Data-parallel under ``torchrun`` or with ``params.processes`` > 1 (module docstring): the
    other local ranks run this function with the same slices, parameters and store (no
    callback).

    Args:
        slices: that split's slices (``split_slices(tileset, params.split)``).
        params: the split, the DCGAN options, the number of local processes and ``resume``.
        callback: ``callback(epoch, epoch_means, model)`` after each trained epoch (e.g.
            MLflow; rank 0 only).
        checkpoints: the experiment's checkpoint store: checkpoint every epoch and resume
            (module docstring); ``None``: no checkpoint.
    """
    spawn = 1 if env_world().distributed else params.processes  # torchrun decides under it
    with (
        local_processes(spawn, train_split_dcgan, (slices, params, None, checkpoints)),
        process_group(params.model.device),
    ):
        ckpt = None if checkpoints is None else open_dcgan_checkpoint(checkpoints, slices, params)
        model, history = train_sequence_dcgan(
            slices.t2,
            params.model,
            callback,
            checkpoint_dir=None if ckpt is None else ckpt.folder,
            resume=ckpt is not None and ckpt.resume,
        )
    return DCGANTraining(
        model=model,
        history=history,
        split=params.split,
        n_slices=len(slices),
        resumed_epoch=0 if ckpt is None else ckpt.epoch,
        checkpoint=None if ckpt is None else ckpt.folder,
    )


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
