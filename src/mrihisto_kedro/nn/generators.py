"""Image-to-image generators: the pix2pix U-Net and the CycleGAN ResNet generator.

Architectures match the reference implementation (``models/networks.py`` of
junyanz/pytorch-CycleGAN-and-pix2pix) layer for layer, with the same module nesting, so the
``state_dict`` keys are the reference ones and the parameter counts are identical (unet_256, 3->3,
ngf 64, batch norm: 54,413,955; resnet_9blocks: 11,378,179). Differences, all opt-in or without
effect on the parameter counts with batch norm:

- Any input size. The reference U-Net needs H and W divisible by ``2**num_downs`` (256 for
  unet_256), the ResNet generator by 4. Here the input is padded up to the next multiple (split
  evenly between the two sides, ``input_padding``: reflect by default, or replicate or zero) and
  the output is cropped back, so an (N, C, H, W) input gives an (N, out, H, W) output. Reflect
  padding larger than the image is applied repeatedly (mirror of the mirror). Inputs whose sizes
  are already multiples pass through untouched, exactly as in the reference. With batch norm in
  training mode, the padded border takes part in the batch statistics.
- ``final_activation``: ``tanh`` (reference, outputs in [-1, 1]), ``sigmoid`` (the U-Net
  regression baseline of seed 003, outputs in [0, 1]) or ``none``.
- Convolutions followed by ``norm="none"`` keep their bias (see :func:`layers.uses_bias`).
- ``upsampling`` (ResNet generators): ``transpose`` (reference: ConvTranspose 3x3, stride 2)
  or ``resize_conv`` (nearest-neighbour 2x, reflect pad 1, Conv 3x3: Odena et al. 2016,
  "Deconvolution and checkerboard artifacts"). A 3x3 kernel at stride 2 overlaps unevenly:
  output pixels alternately receive 4, 2 and 1 kernel taps, which prints a 2-px checkerboard
  that training must learn to cancel; resizing first gives every output pixel the same 9 taps.
  Same parameter count; the state_dict keys keep their indices (the resize-conv is one
  ``Sequential`` at the transposed convolution's place), the weight shapes differ.

Pure PyTorch (no Kedro).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import torch
import torch.nn.functional as F
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
    "FinalActivation",
    "GeneratorKind",
    "PadMode",
    "PaddingType",
    "Upsampling",
    "ResnetBlock",
    "ResnetGenerator",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "build_generator",
    "crop_padding",
    "final_activation_layer",
    "pad_to_multiple",
]

_MIN_UNET_DOWNS = 5
_RESNET_DOWNSAMPLINGS = 2


class GeneratorKind(StrEnum):
    """Generator architectures (names as in the reference ``--netG`` option)."""

    UNET_256 = "unet_256"  # U-Net with 8 down-samplings (256x256 -> 1x1 at the bottleneck)
    UNET_128 = "unet_128"  # U-Net with 7 down-samplings
    UNET = "unet"  # U-Net with the depth given by ``num_downs`` (>= 5)
    RESNET_6BLOCKS = "resnet_6blocks"
    RESNET_9BLOCKS = "resnet_9blocks"


class FinalActivation(StrEnum):
    """Activation of the generator's output layer."""

    TANH = "tanh"  # outputs in [-1, 1] (reference)
    SIGMOID = "sigmoid"  # outputs in [0, 1] (U-Net regression baseline, seed 003)
    NONE = "none"  # raw outputs


class PadMode(StrEnum):
    """How an input is padded up to a size the network accepts (cropped back afterwards)."""

    REFLECT = "reflect"
    REPLICATE = "replicate"
    ZERO = "zero"


class PaddingType(StrEnum):
    """Padding inside the ResNet blocks (reference ``padding_type``)."""

    REFLECT = "reflect"
    REPLICATE = "replicate"
    ZERO = "zero"


class Upsampling(StrEnum):
    """How the ResNet generator doubles the resolution (see the module docstring)."""

    TRANSPOSE = "transpose"  # ConvTranspose2d 3x3 / 2 (reference)
    RESIZE_CONV = "resize_conv"  # nearest 2x -> ReflectionPad2d(1) -> Conv2d 3x3


def _up_layer(channels_in: int, channels_out: int, kind: Upsampling, bias: bool) -> nn.Module:
    """One 2x up-sampling convolution, ``(N, Cin, H, W) -> (N, Cout, 2H, 2W)``."""
    if kind is Upsampling.TRANSPOSE:
        return nn.ConvTranspose2d(
            channels_in,
            channels_out,
            kernel_size=3,
            stride=2,
            padding=1,
            output_padding=1,
            bias=bias,
        )
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.ReflectionPad2d(1),
        nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=0, bias=bias),
    )


