"""Discriminators: the PatchGAN (70x70 with 3 layers) and the 1x1 pixel discriminator.

Both match the reference implementation (``models/networks.py`` of
junyanz/pytorch-CycleGAN-and-pix2pix) layer for layer, including ``state_dict`` keys; the basic
PatchGAN on 6 input channels (pix2pix, RGB input and output concatenated) has 2,768,705
parameters. They output raw logits (no sigmoid): :class:`losses.GANLoss` applies the right
criterion. For pix2pix the discriminator sees the input and the output concatenated along the
channels, so ``in_channels`` is their sum.

Pure PyTorch (no Kedro).
"""

from __future__ import annotations

from enum import StrEnum

import torch
from torch import nn

from mrihisto_kedro.nn.layers import (
    InitKind,
    NormKind,
    init_weights,
    norm_layer,
    parse_option,
    uses_bias,
)

__all__ = [
    "DiscriminatorKind",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "build_discriminator",
]

_MAX_NF_MULT = 8


class DiscriminatorKind(StrEnum):
    """Discriminator architectures (names as in the reference ``--netD`` option)."""

    BASIC = "basic"  # PatchGAN with n_layers = 3: 70x70 receptive field
    N_LAYERS = "n_layers"  # PatchGAN with n_layers given
    PIXEL = "pixel"  # 1x1 PatchGAN: classifies each pixel


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator: strided 4x4 convolutions, one logit per overlapping patch.

    Layers: Conv(in, ndf, 4/2) LeakyReLU(0.2); ``n_layers - 1`` times Conv(4/2) norm LeakyReLU
    with filters doubling up to 8 ndf; Conv(4/1) norm LeakyReLU; Conv(4/1) to 1 channel.
    With ``n_layers=3`` the receptive field is 70x70.

    Shapes: (N, in_channels, H, W) -> (N, 1, H', W') with H' = H / 2**n_layers - 2 for H
    divisible by 2**n_layers (30x30 for 256x256 inputs and n_layers 3); H and W must be at
    least 3 * 2**n_layers (24 for n_layers 3).
    """

    def __init__(
        self,
        in_channels: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm: NormKind | str = NormKind.BATCH,
    ) -> None:
        """Build the PatchGAN (weights are PyTorch defaults; see :func:`build_discriminator`).

        Args:
            in_channels: input channels (input + output channels for a conditional GAN).
            ndf: filters in the first convolution.
            n_layers: number of strided convolutions after the first one's stride-2 (>= 1).
            norm: normalisation kind.
        """
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        if in_channels < 1 or ndf < 1:
            raise ValueError(f"in_channels and ndf must be >= 1, got {in_channels}, {ndf}")
        self.in_channels = in_channels
        use_bias = uses_bias(norm)
        kernel, pad = 4, 1
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kernel_size=kernel, stride=2, padding=pad),
            nn.LeakyReLU(0.2, True),
        ]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev, nf_mult = nf_mult, min(2**n, _MAX_NF_MULT)
            layers += [
                nn.Conv2d(
                    ndf * nf_mult_prev,
                    ndf * nf_mult,
                    kernel_size=kernel,
                    stride=2,
                    padding=pad,
                    bias=use_bias,
                ),
                norm_layer(norm, ndf * nf_mult),
                nn.LeakyReLU(0.2, True),
            ]
        nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, _MAX_NF_MULT)
        layers += [
            nn.Conv2d(
                ndf * nf_mult_prev,
                ndf * nf_mult,
                kernel_size=kernel,
                stride=1,
                padding=pad,
                bias=use_bias,
            ),
            norm_layer(norm, ndf * nf_mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * nf_mult, 1, kernel_size=kernel, stride=1, padding=pad),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> logits (N, 1, H', W')."""
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN ("PixelGAN"): 1x1 convolutions, one logit per pixel.

    Layers: Conv1x1(in, ndf) LeakyReLU(0.2) Conv1x1(ndf, 2 ndf) norm LeakyReLU(0.2)
    Conv1x1(2 ndf, 1).

    Shapes: (N, in_channels, H, W) -> (N, 1, H, W).
    """

    def __init__(
        self, in_channels: int, ndf: int = 64, norm: NormKind | str = NormKind.BATCH
    ) -> None:
        """Build the pixel discriminator.

        Args:
            in_channels: input channels.
            ndf: filters in the first convolution.
            norm: normalisation kind.
        """
        super().__init__()
        if in_channels < 1 or ndf < 1:
            raise ValueError(f"in_channels and ndf must be >= 1, got {in_channels}, {ndf}")
        self.in_channels = in_channels
        use_bias = uses_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, ndf, kernel_size=1, stride=1, padding=0),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=use_bias),
            norm_layer(norm, ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=use_bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> logits (N, 1, H, W)."""
        return self.net(x)


def build_discriminator(
    kind: DiscriminatorKind | str,
    in_channels: int,
    ndf: int = 64,
    n_layers: int = 3,
    norm: NormKind | str = NormKind.BATCH,
    init: InitKind | str = InitKind.NORMAL,
    init_gain: float = 0.02,
    *,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Build and initialise a discriminator, like the reference ``define_D``.

    Args:
        kind: ``basic`` (PatchGAN with 3 layers; ``n_layers`` is ignored, as in the reference),
            ``n_layers`` (PatchGAN with ``n_layers``) or ``pixel``.
        in_channels: input channels (input + output channels for pix2pix).
        ndf: filters in the first convolution.
        n_layers: PatchGAN depth for kind ``n_layers``.
        norm: normalisation kind.
        init: weight initialisation scheme.
        init_gain: its gain (standard deviation for ``normal``).
        generator: optional random source for the initial weights.

    Returns:
        The initialised discriminator, mapping (N, in_channels, H, W) to logits (N, 1, H', W').
    """
    kind = parse_option(DiscriminatorKind, kind, name="discriminator kind")
    net: nn.Module
    if kind is DiscriminatorKind.BASIC:
        net = NLayerDiscriminator(in_channels, ndf, n_layers=3, norm=norm)
    elif kind is DiscriminatorKind.N_LAYERS:
        net = NLayerDiscriminator(in_channels, ndf, n_layers=n_layers, norm=norm)
    else:
        net = PixelDiscriminator(in_channels, ndf, norm=norm)
    return init_weights(net, init, init_gain, generator=generator)
