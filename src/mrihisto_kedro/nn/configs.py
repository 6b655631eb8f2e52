"""Config dataclasses of the image-translation models (:mod:`mrihisto_kedro.nn.models`).

One base, :class:`ModelConfigBase`, holds the fields every model has (channels, generator,
weight initialisation, Adam, the lr schedule, device, precision, seed), their validation and the
dict conversion; :class:`GANConfigBase` adds the discriminator and the GAN loss. Each model's
config declares its own fields and the defaults of its reference implementation:

* :class:`Pix2PixConfig`: U-Net-256, 70x70 PatchGAN, vanilla GAN, dropout on.
* :class:`CycleGANConfig`: ResNet-9 generators, PatchGANs, lsgan, instance norm, image pools.
* :class:`UNetRegressionConfig`: the seed 003 U-Net baseline (sigmoid output, MSE, Adam lr 0.01).

Fields are keyword-only and declare their type and range (:class:`mrihisto_kedro.params.Params`):
option fields accept their enum or its string value (``"unet_256"``), converted once; a bad value
raises :class:`~mrihisto_kedro.params.ParameterError` naming the field
(:func:`mrihisto_kedro.params.parse_params` adds the dotted parameter key).

Pure Python (no Kedro, no MLflow).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import torch

from mrihisto_kedro.nn.device import Precision
from mrihisto_kedro.nn.discriminators import DiscriminatorKind
from mrihisto_kedro.nn.generators import GeneratorKind, Upsampling
from mrihisto_kedro.nn.layers import InitKind, NormKind
from mrihisto_kedro.nn.losses import GANMode
from mrihisto_kedro.params import Params, Range, fail

__all__ = [
    "CycleGANConfig",
    "GANConfigBase",
    "LRPolicy",
    "ModelConfig",
    "ModelConfigBase",
    "Pix2PixConfig",
    "UNetRegressionConfig",
]

_UNET_FIXED_DEPTH = {GeneratorKind.UNET_256: 8, GeneratorKind.UNET_128: 7}
_RESNET_KINDS = (GeneratorKind.RESNET_6BLOCKS, GeneratorKind.RESNET_9BLOCKS)
_MIN_UNET_DOWNS = 5

Count = Annotated[int, Range(ge=1)]
NonNegative = Annotated[float, Range(ge=0.0)]


class LRPolicy(StrEnum):
    """Learning-rate schedule over epochs."""

    LINEAR = "linear"  # constant for n_epochs, then linear decay to 0 over n_epochs_decay
    CONSTANT = "constant"  # lr for every epoch


@dataclass(frozen=True, kw_only=True)
class ModelConfigBase(Params):
    """Fields, conversion and validation shared by every model config.

    The fields without a default here differ between the models; each config declares them
    with its reference's default.

    Attributes:
        in_channels: channels of A (1 for an MRI slice).
        out_channels: channels of B (3 for RGB histology).
        generator: ``unet_256`` (8 down-samplings), ``unet_128``, ``unet`` (depth
            ``num_downs``), ``resnet_6blocks``, ``resnet_9blocks``.
        num_downs: U-Net depth for ``unet``.
        ngf: generator filters in the outermost layer.
        dropout: Dropout(0.5) in the inner generator blocks.
        norm: ``batch``, ``instance``, ``none``.
        init: ``normal``, ``xavier``, ``kaiming``, ``orthogonal``.
        init_gain: std of ``normal`` init (0.02).
        lr, beta1, beta2: Adam parameters (every network).
        n_epochs: epochs at the initial lr; n_epochs_decay: epochs of linear decay to 0.
        epoch_count: the reference's starting epoch number in the lr rule (1).
        lr_policy: ``linear`` or ``constant``.
        device: ``auto`` (CUDA, MPS, CPU) or a device string.
        precision: ``auto``, ``fp32``, ``bf16``, ``fp16``.
        channels_last: memory format switch; ``None`` = automatic (see
            :mod:`mrihisto_kedro.nn.models`).
        fused_optimizer: Adam with ``fused=True`` (one kernel over all parameters) or the
            ``foreach`` path (bit-identical to the reference implementation's Adam); ``None`` =
            automatic: fused on CPU and CUDA (:func:`~mrihisto_kedro.nn.device.use_fused_adam`;
            57 M parameters on CPU: ``benchmarks/bench_optimizer.py``).
        seed: seed of the initial weights (and of the training loop's global RNGs).
    """

    in_channels: Count = 1
    out_channels: Count
    generator: GeneratorKind
    num_downs: Annotated[int, Range(ge=_MIN_UNET_DOWNS)] | None = None
    ngf: Count = 64
    dropout: bool
    norm: NormKind
    init: InitKind = InitKind.NORMAL
    init_gain: Annotated[float, Range(ge=1e-12)] = 0.02
    lr: Annotated[float, Range(ge=1e-30)]
    beta1: Annotated[float, Range(ge=0.0, lt=1.0)]
    beta2: Annotated[float, Range(ge=0.0, lt=1.0)] = 0.999
    n_epochs: Annotated[int, Range(ge=0)] = 100
    n_epochs_decay: Annotated[int, Range(ge=0)]
    epoch_count: Count = 1
    lr_policy: LRPolicy = LRPolicy.LINEAR
    device: str = "auto"
    precision: Precision = Precision.AUTO
    channels_last: bool | None = None
    fused_optimizer: bool | None = None
    seed: Annotated[int, Range(ge=0)] = 0

    def validate(self) -> None:
        """The schedule's length, the generator's depth and the device string."""
        if self.n_epochs + self.n_epochs_decay < 1:
            fail("n_epochs", "and n_epochs_decay are both 0; train at least one epoch")
        kind = self.generator
        if kind is GeneratorKind.UNET:
            if self.num_downs is None:
                fail("num_downs", f"must be set (>= {_MIN_UNET_DOWNS}) for generator 'unet'")
        elif kind in _UNET_FIXED_DEPTH:
            if self.num_downs not in (None, _UNET_FIXED_DEPTH[kind]):
                fail(
                    "num_downs",
                    f"is {_UNET_FIXED_DEPTH[kind]} for generator {kind.value!r}, got "
                    f"{self.num_downs}; use generator 'unet' for another depth",
                )
        elif self.num_downs is not None:
            fail("num_downs", f"applies to U-Net generators only, not {kind.value!r}")
        text = self.device.strip().lower()
        if text != "auto":
            try:
                device: torch.device | None = torch.device(text)
            except RuntimeError:
                device = None
            if device is None or device.type not in ("cpu", "cuda", "mps"):
                fail(
                    "device",
                    f"= {self.device!r} is not valid; expected 'auto', 'cpu', 'cuda', "
                    "'cuda:<index>' or 'mps'",
                )


@dataclass(frozen=True, kw_only=True)
class GANConfigBase(ModelConfigBase):
    """:class:`ModelConfigBase` plus the discriminator and the GAN loss (pix2pix, CycleGAN).

    Attributes:
        discriminator: ``basic`` (70x70 PatchGAN), ``n_layers``, ``pixel``.
        ndf: discriminator filters in the first layer.
        n_layers_D: PatchGAN depth for ``n_layers``.
        gan_mode: ``vanilla`` (BCE with logits), ``lsgan`` (MSE), ``wgangp``.
        lambda_gp: weight of the gradient penalty (``wgangp`` only).
    """

    discriminator: DiscriminatorKind = DiscriminatorKind.BASIC
    ndf: Count = 64
    n_layers_D: Count = 3
    gan_mode: GANMode
    lambda_gp: NonNegative = 10.0
    lr: Annotated[float, Range(ge=1e-30)] = 2e-4
    beta1: Annotated[float, Range(ge=0.0, lt=1.0)] = 0.5
    n_epochs_decay: Annotated[int, Range(ge=0)] = 100


@dataclass(frozen=True, kw_only=True)
class Pix2PixConfig(GANConfigBase):
    """pix2pix options; defaults are the reference's (U-Net-256, 70x70 PatchGAN, vanilla GAN).

    Fields of :class:`ModelConfigBase` and :class:`GANConfigBase`, with ``out_channels=3``,
    ``generator="unet_256"``, ``dropout=True`` (on in the inner U-Net blocks, as the reference),
    ``norm="batch"``, ``gan_mode="vanilla"``, Adam ``lr=2e-4, beta1=0.5``,
    ``n_epochs=n_epochs_decay=100``; and:

    Attributes:
        lambda_L1: weight of the L1 term of the generator loss.
    """

    out_channels: int = 3
    generator: GeneratorKind = GeneratorKind.UNET_256
    dropout: bool = True
    norm: NormKind = NormKind.BATCH
    gan_mode: GANMode = GANMode.VANILLA
    lambda_L1: NonNegative = 100.0


@dataclass(frozen=True, kw_only=True)
class CycleGANConfig(GANConfigBase):
    """CycleGAN options; defaults are the reference's (ResNet-9 G, PatchGAN D, lsgan, pool 50).

    Fields of :class:`ModelConfigBase` and :class:`GANConfigBase` (used by both generators and
    both discriminators), with ``out_channels=1``, ``generator="resnet_9blocks"``,
    ``dropout=False``, ``norm="instance"``, ``gan_mode="lsgan"``, Adam ``lr=2e-4, beta1=0.5``,
    ``n_epochs=n_epochs_decay=100``; and:

    Attributes:
        lambda_A, lambda_B: cycle loss weights (A -> B -> A and B -> A -> B).
        lambda_identity: identity loss weight relative to lambda_A/lambda_B (0.5); used only
            when ``in_channels == out_channels``.
        pool_size: image pool capacity per discriminator (50; 0 disables the pools).
        upsampling: ``transpose`` (reference) or ``resize_conv`` (ResNet generators; no
            checkerboard artefacts: :class:`~mrihisto_kedro.nn.generators.Upsampling`).
    """

    out_channels: int = 1
    generator: GeneratorKind = GeneratorKind.RESNET_9BLOCKS
    dropout: bool = False
    norm: NormKind = NormKind.INSTANCE
    gan_mode: GANMode = GANMode.LSGAN
    lambda_A: NonNegative = 10.0
    lambda_B: NonNegative = 10.0
    lambda_identity: NonNegative = 0.5
    pool_size: Annotated[int, Range(ge=0)] = 50
    upsampling: Upsampling = Upsampling.TRANSPOSE

    def validate(self) -> None:
        """The common rules, and ``resize_conv`` up-sampling only in ResNet generators."""
        super().validate()
        if self.upsampling is not Upsampling.TRANSPOSE and self.generator not in _RESNET_KINDS:
            fail(
                "upsampling",
                f"= {self.upsampling.value!r} applies to the ResNet generators "
                f"(resnet_6blocks, resnet_9blocks), not {self.generator.value!r}",
            )


@dataclass(frozen=True, kw_only=True)
class UNetRegressionConfig(ModelConfigBase):
    """U-Net regression baseline of seed 003 (sigmoid output, MSE loss, Adam).

    Defaults follow the paper where it states them (Adam, lr 0.01, sigmoid, MSE); beta1 0.9 is
    the Keras/Adam default the paper's Keras model used. Fields of :class:`ModelConfigBase` (any
    generator kind is accepted; its final activation is always sigmoid), with
    ``out_channels=3``, ``generator="unet_256"``, ``dropout=False``, ``norm="batch"``,
    ``lr=0.01``, ``beta1=0.9``, ``n_epochs=100``, ``n_epochs_decay=0`` (with ``linear``: a
    constant lr).
    """

    out_channels: int = 3
    generator: GeneratorKind = GeneratorKind.UNET_256
    dropout: bool = False
    norm: NormKind = NormKind.BATCH
    lr: Annotated[float, Range(ge=1e-30)] = 1e-2
    beta1: Annotated[float, Range(ge=0.0, lt=1.0)] = 0.9
    n_epochs_decay: Annotated[int, Range(ge=0)] = 0


ModelConfig = Pix2PixConfig | CycleGANConfig | UNetRegressionConfig
