"""Training loop with validation, sample images, atomic full checkpoints and exact resume.

:func:`train` runs epochs of ``model.train_step`` over a ``DataLoader`` of
``{"A", "B"}`` batches (:class:`~mrihisto_kedro.nn.data.TileSetTorchDataset`), and after each
epoch:

1. records the mean of every loss over the epoch's iterations (each batch counts once) and the
   learning rates used during the epoch, then steps the lr schedulers;
2. validates (when a ``val_loader`` is given, see :func:`evaluate`): ``val_L1`` = mean absolute
   error in the models' ``[-1, 1]`` units, ``val_L1_01`` = the same in ``[0, 1]`` image units
   (exactly half of ``val_L1``), ``val_SSIM`` = mean SSIM of the ``[0, 1]`` images (output
   clipped to ``[0, 1]``; Wang et al. Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
   ``data_range`` 1, channels averaged; equal to scikit-image's ``structural_similarity`` with
   ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1``);
3. every ``sample_every`` epochs (and at the last), keeps a :class:`SampleBatch` (A | real B |
   generated B) from the first validation batch (or the epoch's last training batch);
4. writes a full checkpoint ``<checkpoint_dir>/last.pt`` atomically (temporary file in the same
   folder, fsync, ``os.replace``): model state (all networks, optimisers, schedulers, image
   pools, grad scaler, config), the epoch, the history, and the RNG states (torch CPU and CUDA,
   numpy's global generator, Python's ``random``, the data loaders' ``torch.Generator`` and
   their samplers', the datasets' ``state_dict``). It loads with ``torch.load(weights_only=True)``;
5. hands an :class:`EpochReport` to ``callback`` (the Kedro node logs it to MLflow). An exception
   raised by the callback stops training after the checkpoint of that epoch was written.

``resume=True`` restores the last checkpoint and continues; with the same config, data and
loaders the result is identical to an uninterrupted run (bit for bit on CPU with
``torch.use_deterministic_algorithms(True)``). A fresh run seeds torch, numpy and ``random``
with ``seed`` (default ``model.config.seed``).

Data-parallel (inside a ``torch.distributed`` process group of ``W`` > 1 ranks,
:mod:`mrihisto_kedro.nn.distributed`): every rank calls :func:`train` with its share of the
tiles (a ``DistributedSampler``); the networks are wrapped in ``DistributedDataParallel`` for the
training steps, so gradients are averaged over the ranks. The epoch's losses are averaged over
the ranks. Rank 0 alone validates, keeps samples, writes the checkpoint (with every rank's RNG
states, gathered) and calls ``callback``; the other ranks go on to the next epoch and wait for
it in the first step. Rank ``r`` seeds its global RNGs with ``seed + r`` (dropout draws differ
between ranks); a resume restores each rank's own RNG states when the world size is the one
the checkpoint was written with (else rank 0's, re-seeded per rank). The returned history is
rank 0's on every rank.

:func:`export_generator` / :func:`load_generator`: the A -> B generator as ``{"state_dict",
"architecture", ...}`` (plain types, ``torch.load(weights_only=True)``) and back to a module in
evaluation mode.

Pure PyTorch + numpy (no Kedro, no MLflow).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mrihisto_kedro.durability.atomic import atomic_path
from mrihisto_kedro.durability.disk_space import require_free_space
from mrihisto_kedro.nn.distributed import (
    DistributedNets,
    all_reduce_mean,
    from_main,
    gather_to_main,
    world,
)
from mrihisto_kedro.nn.generators import build_generator
from mrihisto_kedro.nn.models import TranslationModel
from mrihisto_kedro.nn.safe_load import load_versioned, load_weights_only

__all__ = [
    "CHECKPOINT_NAME",
    "EpochReport",
    "SampleBatch",
    "TrainingResult",
    "evaluate",
    "export_generator",
    "gaussian_ssim",
    "generator_digest",
    "input_foreground",
    "load_checkpoint",
    "load_generator",
    "save_checkpoint",
    "seed_everything",
    "train",
]

log = logging.getLogger(__name__)

VALIDATION_METRICS = ("val_L1", "val_L1_01", "val_SSIM", "val_SSIM_fg")
"""The metrics :func:`evaluate` reports (and a search may select on)."""

CHECKPOINT_NAME = "last.pt"
"""File name of the rolling full checkpoint inside ``checkpoint_dir``."""

_CHECKPOINT_FORMAT = "mrihisto-checkpoint"
_GENERATOR_FORMAT = "mrihisto-generator"
_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------
# SSIM


def _gaussian_kernel(sigma: float, truncate: float, dtype: torch.dtype) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate * sigma + 0.5)`` (scipy's kernel)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    kernel = torch.exp(-0.5 / sigma**2 * x**2)
    return kernel / kernel.sum()


def gaussian_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-image SSIM with a Gaussian window (Wang et al. 2004), computed in float64.

    Matches ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=sigma,
    use_sample_covariance=False, data_range=data_range, channel_axis=...)``: local statistics
    from an 11-tap (for sigma 1.5, truncation 3.5) separable Gaussian, population covariances,
    the SSIM map averaged over the pixels whose window lies inside the image, then over channels.

    Args:
        x: ``(N, C, H, W)`` images (H, W at least the window size, 11 for sigma 1.5).
        y: same shape.
        data_range: the images' dynamic range (1 for ``[0, 1]``).
        sigma: Gaussian standard deviation.
        k1: stabilising constant of the luminance term.
        k2: stabilising constant of the contrast-structure term.
        mask: optional ``(N, 1, H, W)`` boolean region (e.g. the head in an MRI slice): the SSIM
            map is averaged only over window centres inside it (and inside the image's valid
            region); an image whose mask has no valid centre gets NaN.

    Returns:
        ``(N,)`` float64 SSIM per image.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"expected two (N, C, H, W) tensors of one shape, got {x.shape}, {y.shape}"
        )
    kernel = _gaussian_kernel(sigma, 3.5, torch.float64).to(x.device)
    win = kernel.numel()
    n, c, h, w = x.shape
    if h < win or w < win:
        raise ValueError(f"images of {h}x{w} are smaller than the {win}x{win} SSIM window")
    x = x.detach().to(torch.float64).reshape(n * c, 1, h, w)
    y = y.detach().to(torch.float64).reshape(n * c, 1, h, w)
    kh, kw = kernel.view(1, 1, win, 1), kernel.view(1, 1, 1, win)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh), kw)

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    if mask is None:
        return s.reshape(n, c, -1).mean(dim=2).mean(dim=1)
    if mask.shape != (n, 1, h, w):
        raise ValueError(f"mask must have shape {(n, 1, h, w)}, got {tuple(mask.shape)}")
    r = win // 2
    m = mask[:, :, r : h - r, r : w - r].to(device=s.device, dtype=torch.float64)
    m = m.expand(n, c, *m.shape[2:]).reshape(n * c, 1, *m.shape[2:])
    counts = m.reshape(n, c, -1).sum(dim=2)
    per_channel = (s * m).reshape(n, c, -1).sum(dim=2) / counts  # NaN where no centre
    return per_channel.mean(dim=1)


def input_foreground(a: torch.Tensor, level: float = 0.02) -> torch.Tensor:
    """Pixels where an input image has signal: any channel above ``level`` of its range.

    Args:
        a: ``(N, C, H, W)`` inputs in [-1, 1] (background at -1, as MRI outside the head).
        level: threshold in [0, 1] image units.

    Returns:
        ``(N, 1, H, W)`` boolean mask.
    """
    return ((a + 1.0) * 0.5 > level).any(dim=1, keepdim=True)


# ----------------------------------------------------------------------------------------------
# reports


def _display(x: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` in [-1, 1] -> ``(N, H, W, 3)`` float32 in [0, 1] for viewing.

    One channel is shown as grey, three as RGB; other counts show their first channel as grey.
    """
    array = ((x.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * 0.5).numpy()
    if array.shape[1] != 3:
        array = np.repeat(array[:, :1], 3, axis=1)
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1))


