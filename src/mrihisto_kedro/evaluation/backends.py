"""Pretrained feature networks for the evaluation, or the reason they are missing.

FID/KID use pytorch-fid's Inception (pool3, 2048-d) and LPIPS the ``lpips`` package's AlexNet
with v0.1 heads. Weights are never downloaded: an explicit path, else the torch hub cache
(``mrihisto-weights`` fills it from registry packages). When they are missing, the metric is
reported as missing with the reason and the rest of the evaluation goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from mrihisto_kedro.evaluation.tiles import FeatureBackends
from mrihisto_kedro.metrics.weights import WeightsUnavailable
from mrihisto_kedro.nn.device import select_device

__all__ = ["WeightPaths", "load_backends"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightPaths:
    """Explicit weight files (``None``: look in the torch hub cache).

    Attributes:
        inception: pytorch-fid Inception state dict (``pt_inception-2015-12-05-*.pth`` or the
            converted file).
        alexnet: AlexNet trunk (torchvision ``features`` or full state dict).
    """

    inception: str | None = None
    alexnet: str | None = None


def _channels_first(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` in [0, 1] -> ``(N, 3, H, W)`` float32."""
    return np.ascontiguousarray(np.moveaxis(images, -1, 1), dtype=np.float32)


def load_backends(paths: WeightPaths, device: str = "auto") -> FeatureBackends:
    """Build the Inception and LPIPS backends that have weights; record why others are missing.

    Args:
        paths: explicit weight files, or ``None`` each for the torch hub cache.
        device: ``auto`` (cuda, mps, cpu) or a torch device.

    Returns:
        :class:`~mrihisto_kedro.evaluation.tiles.FeatureBackends` with callables on channels-last
        ``(N, H, W, 3)`` images in [0, 1].
    """
    from mrihisto_kedro.metrics.inception import InceptionFeatures
    from mrihisto_kedro.metrics.perceptual import LPIPSMetric

    dev = select_device(device)
    backends = FeatureBackends()
    try:
        inception = InceptionFeatures(paths.inception, device=dev)
    except WeightsUnavailable as error:
        reason = str(error)
        backends.missing.update({"FID": reason, "KID": reason})
        logger.warning("FID/KID will be reported as missing: %s", reason)
    else:
        backends.inception = lambda images: inception(_channels_first(images))
    try:
        lpips = LPIPSMetric(paths.alexnet, net="alex", device=dev)
    except WeightsUnavailable as error:
        reason = str(error)
        backends.missing["LPIPS"] = reason
        logger.warning("LPIPS will be reported as missing: %s", reason)
    else:
        backends.lpips = lambda x, y: np.asarray(
            lpips(_channels_first(x), _channels_first(y)), dtype=np.float64
        )
    return backends