_UNET_DEPTHS: dict[GeneratorKind, int] = {GeneratorKind.UNET_256: 8, GeneratorKind.UNET_128: 7}
_RESNET_BLOCKS: dict[GeneratorKind, int] = {
    GeneratorKind.RESNET_6BLOCKS: 6,
    GeneratorKind.RESNET_9BLOCKS: 9,
}


def final_activation_layer(kind: FinalActivation | str) -> nn.Module:
    """The output activation module for ``kind`` (Tanh, Sigmoid or Identity)."""
    kind = parse_option(FinalActivation, kind, name="final_activation")
    if kind is FinalActivation.TANH:
        return nn.Tanh()
    if kind is FinalActivation.SIGMOID:
        return nn.Sigmoid()
    return nn.Identity()


def _reflect_pad_axis(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """Reflect-pad one spatial dim (-1: W, -2: H) of (N, C, H, W) by any amount.

    ``F.pad(mode="reflect")`` needs each pad smaller than the size it mirrors, so large pads are
    applied in steps (mirror of the mirror); a side of length 1 has nothing to mirror and is
    replicated instead.
    """
    while before or after:
        size = x.shape[dim]
        if size == 1:
            pads = (before, after, 0, 0) if dim == -1 else (0, 0, before, after)
            return F.pad(x, pads, mode="replicate")
        step_before, step_after = min(before, size - 1), min(after, size - 1)
        pads = (step_before, step_after, 0, 0) if dim == -1 else (0, 0, step_before, step_after)
        x = F.pad(x, pads, mode="reflect")
        before, after = before - step_before, after - step_after
    return x


def _reflect_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Reflect-pad W by (left, right) and H by (top, bottom), any amounts; see above."""
    return _reflect_pad_axis(_reflect_pad_axis(x, left, right, -1), top, bottom, -2)


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: PadMode | str = PadMode.REFLECT
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad H and W of ``x`` up to the next multiple of ``multiple``, split evenly on both sides.

    Args:
        x: images of shape (N, C, H, W).
        multiple: the size both H and W must be divisible by (e.g. ``2**num_downs``).
        mode: ``reflect``, ``replicate`` or ``zero``.

    Returns:
        The padded tensor of shape (N, C, H', W') with H', W' the next multiples, and the pads
        ``(left, right, top, bottom)`` to give to :func:`crop_padding`. Without padding needed,
        ``x`` itself is returned.
    """
    mode = parse_option(PadMode, mode, name="input_padding")
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got shape {tuple(x.shape)}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    height, width = x.shape[-2], x.shape[-1]
    pad_h = -height % multiple
    pad_w = -width % multiple
    pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    if pad_h == 0 and pad_w == 0:
        return x, pads
    if mode is PadMode.REFLECT:
        return _reflect_pad(x, *pads), pads
    if mode is PadMode.REPLICATE:
        return F.pad(x, pads, mode="replicate"), pads
    return F.pad(x, pads, mode="constant", value=0.0), pads


def crop_padding(y: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: crop (N, C, H', W') back to (N, C, H, W).

    Args:
        y: padded-size tensor of shape (N, C, H', W').
        pads: ``(left, right, top, bottom)`` as returned by :func:`pad_to_multiple`.

    Returns:
        A view of shape (N, C, H' - top - bottom, W' - left - right).
    """
    left, right, top, bottom = pads
    if not (left or right or top or bottom):
        return y
    height, width = y.shape[-2], y.shape[-1]
    return y[..., top : height - bottom, left : width - right]


def _check_images(x: torch.Tensor, channels: int) -> None:
    """Fail clearly unless ``x`` has shape (N, ``channels``, H, W)."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(
            f"expected images of shape (N, {channels}, H, W), got shape {tuple(x.shape)}"
        )


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: down-sample, run the inner levels, up-sample, concatenate the skip.

    Layer order is the reference's (LeakyReLU 0.2 -> Conv 4x4/2 -> norm, inner, ReLU ->
    ConvTranspose 4x4/2 -> norm [-> Dropout 0.5]); the innermost level has no down norm and no
    inner module, the outermost has neither down activation nor norms and ends with the final
    activation.

    Shapes: a non-outermost block maps (N, C_in, H, W) to (N, C_in + outer_channels, H, W)
    (input concatenated with the output); the outermost block maps (N, C_in, H, W) to
    (N, outer_channels, H, W). H and W must be divisible by 2 ** (number of levels below).
    """

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        in_channels: int | None = None,
        submodule: nn.Module | None = None,
        *,
        outermost: bool = False,
        innermost: bool = False,
        norm: NormKind | str = NormKind.BATCH,
        use_dropout: bool = False,
        final_activation: FinalActivation | str = FinalActivation.TANH,
    ) -> None:
        """Build one level.

        Args:
            outer_channels: channels this level outputs (before the skip concatenation).
            inner_channels: channels after the down-sampling convolution.
            in_channels: channels of the input (default: ``outer_channels``).
            submodule: the next inner level (None only for the innermost level).
            outermost: the top level (no skip, final activation).
            innermost: the bottleneck level (no submodule).
            norm: normalisation kind.
            use_dropout: add Dropout(0.5) after the up-sampling (intermediate levels only).
            final_activation: output activation (outermost level only).
        """
        super().__init__()
        if outermost and innermost:
            raise ValueError("a U-Net level cannot be both outermost and innermost")
        if (submodule is None) != innermost:
            raise ValueError("exactly the innermost U-Net level has no submodule")
        self.outermost = outermost
        use_bias = uses_bias(norm)
        if in_channels is None:
            in_channels = outer_channels
        downconv = nn.Conv2d(
            in_channels, inner_channels, kernel_size=4, stride=2, padding=1, bias=use_bias
        )
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)

        layers: list[nn.Module]
        if outermost:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(
                inner_channels * 2, outer_channels, kernel_size=4, stride=2, padding=1
            )
            layers = [
                downconv,
                submodule,
                uprelu,
                upconv,
                final_activation_layer(final_activation),
            ]
        elif innermost:
            upconv = nn.ConvTranspose2d(
                inner_channels, outer_channels, kernel_size=4, stride=2, padding=1, bias=use_bias
            )
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(norm, outer_channels)]
        else:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(
                inner_channels * 2,
                outer_channels,
                kernel_size=4,
                stride=2,
                padding=1,
                bias=use_bias,
            )
            layers = [
                downrelu,
                downconv,
                norm_layer(norm, inner_channels),
                submodule,
                uprelu,
                upconv,
                norm_layer(norm, outer_channels),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_in + outer, H, W), or (N, outer, H, W) if outermost."""
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """The pix2pix U-Net generator with ``num_downs`` down-samplings, for any input size.

    Channel widths from the top: ngf, 2 ngf, 4 ngf, then 8 ngf for the remaining
    ``num_downs - 3`` levels; the ``num_downs - 5`` intermediate 8 ngf levels (all but the
    innermost and the one above 4 ngf) carry Dropout(0.5) when ``use_dropout``: three for
    unet_256, two for unet_128.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H, W) for any H, W >= 1 (padded to a
    multiple of ``2**num_downs`` internally, see the module docstring).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_downs: int,
        ngf: int = 64,
        norm: NormKind | str = NormKind.BATCH,
        use_dropout: bool = True,
        *,
        final_activation: FinalActivation | str = FinalActivation.TANH,
        input_padding: PadMode | str = PadMode.REFLECT,
    ) -> None:
        """Build the U-Net (weights are PyTorch defaults; see :func:`build_generator`).

        Args:
            in_channels: input channels (1 for an MRI slice, 3 for RGB, ...).
            out_channels: output channels.
            num_downs: number of down-samplings (>= 5; 8 for unet_256, 7 for unet_128).
            ngf: filters in the outermost convolution.
            norm: normalisation kind.
            use_dropout: Dropout(0.5) in the ``num_downs - 5`` intermediate 8 ngf levels.
            final_activation: output activation.
            input_padding: how inputs are padded to a multiple of ``2**num_downs``.
        """
        super().__init__()
        if num_downs < _MIN_UNET_DOWNS:
            raise ValueError(f"num_downs must be >= {_MIN_UNET_DOWNS}, got {num_downs}")
        if in_channels < 1 or out_channels < 1 or ngf < 1:
            raise ValueError(
                f"in_channels, out_channels and ngf must be >= 1, got {in_channels}, "
                f"{out_channels}, {ngf}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_downs = num_downs
        self.input_padding = parse_option(PadMode, input_padding, name="input_padding")
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - _MIN_UNET_DOWNS):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(
            out_channels,
            ngf,
            in_channels=in_channels,
            submodule=block,
            outermost=True,
            norm=norm,
            final_activation=final_activation,
        )

    @property
    def size_multiple(self) -> int:
        """Input sizes that need no padding are multiples of this (``2**num_downs``)."""
        return 2**self.num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, out_channels, H, W)."""
        _check_images(x, self.in_channels)
        padded, pads = pad_to_multiple(x, self.size_multiple, self.input_padding)
        return crop_padding(self.model(padded), pads)


