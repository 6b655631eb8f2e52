"""Using a trained DCGAN: seed 002's discriminator accuracy and augmentation with its samples.

Pure PyTorch + numpy (no Kedro).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch

from mrihisto_kedro.nn.dcgan.model import DCGAN
from mrihisto_kedro.nn.dcgan.training import as_image_tensor
from mrihisto_kedro.params import Range, checked

__all__ = ["augment_with_synthetic", "discriminator_accuracy"]


def discriminator_accuracy(
    model: DCGAN,
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    *,
    threshold: float = 0.5,
) -> float:
    """Fraction of images the discriminator classifies correctly (seed 002's "accuracy").

    A real image counts as correct when ``sigmoid(D(x)) > threshold``, a generated one when it is
    ``<= threshold``; the fraction is over all ``len(real) + len(fake)`` images (pooled, so with
    unequal counts the larger set weighs more). The discriminator runs in evaluation mode. Use
    held-out real images: on training images it measures memorisation. 0.5 is chance for equal
    counts; 1.0 means the generated images are told apart every time.

    Args:
        model: a trained :class:`~mrihisto_kedro.nn.dcgan.model.DCGAN`.
        real: real images (N, S, S) or (N, channels, S, S), float in [0, 1].
        fake: generated images, same layout (e.g. ``DCGAN.generate_images``, possibly refined by
            style transfer), float in [0, 1].
        threshold: decision threshold on the probability "real".

    Returns:
        The accuracy in [0, 1].

    Raises:
        ValueError: both sets empty, wrong shapes or ranges.
    """
    checked("threshold", threshold, Annotated[float, Range(ge=0.0, lt=1.0)])
    r = as_image_tensor(real, model.config, "real")
    f = as_image_tensor(fake, model.config, "fake")
    if r.shape[0] + f.shape[0] == 0:
        raise ValueError("discriminator_accuracy needs at least one image")
    correct = int((model.probability_real(r) > threshold).sum())
    correct += int((model.probability_real(f) <= threshold).sum())
    return correct / (r.shape[0] + f.shape[0])


def augment_with_synthetic(images: np.ndarray, model: DCGAN, n: int, seed: int = 0) -> np.ndarray:
    """The training images followed by ``n`` generated ones (the seed's augmentation parameter).

    Args:
        images: (N, S, S) or (N, channels, S, S) float images in [0, 1].
        model: a trained DCGAN for the same image size and channels.
        n: number of synthetic images to append (0 returns a float32 copy of ``images``).
        seed: seed of the noise (the same seed gives the same synthetic images).

    Returns:
        float32 array (N + n, ...) in [0, 1]: the originals unchanged first, then the synthetic
        images (same layout as ``images``).

    Raises:
        ValueError: ``n < 0``, or images that do not match the model.
    """
    checked("n", n, Annotated[int, Range(ge=0)])
    checked("seed", seed, Annotated[int, Range(ge=0)])
    original = np.asarray(images)
    as_image_tensor(original, model.config, "images")  # validates shape and range
    synthetic = model.generate_images(n, seed=seed) if n else np.zeros((0, *original.shape[1:]))
    if synthetic.ndim != original.ndim:  # one channel: (n, S, S) vs (N, 1, S, S)
        synthetic = synthetic.reshape((n, *original.shape[1:]))
    return np.concatenate([original.astype(np.float32), synthetic.astype(np.float32)])
