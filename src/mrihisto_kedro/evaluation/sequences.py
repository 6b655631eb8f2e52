"""Missing MRI sequences (seed 002): DCGAN, pix2pix and CycleGAN T2 slices, style refinement, table.

Library code for the ``missing_sequences`` pipeline (no Kedro imports), usable from a notebook.
All images here are single-channel axial slices, float32 in [0, 1], shaped ``(N, H, W)`` (the
``t1_to_t2`` tile set's slices: A = T1, B = T2, 128 x 128 px of 2 mm voxels, zero-padded).

**Methods** (:class:`Method`), each producing one T2 slice per test slice:

- ``pix2pix``, ``cyclegan``: exported T1 -> T2 generators run on the test T1 slices;
- ``dcgan``: an unconditional DCGAN trained on the T2 slices of the training split; as many
  samples as test slices, drawn with a fixed seed. A sample is *not* paired with a test slice;
- ``identity_t1`` (the T1 slice itself) and ``inverted_t1`` (``1 - T1``; by default only inside
  the head, background kept at 0: :class:`InversionKind`): the trivial baselines a T1 -> T2
  model must beat;
- ``<method>+style``: ``pix2pix``, ``cyclegan`` and ``dcgan`` refined by Gatys style transfer
  (:func:`mrihisto_kedro.nn.style_transfer.refine`): the optimised image starts from the
  generated slice; content = the input T1 slice (for the DCGAN, which has no input, the
  generated slice itself); style = one fixed real T2 slice of the *training* slab.

**Table** (:func:`sequence_table`), in the evaluation pipeline's long format
(:data:`~mrihisto_kedro.evaluation.table.TABLE_COLUMNS`; ``experiment`` = method, ``split`` =
``test``):

- per-slice ``L1``, ``PSNR``, ``SSIM``, ``MI`` (and ``LPIPS`` when its weights are present)
  against the real T2 of the same test slice (``generated_vs_t2``; MI also against the input,
  ``generated_vs_t1``, and the real pair ``t2_vs_t1``), mean with a bootstrap interval over
  slices. For ``dcgan`` and ``dcgan+style`` they are *not applicable* (no paired target) and
  reported as such;
- per-slice ``L1`` and ``SSIM`` inside the head only (``generated_vs_t2_in_head``;
  :func:`head_mask` of the real T1), where the contrast is and the background is not;
  :func:`verdicts` then names, per metric and region, the better trivial baseline and the
  models that beat it;
- ``FID`` and ``KID`` of the method's slices against the real test T2 slices (Inception pool3;
  far below 2048 samples, so biased: the note says so);
- ``checkerboard``: each slice's spectral power near the Nyquist frequency as a multiple of the
  real T2 slices' (:func:`~mrihisto_kedro.metrics.spectral.nyquist_fraction`; 1 = as real);
- ``D_accuracy``: the trained DCGAN discriminator's accuracy on the held-out real test T2 slices
  (label real) and the method's slices (label fake), pooled, and ``D_fake_detected``: the
  fraction of the method's slices called fake. Seed 002's "accuracy" of 87-96 % is most
  plausibly this quantity (it reports no other classifier). Lower means harder to tell from
  real T2 (0.5 = chance with equal counts); note the real side is constant across methods.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from scipy import ndimage

from mrihisto_kedro.evaluation.backends import WeightPaths
from mrihisto_kedro.evaluation.baselines import baseline_verdicts, region_metrics
from mrihisto_kedro.evaluation.table import (
    TABLE_COLUMNS,
    missing_rows,
    summarise_sets,
    summarise_tiles,
)
from mrihisto_kedro.evaluation.tiles import (
    EvaluatedSplit,
    FeatureBackends,
    TileEvaluationParams,
    generate,
    tile_metrics,
    to_rgb,
)
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.metrics.spectral import NYQUIST_BAND, nyquist_fraction
from mrihisto_kedro.nn.dcgan import DCGAN, DCGANConfig, train_dcgan
from mrihisto_kedro.nn.style_transfer import (
    PoolingKind,
    StyleTransferParams,
    VGGArch,
    VGGFeatures,
    refine,
)

__all__ = [
    "CONDITIONAL",
    "IN_HEAD",
    "REFINABLE",
    "STYLE_SUFFIX",
    "DiscriminatorNorm",
    "InversionKind",
    "Method",
    "RefinementParams",
    "SequenceSlices",
    "SequenceTableParams",
    "Synthesis",
    "SynthesisParams",
    "baseline_outputs",
    "dcgan_outputs",
    "discriminator_probabilities",
    "example_figure",
    "head_mask",
    "verdicts",
    "method_order",
    "refine_outputs",
    "refinement_markdown",
    "refinement_summary",
    "resize_slices",
    "sequence_table",
    "split_slices",
    "style_reference",
    "synthesise",
    "synthesis_from_tileset",
    "synthesis_to_tileset",
    "train_sequence_dcgan",
]

STYLE_SUFFIX = "+style"
TARGET, INPUT = "t2", "t1"
GEN_VS_TARGET = f"generated_vs_{TARGET}"
#: the same comparison inside the head (:func:`head_mask` of the real T1)
IN_HEAD = f"{GEN_VS_TARGET}_in_head"
PAIRED_METRICS: tuple[str, ...] = ("L1", "PSNR", "SSIM", "MI")
D_METRICS: tuple[str, ...] = ("D_accuracy", "D_fake_detected")
CHECKERBOARD_NOTE = (
    f"checkerboard: the slice's power within {NYQUIST_BAND} cycles/px of the Nyquist frequency, "
    "as a multiple of the real test T2 slices' mean (1 = as real; lower is better; "
    "transposed convolutions print a 2-px pattern: mrihisto_kedro.metrics.spectral)"
)


class Method(StrEnum):
    """A way to obtain a T2 slice (see the module docstring)."""

    PIX2PIX = "pix2pix"
    CYCLEGAN = "cyclegan"
    DCGAN = "dcgan"
    IDENTITY_T1 = "identity_t1"
    INVERTED_T1 = "inverted_t1"


#: methods with a paired output per test slice (generators and baselines)
CONDITIONAL: tuple[Method, ...] = (
    Method.PIX2PIX,
    Method.CYCLEGAN,
    Method.IDENTITY_T1,
    Method.INVERTED_T1,
)
#: methods refined by style transfer (seed 002 refines its generators' outputs)
REFINABLE: tuple[Method, ...] = (Method.PIX2PIX, Method.CYCLEGAN, Method.DCGAN)


class InversionKind(StrEnum):
    """How the ``inverted_t1`` baseline inverts T1."""

    HEAD = "head"  # 1 - T1 inside the head (filled T1 > level), 0 outside, like T2's background
    FULL = "full"  # 1 - T1 everywhere (the modelling summary's "inverted" baseline)


class DiscriminatorNorm(StrEnum):
    """Batch-norm statistics the DCGAN discriminator uses when it classifies a set."""

    #: training-mode statistics of the set itself, one batch per set (real slices, or one
    #: method's slices), as the discriminator saw pure real and pure fake batches in training;
    #: running statistics are not touched (a copy of D runs)
    BATCH = "batch"
    #: evaluation mode (running statistics, dominated by fake batches in DCGAN training)
    RUNNING = "running"


def method_order(refined: bool = True) -> list[str]:
    """Row order of the table: each generator then its refinement, then the baselines."""
    out: list[str] = []
    for m in (Method.PIX2PIX, Method.CYCLEGAN, Method.DCGAN):
        out.append(m.value)
        if refined:
            out.append(m.value + STYLE_SUFFIX)
    return out + [Method.IDENTITY_T1.value, Method.INVERTED_T1.value]


def _base(method: str) -> Method:
    return Method(method.removesuffix(STYLE_SUFFIX))


def _is_paired(method: str) -> bool:
    return _base(method) is not Method.DCGAN


# ----------------------------------------------------------------------------------------------
# slices


@dataclass(frozen=True)
class SequenceSlices:
    """The slices of one split.

    Attributes:
        manifest: the tile set's rows (``tile_id``, ``pair_id`` = ``slice_<i>``, ``slice_index``,
            ``split``, ...), in array order.
        t1: ``(N, H, W)`` float32 in [0, 1].
        t2: ``(N, H, W)`` float32 in [0, 1], voxel-aligned with ``t1``.
    """

    manifest: pd.DataFrame
    t1: np.ndarray
    t2: np.ndarray

    def __len__(self) -> int:
        """Number of slices."""
        return int(self.t1.shape[0])


def split_slices(tileset: TileSet, split: str) -> SequenceSlices:
    """One split of a paired single-channel float tile set in [0, 1] (the ``t1_to_t2`` set).

    Raises:
        ValueError: unpaired set, several channels, a non-float dtype, or no slice in ``split``.
    """
    if tileset.b is None:
        raise ValueError("missing_sequences needs a paired T1/T2 tile set")
    if tileset.a.shape[-1] != 1 or tileset.b.shape[-1] != 1:
        raise ValueError(
            f"expected single-channel slices, got A {tileset.a.shape} and B {tileset.b.shape}"
        )
    if tileset.a.dtype.kind != "f" or tileset.b.dtype.kind != "f":
        raise ValueError(f"expected float slices in [0, 1], got {tileset.a.dtype}")
    rows = np.flatnonzero(tileset.manifest["split"].to_numpy() == split)
    if rows.size == 0:
        raise ValueError(f"no slices in split {split!r}; the tile set has {tileset.splits}")
    return SequenceSlices(
        manifest=tileset.manifest.iloc[rows].reset_index(drop=True),
        t1=np.clip(np.asarray(tileset.a[rows], dtype=np.float32)[..., 0], 0.0, 1.0),
        t2=np.clip(np.asarray(tileset.b[rows], dtype=np.float32)[..., 0], 0.0, 1.0),
    )


def resize_slices(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W)`` -> ``(N, size, size)``, float32 in [0, 1].

    Area averaging when shrinking (no aliasing), bilinear (``align_corners=False``) when growing;
    the same array (as float32) when the size already matches.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected slices (N, H, W), got {x.shape}")
    if x.shape[1:] == (size, size):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x))[:, None]
    if size <= min(x.shape[1:]):
        out = F.interpolate(t, size=(size, size), mode="area")
    else:
        out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return out[:, 0].clamp_(0.0, 1.0).numpy()


def head_mask(t1: np.ndarray, level: float = 0.1) -> np.ndarray:
    """``(N, H, W)`` bool: T1 above ``level`` (image units), holes filled slice by slice."""
    return np.stack([ndimage.binary_fill_holes(s > level) for s in np.asarray(t1)])


def baseline_outputs(
    t1: np.ndarray,
    method: Method,
    inversion: InversionKind = InversionKind.HEAD,
    level: float = 0.1,
) -> np.ndarray:
    """The trivial T2 guesses from T1 ``(N, H, W)`` in [0, 1]: itself, or inverted.

    ``inverted_t1`` with :attr:`InversionKind.HEAD` is ``(1 - T1)`` inside :func:`head_mask` and
    0 outside (T2's background is dark too), the stronger of the two inversions.
    """
    t1 = np.asarray(t1, dtype=np.float32)
    if method is Method.IDENTITY_T1:
        return t1.copy()
    if method is not Method.INVERTED_T1:
        raise ValueError(f"{method} is not a baseline")
    inverted = 1.0 - t1
    if inversion is InversionKind.HEAD:
        inverted = np.where(head_mask(t1, level), inverted, 0.0)
    return inverted.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# DCGAN


def train_sequence_dcgan(
    t2_slices: np.ndarray,
    config: DCGANConfig,
    callback: Callable[[int, Mapping[str, float], DCGAN], None] | None = None,
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
        norm: batch-norm statistics (:class:`DiscriminatorNorm`). ``batch`` runs the whole set
            as one batch through a copy of D in training mode (so the result depends on the set,
            as D's decisions did in training).

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


# ----------------------------------------------------------------------------------------------
# synthesis and refinement


@dataclass(frozen=True)
class RefinementParams:
    """``synthesis.refinement``: style transfer of the generated slices.

    Attributes:
        enabled: refine at all (``false``: the ``+style`` rows are reported missing, disabled).
        vgg: trunk (``vgg16`` offline; ``vgg19`` only when its weights are present).
        weights_path: explicit VGG weights file; ``None``: the torch hub cache.
        pooling: ``avg`` (Gatys et al., seed 002) or ``max``.
        style_split: split the fixed style slice comes from (never the test split).
        style_slice_index: its ``slice_index``; ``None``: the middle slice of that split.
        transfer: losses, layers, optimiser and steps (:class:`StyleTransferParams`).
    """

    enabled: bool = True
    vgg: VGGArch = VGGArch.VGG16
    weights_path: str | None = None
    pooling: PoolingKind = PoolingKind.AVG
    style_split: str = "train"
    style_slice_index: int | None = None
    transfer: StyleTransferParams = field(default_factory=StyleTransferParams)


@dataclass(frozen=True)
class SynthesisParams:
    """``missing_sequences.synthesis``.

    Attributes:
        split: the evaluated split (``test``).
        dcgan_seed: seed of the DCGAN samples' noise.
        inversion: the ``inverted_t1`` baseline (:class:`InversionKind`); head_level: its mask
            threshold in [0, 1] image units (above the ICBM152 template's ~0.05 field-of-view
            box, below brain tissue).
        batch_size: slices per generator forward pass.
        device: ``auto`` or a torch device.
        refinement: style transfer (:class:`RefinementParams`).
    """

    split: str = "test"
    dcgan_seed: int = 1
    inversion: InversionKind = InversionKind.HEAD
    head_level: float = 0.1
    batch_size: int = 16
    device: str = "auto"
    refinement: RefinementParams = field(default_factory=RefinementParams)

    def __post_init__(self) -> None:
        if self.refinement.style_split == self.split:
            raise ValueError(
                f"refinement.style_split must differ from split {self.split!r}: the style "
                "slice must not be a slice the table is measured on"
            )
        if not 0.0 <= self.head_level < 1.0:
            raise ValueError(f"head_level must be in [0, 1), got {self.head_level}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class Synthesis:
    """Every method's slices for one split.

    Attributes:
        slices: the split's real slices.
        outputs: ``{method: (N, H, W) float32 in [0, 1]}`` in :func:`method_order` order;
            ``dcgan`` rows are samples, not paired with the slice of the same index.
        history: refinement objective per method and step: ``method, step, total, content,
            style, seconds, status, reason`` (``status`` ``missing`` rows have no step values).
    """

    slices: SequenceSlices
    outputs: dict[str, np.ndarray]
    history: pd.DataFrame

    @property
    def missing(self) -> dict[str, str]:
        """``{method: reason}`` of the refined methods that could not be produced."""
        rows = self.history[self.history["status"] == "missing"]
        return dict(zip(rows["method"], rows["reason"], strict=True))


def style_reference(tileset: TileSet, params: RefinementParams) -> tuple[np.ndarray, int]:
    """The fixed real T2 style slice ``(H, W)`` and its ``slice_index``."""
    source = split_slices(tileset, params.style_split)
    index = source.manifest.get("slice_index")
    if params.style_slice_index is None:
        row = len(source) // 2
    else:
        if index is None:
            raise ValueError("the tile set has no slice_index column; leave style_slice_index null")
        hits = np.flatnonzero(index.to_numpy() == params.style_slice_index)
        if hits.size == 0:
            raise ValueError(
                f"style_slice_index {params.style_slice_index} is not in split "
                f"{params.style_split!r} (slices {int(index.min())}..{int(index.max())})"
            )
        row = int(hits[0])
    slice_index = int(index.iloc[row]) if index is not None else row
    return source.t2[row], slice_index


def refine_outputs(
    images: np.ndarray,
    content: np.ndarray,
    style: np.ndarray,
    params: StyleTransferParams,
    features: VGGFeatures,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Style-refine slices: start ``images``, content ``content`` (both ``(N, H, W)``), style
    ``(H', W')``; all in [0, 1].

    Returns:
        ``(refined (N, H, W) float32 in [0, 1], history)``; ``history`` has one row per iterate
        (``step`` 0 = the start, ``steps`` = the result) with the batch-mean ``total``,
        ``content`` and ``style`` objective terms (:func:`~mrihisto_kedro.nn.style_transfer.refine`)
        and ``seconds`` (total refinement time, s).
    """
    start = time.perf_counter()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    c = torch.from_numpy(np.ascontiguousarray(content, dtype=np.float32))[:, None]
    s = torch.from_numpy(np.ascontiguousarray(style, dtype=np.float32))[None, None]
    refined, history = refine(x.to(features.device), c, s, params, features)
    frame = pd.DataFrame(history)
    frame["seconds"] = time.perf_counter() - start
    return refined[:, 0].cpu().numpy().astype(np.float32), frame


def synthesise(
    slices: SequenceSlices,
    generators: Mapping[Method, Mapping[str, Any]],
    dcgan: DCGAN,
    params: SynthesisParams,
    *,
    style: np.ndarray | None = None,
    features: VGGFeatures | None = None,
    missing_reason: str | None = None,
) -> Synthesis:
    """Every method's slices for ``slices`` (see the module docstring).

    Args:
        slices: the evaluated split.
        generators: ``{Method.PIX2PIX: payload, Method.CYCLEGAN: payload}`` exported generators
            (:func:`~mrihisto_kedro.nn.training.export_generator`).
        dcgan: the trained DCGAN.
        params: options.
        style: the style slice ``(H', W')``; features: the VGG trunk. Both needed to refine.
        missing_reason: why refinement is impossible (missing weights, disabled); then the
            ``+style`` methods are recorded as missing with it.

    Returns:
        :class:`Synthesis`.
    """
    t1, size, n = slices.t1, slices.t1.shape[1], len(slices)
    if slices.t1.shape[1] != slices.t1.shape[2]:
        raise ValueError(f"expected square slices, got {slices.t1.shape[1:]}")
    raw: dict[str, np.ndarray] = {}
    for method in (Method.PIX2PIX, Method.CYCLEGAN):
        generated = generate(
            generators[method], t1[..., None], batch_size=params.batch_size, device=params.device
        )
        if generated.shape[-1] != 1:
            raise ValueError(f"the {method} generator makes {generated.shape[-1]} channels, not 1")
        raw[method.value] = generated[..., 0]
    raw[Method.DCGAN.value] = dcgan_outputs(dcgan, n, params.dcgan_seed, size)
    for method in (Method.IDENTITY_T1, Method.INVERTED_T1):
        raw[method.value] = baseline_outputs(t1, method, params.inversion, params.head_level)

    histories: list[pd.DataFrame] = []
    outputs: dict[str, np.ndarray] = {}
    can_refine = features is not None and style is not None and missing_reason is None
    for name in method_order():
        if not name.endswith(STYLE_SUFFIX):
            outputs[name] = raw[name]
            continue
        base = _base(name)
        if not can_refine:
            reason = missing_reason or "no VGG trunk or style slice given"
            histories.append(
                pd.DataFrame([{"method": name, "status": "missing", "reason": reason}])
            )
            continue
        content = raw[base.value] if base is Method.DCGAN else t1
        refined, history = refine_outputs(
            raw[base.value], content, style, params.refinement.transfer, features
        )
        outputs[name] = refined
        histories.append(history.assign(method=name, status="ok", reason=""))
    columns = ["method", "step", "total", "content", "style", "seconds", "status", "reason"]
    history = pd.concat(histories, ignore_index=True).reindex(columns=columns)
    return Synthesis(slices=slices, outputs=outputs, history=history)


def synthesis_to_tileset(synthesis: Synthesis) -> TileSet:
    """Store the synthetic slices as a tile set (one row per method and slice).

    ``a`` holds the method's input (the T1 slice; zeros for the unconditional DCGAN), ``b`` the
    synthetic T2; the manifest has the real slice's columns plus ``method`` and
    ``source_tile_id``; ``specimen_id`` = method, ``tile_id`` = ``<method>_<tile_id>`` with
    ``+`` written as ``-``.
    """
    rows, a_list, b_list = [], [], []
    m = synthesis.slices.manifest
    for method, images in synthesis.outputs.items():
        frame = m.copy()
        frame["source_tile_id"] = m["tile_id"].astype(str)
        frame["tile_id"] = method.replace("+", "-") + "_" + m["tile_id"].astype(str)
        frame["specimen_id"] = method
        frame["method"] = method
        rows.append(frame)
        a = synthesis.slices.t1 if _is_paired(method) else np.zeros_like(synthesis.slices.t1)
        a_list.append(a)
        b_list.append(images)
    return TileSet(
        manifest=pd.concat(rows, ignore_index=True),
        a=np.concatenate(a_list)[..., None].astype(np.float32),
        b=np.concatenate(b_list)[..., None].astype(np.float32),
    )


def synthesis_from_tileset(
    stored: TileSet, slices: SequenceSlices, history: pd.DataFrame
) -> Synthesis:
    """Rebuild a :class:`Synthesis` from :func:`synthesis_to_tileset`'s tile set.

    Raises:
        ValueError: the stored slices are not those of ``slices`` (other tile ids or order).
    """
    if stored.b is None:
        raise ValueError("the synthetic tile set has no B slices")
    outputs: dict[str, np.ndarray] = {}
    methods = stored.manifest["method"].to_numpy()
    expected = slices.manifest["tile_id"].astype(str).to_list()
    for method in dict.fromkeys(methods):
        rows = np.flatnonzero(methods == method)
        ids = stored.manifest["source_tile_id"].iloc[rows].astype(str).to_list()
        if ids != expected:
            raise ValueError(
                f"synthetic slices of {method} do not match the evaluated split's slices"
            )
        outputs[str(method)] = np.asarray(stored.b[rows], dtype=np.float32)[..., 0]
    return Synthesis(slices=slices, outputs=outputs, history=history)


# ----------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class SequenceTableParams:
    """``missing_sequences.table``.

    Attributes:
        mi_bins, mi_base: MI histogram bins and log base (``e``: nats).
        n_boot, alpha, seed: bootstrap over slices (replicates, two-sided level, seed).
        kid_subset_size, kid_subsets: KID subsets.
        weights: Inception / AlexNet files (``None``: the torch hub cache).
        device: ``auto`` or a torch device; batch_size: slices per feature forward pass.
        discriminator_norm: batch-norm statistics of the DCGAN discriminator
            (:class:`DiscriminatorNorm`); threshold: its decision threshold on P(real).
        n_figure_slices: test slices shown in the example figure.
    """

    mi_bins: int = 20
    mi_base: float = math.e
    n_boot: int = 200
    alpha: float = 0.05
    seed: int = 0
    kid_subset_size: int = 100
    kid_subsets: int = 50
    weights: WeightPaths = field(default_factory=WeightPaths)
    device: str = "auto"
    batch_size: int = 16
    discriminator_norm: DiscriminatorNorm = DiscriminatorNorm.BATCH
    threshold: float = 0.5
    n_figure_slices: int = 4

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.n_figure_slices < 1:
            raise ValueError(f"n_figure_slices must be >= 1, got {self.n_figure_slices}")

    def tile_params(self) -> TileEvaluationParams:
        """The per-slice metric settings in the evaluation pipeline's terms."""
        return TileEvaluationParams(
            splits=("test",),
            mi_bins=self.mi_bins,
            mi_base=self.mi_base,
            batch_size=self.batch_size,
            device=self.device,
            target_name=TARGET,
            input_name=INPUT,
            seed=self.seed,
        )


def _rows(method: str, split: str, metrics: Sequence[str], note: str, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "experiment": method,
                "split": split,
                "comparison": GEN_VS_TARGET,
                "metric": metric,
                "value": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "n_tiles": n,
                "n_slides": n,
                "note": note,
            }
            for metric in metrics
        ],
        columns=list(TABLE_COLUMNS),
    )


