"""Parameters of the missing-sequences study, one dataclass per ``missing_sequences.*`` key.

Parsed with :func:`mrihisto_kedro.params.parse_params` (errors name the dotted key); every
class is a :class:`~mrihisto_kedro.params.Params`: option strings become the enums below and the
ranges are declared on the fields. No Kedro imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, TypedDict

from mrihisto_kedro.evaluation.backends import WeightPaths
from mrihisto_kedro.evaluation.tiles import TileEvaluationParams
from mrihisto_kedro.nn.checkpoint_store import ResumePolicy
from mrihisto_kedro.nn.dcgan import DCGANConfig
from mrihisto_kedro.nn.style_transfer import PoolingKind, StyleTransferParams, VGGArch
from mrihisto_kedro.params import Params, Range, fail
from mrihisto_kedro.sequences.methods import INPUT, TARGET

__all__ = [
    "Bootstrap",
    "DCGANTrainingParams",
    "DiscriminatorNorm",
    "InversionKind",
    "RefinementParams",
    "SequenceTableParams",
    "SynthesisParams",
]


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


@dataclass(frozen=True)
class DCGANTrainingParams(Params):
    """``missing_sequences.dcgan``.

    Attributes:
        split: the slices it learns from (``train``: the T2 of the training slices).
        model: :class:`~mrihisto_kedro.nn.dcgan.DCGANConfig` (``image_size`` 64 or 128: the
            slices are resized to it; ``epochs``, ``batch_size``, ``lr``, ``lr_D``, ...),
            validated with the rest (``missing_sequences.dcgan.model.<key>`` in errors).
        processes: train data-parallel in this many processes on this machine (the Kedro
            process is rank 0 and starts the others; :mod:`mrihisto_kedro.nn.distributed`):
            the global batch is ``model.batch_size * processes``; on CUDA one GPU per process.
            Ignored under ``torchrun``, which sets the number of processes itself.
        resume: ``auto`` continues the training from its checkpoint of the same parameters
            (after a kill, or to more ``model.epochs``); ``never`` trains from epoch 0, as the
            translation models' ``training.resume``
            (:class:`~mrihisto_kedro.nn.checkpoint_store.ResumePolicy`;
            :func:`~mrihisto_kedro.sequences.dcgan_training.train_split_dcgan`).
    """

    split: str = "train"
    model: DCGANConfig = field(default_factory=DCGANConfig)
    processes: Annotated[int, Range(ge=1)] = 1
    resume: ResumePolicy = ResumePolicy.AUTO


@dataclass(frozen=True)
class RefinementParams(Params):
    """``missing_sequences.synthesis.refinement``: style transfer of the generated slices.

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
class SynthesisParams(Params):
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
    head_level: Annotated[float, Range(ge=0.0, lt=1.0)] = 0.1
    batch_size: Annotated[int, Range(ge=1)] = 16
    device: str = "auto"
    refinement: RefinementParams = field(default_factory=RefinementParams)

    def validate(self) -> None:
        """The style slice comes from another split than the evaluated one."""
        if self.refinement.style_split == self.split:
            fail(
                "refinement.style_split",
                f"must differ from split {self.split!r}: the style slice must not be a slice "
                "the table is measured on",
            )


class Bootstrap(TypedDict):
    """Keywords of a bootstrap over slices: replicates, two-sided level, seed."""

    n_boot: int
    alpha: float
    seed: int


@dataclass(frozen=True)
class SequenceTableParams(Params):
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

    mi_bins: Annotated[int, Range(ge=2)] = 20
    mi_base: Annotated[float, Range(gt=0.0)] = math.e
    n_boot: Annotated[int, Range(ge=1)] = 200
    alpha: Annotated[float, Range(gt=0.0, lt=1.0)] = 0.05
    seed: Annotated[int, Range(ge=0)] = 0
    kid_subset_size: int = 100
    kid_subsets: int = 50
    weights: WeightPaths = field(default_factory=WeightPaths)
    device: str = "auto"
    batch_size: Annotated[int, Range(ge=1)] = 16
    discriminator_norm: DiscriminatorNorm = DiscriminatorNorm.BATCH
    threshold: Annotated[float, Range(gt=0.0, lt=1.0)] = 0.5
    n_figure_slices: Annotated[int, Range(ge=1)] = 4

    def validate(self) -> None:
        """The MI logarithm base is not 1 (the rest are the ranges on the fields)."""
        if self.mi_base == 1.0:
            fail("mi_base", "must not be 1 (the base of a logarithm)")

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

    @property
    def bootstrap(self) -> Bootstrap:
        """The bootstrap keywords of the table's summaries."""
        return Bootstrap(n_boot=self.n_boot, alpha=self.alpha, seed=self.seed)
