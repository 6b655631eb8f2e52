"""Style refinement itself: :class:`StyleTransferParams` and :func:`refine` (Gatys et al.).

**Optimisation** (:func:`refine`): the image itself is the parameter (one channel for a grey
input, so the result stays grey), clamped to [0, 1] after every step; L-BFGS (Gatys et al.; one
quasi-Newton iteration with a strong-Wolfe line search per step, history kept across steps) or
Adam. Images are refined in chunks of ``batch_size`` (default 1: every image on its own, so its
result does not depend on the rest of the batch).

Pure PyTorch (no Kedro).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import torch

from mrihisto_kedro.nn.style_transfer.losses import content_loss, gram_matrix, style_loss
from mrihisto_kedro.nn.style_transfer.vgg import VGGFeatures, vgg_features
from mrihisto_kedro.params import Params, Range, fail

__all__ = ["OptimizerKind", "StyleTransferParams", "refine"]

_LBFGS_MAX_EVAL = 25  # closure evaluations allowed per L-BFGS step (line search)
_DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.003}

NonNegative = Annotated[float, Range(ge=0.0)]


class OptimizerKind(StrEnum):
    """Optimiser of the refined image."""

    LBFGS = "lbfgs"  # Gatys et al.; default lr 1.0
    ADAM = "adam"  # default lr 0.003 (pixel units of [0, 1] images)


@dataclass(frozen=True)
class StyleTransferParams(Params):
    """Options of :func:`refine` (``missing_sequences.synthesis.refinement.transfer``).

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
    content_layer_weights: tuple[NonNegative, ...] | None = None
    style_layer_weights: tuple[NonNegative, ...] | None = None
    content_weight: NonNegative = 1.0
    style_weight: NonNegative = 100.0
    steps: Annotated[int, Range(ge=0)] = 50
    lr: Annotated[float, Range(gt=0.0)] | None = None
    optimizer: OptimizerKind = OptimizerKind.LBFGS
    init_noise: NonNegative = 0.0
    seed: Annotated[int, Range(ge=0)] = 0
    batch_size: Annotated[int, Range(ge=1)] = 1

    def validate(self) -> None:
        """At least one loss term, and one weight per layer where weights are given."""
        if not self.content_layers and not self.style_layers:
            fail("content_layers", "and style_layers are both empty")
        for name, layers, weights in (
            ("content_layer_weights", "content_layers", self.content_layer_weights),
            ("style_layer_weights", "style_layers", self.style_layer_weights),
        ):
            expected = len(getattr(self, layers))
            if weights is not None and len(weights) != expected:
                fail(
                    name,
                    f"must have one weight per layer of {layers} ({expected}), got {len(weights)}",
                )

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
    """Refine images by style transfer (losses: :mod:`mrihisto_kedro.nn.style_transfer.losses`).

    Args:
        image: (N, 1|3, H, W) starting images in [0, 1] (e.g. generated slices).
        content: (N or 1, 1|3, H, W) content images in [0, 1] (e.g. the input MRI slices); same
            H and W as ``image``.
        style: (N or 1, 1|3, H', W') style references in [0, 1] (any size: Gram matrices do not
            depend on it).
        params: options (default :class:`StyleTransferParams`).
        features: the trunk (default ``vgg_features("vgg16", "avg")``, which may raise
            :class:`~mrihisto_kedro.metrics.weights.WeightsUnavailable`).

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
