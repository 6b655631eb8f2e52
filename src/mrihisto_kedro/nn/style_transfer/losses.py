"""The losses of style refinement: Gram matrices, content loss, style loss.

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

Pure PyTorch (no Kedro).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["content_loss", "gram_matrix", "style_loss"]


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