def _features(backends: FeatureBackends, images: np.ndarray, batch: int) -> np.ndarray:
    rgb = to_rgb(images[..., None])
    assert backends.inception is not None
    chunks = [backends.inception(rgb[i : i + batch]) for i in range(0, len(rgb), batch)]
    return np.concatenate(chunks).astype(np.float64)


def _d_note(
    real_as_real: float, n: int, params: SequenceTableParams, train_as_real: float | None
) -> str:
    note = (
        f"DCGAN discriminator ({params.discriminator_norm.value} batch-norm statistics, "
        f"threshold {params.threshold}) on {n} held-out real test T2 slices (label real) and "
        f"the method's {n} slices (label fake), pooled; the most plausible reading of seed "
        f"002's 'accuracy'. 0.5 = chance, lower = harder to tell from real T2. Held-out real "
        f"T2 called real: {real_as_real:.2f} (the same for every method)"
    )
    if train_as_real is not None:
        note += f"; its own training T2 slices called real: {train_as_real:.2f}"
    return note


def sequence_table(
    synthesis: Synthesis,
    dcgan: DCGAN,
    backends: FeatureBackends,
    params: SequenceTableParams,
    train_t2: np.ndarray | None = None,
    head_level: float = 0.1,
) -> pd.DataFrame:
    """The metric table of every method (long format, see the module docstring).

    Args:
        synthesis: the slices of every method and the split's real slices.
        dcgan: the trained DCGAN (its discriminator gives ``D_accuracy``).
        backends: Inception / LPIPS networks, or why they are missing
            (:func:`mrihisto_kedro.evaluation.backends.load_backends`).
        params: options.
        train_t2: the DCGAN's training slices ``(M, H, W)``; when given, the fraction of them
            its discriminator calls real is printed in the ``D_accuracy`` note (a reference:
            held-out slices hold other anatomy than the training slices).
        head_level: T1 level of :func:`head_mask` (image units) for the in-head rows.

    Returns:
        Rows in :data:`~mrihisto_kedro.evaluation.table.TABLE_COLUMNS` order, methods in
        :func:`method_order` order; methods that could not be produced have every metric
        ``missing: <reason>``.
    """
    slices = synthesis.slices
    n = len(slices)
    split = str(slices.manifest["split"].iloc[0])
    slide_ids = slices.manifest["pair_id"].astype(str).to_numpy()
    tile_params = params.tile_params()
    real_features = (
        _features(backends, slices.t2, params.batch_size) if backends.inception else None
    )
    p_real = discriminator_probabilities(dcgan, slices.t2, params.discriminator_norm)
    real_correct = (p_real > params.threshold).astype(float)
    train_as_real = None
    if train_t2 is not None and len(train_t2):
        p_train = discriminator_probabilities(dcgan, train_t2, params.discriminator_norm)
        train_as_real = float((p_train > params.threshold).mean())
    d_note = _d_note(float(real_correct.mean()), n, params, train_as_real)
    head = head_mask(slices.t1, head_level)
    real_nyquist = float(nyquist_fraction(slices.t2).mean())
    frames: list[pd.DataFrame] = []
    boot = {"n_boot": params.n_boot, "alpha": params.alpha, "seed": params.seed}
    for method in method_order():
        if method not in synthesis.outputs:
            reason = synthesis.missing.get(method, "not produced")
            metrics = (*PAIRED_METRICS, "FID", "KID", *D_METRICS)
            frames.append(_rows(method, split, metrics, f"missing: {reason}", n))
            continue
        generated = synthesis.outputs[method]
        if _is_paired(method):
            data = EvaluatedSplit(
                split=split,
                manifest=slices.manifest,
                a=slices.t1[..., None],
                b=slices.t2[..., None],
                generated=generated[..., None],
            )
            per_tile = tile_metrics(data, tile_params, backends)
            frames.append(
                summarise_tiles(
                    per_tile, method, mi_bins=params.mi_bins, mi_base=params.mi_base, **boot
                )
            )
            in_head = _per_slice(
                slide_ids, split, IN_HEAD, region_metrics(generated, slices.t2, head)
            )
            head_rows = summarise_tiles(in_head, method, **boot)
            head_rows["note"] = f"inside the head (T1 > {head_level:g}, holes filled)"
            frames.append(head_rows)
        else:
            note = "not applicable: the unconditional DCGAN's samples have no paired real T2 slice"
            metrics = (*PAIRED_METRICS, "LPIPS") if backends.lpips else PAIRED_METRICS
            frames.append(_rows(method, split, metrics, note, n))
        if real_features is not None:
            frames.append(
                summarise_sets(
                    {"g": _features(backends, generated, params.batch_size), "b": real_features},
                    slide_ids,
                    [(GEN_VS_TARGET, "g", "b")],
                    method,
                    split,
                    kid_subset_size=params.kid_subset_size,
                    kid_subsets=params.kid_subsets,
                    **boot,
                )
            )
        missing = {k: v for k, v in backends.missing.items() if k in ("FID", "KID", "LPIPS")}
        if not _is_paired(method):
            missing.pop("LPIPS", None)
        if missing:
            frames.append(missing_rows(method, split, [GEN_VS_TARGET], missing, n, n))
        fake_correct = (
            discriminator_probabilities(dcgan, generated, params.discriminator_norm)
            <= params.threshold
        ).astype(float)
        per_slice = _per_slice(
            slide_ids,
            split,
            GEN_VS_TARGET,
            {
                "D_accuracy": (real_correct + fake_correct) / 2.0,
                "D_fake_detected": fake_correct,
            },
        )
        if real_nyquist > 0:
            per_slice = pd.concat(
                [
                    per_slice,
                    _per_slice(
                        slide_ids,
                        split,
                        GEN_VS_TARGET,
                        {"checkerboard": nyquist_fraction(generated) / real_nyquist},
                    ),
                ],
                ignore_index=True,
            )
        d_rows = summarise_tiles(per_slice, method, **boot)
        d_rows["note"] = d_rows["metric"].map(
            {
                "D_accuracy": d_note,
                "D_fake_detected": "fraction of the method's slices called fake",
                "checkerboard": CHECKERBOARD_NOTE,
            }
        )
        frames.append(d_rows)
    table = pd.concat(frames, ignore_index=True).reindex(columns=list(TABLE_COLUMNS))
    order = {m: i for i, m in enumerate(method_order())}
    table = table.sort_values("experiment", key=lambda s: s.map(order), kind="stable").reset_index(
        drop=True
    )
    unpaired = (
        table["experiment"].map(lambda m: not _is_paired(m))
        & table["metric"].isin(("FID", "KID"))
        & table["value"].notna()
    )
    table.loc[unpaired, "note"] = table.loc[unpaired, "note"].map(
        lambda s: (
            (s + "; " if s else "")
            + "DCGAN samples are unpaired: the bootstrap resamples sample i with real slice i"
        )
    )
    return table


