"""LPIPS (Zhang et al. 2018) with the ``lpips`` package, its v0.1 heads and offline trunk weights.

``lpips.LPIPS(net="alex", pretrained=True)`` with the default ``pnet_rand=False`` would ask
torchvision for ImageNet weights (a download). Instead the module is built with
``pnet_rand=True`` (random trunk; the v0.1 linear heads still load from inside the ``lpips``
package) and the ImageNet trunk found by :mod:`mrihisto_kedro.metrics.weights` (a torchvision
``features`` state dict: explicit path > hub cache) is loaded into ``model.net``.

Inputs are float images in [0, 1] (grey repeated to 3 channels); they are passed with
``normalize=True``, i.e. mapped to [-1, 1] and then through lpips' own scaling layer, exactly as
``lpips`` expects. No resizing: both images of a pair must have the same size; the spatial
average makes the distance size-independent in expectation.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from mrihisto_kedro.metrics.inception import ImageBatch, as_rgb_batch, batch_length
from mrihisto_kedro.metrics.weights import (
    WeightsLocation,
    WeightsUnavailable,
    load_state_dict,
    normalize_state_dict,
)

__all__ = [
    "LPIPSMetric",
    "WeightsUnavailable",
    "features_to_lpips_net",
    "lpips_distance",
]

#: lpips net name -> (our weights name, torchvision ``features`` index where slice k+1 starts).
_NETS: dict[str, tuple[str, tuple[int, ...]]] = {
    "alex": ("alexnet", (0, 2, 5, 8, 10, 12)),
    "vgg": ("vgg16", (0, 4, 9, 16, 23, 30)),
}


def features_to_lpips_net(
    features_state: Mapping[str, torch.Tensor], net: str = "alex"
) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``features`` state dict to ``lpips.pretrained_networks`` keys.

    lpips splits torchvision's ``features`` into ``slice1..slice5`` keeping the layer indices
    (AlexNet: layers 0-1, 2-4, 5-7, 8-9, 10-11; VGG16: 0-3, 4-8, 9-15, 16-22, 23-29), so
    ``"3.weight"`` becomes ``"slice2.3.weight"``. Layers after the last slice are dropped.
    """
    _, bounds = _NETS[net]
    out: dict[str, torch.Tensor] = {}
    for key, value in features_state.items():
        index = int(key.split(".", 1)[0])
        for k in range(5):
            if bounds[k] <= index < bounds[k + 1]:
                out[f"slice{k + 1}.{key}"] = value
    return out


class LPIPSMetric:
    """Reusable LPIPS distance (v0.1 heads; AlexNet trunk by default).

    Args:
        weights_path: explicit trunk weights file (torchvision ``features`` state dict or full
            torchvision model state dict); ``None``: the torch hub cache.
        state_dict: trunk weights already in memory (torchvision ``features`` keys; overrides
            the lookup).
        net: ``"alex"`` (default, the project's choice) or ``"vgg"``.
        device: torch device.
        batch_size: image pairs per forward pass (bounds memory).
        cache_dir: checkpoint directory instead of ``torch.hub.get_dir()/checkpoints``.

    Raises:
        WeightsUnavailable: no usable trunk weights, or the lpips heads are missing.
    """

    def __init__(
        self,
        weights_path: str | os.PathLike[str] | None = None,
        *,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        net: str = "alex",
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if net not in _NETS:
            raise ValueError(f"net must be one of {sorted(_NETS)}, got {net!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        weights_name = _NETS[net][0]
        self.location: WeightsLocation | None = None
        if state_dict is None:
            state_dict, self.location = load_state_dict(
                weights_name, weights_path, cache_dir=cache_dir
            )
        else:
            state_dict = normalize_state_dict(weights_name, state_dict, "trunk state dict")
        self.net = net
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = _build_lpips(net, state_dict).to(self.device)

    def __call__(self, x: ImageBatch, y: ImageBatch) -> np.ndarray:
        """LPIPS distance between corresponding images of two batches.

        Args:
            x: ``(N, 3, H, W)`` / ``(N, 1, H, W)`` / ``(N, H, W)`` float in [0, 1] (or uint8).
            y: same shape as ``x``.

        Returns:
            float64 array ``(N,)``; 0 for identical images, larger is more different
            (typically 0-1, not bounded).
        """
        n = batch_length(x)
        if tuple(x.shape) != tuple(y.shape):
            raise ValueError(
                f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        out = np.empty(n, dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                # converted batch by batch: only one batch is ever held as float32 RGB
                sl = slice(start, start + self.batch_size)
                a = as_rgb_batch(x[sl], name="x").to(self.device)
                b = as_rgb_batch(y[sl], name="y").to(self.device)
                out[sl] = self.model(a, b, normalize=True).reshape(-1).cpu().double().numpy()
        return out


def _build_lpips(net: str, features_state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """``lpips.LPIPS(net, pnet_rand=True, pretrained=True)`` with the trunk loaded, eval mode."""
    import lpips

    with warnings.catch_warnings():
        # torchvision: "The parameter 'pretrained' is deprecated" (lpips passes pretrained=False)
        warnings.simplefilter("ignore", UserWarning)
        try:
            model = lpips.LPIPS(net=net, pnet_rand=True, pretrained=True, verbose=False)
        except FileNotFoundError as exc:
            raise WeightsUnavailable(net, f"lpips v0.1 heads not found: {exc}") from exc
    # lpips loads its heads with strict=False: check they really are the shipped v0.1 heads.
    heads_file = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    heads = torch.load(heads_file, map_location="cpu", weights_only=True)
    lins = model.state_dict()
    if not all(k in lins and torch.equal(lins[k], v) for k, v in heads.items()):
        raise WeightsUnavailable(net, f"lpips heads from {heads_file} did not load")
    model.net.load_state_dict(features_to_lpips_net(features_state, net), strict=True)
    return model.eval()


def lpips_distance(
    x: ImageBatch,
    y: ImageBatch,
    *,
    weights_path: str | os.PathLike[str] | None = None,
    net: str = "alex",
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    metric: LPIPSMetric | None = None,
) -> np.ndarray:
    """LPIPS distance per image pair, float64 ``(N,)`` (see :class:`LPIPSMetric`).

    Pass ``metric`` to reuse a built model across calls.

    Raises:
        WeightsUnavailable: no usable trunk weights.
    """
    if metric is None:
        metric = LPIPSMetric(weights_path, net=net, device=device, batch_size=batch_size)
    return metric(x, y)
