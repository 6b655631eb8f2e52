"""DCGAN (Radford et al. 2016) for square single-sequence MRI slices (seed 002).

Seed 002 synthesises slices of a missing MRI sequence with a DCGAN: a generator of transposed
convolutions from a noise vector (batch norm, tanh output in [-1, 1]) and a discriminator of
strided convolutions (batch norm, LeakyReLU(0.2)) ending in a real/fake decision, trained with
binary cross-entropy and Adam. Its generated slices also serve as augmentation ("N synthetic
slices added to a training set", :func:`augment_with_synthetic`).

Architecture for ``image_size`` S = 2**k (k >= 5; 32, 64, 128, 256, ...), with
``mult(r) = min(S // (2 r), max_mult)`` the width multiplier of a feature map of side r:

- generator: z (N, nz, 1, 1) -> ConvT(nz, ngf*mult(4), 4, 1, 0) BN act -> 4x4; then
  ConvT(4, 2, 1) BN act doubling the side up to S/2 (filters ngf*mult(r)); then
  ConvT(ngf*mult(S/2) = ngf, channels, 4, 2, 1) tanh -> (N, channels, S, S). For S = 64 these
  are the layers of the PyTorch DCGAN example (filters 8, 4, 2, 1 x ngf; plus the biases below);
  for S = 128 one more block (16, 8, 4, 2, 1 x ngf with the default ``max_mult`` 16).
- discriminator, the mirror: Conv(channels, ndf, 4, 2, 1) LeakyReLU(0.2) (no batch norm on the
  input layer, as Radford et al.); Conv(4, 2, 1) BN LeakyReLU(0.2) halving the side down to 4x4
  (filters ndf*mult(r)); Conv(ndf*mult(4), 1, 4, 1, 0) -> one logit (N,) per image.
  ``sigmoid(logit)`` is the probability "real"; the loss is ``BCEWithLogitsLoss`` (= sigmoid +
  binary cross-entropy, numerically stable).
- ``generator_activation``: ``relu`` (Radford et al., the default) or ``leaky_relu`` (slope 0.2,
  what seed 002's text describes for its generator).
- Convolutions followed by batch norm have no bias (the norm has a shift); the generator's output
  layer and the discriminator's input and output layers keep theirs.
- Init: conv weights N(0, 0.02), batch-norm scales N(1, 0.02), biases and shifts 0
  (:func:`mrihisto_kedro.nn.layers.init_weights`), drawn from a ``torch.Generator`` seeded with
  ``config.seed``.

Training (:meth:`DCGAN.train_step`), as the PyTorch DCGAN example: D step on a real batch and a
fresh fake batch, ``loss_D = BCE(D(real), 1) + BCE(D(G(z)), 0)``; then G step on the same fakes
with the non-saturating loss ``loss_G = BCE(D(G(z)), 1)``. Adam (``lr`` for G, ``lr_D`` for D,
``beta1``, ``beta2``), constant learning rates. Noise is drawn from the model's own
``torch.Generator`` and batches are shuffled by a ``numpy`` generator, both seeded with
``config.seed`` and independent of the global RNGs, so :func:`train_dcgan` is deterministic on
CPU for a given seed, data and thread count.

Sampling and classification use evaluation mode (batch-norm running statistics), so an image's
output does not depend on the rest of its batch; the previous mode is restored afterwards.
Precision is float32 throughout (the networks are small).

Pure PyTorch + numpy (no Kedro).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mrihisto_kedro.nn.device import select_device
from mrihisto_kedro.nn.layers import init_weights, parse_option
from mrihisto_kedro.params import check_int, check_number

__all__ = [
    "DCGAN",
    "DCGANConfig",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GeneratorActivation",
    "NoiseKind",
    "augment_with_synthetic",
    "discriminator_accuracy",
    "train_dcgan",
]

_MIN_SIZE = 32
_FIRST_SIDE = 4  # side of the generator's first (and the discriminator's last) feature map
_LEAK = 0.2
_RANGE_TOL = 1e-6

EpochCallback = Callable[[int, Mapping[str, float], "DCGAN"], None]
"""``callback(epoch, epoch_means, model)`` after each epoch (0-based epoch)."""


class GeneratorActivation(StrEnum):
    """Activation of the generator's hidden layers."""

    RELU = "relu"  # Radford et al. 2016
    LEAKY_RELU = "leaky_relu"  # slope 0.2 (seed 002's description)


