"""Normalisation layers and weight initialisation shared by the generators and discriminators.

Both follow the reference pix2pix/CycleGAN implementation (Isola et al. 2017, Zhu et al. 2017,
``models/networks.py``):

- batch norm is ``BatchNorm2d(affine=True, track_running_stats=True)``; instance norm is
  ``InstanceNorm2d(affine=False, track_running_stats=False)``; "none" is an ``Identity`` so that
  module indices (and therefore ``state_dict`` keys) do not depend on the norm.
- :func:`init_weights` draws conv / transposed-conv / linear weights from N(0, gain) (or xavier,
  kaiming, orthogonal), sets their biases to 0, and draws ``BatchNorm2d`` scales from
  N(1, gain) with zero shifts. Instance norm without affine parameters has nothing to initialise.

Pure PyTorch (no Kedro).
"""

from __future__ import annotations

from enum import StrEnum

import torch
from torch import nn

from mrihisto_kedro.params import parse_option

__all__ = [
    "InitKind",
    "NormKind",
    "init_weights",
    "norm_layer",
    "parse_option",
    "uses_bias",
]

_WEIGHTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)


class NormKind(StrEnum):
    """Normalisation layer placed after convolutions."""

    BATCH = "batch"
    INSTANCE = "instance"
    NONE = "none"


class InitKind(StrEnum):
    """Weight initialisation scheme for convolution and linear layers."""

    NORMAL = "normal"  # N(0, gain)
    XAVIER = "xavier"  # xavier_normal_ with this gain
    KAIMING = "kaiming"  # kaiming_normal_(a=0, mode="fan_in"); gain is ignored, as in the reference
    ORTHOGONAL = "orthogonal"  # orthogonal_ with this gain


def norm_layer(kind: NormKind | str, num_features: int) -> nn.Module:
    """Build one normalisation layer for feature maps of shape (N, ``num_features``, H, W).

    Args:
        kind: ``batch`` (affine, running statistics), ``instance`` (no affine parameters, no
            running statistics) or ``none`` (identity).
        num_features: number of channels C.

    Returns:
        A module mapping (N, C, H, W) to (N, C, H, W).
    """
    kind = parse_option(NormKind, kind, name="norm")
    if num_features < 1:
        raise ValueError(f"num_features must be >= 1, got {num_features}")
    if kind is NormKind.BATCH:
        return nn.BatchNorm2d(num_features, affine=True, track_running_stats=True)
    if kind is NormKind.INSTANCE:
        return nn.InstanceNorm2d(num_features, affine=False, track_running_stats=False)
    return nn.Identity()


def uses_bias(kind: NormKind | str) -> bool:
    """Whether a convolution followed by a norm of this kind carries a bias.

    Batch norm has its own shift, so the convolution before it has no bias (as in the reference).
    Instance norm here has no affine shift, and "none" has no norm at all, so those convolutions
    keep their bias. (The reference also drops the bias for "none", which leaves those layers
    without any offset; this is the one deliberate difference, and it does not touch the batch
    norm parameter counts.)

    Args:
        kind: the norm kind.

    Returns:
        True for ``instance`` and ``none``, False for ``batch``.
    """
    return parse_option(NormKind, kind, name="norm") is not NormKind.BATCH


def init_weights(
    net: nn.Module,
    kind: InitKind | str = InitKind.NORMAL,
    gain: float = 0.02,
    *,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Initialise ``net`` in place as the reference ``init_weights`` does, and return it.

    Conv (1-3 d, transposed or not) and linear weights: N(0, gain) for ``normal``,
    ``xavier_normal_(gain)``, ``kaiming_normal_(a=0, mode="fan_in")`` or ``orthogonal_(gain)``;
    their biases are set to 0. ``BatchNorm2d`` weights: N(1, gain); biases: 0. Other modules
    (instance norm without affine parameters, identities, activations) are left untouched.

    Args:
        net: the network to initialise.
        kind: the initialisation scheme.
        gain: standard deviation for ``normal`` and the batch norm scales, gain for ``xavier`` and
            ``orthogonal``.
        generator: optional random source for reproducible weights (default: the global torch RNG).

    Returns:
        ``net`` itself.
    """
    kind = parse_option(InitKind, kind, name="init")
    if gain <= 0:
        raise ValueError(f"init gain must be > 0, got {gain}")

    def init_module(module: nn.Module) -> None:
        if isinstance(module, _WEIGHTED_LAYERS):
            # conv and linear layers hold their weight (and bias, unless bias=False) as Parameters
            weight, bias = module.weight, module.bias
            assert isinstance(weight, torch.Tensor)
            with torch.no_grad():
                if kind is InitKind.NORMAL:
                    nn.init.normal_(weight, 0.0, gain, generator=generator)
                elif kind is InitKind.XAVIER:
                    nn.init.xavier_normal_(weight, gain=gain, generator=generator)
                elif kind is InitKind.KAIMING:
                    nn.init.kaiming_normal_(weight, a=0, mode="fan_in", generator=generator)
                else:
                    nn.init.orthogonal_(weight, gain=gain, generator=generator)
                if isinstance(bias, torch.Tensor):  # None without bias
                    nn.init.zeros_(bias)
        elif isinstance(module, nn.BatchNorm2d) and module.weight is not None:
            with torch.no_grad():
                nn.init.normal_(module.weight, 1.0, gain, generator=generator)
                nn.init.zeros_(module.bias)

    net.apply(init_module)
    return net
