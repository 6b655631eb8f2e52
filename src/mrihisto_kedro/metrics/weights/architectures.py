"""The networks the weights are for, built without downloading, and state-dict validation.

- :func:`fid_inception_skeleton`: pytorch-fid 0.3.0's FID Inception, unloaded;
- :func:`torchvision_features_skeleton`: torchvision's AlexNet / VGG16 ``features``;
- :func:`normalize_state_dict`: a loaded file brought to our canonical layout, keys and shapes
  checked against the skeletons (built on the meta device, so nothing is allocated);
- :func:`build_fid_inception`: pytorch-fid's ``InceptionV3([3])`` around a given state dict,
  the model that :mod:`mrihisto_kedro.metrics.inception` runs and that the conversion checks
  itself against.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mrihisto_kedro.metrics.weights.registry import WEIGHTS, WeightsUnavailable

if TYPE_CHECKING:
    from torchvision.models import Inception3

__all__ = [
    "build_fid_inception",
    "expected_shapes",
    "fid_inception_skeleton",
    "normalize_state_dict",
    "torchvision_features_skeleton",
]


def fid_inception_skeleton() -> Inception3:
    """pytorch-fid 0.3.0's FID Inception module, built exactly like ``fid_inception_v3()`` but
    without loading (so without download): torchvision ``inception_v3(num_classes=1008,
    aux_logits=False, init_weights=False)`` with blocks replaced by pytorch-fid's
    ``FIDInceptionA/C/E_1/E_2``. Parameters are uninitialised; load a state dict into it.
    """
    import torchvision
    from pytorch_fid import inception as pfi

    inception = torchvision.models.inception_v3(
        weights=None, num_classes=1008, aux_logits=False, init_weights=False
    )
    inception.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = pfi.FIDInceptionE_1(1280)
    inception.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return inception


def torchvision_features_skeleton(arch: str) -> torch.nn.Sequential:
    """torchvision's ``alexnet().features`` or ``vgg16().features`` (no download).

    The whole model is built on the meta device (the classifier, 58M / 124M parameters, is never
    allocated) and only ``features`` is materialised on the CPU with PyTorch's default random
    initialisation (``reset_parameters``); load a state dict into it.
    """
    import torchvision

    if arch not in ("alexnet", "vgg16"):
        raise ValueError(f"unknown trunk {arch!r}; expected 'alexnet' or 'vgg16'")
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)(weights=None)
    features = model.features.to_empty(device="cpu")
    for module in features.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.reset_parameters()
    return features


_FC_KEYS = frozenset({"fc.weight", "fc.bias"})


@functools.cache
def expected_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Canonical state-dict keys of ``name`` and their tensor shapes (``"fid"`` without ``fc``)."""
    with torch.device("meta"):
        module = fid_inception_skeleton() if name == "fid" else torchvision_features_skeleton(name)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if name == "fid":
        shapes = {k: s for k, s in shapes.items() if k not in _FC_KEYS}
    return shapes


def normalize_state_dict(name: str, state: Mapping[str, Any], what: str) -> dict[str, torch.Tensor]:
    """Bring a loaded file to our canonical layout and validate keys and shapes.

    Canonical layouts: ``"fid"``: pytorch-fid's FID Inception keys without ``fc.*`` (an upstream
    ``fc`` is dropped); ``"alexnet"``/``"vgg16"``: torchvision ``features`` keys (``"0.weight"``);
    a full torchvision model state dict is accepted and its ``features.`` part extracted.

    Raises:
        WeightsUnavailable: not a state dict of the expected architecture (the reason lists
            missing/unexpected keys or shape mismatches).
    """
    if not isinstance(state, Mapping):
        raise WeightsUnavailable(name, f"{what} does not hold a state dict")
    items = {str(k): v for k, v in state.items()}
    if name == "fid":
        items = {k: v for k, v in items.items() if k not in _FC_KEYS}
    elif any(k.startswith("features.") for k in items):
        items = {k[len("features.") :]: v for k, v in items.items() if k.startswith("features.")}
    expected = expected_shapes(name)
    missing = sorted(set(expected) - set(items))
    unexpected = sorted(set(items) - set(expected))
    bad = [
        f"{k}: {tuple(items[k].shape)} != {expected[k]}"
        for k in expected
        if k in items
        and (not isinstance(items[k], torch.Tensor) or tuple(items[k].shape) != expected[k])
    ]
    if missing or unexpected or bad:
        raise WeightsUnavailable(
            name,
            f"{what} is not a {WEIGHTS[name].layout}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''} ({len(missing)}), unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''} ({len(unexpected)}), bad shapes {bad[:5]}",
        )
    return items