class NoiseKind(StrEnum):
    """Distribution of the generator's noise vector z."""

    NORMAL = "normal"  # N(0, 1) per component (PyTorch DCGAN example)
    UNIFORM = "uniform"  # U[-1, 1) per component (Radford et al. 2016)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class DCGANConfig:
    """DCGAN options; defaults are Radford et al.'s (Adam lr 2e-4, beta1 0.5, N(0, 0.02) init).

    Seed 002's Table 1 used batch size 120, 3750 epochs, lr 1e-4 for D and 2e-4 for G: set
    ``batch_size=120, epochs=3750, lr_D=1e-4`` to follow it.

    Attributes:
        nz: length of the noise vector z.
        ngf: generator filters of the last hidden layer (side S/2); earlier layers have
            ``ngf * mult``.
        ndf: discriminator filters of the first layer (side S/2).
        image_size: side S of the square images in pixels, a power of 2 >= 32.
        channels: image channels (1 for an MRI sequence).
        max_mult: cap of the width multiplier (16: no cap up to S = 128).
        generator_activation: ``relu`` or ``leaky_relu``.
        noise: ``normal`` or ``uniform``.
        lr: Adam learning rate of the generator.
        lr_D: Adam learning rate of the discriminator; ``None``: same as ``lr``.
        beta1, beta2: Adam betas (both networks).
        init_gain: standard deviation of the N(0, gain) initialisation (0.02).
        epochs: passes over the training images in :func:`train_dcgan`.
        batch_size: images per iteration (a trailing batch of one image is skipped: batch norm
            in training mode needs at least two).
        seed: seed of the initial weights, of the noise and of the batch order.
        device: ``auto`` (CUDA, MPS, CPU) or a device string (``cpu``, ``cuda:0``).
    """

    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    image_size: int = 128
    channels: int = 1
    max_mult: int = 16
    generator_activation: GeneratorActivation = GeneratorActivation.RELU
    noise: NoiseKind = NoiseKind.NORMAL
    lr: float = 2e-4
    lr_D: float | None = None
    beta1: float = 0.5
    beta2: float = 0.999
    init_gain: float = 0.02
    epochs: int = 25
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        """Convert option strings to enums and validate every field (ValueError names it)."""
        for name, enum_cls in (
            ("generator_activation", GeneratorActivation),
            ("noise", NoiseKind),
        ):
            object.__setattr__(self, name, parse_option(enum_cls, getattr(self, name), name=name))
        for name in ("nz", "ngf", "ndf", "channels", "max_mult", "batch_size"):
            check_int(name, getattr(self, name), 1)
        check_int("image_size", self.image_size, _MIN_SIZE)
        if not _is_power_of_two(self.image_size):
            raise ValueError(
                f"image_size must be a power of 2 >= {_MIN_SIZE} (32, 64, 128, 256, ...), got "
                f"{self.image_size}"
            )
        check_int("epochs", self.epochs, 0)
        check_int("seed", self.seed, 0)
        check_number("lr", self.lr, 1e-30)
        if self.lr_D is not None:
            check_number("lr_D", self.lr_D, 1e-30)
        check_number("beta1", self.beta1, 0.0, 1.0)
        check_number("beta2", self.beta2, 0.0, 1.0)
        check_number("init_gain", self.init_gain, 1e-12)
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string, got {self.device!r}")

    @property
    def lr_discriminator(self) -> float:
        """The discriminator's learning rate (``lr_D``, or ``lr`` when unset)."""
        return float(self.lr if self.lr_D is None else self.lr_D)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: value}`` with enums as their string values (logging, checkpoints)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.value if isinstance(value, Enum) else value
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Build the config from :meth:`to_dict` output or a parameters mapping.

        Raises:
            ValueError: unknown keys (named) or invalid values.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {unknown}")
        return cls(**dict(values))