def _per_slice(
    slide_ids: np.ndarray, split: str, comparison: str, values: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """Long per-slice rows (``pair_id, split, comparison, metric, value``) for summarising."""
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "pair_id": slide_ids,
                    "split": split,
                    "comparison": comparison,
                    "metric": metric,
                    "value": vals,
                }
            )
            for metric, vals in values.items()
        ],
        ignore_index=True,
    )


def verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Which trivial baseline is best per metric, whole slice and inside the head, and which
    T1 -> T2 methods beat it (:func:`~mrihisto_kedro.evaluation.baselines.baseline_verdicts`)."""
    trained = [m for m in method_order() if _base(m) in (Method.PIX2PIX, Method.CYCLEGAN)]
    checks = [(c, m) for c in (GEN_VS_TARGET, IN_HEAD) for m in ("L1", "SSIM")]
    return baseline_verdicts(
        table, [Method.IDENTITY_T1.value, Method.INVERTED_T1.value], trained, checks
    )


def refinement_summary(history: pd.DataFrame) -> pd.DataFrame:
    """One row per refined method: its objective at the start and at the end.

    Returns:
        ``method, status, steps, total_start, total_end, content_start, content_end,
        style_start, style_end, seconds, reason`` (objective terms unweighted, as
        :func:`~mrihisto_kedro.nn.style_transfer.refine` reports them).
    """
    rows = []
    for method, group in history.groupby("method", sort=False):
        ok = group[group["status"] == "ok"].sort_values("step")
        row: dict[str, Any] = {"method": method, "status": group["status"].iloc[0]}
        if ok.empty:
            row["reason"] = group["reason"].iloc[0]
        else:
            row["steps"] = int(ok["step"].iloc[-1])
            for term in ("total", "content", "style"):
                row[f"{term}_start"] = float(ok[term].iloc[0])
                row[f"{term}_end"] = float(ok[term].iloc[-1])
            row["seconds"] = float(ok["seconds"].iloc[-1])
            row["reason"] = ""
        rows.append(row)
    columns = ["method", "status", "steps"]
    columns += [f"{t}_{e}" for t in ("total", "content", "style") for e in ("start", "end")]
    return pd.DataFrame(rows).reindex(columns=[*columns, "seconds", "reason"])


def refinement_markdown(history: pd.DataFrame) -> str:
    """A markdown section: each refined method's objective before and after refinement."""
    summary = refinement_summary(history)
    lines = [
        "## Style refinement: objective before -> after",
        "",
        "| method | steps | total | content | style | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples():
        if row.status != "ok":
            lines.append(f"| {row.method} | missing: {row.reason} | | | | |")
            continue
        lines.append(
            f"| {row.method} | {row.steps} | {row.total_start:.4g} -> {row.total_end:.4g} | "
            f"{row.content_start:.4g} -> {row.content_end:.4g} | "
            f"{row.style_start:.4g} -> {row.style_end:.4g} | {row.seconds:.1f} |"
        )
    return "\n".join(lines) + "\n"


def example_figure(synthesis: Synthesis, n: int, title: str) -> Figure:
    """Rows = ``n`` test slices (evenly spaced); columns = T1, real T2, every method.

    The DCGAN columns show sample ``i`` beside slice ``i`` (they are not paired).
    """
    slices = synthesis.slices
    picks = np.unique(np.linspace(0, len(slices) - 1, min(n, len(slices))).round().astype(int))
    columns = [("T1 (input)", slices.t1), ("T2 (real)", slices.t2)]
    columns += [(name, images) for name, images in synthesis.outputs.items()]
    fig = Figure(figsize=(1.6 * len(columns), 1.7 * len(picks) + 0.4), dpi=100)
    axes = fig.subplots(len(picks), len(columns), squeeze=False)
    ids = slices.manifest["pair_id"].astype(str).to_numpy()
    for r, i in enumerate(picks):
        for c, (label, images) in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(ids[i], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
