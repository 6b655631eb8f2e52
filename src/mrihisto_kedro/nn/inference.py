"""A trained generator as the ``predict`` callable of sliding-window stitching.

:class:`GeneratorPredictor` wraps a ``torch.nn.Module`` (e.g. a pix2pix generator from
:func:`mrihisto_kedro.nn.training.load_generator`) as ``predict(batch) -> batch``: numpy
``(N, C_in, h, w)`` float32 in, numpy ``(N, C_out, h, w)`` float32 out, in the generator's output
range (``[-1, 1]`` for tanh). It is what
:func:`mrihisto_kedro.imaging.stitching.stitch_to_tiff` needs, so the stitching stays torch-free::

    predictor = load_predictor("generator.pt", device="auto")
    stitch_to_tiff(array_reader(mri), predictor, mri.shape[-2:], 3, "synthetic.svs",
                   StitchOptions(window=256, overlap=64), mpp=mpp)

The module is put in evaluation mode once, explicitly (dropout off, batch norm on its running
statistics): every window is then translated independently of the other windows in its batch,
which the stitching relies on. (The reference pix2pix ``test.py`` keeps training-mode layers
unless ``--eval`` is given; that would make a window depend on its batch neighbours.)

Pure PyTorch (no Kedro).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from mrihisto_kedro.nn.device import (
    Precision,
    autocast_context,
    resolve_precision,
    select_device,
    use_channels_last,
)

__all__ = ["GeneratorPredictor", "load_predictor"]


class GeneratorPredictor:
    """``predict(batch (N, C_in, h, w) float32) -> (N, C_out, h, w) float32`` with a torch model.

    Attributes:
        module: the wrapped network, in eval mode on :attr:`device`.
        device: where the forward pass runs.
        precision: the precision actually used (``fp32``, ``bf16`` or ``fp16``).
        in_channels: input channels the network expects (``None`` if it does not say).
        out_channels: channels it returns (``None`` if it does not say).
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: Precision | str = Precision.FP32,
        channels_last: bool = False,
    ) -> None:
        """Move ``module`` to the device and switch it to evaluation mode (in place).

        Args:
            module: a network mapping ``(N, C_in, h, w)`` to ``(N, C_out, h, w)``.
            device: ``auto`` (CUDA, then MPS, then CPU) or a device string.
            precision: ``fp32`` (default: reproducible), or ``bf16``/``fp16``/``auto`` autocast
                for speed on GPUs (outputs are still returned as float32).
            channels_last: use the channels_last memory format (CUDA and CPU only).
        """
        if not isinstance(module, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, got {type(module).__name__}")
        self.device = device if isinstance(device, torch.device) else select_device(str(device))
        self.precision = resolve_precision(self.device, precision)
        self.module = use_channels_last(module.to(self.device), self.device, channels_last).eval()
        self.channels_last = channels_last
        self.in_channels: int | None = getattr(module, "in_channels", None)
        self.out_channels: int | None = getattr(module, "out_channels", None)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Translate a batch of windows.

        Args:
            batch: ``(N, C_in, h, w)``, any real dtype (used as float32), values in the range the
                network was trained on (``[-1, 1]`` for pix2pix inputs).

        Returns:
            ``(N, C_out, h, w)`` float32 numpy array (C-contiguous).

        Raises:
            ValueError: ``batch`` is not 4-D or has the wrong number of channels.
            RuntimeError: the module is no longer in eval mode (someone called ``.train()``).
        """
        array = np.asarray(batch)
        if array.ndim != 4:
            raise ValueError(f"expected a batch of shape (N, C, h, w), got shape {array.shape}")
        if self.in_channels is not None and array.shape[1] != self.in_channels:
            raise ValueError(
                f"the generator takes {self.in_channels} input channel(s), got a batch of shape "
                f"{array.shape}"
            )
        if self.module.training:
            raise RuntimeError(
                "the generator was switched back to training mode; predictions would depend on "
                "the other windows of the batch (call .eval() or build a new GeneratorPredictor)"
            )
        inputs = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        inputs = use_channels_last(inputs.to(self.device), self.device, self.channels_last)
        with torch.inference_mode(), autocast_context(self.device, self.precision):
            outputs = self.module(inputs)
        result = outputs.float().cpu().numpy()
        if result.ndim != 4 or result.shape[0] != array.shape[0]:
            raise ValueError(
                f"the generator returned shape {result.shape} for a batch of shape {array.shape}"
            )
        return np.ascontiguousarray(result)


def load_predictor(
    generator: Mapping[str, Any] | str | os.PathLike[str],
    *,
    device: str | torch.device = "auto",
    precision: Precision | str = Precision.FP32,
    channels_last: bool = False,
) -> GeneratorPredictor:
    """A :class:`GeneratorPredictor` for an exported generator (file or dict).

    Args:
        generator: the payload of :func:`mrihisto_kedro.nn.training.export_generator` or a
            ``.pt`` file holding it.
        device, precision, channels_last: as in :class:`GeneratorPredictor`.
    """
    from mrihisto_kedro.nn.training import load_generator

    target = device if isinstance(device, torch.device) else select_device(str(device))
    return GeneratorPredictor(
        load_generator(generator, device=target),
        device=target,
        precision=precision,
        channels_last=channels_last,
    )
