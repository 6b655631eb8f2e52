"""Pretrained feature networks for the evaluation, or the reason they are missing.

FID/KID use pytorch-fid's Inception (pool3, 2048-d) and LPIPS the ``lpips`` package's AlexNet
with v0.1 heads. Weights are never downloaded: an explicit path, else the torch hub cache
(``mrihisto-weights`` fills it from registry packages). When they are missing, the metric is
reported as missing with the reason and the rest of the evaluation goes on.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrihisto_kedro.evaluation.tiles import FeatureBackends
from mrihisto_kedro.metrics.weights import WeightsUnavailable
from mrihisto_kedro.nn.device import select_device

__all__ = ["FeatureCache", "WeightPaths", "load_backends"]

logger = logging.getLogger(__name__)


class FeatureCache:
    """Features of image batches already seen, keyed by the weights and the batch's bytes.

    Experiments that share a tile set (``unet_baseline`` and ``tiles_256``, the two T1 -> T2
    models, the three MSI models) send the same real images through Inception; their features
    are computed once per process. Bounded: the oldest entries go first.

    Args:
        max_entries: batches kept (a batch of 16 tiles is 16 x 2048 float64 = 256 KiB).
    """

    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = int(max_entries)
        self._store: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(weights: str, images: np.ndarray) -> tuple[str, str]:
        """``(weights, digest of dtype, shape and bytes)``."""
        data = np.ascontiguousarray(images)
        digest = hashlib.sha256(f"{data.dtype}{data.shape}".encode())
        digest.update(data.data.cast("B"))
        return weights, digest.hexdigest()

    def __call__(
        self, weights: str, images: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """``compute(images)``, or the stored result for the same weights and images."""
        key = self.key(weights, images)
        if key in self._store:
            self.hits += 1
            self._store.move_to_end(key)
            return self._store[key].copy()
        self.misses += 1
        value = np.asarray(compute(images))
        self._store[key] = value.copy()
        while len(self._store) > self.max_entries:
            self._store.popitem(last=False)
        return value


#: the process-wide cache of Inception features (see :class:`FeatureCache`)
INCEPTION_CACHE = FeatureCache()


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


def _weights_identity(path: Path | None) -> str:
    """Path, size and modification time of a weights file (a cache key part)."""
    if path is None:
        return "in-memory"
    stat = Path(path).stat()
    return f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _channels_first(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` in [0, 1] -> ``(N, 3, H, W)`` float32."""
    return np.ascontiguousarray(np.moveaxis(images, -1, 1), dtype=np.float32)


def load_backends(
    paths: WeightPaths, device: str = "auto", *, inception: bool = True
) -> FeatureBackends:
    """Build the Inception and LPIPS backends that have weights; record why others are missing.

    Args:
        paths: explicit weight files, or ``None`` each for the torch hub cache.
        device: ``auto`` (cuda, mps, cpu) or a torch device.
        inception: ``False``: do not load Inception (no FID/KID wanted; nothing is recorded
            as missing for them).

    Returns:
        :class:`~mrihisto_kedro.evaluation.tiles.FeatureBackends` with callables on channels-last
        ``(N, H, W, 3)`` images in [0, 1].
    """
    from mrihisto_kedro.metrics.inception import InceptionFeatures
    from mrihisto_kedro.metrics.perceptual import LPIPSMetric

    dev = select_device(device)
    backends = FeatureBackends()
    if inception:
        try:
            features = InceptionFeatures(paths.inception, device=dev)
        except WeightsUnavailable as error:
            reason = str(error)
            backends.missing.update({"FID": reason, "KID": reason})
            logger.warning("FID/KID will be reported as missing: %s", reason)
        else:
            where = _weights_identity(features.location.path if features.location else None)
            backends.inception = lambda images: INCEPTION_CACHE(
                where, images, lambda x: features(_channels_first(x))
            )
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