@dataclass(frozen=True)
class SampleBatch:
    """A few images for eyeballing: inputs, targets and generated outputs.

    Attributes:
        a: inputs ``(n, Ca, H, W)`` in ``[-1, 1]``, CPU float32.
        real_b: targets ``(n, Cb, H, W)`` in ``[-1, 1]``.
        fake_b: generated ``(n, Cb, H, W)`` in ``[-1, 1]``.
        index: dataset indices of the tiles ``(n,)`` (or ``None``).
        source: ``"val"`` or ``"train"``.
    """

    a: torch.Tensor
    real_b: torch.Tensor
    fake_b: torch.Tensor
    index: torch.Tensor | None
    source: str

    def grid(self) -> np.ndarray:
        """One row per sample ``[A | real B | fake B]``, float32 ``(n * H, 3 * W, 3)`` in [0, 1].

        Panels of different sizes are zero-padded (black) to the largest height and width.
        Convert with ``(grid * 255).round().astype(np.uint8)`` for an 8-bit PNG.
        """
        panels = [_display(t) for t in (self.a, self.real_b, self.fake_b)]
        height = max(p.shape[1] for p in panels)
        width = max(p.shape[2] for p in panels)
        padded = [
            np.pad(p, ((0, 0), (0, height - p.shape[1]), (0, width - p.shape[2]), (0, 0)))
            for p in panels
        ]
        rows = np.concatenate(padded, axis=2)  # (n, H, 3W, 3)
        return np.ascontiguousarray(rows.reshape(-1, rows.shape[2], 3))


