"""FID feature extractor compatible with pytorch-fid 0.3.0, without any download.

pytorch-fid's ``InceptionV3([3], resize_input=True, normalize_input=True,
use_fid_inception=True)`` downloads its weights in ``__init__``. Here the same module is built
from pytorch-fid's own classes (:func:`build_fid_inception`, defined in
:mod:`mrihisto_kedro.metrics.weights.architectures` and re-exported here: its
``FIDInceptionA/C/E_1/E_2`` blocks and its inherited ``forward``) and loaded with the state dict
found by :func:`mrihisto_kedro.metrics.weights.load_state_dict` (explicit path > hub cache; never
the network). Features are therefore those of pytorch-fid: 2048-d pool3 activations.

Preprocessing (pytorch-fid's, unchanged): float images in [0, 1] are resized to 299 x 299 with
bilinear interpolation (``align_corners=False``) and mapped to [-1, 1] (``2 x - 1``). Grey images
(one channel) are repeated to three channels, as pytorch-fid's ``Image.convert("RGB")`` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch

from mrihisto_kedro.metrics.weights import WeightsLocation, WeightsUnavailable, load_state_dict
from mrihisto_kedro.metrics.weights.architectures import build_fid_inception

__all__ = [
    "FEATURE_DIM",
    "InceptionFeatures",
    "WeightsUnavailable",
    "as_rgb_batch",
    "batch_length",
    "build_fid_inception",
    "inception_features",
]

#: Dimension of the pool3 features.
FEATURE_DIM = 2048

ImageBatch = torch.Tensor | np.ndarray


def as_rgb_batch(images: ImageBatch, *, name: str = "images") -> torch.Tensor:
    """Validate and convert a batch of images to float32 ``(N, 3, H, W)`` in [0, 1] (CPU).

    Args:
        images: ``(N, 3, H, W)`` or ``(N, 1, H, W)`` (grey, repeated to 3 channels), or
            ``(N, H, W)`` (grey); float in [0, 1] (a tolerance of 1e-4 is clipped), or uint8 in
            [0, 255] (divided by 255). Torch tensor or numpy array.
        name: argument name for error messages.

    Returns:
        A float32 CPU tensor ``(N, 3, H, W)`` with values in [0, 1].

    Raises:
        ValueError: wrong shape or values outside [0, 1] (e.g. images in [-1, 1] or [0, 255]
            passed as float).
    """
    x = torch.as_tensor(np.asarray(images) if isinstance(images, np.ndarray) else images)
    x = x.detach().cpu()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise ValueError(
            f"{name} must be (N, 3, H, W), (N, 1, H, W) or (N, H, W) with N >= 1, "
            f"got {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255.0
    elif not torch.is_floating_point(x):
        raise ValueError(f"{name} must be float in [0, 1] or uint8, got {x.dtype}")
    x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"{name} must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    x = x.clamp(0.0, 1.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()


def batch_length(images: ImageBatch) -> int:
    """Number of images N of a batch (validated in detail by :func:`as_rgb_batch`)."""
    if not isinstance(images, torch.Tensor | np.ndarray):
        raise TypeError(
            f"images must be a torch.Tensor or numpy array, got {type(images).__name__}"
        )
    if images.ndim not in (3, 4) or images.shape[0] == 0:
        raise ValueError(
            f"images must be (N, 3, H, W), (N, 1, H, W) or (N, H, W) with N >= 1, "
            f"got {tuple(images.shape)}"
        )
    return int(images.shape[0])


class InceptionFeatures:
    """Reusable pytorch-fid pool3 feature extractor (build once, call on many batches).

    Args:
        weights_path: explicit weights file (pytorch-fid layout, with or without ``fc``);
            ``None``: the torch hub cache (see :mod:`mrihisto_kedro.metrics.weights`).
        state_dict: weights already in memory (overrides the lookup; used by tests).
        device: torch device for the forward passes (``"cpu"``, ``"cuda"``...).
        batch_size: images per forward pass (each is resized to 299 x 299 first); activation
            memory grows linearly with it.
        cache_dir: checkpoint directory instead of ``torch.hub.get_dir()/checkpoints``.

    Raises:
        WeightsUnavailable: no usable weights (``reason`` says why); nothing is downloaded.
    """

    def __init__(
        self,
        weights_path: str | os.PathLike[str] | None = None,
        *,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.location: WeightsLocation | None = None
        if state_dict is None:
            state_dict, self.location = load_state_dict("fid", weights_path, cache_dir=cache_dir)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = build_fid_inception(state_dict).to(self.device)

    def __call__(self, images: ImageBatch) -> np.ndarray:
        """Pool3 features of ``images``.

        Args:
            images: ``(N, 3, H, W)`` / ``(N, 1, H, W)`` / ``(N, H, W)`` float in [0, 1] (or uint8),
                any H, W (resized to 299 x 299).

        Returns:
            float64 array ``(N, 2048)`` (non-negative: averages of ReLU outputs).
        """
        n = batch_length(images)
        out = np.empty((n, FEATURE_DIM), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                # converted batch by batch: only one batch is ever held as float32 RGB
                batch = as_rgb_batch(images[start : start + self.batch_size]).to(self.device)
                pool3 = self.model(batch)[0]
                out[start : start + batch.shape[0]] = (
                    pool3.reshape(batch.shape[0], FEATURE_DIM).cpu().double().numpy()
                )
        return out


def inception_features(
    images: ImageBatch,
    *,
    weights_path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    extractor: InceptionFeatures | None = None,
) -> np.ndarray:
    """pytorch-fid pool3 features of a batch of images, float64 ``(N, 2048)``.

    Convenience wrapper around :class:`InceptionFeatures`; pass ``extractor`` to reuse a built
    model across calls (building one loads about 95 MB of weights).

    Args:
        images: ``(N, 3, H, W)`` / ``(N, 1, H, W)`` / ``(N, H, W)`` float in [0, 1] (or uint8).
        weights_path: explicit weights file; ``None``: the torch hub cache.
        device: torch device.
        batch_size: images per forward pass.
        extractor: an already built extractor (then the other model options are ignored).

    Raises:
        WeightsUnavailable: no usable weights.
    """
    if extractor is None:
        extractor = InceptionFeatures(weights_path, device=device, batch_size=batch_size)
    return extractor(images)
