"""The DCGAN model: both networks, their optimisers, one training iteration, sampling, state.

Training iteration (:meth:`DCGAN.train_step`), as the PyTorch DCGAN example: D step on a real
batch and a fresh fake batch, ``loss_D = BCE(D(real), 1) + BCE(D(G(z)), 0)``; then G step on the
same fakes with the non-saturating loss ``loss_G = BCE(D(G(z)), 1)``. Adam (``lr`` for G,
``lr_D`` for D, ``beta1``, ``beta2``), constant learning rates. Noise is drawn from the model's
own ``torch.Generator`` (seeded with ``config.seed + 1``), independent of the global RNGs.

Init: conv weights N(0, 0.02), batch-norm scales N(1, 0.02), biases and shifts 0
(:func:`mrihisto_kedro.nn.layers.init_weights`), drawn from a ``torch.Generator`` seeded with
``config.seed``.

Sampling and classification use evaluation mode (batch-norm running statistics), so an image's
output does not depend on the rest of its batch; the previous mode is restored afterwards.
Precision is float32 throughout (the networks are small). Pure PyTorch + numpy (no Kedro).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mrihisto_kedro.nn.dcgan.config import DCGANConfig, NoiseKind
from mrihisto_kedro.nn.dcgan.networks import DCGANDiscriminator, DCGANGenerator
from mrihisto_kedro.nn.device import select_device
from mrihisto_kedro.nn.layers import init_weights
from mrihisto_kedro.params import Range, checked

__all__ = ["DCGAN", "STATE_FORMAT"]

#: the ``format`` entry of :meth:`DCGAN.state_dict`
STATE_FORMAT = "mrihisto-dcgan"


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
        config: the validated :class:`~mrihisto_kedro.nn.dcgan.config.DCGANConfig`.
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
        checked("n", n, Annotated[int, Range(ge=0)])
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
        """``n`` generated images in image units, like the inputs of ``train_dcgan``.

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
            "format": STATE_FORMAT,
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
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a DCGAN state dict (missing format {STATE_FORMAT!r})")
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