@dataclass(frozen=True)
class EpochReport:
    """What :func:`train` tells its callback after every epoch.

    Attributes:
        epoch: number of epochs completed (1-based).
        epochs: total epochs of the run.
        losses: mean of each training loss over the epoch's iterations.
        metrics: validation metrics (``val_L1`` in [-1, 1] units, ``val_L1_01`` in [0, 1]
            units, ``val_SSIM``), empty without a validation loader.
        learning_rates: ``{"lr_<optimiser>": lr}`` used during this epoch.
        seconds: wall time of the epoch (training, validation, checkpoint).
        sample: images of this epoch every ``sample_every`` epochs, else ``None``.
        checkpoint: path of the checkpoint written for this epoch, or ``None``.
    """

    epoch: int
    epochs: int
    losses: dict[str, float]
    metrics: dict[str, float]
    learning_rates: dict[str, float]
    seconds: float
    sample: SampleBatch | None = None
    checkpoint: Path | None = None

    def flat(self) -> dict[str, float]:
        """Losses, metrics and learning rates in one ``{name: value}`` (for metric logging)."""
        return {**self.losses, **self.metrics, **self.learning_rates}


@dataclass
class TrainingResult:
    """Outcome of :func:`train`.

    Attributes:
        history: one dict per completed epoch (including epochs from before a resume):
            ``epoch``, mean losses, validation metrics, learning rates, ``seconds``.
        epochs_completed: epochs the model has been trained for.
        resumed_from: epoch of the checkpoint the run resumed from (``None``: fresh run).
        checkpoint: path of the last checkpoint written or loaded, or ``None``.
        seconds: wall time of this call.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    epochs_completed: int = 0
    resumed_from: int | None = None
    checkpoint: Path | None = None
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's record (empty before any epoch)."""
        return dict(self.history[-1]) if self.history else {}