def _mult(size: int, side: int, max_mult: int) -> int:
    """Width multiplier of a feature map of side ``side`` in a network for ``size`` images."""
    return min(size // (2 * side), max_mult)


def _activation(kind: GeneratorActivation) -> nn.Module:
    if kind is GeneratorActivation.RELU:
        return nn.ReLU(True)
    return nn.LeakyReLU(_LEAK, True)


class DCGANGenerator(nn.Module):
    """Noise (N, nz) or (N, nz, 1, 1) -> images (N, channels, S, S) in [-1, 1] (tanh).

    See the module docstring for the layers. ``main`` is an ``nn.Sequential``; weights are
    PyTorch defaults until :func:`mrihisto_kedro.nn.layers.init_weights` (done by :class:`DCGAN`).
    """

    def __init__(
        self,
        nz: int = 100,
        ngf: int = 64,
        image_size: int = 128,
        channels: int = 1,
        max_mult: int = 16,
        activation: GeneratorActivation | str = GeneratorActivation.RELU,
    ) -> None:
        """Build the generator.

        Args:
            nz: noise length.
            ngf: filters of the last hidden layer.
            image_size: output side S, a power of 2 >= 32.
            channels: output channels.
            max_mult: cap of the width multiplier.
            activation: hidden-layer activation.
        """
        super().__init__()
        if not (_is_power_of_two(image_size) and image_size >= _MIN_SIZE):
            raise ValueError(f"image_size must be a power of 2 >= {_MIN_SIZE}, got {image_size}")
        act = parse_option(GeneratorActivation, activation, name="generator_activation")
        self.nz = nz
        self.image_size = image_size
        self.channels = channels
        side = _FIRST_SIDE
        width = ngf * _mult(image_size, side, max_mult)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            _activation(act),
        ]
        while side * 2 < image_size:
            side *= 2
            next_width = ngf * _mult(image_size, side, max_mult)
            layers += [
                nn.ConvTranspose2d(width, next_width, 4, 2, 1, bias=False),
                nn.BatchNorm2d(next_width),
                _activation(act),
            ]
            width = next_width
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=True), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, nz) or (N, nz, 1, 1) noise -> (N, channels, S, S) in [-1, 1]."""
        if z.dim() == 2:
            z = z[:, :, None, None]
        if z.dim() != 4 or z.shape[1:] != (self.nz, 1, 1):
            raise ValueError(
                f"expected noise (N, {self.nz}) or (N, {self.nz}, 1, 1), got {z.shape}"
            )
        return self.main(z)


class DCGANDiscriminator(nn.Module):
    """Images (N, channels, S, S) in [-1, 1] -> logits (N,) (sigmoid = probability "real").

    See the module docstring for the layers.
    """

    def __init__(
        self, ndf: int = 64, image_size: int = 128, channels: int = 1, max_mult: int = 16
    ) -> None:
        """Build the discriminator.

        Args:
            ndf: filters of the first layer.
            image_size: input side S, a power of 2 >= 32.
            channels: input channels.
            max_mult: cap of the width multiplier.
        """
        super().__init__()
        if not (_is_power_of_two(image_size) and image_size >= _MIN_SIZE):
            raise ValueError(f"image_size must be a power of 2 >= {_MIN_SIZE}, got {image_size}")
        self.image_size = image_size
        self.channels = channels
        side = image_size // 2
        width = ndf * _mult(image_size, side, max_mult)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 4, 2, 1, bias=True),
            nn.LeakyReLU(_LEAK, True),
        ]
        while side > _FIRST_SIDE:
            side //= 2
            next_width = ndf * _mult(image_size, side, max_mult)
            layers += [
                nn.Conv2d(width, next_width, 4, 2, 1, bias=False),
                nn.BatchNorm2d(next_width),
                nn.LeakyReLU(_LEAK, True),
            ]
            width = next_width
        layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=True))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, channels, S, S) -> logits (N,)."""
        expected = (self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected images (N, {', '.join(map(str, expected))}), got {x.shape}")
        return self.main(x).reshape(-1)


@contextmanager
def _eval_mode(*nets: nn.Module) -> Iterator[None]:
    """Put ``nets`` in evaluation mode and restore each one's previous mode afterwards."""
    modes = [net.training for net in nets]
    try:
        for net in nets:
            net.eval()
        yield
    finally:
        for net, mode in zip(nets, modes, strict=True):
            net.train(mode)


class DCGAN:
    """A DCGAN: generator ``G``, discriminator ``D``, their Adam optimisers and the noise RNG.

    Attributes:
        config: the validated :class:`DCGANConfig`.
        device: the device the networks live on.
        G: :class:`DCGANGenerator`; D: :class:`DCGANDiscriminator`.
        opt_G, opt_D: Adam optimisers.
        noise_generator: ``torch.Generator`` (on ``device``) of the training noise, seeded with
            ``config.seed + 1``.
    """

    def __init__(self, config: DCGANConfig | None = None) -> None:
        """Build and initialise both networks (weights drawn with ``config.seed``)."""
        self.config = config if config is not None else DCGANConfig()
        cfg = self.config
        self.device = select_device(cfg.device)
        init_rng = torch.Generator().manual_seed(cfg.seed)
        self.G = DCGANGenerator(
            cfg.nz, cfg.ngf, cfg.image_size, cfg.channels, cfg.max_mult, cfg.generator_activation
        )
        self.D = DCGANDiscriminator(cfg.ndf, cfg.image_size, cfg.channels, cfg.max_mult)
        init_weights(self.G, "normal", cfg.init_gain, generator=init_rng)
        init_weights(self.D, "normal", cfg.init_gain, generator=init_rng)
        self.G.to(self.device)
        self.D.to(self.device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_discriminator, betas=betas)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)

    # ------------------------------------------------------------------------------------------
    # noise and sampling

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise vectors z (n, nz, 1, 1) on :attr:`device` from ``config.noise``.

        Args:
            n: number of vectors.
            generator: random source (CPU or on :attr:`device`); default
                :attr:`noise_generator` (the training stream).
        """
        gen = self.noise_generator if generator is None else generator
        shape = (n, self.config.nz, 1, 1)
        if self.config.noise is NoiseKind.NORMAL:
            z = torch.randn(shape, generator=gen, device=gen.device)
        else:
            z = torch.rand(shape, generator=gen, device=gen.device) * 2.0 - 1.0
        return z.to(self.device)

    def sample(
        self, n: int, generator: torch.Generator | None = None, *, batch_size: int | None = None
    ) -> torch.Tensor:
        """Generate ``n`` images with the generator in evaluation mode.

        Args:
            n: number of images (>= 0).
            generator: random source of the noise (CPU or on :attr:`device`); ``None``: a fresh
                CPU generator seeded with ``config.seed`` (same images on every call).
            batch_size: images per forward pass (default ``config.batch_size``).

        Returns:
            (n, channels, S, S) float32 in [-1, 1], on the CPU, without gradient.
        """
        check_int("n", n, 0)
        gen = torch.Generator().manual_seed(self.config.seed) if generator is None else generator
        step = batch_size or self.config.batch_size
        chunks: list[torch.Tensor] = []
        with _eval_mode(self.G), torch.no_grad():
            for start in range(0, n, step):
                z = self.noise(min(step, n - start), gen)
                chunks.append(self.G(z).float().cpu())
        if not chunks:
            s = self.config.image_size
            return torch.empty((0, self.config.channels, s, s))
        return torch.cat(chunks)

    def generate_images(self, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` generated images in image units, like the inputs of :func:`train_dcgan`.

        Args:
            n: number of images.
            seed: seed of the noise (default ``config.seed``).

        Returns:
            float32 (n, S, S) for one channel, (n, channels, S, S) otherwise, in [0, 1].
        """
        gen = torch.Generator().manual_seed(self.config.seed if seed is None else seed)
        images = ((self.sample(n, gen) + 1.0) * 0.5).clamp_(0.0, 1.0).numpy()
        return images[:, 0] if self.config.channels == 1 else images

    # ------------------------------------------------------------------------------------------
    # training

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        """One DCGAN iteration: a discriminator step, then a generator step.

        Args:
            real: (N, channels, S, S) real images in [-1, 1], N >= 2 (batch norm).

        Returns:
            ``{"loss_D", "loss_D_real", "loss_D_fake", "loss_G", "D_real", "D_fake",
            "D_fake_after"}``: the losses (``loss_D = loss_D_real + loss_D_fake``, BCE with
            logits, mean over the batch) and the mean probabilities "real" the discriminator gave
            the real batch and the fakes before and after its update.
        """
        cfg = self.config
        expected = (cfg.channels, cfg.image_size, cfg.image_size)
        if real.dim() != 4 or tuple(real.shape[1:]) != expected or real.shape[0] < 2:
            raise ValueError(
                f"real must be (N >= 2, {', '.join(map(str, expected))}), got {tuple(real.shape)}"
            )
        self.G.train()
        self.D.train()
        real = real.to(self.device, torch.float32)
        n = real.shape[0]
        ones = torch.ones(n, device=self.device)
        zeros = torch.zeros(n, device=self.device)

        fake = self.G(self.noise(n))
        self.opt_D.zero_grad(set_to_none=True)
        logit_real = self.D(real)
        logit_fake = self.D(fake.detach())
        loss_real = F.binary_cross_entropy_with_logits(logit_real, ones)
        loss_fake = F.binary_cross_entropy_with_logits(logit_fake, zeros)
        loss_d = loss_real + loss_fake
        loss_d.backward()
        self.opt_D.step()

        self.opt_G.zero_grad(set_to_none=True)
        for p in self.D.parameters():
            p.requires_grad_(False)
        try:
            logit_gen = self.D(fake)
            loss_g = F.binary_cross_entropy_with_logits(logit_gen, ones)
            loss_g.backward()
        finally:
            for p in self.D.parameters():
                p.requires_grad_(True)
        self.opt_G.step()
        return {
            "loss_D": float(loss_d.detach()),
            "loss_D_real": float(loss_real.detach()),
            "loss_D_fake": float(loss_fake.detach()),
            "loss_G": float(loss_g.detach()),
            "D_real": float(torch.sigmoid(logit_real.detach()).mean()),
            "D_fake": float(torch.sigmoid(logit_fake.detach()).mean()),
            "D_fake_after": float(torch.sigmoid(logit_gen.detach()).mean()),
        }

    def probability_real(self, images: torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        """The discriminator's probability "real" per image, in evaluation mode.

        Args:
            images: (N, channels, S, S) in [-1, 1].
            batch_size: images per forward pass (default ``config.batch_size``).

        Returns:
            float64 (N,) in [0, 1].
        """
        step = batch_size or self.config.batch_size
        out: list[torch.Tensor] = []
        with _eval_mode(self.D), torch.no_grad():
            for start in range(0, images.shape[0], step):
                batch = images[start : start + step].to(self.device, torch.float32)
                out.append(torch.sigmoid(self.D(batch)).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)

    # ------------------------------------------------------------------------------------------
    # persistence

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: config, both networks, both optimisers, noise RNG.

        Plain types and tensors: loads with ``torch.load(weights_only=True)``.
        """
        return {
            "format": "mrihisto-dcgan",
            "version": 1,
            "config": self.config.to_dict(),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "noise_rng": self.noise_generator.get_state(),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], device: str | None = None) -> DCGAN:
        """Rebuild a model saved with :meth:`state_dict` (optionally on another ``device``).

        Raises:
            ValueError: not a DCGAN state.
        """
        if state.get("format") != "mrihisto-dcgan":
            raise ValueError("not a DCGAN state dict (missing format 'mrihisto-dcgan')")
        values = dict(state["config"])
        if device is not None:
            values["device"] = device
        model = cls(DCGANConfig.from_dict(values))
        model.G.load_state_dict(state["G"])
        model.D.load_state_dict(state["D"])
        model.opt_G.load_state_dict(state["opt_G"])
        model.opt_D.load_state_dict(state["opt_D"])
        model.noise_generator.set_state(state["noise_rng"])
        return model


# ----------------------------------------------------------------------------------------------
# array helpers


def _as_image_tensor(
    images: np.ndarray | torch.Tensor, config: DCGANConfig, name: str
) -> torch.Tensor:
    """(N, S, S) or (N, C, S, S) images in [0, 1] -> float32 CPU tensor (N, C, S, S) in [-1, 1].

    Raises:
        ValueError: wrong shape, non-finite values or values outside [0, 1] (named ``name``).
    """
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    t = t.detach().to("cpu", torch.float32)
    if t.dim() == 3:
        t = t[:, None]
    s, c = config.image_size, config.channels
    if t.dim() != 4 or tuple(t.shape[1:]) != (c, s, s):
        want = f"(N, {s}, {s})" if c == 1 else f"(N, {c}, {s}, {s})"
        raise ValueError(
            f"{name} must be {want} images matching image_size={s}, channels={c}; got shape "
            f"{tuple(np.shape(images))} (resize the slices first)"
        )
    if t.numel():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
            raise ValueError(f"{name} must be float images in [0, 1], got values in [{lo}, {hi}]")
    return t.clamp(0.0, 1.0) * 2.0 - 1.0


# ----------------------------------------------------------------------------------------------
# loop, accuracy, augmentation


def train_dcgan(
    images: np.ndarray | torch.Tensor,
    config: DCGANConfig | None = None,
    callback: EpochCallback | None = None,
) -> tuple[DCGAN, list[dict[str, float]]]:
    """Train a DCGAN on a set of slices.

    Each epoch visits the images once in a fresh random order (``numpy`` generator seeded with
    ``config.seed``) in batches of ``config.batch_size``; a trailing batch of a single image is
    skipped (batch norm). Images are scaled from [0, 1] to [-1, 1].

    Args:
        images: (N, S, S) (one channel) or (N, channels, S, S) float images in [0, 1], S =
            ``config.image_size``, N >= 2.
        config: options (default :class:`DCGANConfig`).
        callback: called after each epoch with ``(epoch, epoch_means, model)``; an exception it
            raises stops training.

    Returns:
        ``(model, history)``: the trained :class:`DCGAN` and one dict per epoch with ``"epoch"``
        (1-based) and the epoch means of the :meth:`DCGAN.train_step` values (each iteration
        counts once).

    Raises:
        ValueError: images of the wrong shape or range, or fewer than two images.
    """
    config = config if config is not None else DCGANConfig()
    data = _as_image_tensor(images, config, "images")
    n = data.shape[0]
    if n < 2:
        raise ValueError(f"train_dcgan needs at least 2 images (batch norm), got {n}")
    model = DCGAN(config)
    order_rng = np.random.default_rng(config.seed)
    history: list[dict[str, float]] = []
    for epoch in range(config.epochs):
        perm = torch.from_numpy(order_rng.permutation(n))
        sums: dict[str, float] = {}
        steps = 0
        for start in range(0, n, config.batch_size):
            index = perm[start : start + config.batch_size]
            if index.numel() < 2:
                continue
            losses = model.train_step(data[index])
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            steps += 1
        means = {"epoch": float(epoch + 1), **{k: v / steps for k, v in sums.items()}}
        history.append(means)
        if callback is not None:
            callback(epoch, means, model)
    return model, history


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
        model: a trained :class:`DCGAN`.
        real: real images (N, S, S) or (N, channels, S, S), float in [0, 1].
        fake: generated images, same layout (e.g. :meth:`DCGAN.generate_images`, possibly
            refined by style transfer), float in [0, 1].
        threshold: decision threshold on the probability "real".

    Returns:
        The accuracy in [0, 1].

    Raises:
        ValueError: both sets empty, wrong shapes or ranges.
    """
    check_number("threshold", threshold, 0.0, 1.0)
    r = _as_image_tensor(real, model.config, "real")
    f = _as_image_tensor(fake, model.config, "fake")
    if r.shape[0] + f.shape[0] == 0:
        raise ValueError("discriminator_accuracy needs at least one image")
    correct = int((model.probability_real(r) > threshold).sum())
    correct += int((model.probability_real(f) <= threshold).sum())
    return correct / (r.shape[0] + f.shape[0])


def augment_with_synthetic(images: np.ndarray, model: DCGAN, n: int, seed: int = 0) -> np.ndarray:
    """The training images followed by ``n`` generated ones (the seed's augmentation parameter).

    Args:
        images: (N, S, S) or (N, channels, S, S) float images in [0, 1].
        model: a trained :class:`DCGAN` for the same image size and channels.
        n: number of synthetic images to append (0 returns a float32 copy of ``images``).
        seed: seed of the noise (the same seed gives the same synthetic images).

    Returns:
        float32 array (N + n, ...) in [0, 1]: the originals unchanged first, then the synthetic
        images (same layout as ``images``).

    Raises:
        ValueError: ``n < 0``, or images that do not match the model.
    """
    check_int("n", n, 0)
    check_int("seed", seed, 0)
    original = np.asarray(images)
    _as_image_tensor(original, model.config, "images")  # validates shape and range
    synthetic = model.generate_images(n, seed=seed) if n else np.zeros((0, *original.shape[1:]))
    if synthetic.ndim != original.ndim:  # one channel: (n, S, S) vs (N, 1, S, S)
        synthetic = synthetic.reshape((n, *original.shape[1:]))
    return np.concatenate([original.astype(np.float32), synthetic.astype(np.float32)])
