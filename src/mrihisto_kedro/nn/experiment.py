"""One training run from a tile set: loaders, model, loop (pure PyTorch; no Kedro, no MLflow).

The training study (:mod:`mrihisto_kedro.tracking.training_study`) hands in parameters of these
types and a callback that logs to MLflow, and exports what :func:`run_training` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.data import TileSetTorchDataset, resolve_range
from mrihisto_kedro.nn.device import configure_cudnn, loader_options
from mrihisto_kedro.nn.distributed import distributed_sampler, world
from mrihisto_kedro.nn.models import (
    CycleGANConfig,
    Pix2PixConfig,
    TranslationModel,
    UNetRegressionConfig,
    build_model,
)
from mrihisto_kedro.nn.training import (
    EpochReport,
    TrainingResult,
    evaluate,
    gaussian_ssim,
    input_foreground,
    train,
)
from mrihisto_kedro.params import Params, Range, fail, parse_params


class ModelType(StrEnum):
    """Which translation model an experiment trains."""

    PIX2PIX = "pix2pix"
    CYCLEGAN = "cyclegan"
    UNET_REGRESSION = "unet_regression"


_CONFIGS: dict[ModelType, Any] = {
    ModelType.PIX2PIX: Pix2PixConfig,
    ModelType.CYCLEGAN: CycleGANConfig,
    ModelType.UNET_REGRESSION: UNetRegressionConfig,
}


@dataclass(frozen=True)
class DataParams(Params):
    """How tiles are fed to training.

    Attributes:
        load_size: training-time resize before the random crop (pix2pix jitter); ``None``: none.
        crop_size: training-time random crop; ``None``: none.
        flip: random horizontal flips in training.
        batch_size: tiles per step and process: in a data-parallel training of ``W``
            processes (:mod:`mrihisto_kedro.nn.distributed`) the global batch of one step is
            ``batch_size * W``.
        accumulate_steps: gradient accumulation: each step's ``batch_size`` tiles are
            computed as ``accumulate_steps`` micro-batches of ``batch_size / accumulate_steps``
            (which must divide evenly), with one optimiser step per batch: the batch of a
            large ``batch_size`` (or of large tiles) in the memory of one micro-batch. The
            updates are those of the whole batch with instance norm (to rounding); batch norm
            sees micro-batch statistics (:mod:`mrihisto_kedro.nn.models`, ``docs/cluster.md``).
        val_split: split used for validation; falls back to ``test`` when it has no tiles (the
            paper had only train and test slides).
        a_range, b_range: value ranges of A and B (``None``: from the dtype: uint8 0..255,
            uint16 0..65535, float 0..1).
        max_val_batches: validate on at most this many batches.
        num_workers: DataLoader worker processes (0: load in the training process); pinned
            memory on CUDA, workers kept between epochs
            (:func:`~mrihisto_kedro.nn.device.loader_options`).
    """

    load_size: Annotated[int, Range(ge=1)] | None = None
    crop_size: Annotated[int, Range(ge=1)] | None = None
    flip: bool = True
    batch_size: Annotated[int, Range(ge=1)] = 1
    accumulate_steps: Annotated[int, Range(ge=1)] = 1
    val_split: str = "val"
    a_range: tuple[float, float] | None = None
    b_range: tuple[float, float] | None = None
    max_val_batches: Annotated[int, Range(ge=1)] | None = None
    num_workers: Annotated[int, Range(ge=0)] = 0

    def validate(self) -> None:
        """``accumulate_steps`` divides ``batch_size`` (equal micro-batches)."""
        if self.batch_size % self.accumulate_steps:
            fail(
                "accumulate_steps",
                f"= {self.accumulate_steps} does not divide batch_size = {self.batch_size}: "
                "each step's batch is split into accumulate_steps equal micro-batches",
            )


def model_config(model_type: ModelType | str, values: Mapping[str, Any], key: str = "") -> Any:
    """The validated config dataclass of ``model_type`` from a parameter mapping.

    Raises:
        ParameterError: a bad value, its key below ``key`` (``"model.lr"``).
    """
    cls = _CONFIGS[ModelType(model_type)]
    return parse_params(cls, values, key)


def _validation_split(tileset: TileSet, wanted: str) -> str:
    splits = set(tileset.manifest["split"])
    if wanted in splits:
        return wanted
    if "test" in splits:
        return "test"
    raise ValueError(f"no '{wanted}' or 'test' tiles to validate on; splits are {sorted(splits)}")


def make_loaders(
    tileset: TileSet,
    data: DataParams,
    *,
    paired: bool,
    seed: int,
    device: torch.device | None = None,
) -> tuple[DataLoader, DataLoader, str]:
    """Training loader (augmented, shuffled) and validation loader (no augmentation, paired).

    In one process the training loader shuffles with a ``torch.Generator`` seeded with
    ``seed``. In a process group of ``W`` > 1 ranks it reads this rank's share of a permutation
    seeded with ``seed + epoch`` (:func:`~mrihisto_kedro.nn.distributed.distributed_sampler`),
    ``data.batch_size`` tiles per step; the last incomplete global batch is dropped when the
    share holds at least two batches (as in one process). The validation loader is rank 0's.
    ``data.num_workers`` worker processes load the batches, into pinned memory when ``device``
    is CUDA, and stay alive between epochs (:func:`~mrihisto_kedro.nn.device.loader_options`;
    the training set keeps its epoch in shared memory, so its ``set_epoch`` reaches the
    persistent workers and each epoch draws new augmentations).

    Returns:
        ``(train_loader, val_loader, val_split)``.
    """
    train_set = tileset.split("train")
    val_name = _validation_split(tileset, data.val_split)
    val_set = tileset.split(val_name)
    train_data = TileSetTorchDataset(
        train_set,
        paired=paired,
        train=True,
        load_size=data.load_size,
        crop_size=data.crop_size,
        flip=data.flip,
        seed=seed,
        a_range=data.a_range,
        b_range=data.b_range,
    )
    val_data = TileSetTorchDataset(
        val_set, paired=True, train=False, a_range=data.a_range, b_range=data.b_range
    )
    target = torch.device("cpu") if device is None else device
    feeding = loader_options(target, data.num_workers)
    here = world()
    if here.distributed:
        sampler = distributed_sampler(train_data, seed, shuffle=True)
        train_loader = DataLoader(
            train_data,
            batch_size=data.batch_size,
            sampler=sampler,
            drop_last=len(sampler) >= 2 * data.batch_size,
            **feeding,
        )
    else:
        train_loader = DataLoader(
            train_data,
            batch_size=data.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            drop_last=len(train_data) >= 2 * data.batch_size,
            **feeding,
        )
    val_loader = DataLoader(
        val_data,
        batch_size=max(1, data.batch_size),
        shuffle=False,
        **loader_options(target, data.num_workers),
    )
    return train_loader, val_loader, val_name


def run_training(
    tileset: TileSet,
    model_type: ModelType | str,
    config_values: Mapping[str, Any],
    data: DataParams,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callable[[EpochReport], None] | None = None,
    sample_every: int = 1,
    on_start: Callable[[TranslationModel], None] | None = None,
) -> tuple[TranslationModel, TrainingResult, dict[str, Any]]:
    """Train one model on a tile set and measure it on the validation split.

    ``on_start`` is called with the built model before its first step (e.g. to log
    :meth:`~mrihisto_kedro.nn.models.TranslationModel.numerics`).

    In a process group (:mod:`mrihisto_kedro.nn.distributed`) every rank calls this with the
    same arguments and trains its share of the tiles; rank 0 alone measures the baselines,
    validates and writes the checkpoints, and ``on_start`` and ``callback`` are called on rank
    0 only. Ranks > 0 return ``info`` with the counts only.

    Returns:
        ``(model, result, info)``; ``info`` has ``val_split``, ``n_train``, ``n_val``,
        ``untrained`` (validation metrics of the freshly initialised generator) and
        ``mean_colour`` (metrics of predicting the mean training B colour everywhere).
    """
    model_type = ModelType(model_type)
    config = model_config(model_type, config_values)
    paired = model_type is not ModelType.CYCLEGAN
    model = build_model(config)
    train_loader, val_loader, val_name = make_loaders(
        tileset, data, paired=paired, seed=config.seed, device=model.device
    )
    configure_cudnn(model.device, fixed_input_size=data.crop_size is not None)
    main = world().main
    if on_start is not None and main:
        on_start(model)
    untrained = evaluate(model, val_loader, max_batches=data.max_val_batches)[0] if main else {}
    result = train(
        model,
        train_loader,
        val_loader=val_loader,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        callback=callback,
        sample_every=sample_every,
        max_val_batches=data.max_val_batches,
        accumulate=data.accumulate_steps,
    )
    info: dict[str, Any] = {
        "val_split": val_name,
        "n_train": len(cast(Sized, train_loader.dataset)),
        "n_val": len(cast(Sized, val_loader.dataset)),
    }
    if main:
        info["untrained"] = untrained
        info["mean_colour"] = mean_colour_baseline(tileset, val_name, data.b_range, val_loader)
        info["input"] = input_baselines(val_loader)
    return model, result, info


def mean_colour_baseline(
    tileset: TileSet,
    val_split: str,
    b_range: tuple[float, float] | None = None,
    val_loader: DataLoader | None = None,
) -> dict[str, float]:
    """Metrics of predicting the mean training B value per channel everywhere.

    The trivial baseline of histology synthesis that a trained generator must beat.

    Returns:
        ``val_L1_01`` (in [0, 1] units) and ``val_L1`` (in [-1, 1] units) over the whole
        validation tiles; with ``val_loader``, also ``val_SSIM`` and ``val_SSIM_fg`` (SSIM
        inside the input's foreground) on the images the model is validated on, in the
        units of :func:`mrihisto_kedro.nn.training.evaluate`.
    """
    train_b = tileset.split("train").b
    val_b = tileset.split(val_split).b
    if train_b is None or val_b is None:
        raise ValueError("the mean-colour baseline needs a paired tile set")
    lo, hi = resolve_range(b_range, train_b.dtype)
    mean = np.asarray(train_b, dtype=np.float64).reshape(-1, train_b.shape[-1]).mean(axis=0)
    val = np.asarray(val_b, dtype=np.float64)
    l1 = float(np.abs(val - mean).mean() / (hi - lo))
    out = {"val_L1_01": l1, "val_L1": 2.0 * l1}
    if val_loader is not None:
        out.update(_constant_ssim(val_loader, (mean - lo) / (hi - lo)))
    return out


@torch.no_grad()
def _constant_ssim(loader: DataLoader, colour01: np.ndarray) -> dict[str, float]:
    """Whole-image and foreground SSIM of the constant image ``colour01`` (C,) against B."""
    colour = torch.as_tensor(colour01, dtype=torch.float64).view(1, -1, 1, 1)
    ssim_sum = fg_sum = 0.0
    n_images = n_fg = 0
    for batch in loader:
        a, b = batch["A"].double(), batch["B"].double()
        b01 = ((b + 1) / 2).clamp(0, 1)
        pred = colour.expand_as(b01).contiguous()
        ssim_sum += float(gaussian_ssim(pred, b01, data_range=1.0).sum())
        fg = gaussian_ssim(pred, b01, data_range=1.0, mask=input_foreground(a))
        fg_sum += float(fg.nansum())
        n_fg += int((~fg.isnan()).sum())
        n_images += b.shape[0]
    return {
        "val_SSIM": ssim_sum / n_images if n_images else float("nan"),
        "val_SSIM_fg": fg_sum / n_fg if n_fg else float("nan"),
    }


@torch.no_grad()
def input_baselines(loader: DataLoader) -> dict[str, dict[str, float]]:
    """Validation metrics of predicting B as A itself and as the intensity-inverted A.

    The trivial baselines of contrast translation (T1 -> T2): a model must beat copying its
    input and the inverted input (T2 is roughly an inverted T1). Only defined when A and B have
    the same number of channels; else empty.

    Returns:
        ``{"identity": {"val_L1", "val_SSIM", "val_SSIM_fg"}, "inverted": {...}}`` in the units of
        :func:`mrihisto_kedro.nn.training.evaluate` (L1 in [-1, 1] units, SSIM on [0, 1]).
    """
    sums = {"identity": [0.0, 0.0, 0.0], "inverted": [0.0, 0.0, 0.0]}
    n_values = n_images = n_fg = 0
    for batch in loader:
        a, b = batch["A"].double(), batch["B"].double()
        if a.shape[1] != b.shape[1]:
            return {}
        foreground = input_foreground(a)
        b01 = ((b + 1) / 2).clamp(0, 1)
        fg_counted = None
        for name, pred in (("identity", a), ("inverted", -a)):
            sums[name][0] += float((pred - b).abs().sum())
            p01 = ((pred + 1) / 2).clamp(0, 1)
            sums[name][1] += float(gaussian_ssim(p01, b01, data_range=1.0).sum())
            fg = gaussian_ssim(p01, b01, data_range=1.0, mask=foreground)
            sums[name][2] += float(fg.nansum())
            fg_counted = int((~fg.isnan()).sum())
        n_values += b.numel()
        n_images += b.shape[0]
        n_fg += fg_counted or 0
    return {
        name: {
            "val_L1": l1_sum / n_values,
            "val_SSIM": ssim_sum / n_images,
            "val_SSIM_fg": fg_sum / n_fg if n_fg else float("nan"),
        }
        for name, (l1_sum, ssim_sum, fg_sum) in sums.items()
    }