def _fid_inception_v3_class() -> type[nn.Module]:
    from pytorch_fid.inception import InceptionV3

    class _OfflineInceptionV3(InceptionV3):
        """pytorch-fid's ``InceptionV3`` (block 3 only) around a given, already loaded
        FID Inception; ``forward`` is pytorch-fid's own (resize, normalise, blocks)."""

        def __init__(
            self, inception: Inception3, resize_input: bool = True, normalize_input: bool = True
        ) -> None:
            nn.Module.__init__(self)
            self.resize_input = resize_input
            self.normalize_input = normalize_input
            self.output_blocks = [InceptionV3.DEFAULT_BLOCK_INDEX]
            self.last_needed_block = InceptionV3.DEFAULT_BLOCK_INDEX
            # Same blocks, same order as pytorch_fid.inception.InceptionV3.__init__.
            self.blocks = nn.ModuleList(
                [
                    nn.Sequential(
                        inception.Conv2d_1a_3x3,
                        inception.Conv2d_2a_3x3,
                        inception.Conv2d_2b_3x3,
                        nn.MaxPool2d(kernel_size=3, stride=2),
                    ),
                    nn.Sequential(
                        inception.Conv2d_3b_1x1,
                        inception.Conv2d_4a_3x3,
                        nn.MaxPool2d(kernel_size=3, stride=2),
                    ),
                    nn.Sequential(
                        inception.Mixed_5b,
                        inception.Mixed_5c,
                        inception.Mixed_5d,
                        inception.Mixed_6a,
                        inception.Mixed_6b,
                        inception.Mixed_6c,
                        inception.Mixed_6d,
                        inception.Mixed_6e,
                    ),
                    nn.Sequential(
                        inception.Mixed_7a,
                        inception.Mixed_7b,
                        inception.Mixed_7c,
                        nn.AdaptiveAvgPool2d(output_size=(1, 1)),
                    ),
                ]
            )
            for param in self.parameters():
                param.requires_grad = False

    return _OfflineInceptionV3


def build_fid_inception(
    state_dict: Mapping[str, torch.Tensor],
    *,
    resize_input: bool = True,
    normalize_input: bool = True,
) -> nn.Module:
    """pytorch-fid's ``InceptionV3([3], resize_input, normalize_input, use_fid_inception=True)``
    with the given weights instead of downloaded ones, in eval mode on the CPU.

    Args:
        state_dict: pytorch-fid FID Inception state dict, with or without ``fc.*`` (``fc`` is not
            on the pool3 path and is dropped). Every other key must be present with its shape.
            CPU tensors are used as they are (assigned, not copied).
        resize_input: pytorch-fid's bilinear resize to 299 x 299.
        normalize_input: pytorch-fid's ``2 x - 1``.

    Returns:
        A ``pytorch_fid.inception.InceptionV3`` instance; ``model(x)`` returns ``[pool3]`` with
        ``pool3`` of shape ``(N, 2048, 1, 1)``.

    Raises:
        WeightsUnavailable: the state dict does not fit.
    """
    state = normalize_state_dict("fid", state_dict, "FID Inception state dict")
    with torch.device("meta"):  # no allocation or random init: every tensor is assigned below
        inception = fid_inception_skeleton()
    inception.register_module("fc", nn.Identity())  # not on the pool3 path; loading stays strict
    cpu_state = {k: v.detach().to("cpu") for k, v in state.items()}
    inception.load_state_dict(cpu_state, strict=True, assign=True)
    model = _fid_inception_v3_class()(
        inception, resize_input=resize_input, normalize_input=normalize_input
    )
    return model.eval()
