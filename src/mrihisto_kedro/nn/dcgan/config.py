"""DCGAN options: :class:`DCGANConfig` and its option enums (validated on construction).

Pure Python (no Kedro; torch only through :class:`~mrihisto_kedro.nn.device.Precision`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from mrihisto_kedro.nn.device import Precision
from mrihisto_kedro.params import Params, Range, fail

__all__ = ["MIN_IMAGE_SIZE", "DCGANConfig", "GeneratorActivation", "NoiseKind", "is_power_of_two"]

#: the smallest image side (px) the networks are built for
MIN_IMAGE_SIZE = 32


class GeneratorActivation(StrEnum):
    """Activation of the generator's hidden layers."""

    RELU = "relu"  # Radford et al. 2016
    LEAKY_RELU = "leaky_relu"  # slope 0.2 (seed 002's description)


class NoiseKind(StrEnum):
    """Distribution of the generator's noise vector z."""

    NORMAL = "normal"  # N(0, 1) per component (PyTorch DCGAN example)
    UNIFORM = "uniform"  # U[-1, 1) per component (Radford et al. 2016)


def is_power_of_two(n: int) -> bool:
    """Whether ``n`` is 1, 2, 4, 8, ..."""
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class DCGANConfig(Params):
    """DCGAN options; defaults are Radford et al.'s (Adam lr 2e-4, beta1 0.5, N(0, 0.02) init).

    Seed 002's Table 1 used batch size 120, 3750 epochs, lr 1e-4 for D and 2e-4 for G: set
    ``batch_size=120, epochs=3750, lr_D=1e-4`` to follow it.

    Attributes:
        nz: length of the noise vector z.
        ngf: generator filters of the last hidden layer (side S/2); earlier layers have
            ``ngf * mult``.
        ndf: discriminator filters of the first layer (side S/2).
        image_size: side S of the square images in pixels, a power of 2 >= 32.
        channels: image channels (1 for an MRI sequence).
        max_mult: cap of the width multiplier (16: no cap up to S = 128).
        generator_activation: ``relu`` or ``leaky_relu``.
        noise: ``normal`` or ``uniform``.
        lr: Adam learning rate of the generator.
        lr_D: Adam learning rate of the discriminator; ``None``: same as ``lr``.
        beta1, beta2: Adam betas (both networks).
        init_gain: standard deviation of the N(0, gain) initialisation (0.02).
        epochs: passes over the training images in
            :func:`~mrihisto_kedro.nn.dcgan.training.train_dcgan`.
        batch_size: images per iteration (a trailing batch of one image is skipped: batch norm
            in training mode needs at least two).
        seed: seed of the initial weights, of the noise and of the batch order.
        device: ``auto`` (CUDA, MPS, CPU) or a device string (``cpu``, ``cuda:0``).
        precision: ``fp32`` (the default: no autocast), ``bf16``, ``fp16`` or ``auto``, as the
            translation models' ``precision`` (:class:`~mrihisto_kedro.nn.configs.Pix2PixConfig`):
            ``auto`` is bf16 on CUDA with native bf16, fp16 with a ``GradScaler`` on older CUDA
            devices, bf16 on CPUs with native bf16, fp32 elsewhere. The default differs from
            pix2pix's ``auto`` so that a DCGAN's numbers do not depend on the machine's CPU.
        channels_last: memory format of the networks and inputs; ``None`` = automatic, as the
            translation models: on CUDA always, on CPU when the precision is bf16.
        fused_optimizer: Adam with ``fused=True`` (``True``), the ``foreach`` path (``False``,
            the default) or automatic (``None``: fused on CPU and CUDA,
            :func:`~mrihisto_kedro.nn.device.use_fused_adam`). The default differs from pix2pix's
            ``None`` because fused Adam is not bit-identical to the ``foreach`` path (1.1e-8
            apart after 10 steps of the test model here) and a DCGAN of the defaults trains as
            before, bit for bit.
    """

    nz: Annotated[int, Range(ge=1)] = 100
    ngf: Annotated[int, Range(ge=1)] = 64
    ndf: Annotated[int, Range(ge=1)] = 64
    image_size: Annotated[int, Range(ge=MIN_IMAGE_SIZE)] = 128
    channels: Annotated[int, Range(ge=1)] = 1
    max_mult: Annotated[int, Range(ge=1)] = 16
    generator_activation: GeneratorActivation = GeneratorActivation.RELU
    noise: NoiseKind = NoiseKind.NORMAL
    lr: Annotated[float, Range(ge=1e-30)] = 2e-4
    lr_D: Annotated[float, Range(ge=1e-30)] | None = None
    beta1: Annotated[float, Range(ge=0.0, lt=1.0)] = 0.5
    beta2: Annotated[float, Range(ge=0.0, lt=1.0)] = 0.999
    init_gain: Annotated[float, Range(ge=1e-12)] = 0.02
    epochs: Annotated[int, Range(ge=0)] = 25
    batch_size: Annotated[int, Range(ge=1)] = 64
    seed: Annotated[int, Range(ge=0)] = 0
    device: str = "auto"
    precision: Precision = Precision.FP32
    channels_last: bool | None = None
    fused_optimizer: bool | None = False

    def validate(self) -> None:
        """The image side is a power of two (the networks halve it down to 4 px)."""
        if not is_power_of_two(self.image_size):
            fail(
                "image_size",
                f"must be a power of 2 >= {MIN_IMAGE_SIZE} (32, 64, 128, 256, ...), "
                f"got {self.image_size}",
            )

    @property
    def lr_discriminator(self) -> float:
        """The discriminator's learning rate (``lr_D``, or ``lr`` when unset)."""
        return float(self.lr if self.lr_D is None else self.lr_D)