# ----------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(
    model: TranslationModel,
    loader: Iterable[Mapping[str, Any]],
    *,
    max_batches: int | None = None,
    n_samples: int = 0,
) -> tuple[dict[str, float], SampleBatch | None]:
    """Validation metrics of ``model.generate`` (evaluation mode) against B.

    Args:
        model: any :class:`TranslationModel`.
        loader: batches ``{"A": (N, Ca, H, W), "B": (N, Cb, H, W)}`` in [-1, 1] (use a
            dataset with ``train=False``: no augmentation).
        max_batches: stop after this many batches (``None``: all).
        n_samples: keep up to this many images of the first batch as a :class:`SampleBatch`.

    Returns:
        ``({"val_L1", "val_L1_01", "val_SSIM"}, sample or None)``. ``val_L1``: mean absolute
        error over all pixels and channels in [-1, 1] units; ``val_L1_01``: in [0, 1] image
        units (= ``val_L1 / 2``); ``val_SSIM``: mean over images of :func:`gaussian_ssim` of
        ``(x + 1) / 2`` clipped to [0, 1], data range 1; ``val_SSIM_fg``: the same SSIM map
        averaged only where the input has signal (:func:`input_foreground`; the head of an MRI
        slice, the tissue of an aligned MRI), because SSIM's luminance term at an all-dark
        background (``C1 = 1e-4``) turns an output offset of 1 % of the range into an SSIM of
        about 0.3 there, so whole-image SSIM of MRI slices is dominated by the background.
    """
    abs_sum = 0.0
    n_values = 0
    ssim_sum = 0.0
    fg_sum = 0.0
    n_fg = 0
    n_images = 0
    sample: SampleBatch | None = None
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        a, real_b = batch["A"], batch["B"]
        fake_b = model.generate(a).cpu()  # (N, Cb, H, W) in [-1, 1]
        real_b = real_b.to("cpu", torch.float32)
        abs_sum += float((fake_b.double() - real_b.double()).abs().sum())
        n_values += real_b.numel()
        fake01 = ((fake_b + 1.0) * 0.5).clamp(0.0, 1.0)
        real01 = ((real_b + 1.0) * 0.5).clamp(0.0, 1.0)
        ssim_sum += float(gaussian_ssim(fake01, real01, data_range=1.0).sum())
        fg = gaussian_ssim(
            fake01, real01, data_range=1.0, mask=input_foreground(a.to("cpu", torch.float32))
        )
        fg_sum += float(fg.nansum())
        n_fg += int((~fg.isnan()).sum())
        n_images += real_b.shape[0]
        if sample is None and n_samples > 0:
            index = batch.get("index")
            sample = SampleBatch(
                a=a[:n_samples].detach().to("cpu", torch.float32),
                real_b=real_b[:n_samples],
                fake_b=fake_b[:n_samples],
                index=index[:n_samples] if isinstance(index, torch.Tensor) else None,
                source="val",
            )
    if n_images == 0:
        raise ValueError("the validation loader yielded no batches")
    l1 = abs_sum / n_values
    metrics = {
        "val_L1": l1,
        "val_L1_01": l1 / 2.0,
        "val_SSIM": ssim_sum / n_images,
        "val_SSIM_fg": fg_sum / n_fg if n_fg else float("nan"),
    }
    return metrics, sample


# ----------------------------------------------------------------------------------------------
# RNG and checkpoints


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global generator other code draws from
    torch.manual_seed(seed)


def _loader_generators(loader: Any) -> dict[str, torch.Generator]:
    """The ``torch.Generator`` objects a data loader draws from (loader's own, sampler's)."""
    found: dict[str, torch.Generator] = {}
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator):
        found["loader"] = gen
    sampler = getattr(loader, "sampler", None)
    sgen = getattr(sampler, "generator", None)
    if isinstance(sgen, torch.Generator) and sgen is not gen:
        found["sampler"] = sgen
    return found


def _loader_state(loader: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        name: gen.get_state() for name, gen in _loader_generators(loader).items()
    }
    dataset = getattr(loader, "dataset", None)
    if dataset is not None and callable(getattr(dataset, "state_dict", None)):
        state["dataset"] = dataset.state_dict()
    return state


def _restore_loader(loader: Any, state: Mapping[str, Any]) -> None:
    for name, gen in _loader_generators(loader).items():
        if name in state:
            gen.set_state(state[name])
    load_state = getattr(getattr(loader, "dataset", None), "load_state_dict", None)
    if "dataset" in state and callable(load_state):
        load_state(state["dataset"])


def _rng_state() -> dict[str, Any]:
    """Global RNG states as tensors, numbers and tuples (``weights_only``-loadable)."""
    _, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }


def _rank_rng(payload: Mapping[str, Any], rank: int, size: int) -> Mapping[str, Any]:
    """The RNG states rank ``rank`` of ``size`` resumes with: its own when the checkpoint was
    written by a world of that size, else rank 0's."""
    ranks = payload.get("rng_ranks")
    if ranks and len(ranks) == size:
        return ranks[rank]
    return payload["rng"]


