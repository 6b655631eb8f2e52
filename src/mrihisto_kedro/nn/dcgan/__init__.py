"""DCGAN (Radford et al. 2016) for square single-sequence MRI slices (seed 002).

Seed 002 synthesises slices of a missing MRI sequence with a DCGAN: a generator of transposed
convolutions from a noise vector (batch norm, tanh output in [-1, 1]) and a discriminator of
strided convolutions (batch norm, LeakyReLU(0.2)) ending in a real/fake decision, trained with
binary cross-entropy and Adam. Its generated slices also serve as augmentation ("N synthetic
slices added to a training set", :func:`augment_with_synthetic`).

One concept per module, every public name re-exported here:

- :mod:`.config`: :class:`DCGANConfig` (validated options) and its enums;
- :mod:`.networks`: :class:`DCGANGenerator` and :class:`DCGANDiscriminator` (the layers);
- :mod:`.model`: :class:`DCGAN` (networks, optimisers, one iteration, sampling, state dict);
- :mod:`.training`: :func:`train_dcgan` (the epoch loop, deterministic for a seed on CPU;
  checkpoints and resume; data-parallel inside a ``torch.distributed`` process group) and
  :func:`load_dcgan_checkpoint`;
- :mod:`.application`: :func:`discriminator_accuracy` and :func:`augment_with_synthetic`.

Pure PyTorch + numpy (no Kedro).
"""

from mrihisto_kedro.nn.dcgan.application import augment_with_synthetic, discriminator_accuracy
from mrihisto_kedro.nn.dcgan.config import DCGANConfig, GeneratorActivation, NoiseKind
from mrihisto_kedro.nn.dcgan.model import DCGAN
from mrihisto_kedro.nn.dcgan.networks import DCGANDiscriminator, DCGANGenerator
from mrihisto_kedro.nn.dcgan.training import EpochCallback, load_dcgan_checkpoint, train_dcgan

__all__ = [
    "DCGAN",
    "DCGANConfig",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "EpochCallback",
    "GeneratorActivation",
    "NoiseKind",
    "augment_with_synthetic",
    "discriminator_accuracy",
    "load_dcgan_checkpoint",
    "train_dcgan",
]
