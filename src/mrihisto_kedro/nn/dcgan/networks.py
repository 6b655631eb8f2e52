"""The DCGAN's two networks: :class:`DCGANGenerator` and :class:`DCGANDiscriminator`.

Architecture for ``image_size`` S = 2**k (k >= 5; 32, 64, 128, 256, ...), with
``mult(r) = min(S // (2 r), max_mult)`` the width multiplier of a feature map of side r:

- generator: z (N, nz, 1, 1) -> ConvT(nz, ngf*mult(4), 4, 1, 0) BN act -> 4x4; then
  ConvT(4, 2, 1) BN act doubling the side up to S/2 (filters ngf*mult(r)); then
  ConvT(ngf*mult(S/2) = ngf, channels, 4, 2, 1) tanh -> (N, channels, S, S). For S = 64 these
  are the layers of the PyTorch DCGAN example (filters 8, 4, 2, 1 x ngf; plus the biases below);
  for S = 128 one more block (16, 8, 4, 2, 1 x ngf with the default ``max_mult`` 16).
- discriminator, the mirror: Conv(channels, ndf, 4, 2, 1) LeakyReLU(0.2) (no batch norm on the
  input layer, as Radford et al.); Conv(4, 2, 1) BN LeakyReLU(0.2) halving the side down to 4x4
  (filters ndf*mult(r)); Conv(ndf*mult(4), 1, 4, 1, 0) -> one logit (N,) per image.
  ``sigmoid(logit)`` is the probability "real"; the loss is ``BCEWithLogitsLoss`` (= sigmoid +
  binary cross-entropy, numerically stable).
- ``generator_activation``: ``relu`` (Radford et al., the default) or ``leaky_relu`` (slope 0.2,
  what seed 002's text describes for its generator).
- Convolutions followed by batch norm have no bias (the norm has a shift); the generator's output
  layer and the discriminator's input and output layers keep theirs.

Weights are PyTorch defaults until :func:`mrihisto_kedro.nn.layers.init_weights` (done by
:class:`~mrihisto_kedro.nn.dcgan.model.DCGAN`). Pure PyTorch (no Kedro).
"""

from __future__ import annotations

import torch
from torch import nn

from mrihisto_kedro.nn.dcgan.config import MIN_IMAGE_SIZE, GeneratorActivation, is_power_of_two
from mrihisto_kedro.nn.layers import parse_option

__all__ = ["DCGANDiscriminator", "DCGANGenerator"]

_FIRST_SIDE = 4  # side of the generator's first (and the discriminator's last) feature map
_LEAK = 0.2


def _mult(size: int, side: int, max_mult: int) -> int:
    """Width multiplier of a feature map of side ``side`` in a network for ``size`` images."""
    return min(size // (2 * side), max_mult)


def _activation(kind: GeneratorActivation) -> nn.Module:
    if kind is GeneratorActivation.RELU:
        return nn.ReLU(True)
    return nn.LeakyReLU(_LEAK, True)


def _check_size(image_size: int) -> None:
    if not (is_power_of_two(image_size) and image_size >= MIN_IMAGE_SIZE):
        raise ValueError(f"image_size must be a power of 2 >= {MIN_IMAGE_SIZE}, got {image_size}")


class DCGANGenerator(nn.Module):
    """Noise (N, nz) or (N, nz, 1, 1) -> images (N, channels, S, S) in [-1, 1] (tanh).

    See the module docstring for the layers. ``main`` is an ``nn.Sequential``.
    """

    def __init__(
        self,
        nz: int = 100,
        ngf: int = 64,
        image_size: int = 128,
        channels: int = 1,
        max_mult: int = 16,
        activation: GeneratorActivation | str = GeneratorActivation.RELU,
    ) -> None:
        """Build the generator.

        Args:
            nz: noise length.
            ngf: filters of the last hidden layer.
            image_size: output side S, a power of 2 >= 32.
            channels: output channels.
            max_mult: cap of the width multiplier.
            activation: hidden-layer activation.
        """
        super().__init__()
        _check_size(image_size)
        act = parse_option(GeneratorActivation, activation, name="generator_activation")
        self.nz = nz
        self.image_size = image_size
        self.channels = channels
        side = _FIRST_SIDE
        width = ngf * _mult(image_size, side, max_mult)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            _activation(act),
        ]
        while side * 2 < image_size:
            side *= 2
            next_width = ngf * _mult(image_size, side, max_mult)
            layers += [
                nn.ConvTranspose2d(width, next_width, 4, 2, 1, bias=False),
                nn.BatchNorm2d(next_width),
                _activation(act),
            ]
            width = next_width
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=True), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, nz) or (N, nz, 1, 1) noise -> (N, channels, S, S) in [-1, 1]."""
        if z.dim() == 2:
            z = z[:, :, None, None]
        if z.dim() != 4 or z.shape[1:] != (self.nz, 1, 1):
            raise ValueError(
                f"expected noise (N, {self.nz}) or (N, {self.nz}, 1, 1), got {z.shape}"
            )
        return self.main(z)


class DCGANDiscriminator(nn.Module):
    """Images (N, channels, S, S) in [-1, 1] -> logits (N,) (sigmoid = probability "real").

    See the module docstring for the layers.
    """

    def __init__(
        self, ndf: int = 64, image_size: int = 128, channels: int = 1, max_mult: int = 16
    ) -> None:
        """Build the discriminator.

        Args:
            ndf: filters of the first layer.
            image_size: input side S, a power of 2 >= 32.
            channels: input channels.
            max_mult: cap of the width multiplier.
        """
        super().__init__()
        _check_size(image_size)
        self.image_size = image_size
        self.channels = channels
        side = image_size // 2
        width = ndf * _mult(image_size, side, max_mult)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 4, 2, 1, bias=True),
            nn.LeakyReLU(_LEAK, True),
        ]
        while side > _FIRST_SIDE:
            side //= 2
            next_width = ndf * _mult(image_size, side, max_mult)
            layers += [
                nn.Conv2d(width, next_width, 4, 2, 1, bias=False),
                nn.BatchNorm2d(next_width),
                nn.LeakyReLU(_LEAK, True),
            ]
            width = next_width
        layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=True))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, channels, S, S) -> logits (N,)."""
        expected = (self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected images (N, {', '.join(map(str, expected))}), got {x.shape}")
        return self.main(x).reshape(-1)