def _restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npst = state["numpy"]
    key = npst["key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, npst["pos"], npst["has_gauss"], npst["gauss"]))  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def checkpoint_bytes(model: TranslationModel) -> int:
    """Bytes a checkpoint of ``model`` takes at most: its weights and Adam's two moments each.

    Before the first step Adam holds no moments, so they are counted as twice the parameters;
    the 1 MiB covers the history, random states and pickle framing.
    """
    state = model.state_dict()
    weights = sum(
        p.numel() * p.element_size() for net in model.nets.values() for p in net.parameters()
    )
    return _tensor_bytes(state) + 2 * weights + 2**20


def save_checkpoint(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``payload`` with ``torch.save`` atomically (``durability.atomic.atomic_path``).

    A crash while writing leaves the previous file at ``path`` intact (and, after a kill, at
    worst a ``.<stem>.tmp-<12 hex>.pt`` file beside it, which the next run's cleaner removes).

    Returns:
        ``path`` as a :class:`Path`.
    """
    dest = Path(path)
    with atomic_path(dest) as tmp, tmp.open("wb") as handle:
        torch.save(dict(payload), handle)
    return dest


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` (``weights_only=True``, tensors on CPU).

    Raises:
        ValueError: the file is not a checkpoint of this format.
    """
    return load_versioned(path, "checkpoint", _CHECKPOINT_FORMAT, _FORMAT_VERSION)


# ----------------------------------------------------------------------------------------------
# training loop


def _set_epoch(loader: Any, epoch: int) -> None:
    for obj in (getattr(loader, "dataset", None), getattr(loader, "sampler", None)):
        set_epoch = getattr(obj, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


def _check_loader(loader: Any, name: str) -> None:
    if (
        isinstance(loader, DataLoader)
        and loader.num_workers > 0
        and loader.persistent_workers
        and callable(getattr(loader.dataset, "set_epoch", None))
        and not getattr(loader.dataset, "epoch_shared", False)
    ):
        warnings.warn(
            f"{name} has persistent_workers=True: the workers keep their copy of the dataset, "
            "so set_epoch does not reach them and augmentation repeats every epoch; use "
            "persistent_workers=False (or keep the epoch in shared memory, as "
            "TileSetTorchDataset does, and set its epoch_shared = True)",
            stacklevel=3,
        )


def train(
    model: TranslationModel,
    train_loader: Iterable[Mapping[str, Any]],
    *,
    epochs: int | None = None,
    val_loader: Iterable[Mapping[str, Any]] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    callback: Callable[[EpochReport], None] | None = None,
    sample_every: int = 1,
    n_samples: int = 4,
    max_val_batches: int | None = None,
    seed: int | None = None,
    accumulate: int = 1,
) -> TrainingResult:
    """Train ``model`` for ``epochs`` epochs (see the module docstring for what each epoch does).

    Args:
        model: a :class:`~mrihisto_kedro.nn.models.TranslationModel`.
        train_loader: batches ``{"A": (N, Ca, H, W), "B": (N, Cb, H, W), ...}`` in [-1, 1];
            usually a ``DataLoader`` over a ``TileSetTorchDataset`` (its ``set_epoch`` is
            called before every epoch).
        epochs: total number of epochs (counting those before a resume); default
            ``config.n_epochs + config.n_epochs_decay``.
        val_loader: validation batches (dataset with ``train=False``), or ``None``.
        checkpoint_dir: folder of the rolling checkpoint ``last.pt`` (``None``: none written).
        resume: continue from ``checkpoint_dir/last.pt`` if it exists (else start fresh).
        callback: called with an :class:`EpochReport` after every epoch's checkpoint.
        sample_every: keep a :class:`SampleBatch` every this many epochs and at the last
            (0: never).
        n_samples: images per sample batch.
        max_val_batches: validate on at most this many batches.
        seed: seed of a fresh run's global RNGs (default ``model.config.seed``).
        accumulate: micro-batches per step (gradient accumulation,
            ``model.train_step(batch, accumulate=...)``; 1: one pass per batch).

    Returns:
        A :class:`TrainingResult`.

    Raises:
        ValueError: bad arguments, a checkpoint of another model/config, an empty loader.
    """
    started = time.perf_counter()
    config = model.config
    total = epochs if epochs is not None else config.n_epochs + config.n_epochs_decay
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(sample_every, bool) or not isinstance(sample_every, int) or sample_every < 0:
        raise ValueError(f"sample_every must be an integer >= 0, got {sample_every!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise ValueError(f"accumulate must be an integer >= 1, got {accumulate!r}")
    _check_loader(train_loader, "train_loader")
    here = world()
    ckpt_path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_NAME
    result = TrainingResult()
    history: list[dict[str, float]] = []
    start = 0
    if resume and ckpt_path is not None and ckpt_path.is_file():
        payload = load_checkpoint(ckpt_path)
        model.load_state_dict(payload["model"])
        history = [dict(record) for record in payload["history"]]
        start = int(payload["epoch"])
        _restore_rng(_rank_rng(payload, here.rank, here.size))
        if here.rank and len(payload.get("rng_ranks") or []) != here.size:
            seed_everything((config.seed if seed is None else seed) + here.rank + 7919 * start)
        _restore_loader(train_loader, payload["loaders"]["train"])
        if val_loader is not None and payload["loaders"].get("val") is not None:
            _restore_loader(val_loader, payload["loaders"]["val"])
        result.resumed_from = start
        result.checkpoint = ckpt_path
        log.info("resumed from %s after epoch %d of %d", ckpt_path, start, total)
        if start > total:
            raise ValueError(f"the checkpoint has {start} epochs, more than epochs={total}")
    else:
        if resume:
            log.info("resume=True but %s does not exist: starting a fresh run", ckpt_path)
        seed_everything((config.seed if seed is None else seed) + here.rank)

    ddp = DistributedNets(model)  # a no-op in one process
    if ckpt_path is not None and here.main:  # a full disk stops the training before its first epoch
        require_free_space(
            ckpt_path.parent, checkpoint_bytes(model), ckpt_path, "a checkpoint beside the last"
        )
    for epoch in range(start, total):
        epoch_started = time.perf_counter()
        _set_epoch(train_loader, epoch)
        model.train()
        sums: dict[str, float] = {}
        n_batches = 0
        last_batch: Mapping[str, Any] | None = None
        with ddp.training():
            for batch in train_loader:
                for name, value in model.train_step(batch, accumulate=accumulate).items():
                    sums[name] = sums.get(name, 0.0) + value
                n_batches += 1
                last_batch = batch
        if n_batches == 0 or last_batch is None:
            raise ValueError("train_loader yielded no batches")
        losses = all_reduce_mean({name: value / n_batches for name, value in sums.items()})
        learning_rates = model.learning_rates()
        model.step_schedulers()
        rng_ranks = gather_to_main(_rng_state()) if here.distributed else None
        if not here.main:  # rank 0 validates, writes and reports; the others train on
            history.append({"epoch": float(epoch + 1), **losses, **learning_rates})
            result.checkpoint = ckpt_path
            continue

        want_sample = sample_every > 0 and ((epoch + 1) % sample_every == 0 or epoch + 1 == total)
        metrics: dict[str, float] = {}
        sample: SampleBatch | None = None
        if val_loader is not None:
            _set_epoch(val_loader, epoch)
            metrics, sample = evaluate(
                model,
                val_loader,
                max_batches=max_val_batches,
                n_samples=n_samples if want_sample else 0,
            )
        if want_sample and sample is None:
            a = last_batch["A"][:n_samples]
            index = last_batch.get("index")
            sample = SampleBatch(
                a=a.detach().to("cpu", torch.float32),
                real_b=last_batch["B"][:n_samples].detach().to("cpu", torch.float32),
                fake_b=model.generate(a).cpu(),
                index=index[:n_samples] if isinstance(index, torch.Tensor) else None,
                source="train",
            )
        model.train()

        seconds = time.perf_counter() - epoch_started
        history.append(
            {"epoch": float(epoch + 1), **losses, **metrics, **learning_rates, "seconds": seconds}
        )
        if ckpt_path is not None:
            payload = {
                "format": _CHECKPOINT_FORMAT,
                "format_version": _FORMAT_VERSION,
                "epoch": epoch + 1,
                "epochs": total,
                "model": model.state_dict(),
                "history": history,
                "rng": _rng_state(),
                **({"rng_ranks": rng_ranks} if rng_ranks is not None else {}),
                "loaders": {
                    "train": _loader_state(train_loader),
                    "val": None if val_loader is None else _loader_state(val_loader),
                },
            }
            save_checkpoint(payload, ckpt_path)
            result.checkpoint = ckpt_path
        result.history = history
        result.epochs_completed = epoch + 1
        if callback is not None:
            callback(
                EpochReport(
                    epoch=epoch + 1,
                    epochs=total,
                    losses=losses,
                    metrics=metrics,
                    learning_rates=learning_rates,
                    seconds=seconds,
                    sample=sample,
                    checkpoint=ckpt_path,
                )
            )

    if here.distributed:
        history = from_main(lambda: history)
    result.history = history
    result.epochs_completed = max(start, len(history))
    result.seconds = time.perf_counter() - started
    return result


# ----------------------------------------------------------------------------------------------
# generator export


def export_generator(
    model: TranslationModel, input_spec: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The A -> B generator as plain data, loadable with ``torch.load(weights_only=True)``.

    Args:
        model: the trained model.
        input_spec: what the generator was trained on (``InputSpec.to_dict()`` of
            :mod:`mrihisto_kedro.imaging.input_spec`: pixel size, normalisation, plane, padding),
            stored as ``input_spec`` so inference needs only the model and the MRI.

    Returns:
        ``{"format", "format_version", "model", "architecture", "state_dict", "input_range",
        "output_range", "config", "input_spec"}`` (``input_spec`` ``None`` when unknown):
        ``architecture`` holds the :func:`build_generator` keyword arguments (``kind``,
        ``in_channels``, ``out_channels``, ``ngf``, ``norm``,
        ``use_dropout``, ``num_downs``, ``final_activation``); ``state_dict`` holds contiguous
        CPU tensors; inputs are expected in ``input_range`` ``[-1, 1]`` and the raw outputs
        lie in ``output_range`` (``[-1, 1]`` tanh, ``[0, 1]`` for the sigmoid baseline).
    """
    state = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in model.generator.state_dict().items()
    }
    return {
        "format": _GENERATOR_FORMAT,
        "format_version": _FORMAT_VERSION,
        "model": type(model).__name__,
        "architecture": dict(model.generator_spec),
        "state_dict": state,
        "input_range": [-1.0, 1.0],
        "output_range": [float(v) for v in model.output_range],
        "config": model.config.to_dict(),
        "input_spec": dict(input_spec) if input_spec is not None else None,
    }


def generator_digest(payload: Mapping[str, Any]) -> str:
    """A fingerprint of an exported generator: the weights and architecture it computes with.

    SHA-256 (first 16 hex digits) over the ``architecture`` (sorted JSON) and every
    ``state_dict`` tensor's name, dtype, shape and bytes, in name order; equal for the same
    network whatever file or process holds it, different after any retraining.
    """
    digest = hashlib.sha256(json.dumps(payload.get("architecture"), sort_keys=True).encode())
    for name in sorted(payload["state_dict"]):
        tensor = payload["state_dict"][name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_generator(
    payload: Mapping[str, Any] | str | os.PathLike[str],
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild an exported generator, in evaluation mode, on ``device``.

    Args:
        payload: the dict of :func:`export_generator`, or a file holding it (read with
            ``torch.load(weights_only=True)``).
        device: where to put the network.

    Returns:
        The generator ``(N, in_channels, H, W) -> (N, out_channels, H, W)`` with
        ``training == False`` (call ``.train()`` explicitly to fine-tune).
    """
    if not isinstance(payload, Mapping):
        payload = load_weights_only(payload, "generator file")
    if not isinstance(payload, Mapping) or payload.get("format") != _GENERATOR_FORMAT:
        raise ValueError(f"not an exported generator ({_GENERATOR_FORMAT})")
    if payload.get("format_version") != _FORMAT_VERSION:
        raise ValueError(f"generator format version {payload.get('format_version')!r} unsupported")
    architecture = dict(payload["architecture"])
    _check_generator_size(architecture, payload["state_dict"])
    net = build_generator(**architecture)
    net.load_state_dict(payload["state_dict"])
    return net.to(torch.device(device)).eval()


MAX_GENERATOR_PARAMETERS = 1_000_000_000
"""Largest generator :func:`load_generator` builds (unet_256 3 -> 3 has 54.4 M parameters)."""


def _check_generator_size(architecture: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    """Refuse an architecture larger than the limit or than the weights the file holds.

    The network is first built on PyTorch's ``meta`` device (shapes, no memory): a file whose
    architecture said ``ngf=4096`` made the loader allocate 68 GB before any check (issue 15).
    """
    with torch.device("meta"):
        shapes = build_generator(**architecture).state_dict()
    needed = sum(t.numel() for t in shapes.values())
    held = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))
    if needed > MAX_GENERATOR_PARAMETERS:
        raise ValueError(
            f"the generator's architecture {dict(architecture)} has {needed / 1e6:.0f} M "
            f"parameters, above the {MAX_GENERATOR_PARAMETERS / 1e6:.0f} M this loader builds"
        )
    if needed != held:
        raise ValueError(
            f"the generator's architecture needs {needed} parameters but its state_dict holds "
            f"{held}: the file's architecture and weights do not belong together"
        )
