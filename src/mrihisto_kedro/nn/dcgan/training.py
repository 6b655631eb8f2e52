"""Training a DCGAN on a set of slices, and checking slices against a model's configuration.

:func:`train_dcgan` visits the images once per epoch in a fresh random order from a ``numpy``
generator seeded with ``config.seed`` (the noise comes from the model's own seeded generator), so
it is deterministic on CPU for a given seed, data and thread count.

Pure PyTorch + numpy (no Kedro).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from mrihisto_kedro.nn.dcgan.config import DCGANConfig
from mrihisto_kedro.nn.dcgan.model import DCGAN

__all__ = ["EpochCallback", "as_image_tensor", "train_dcgan"]

_RANGE_TOL = 1e-6

EpochCallback = Callable[[int, Mapping[str, float], DCGAN], None]
"""``callback(epoch, epoch_means, model)`` after each epoch (0-based epoch)."""


def as_image_tensor(
    images: np.ndarray | torch.Tensor, config: DCGANConfig, name: str
) -> torch.Tensor:
    """(N, S, S) or (N, C, S, S) images in [0, 1] -> float32 CPU tensor (N, C, S, S) in [-1, 1].

    Raises:
        ValueError: wrong shape, non-finite values or values outside [0, 1] (named ``name``).
    """
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    t = t.detach().to("cpu", torch.float32)
    if t.dim() == 3:
        t = t[:, None]
    s, c = config.image_size, config.channels
    if t.dim() != 4 or tuple(t.shape[1:]) != (c, s, s):
        want = f"(N, {s}, {s})" if c == 1 else f"(N, {c}, {s}, {s})"
        raise ValueError(
            f"{name} must be {want} images matching image_size={s}, channels={c}; got shape "
            f"{tuple(np.shape(images))} (resize the slices first)"
        )
    if t.numel():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
            raise ValueError(f"{name} must be float images in [0, 1], got values in [{lo}, {hi}]")
    return t.clamp(0.0, 1.0) * 2.0 - 1.0


def train_dcgan(
    images: np.ndarray | torch.Tensor,
    config: DCGANConfig | None = None,
    callback: EpochCallback | None = None,
) -> tuple[DCGAN, list[dict[str, float]]]:
    """Train a DCGAN on a set of slices.

    Each epoch visits the images once in a fresh random order (``numpy`` generator seeded with
    ``config.seed``) in batches of ``config.batch_size``; a trailing batch of a single image is
    skipped (batch norm). Images are scaled from [0, 1] to [-1, 1].

    Args:
        images: (N, S, S) (one channel) or (N, channels, S, S) float images in [0, 1], S =
            ``config.image_size``, N >= 2.
        config: options (default :class:`~mrihisto_kedro.nn.dcgan.config.DCGANConfig`).
        callback: called after each epoch with ``(epoch, epoch_means, model)``; an exception it
            raises stops training.

    Returns:
        ``(model, history)``: the trained :class:`~mrihisto_kedro.nn.dcgan.model.DCGAN` and one
        dict per epoch with ``"epoch"`` (1-based) and the epoch means of the
        :meth:`~mrihisto_kedro.nn.dcgan.model.DCGAN.train_step` values (each iteration counts
        once).

    Raises:
        ValueError: images of the wrong shape or range, or fewer than two images.
    """
    config = config if config is not None else DCGANConfig()
    data = as_image_tensor(images, config, "images")
    n = data.shape[0]
    if n < 2:
        raise ValueError(f"train_dcgan needs at least 2 images (batch norm), got {n}")
    model = DCGAN(config)
    order_rng = np.random.default_rng(config.seed)
    history: list[dict[str, float]] = []
    for epoch in range(config.epochs):
        perm = torch.from_numpy(order_rng.permutation(n))
        sums: dict[str, float] = {}
        steps = 0
        for start in range(0, n, config.batch_size):
            index = perm[start : start + config.batch_size]
            if index.numel() < 2:
                continue
            losses = model.train_step(data[index])
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            steps += 1
        means = {"epoch": float(epoch + 1), **{k: v / steps for k, v in sums.items()}}
        history.append(means)
        if callback is not None:
            callback(epoch, means, model)
    return model, history