class ResnetBlock(nn.Module):
    """Residual block: x + (pad, conv 3x3, norm, ReLU, [dropout], pad, conv 3x3, norm)(x).

    Shapes: (N, dim, H, W) -> (N, dim, H, W).
    """

    def __init__(
        self,
        dim: int,
        padding_type: PaddingType | str,
        norm: NormKind | str,
        use_dropout: bool,
        use_bias: bool,
    ) -> None:
        """Build the block.

        Args:
            dim: channels in and out.
            padding_type: ``reflect``, ``replicate`` or ``zero`` padding before each convolution.
            norm: normalisation kind.
            use_dropout: Dropout(0.5) between the two convolutions.
            use_bias: whether the convolutions have biases.
        """
        super().__init__()
        padding_type = parse_option(PaddingType, padding_type, name="padding_type")
        layers: list[nn.Module] = []
        for second in (False, True):
            conv_padding = 0
            if padding_type is PaddingType.REFLECT:
                layers.append(nn.ReflectionPad2d(1))
            elif padding_type is PaddingType.REPLICATE:
                layers.append(nn.ReplicationPad2d(1))
            else:
                conv_padding = 1
            layers += [
                nn.Conv2d(dim, dim, kernel_size=3, padding=conv_padding, bias=use_bias),
                norm_layer(norm, dim),
            ]
            if not second:
                layers.append(nn.ReLU(True))
                if use_dropout:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, dim, H, W) -> (N, dim, H, W)."""
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The CycleGAN ResNet generator (Johnson et al.): 2 down-samplings, residual blocks, 2 up.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H, W) for any H, W >= 1 (padded to a
    multiple of 4 internally, see the module docstring).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ngf: int = 64,
        norm: NormKind | str = NormKind.BATCH,
        use_dropout: bool = False,
        n_blocks: int = 6,
        padding_type: PaddingType | str = PaddingType.REFLECT,
        *,
        final_activation: FinalActivation | str = FinalActivation.TANH,
        input_padding: PadMode | str = PadMode.REFLECT,
        upsampling: Upsampling | str = Upsampling.TRANSPOSE,
    ) -> None:
        """Build the generator (weights are PyTorch defaults; see :func:`build_generator`).

        Args:
            in_channels: input channels.
            out_channels: output channels.
            ngf: filters in the first convolution.
            norm: normalisation kind.
            use_dropout: Dropout(0.5) inside each residual block.
            n_blocks: number of residual blocks (6 or 9 in the reference; any >= 0 here).
            padding_type: padding inside the residual blocks.
            final_activation: output activation.
            input_padding: how inputs are padded to a multiple of 4.
            upsampling: ``transpose`` (reference) or ``resize_conv`` (no checkerboard).
        """
        super().__init__()
        up = parse_option(Upsampling, upsampling, name="upsampling")
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if in_channels < 1 or out_channels < 1 or ngf < 1:
            raise ValueError(
                f"in_channels, out_channels and ngf must be >= 1, got {in_channels}, "
                f"{out_channels}, {ngf}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.input_padding = parse_option(PadMode, input_padding, name="input_padding")
        use_bias = uses_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, kernel_size=7, padding=0, bias=use_bias),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        for i in range(_RESNET_DOWNSAMPLINGS):
            mult = 2**i
            layers += [
                nn.Conv2d(
                    ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias
                ),
                norm_layer(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**_RESNET_DOWNSAMPLINGS
        for _ in range(n_blocks):
            layers.append(
                ResnetBlock(
                    ngf * mult,
                    padding_type=padding_type,
                    norm=norm,
                    use_dropout=use_dropout,
                    use_bias=use_bias,
                )
            )
        for i in range(_RESNET_DOWNSAMPLINGS):
            mult = 2 ** (_RESNET_DOWNSAMPLINGS - i)
            layers += [
                _up_layer(ngf * mult, ngf * mult // 2, up, use_bias),
                norm_layer(norm, ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, out_channels, kernel_size=7, padding=0),
            final_activation_layer(final_activation),
        ]
        self.model = nn.Sequential(*layers)

    @property
    def size_multiple(self) -> int:
        """Input sizes that need no padding are multiples of this (4)."""
        return 2**_RESNET_DOWNSAMPLINGS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, out_channels, H, W)."""
        _check_images(x, self.in_channels)
        padded, pads = pad_to_multiple(x, self.size_multiple, self.input_padding)
        return crop_padding(self.model(padded), pads)


def build_generator(
    kind: GeneratorKind | str,
    in_channels: int,
    out_channels: int,
    ngf: int = 64,
    norm: NormKind | str = NormKind.BATCH,
    use_dropout: bool = True,
    num_downs: int | None = None,
    init: InitKind | str = InitKind.NORMAL,
    init_gain: float = 0.02,
    *,
    final_activation: FinalActivation | str = FinalActivation.TANH,
    input_padding: PadMode | str = PadMode.REFLECT,
    padding_type: PaddingType | str = PaddingType.REFLECT,
    upsampling: Upsampling | str = Upsampling.TRANSPOSE,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Build and initialise a generator, like the reference ``define_G`` (without device moves).

    Args:
        kind: architecture.
        in_channels: input channels.
        out_channels: output channels.
        ngf: filters in the outermost convolution.
        norm: normalisation kind.
        use_dropout: dropout as in the reference (U-Net inner levels, or inside ResNet blocks);
            pix2pix uses it, CycleGAN does not.
        num_downs: U-Net depth; required for ``unet``; for ``unet_256``/``unet_128`` it may be
            given only if it equals 8/7; must be None for the ResNet kinds.
        init: weight initialisation scheme.
        init_gain: its gain (standard deviation for ``normal``).
        final_activation: output activation (tanh, sigmoid, none).
        input_padding: padding of inputs whose size is not a multiple the network accepts.
        padding_type: padding inside ResNet blocks (ResNet kinds only).
        upsampling: ``transpose`` or ``resize_conv`` (ResNet kinds only; the U-Net's skip
            levels keep the reference's transposed convolutions).
        generator: optional random source for the initial weights.

    Returns:
        The initialised generator, mapping (N, in_channels, H, W) to (N, out_channels, H, W).
    """
    kind = parse_option(GeneratorKind, kind, name="generator kind")
    upsampling = parse_option(Upsampling, upsampling, name="upsampling")
    if upsampling is not Upsampling.TRANSPOSE and kind not in _RESNET_BLOCKS:
        raise ValueError(f"upsampling={upsampling.value!r} applies to ResNet generators only")
    net: nn.Module
    if kind in _RESNET_BLOCKS:
        if num_downs is not None:
            raise ValueError(f"num_downs applies to U-Net generators only, not {kind.value!r}")
        net = ResnetGenerator(
            in_channels,
            out_channels,
            ngf,
            norm=norm,
            use_dropout=use_dropout,
            n_blocks=_RESNET_BLOCKS[kind],
            padding_type=padding_type,
            final_activation=final_activation,
            input_padding=input_padding,
            upsampling=upsampling,
        )
    else:
        if kind is GeneratorKind.UNET:
            if num_downs is None:
                raise ValueError("generator kind 'unet' needs num_downs (>= 5)")
            depth = num_downs
        else:
            depth = _UNET_DEPTHS[kind]
            if num_downs is not None and num_downs != depth:
                raise ValueError(
                    f"{kind.value!r} has num_downs={depth}, got num_downs={num_downs}; "
                    "use kind 'unet' for another depth"
                )
        net = UnetGenerator(
            in_channels,
            out_channels,
            depth,
            ngf,
            norm=norm,
            use_dropout=use_dropout,
            final_activation=final_activation,
            input_padding=input_padding,
        )
    return init_weights(net, init, init_gain, generator=generator)


def size_multiple(architecture: dict[str, Any]) -> int:
    """The side (px) an input must be a multiple of for :func:`build_generator`'s network.

    ``2 ** depth`` for a U-Net (its skip connections need every level's size to halve
    exactly), 4 for the ResNet generators (two stride-2 convolutions).
    """
    kind = parse_option(GeneratorKind, architecture["kind"], name="generator kind")
    if kind in _RESNET_BLOCKS:
        return 4
    depth = _UNET_DEPTHS.get(kind, architecture.get("num_downs"))
    if depth is None:
        raise ValueError(f"generator architecture {architecture} has no num_downs")
    return int(2 ** int(depth))
