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

Device, precision, memory format and optimiser follow the translation models
(:mod:`mrihisto_kedro.nn.models`, whose precision rule this module imports): ``config.precision``
(default ``fp32``: no autocast; ``auto`` resolved as there), one autocast context per training
step around both networks' forward passes and losses (back-propagation with autocast off, the
cast-weight cache cleared after each optimiser step), a ``GradScaler`` for fp16 on CUDA,
``channels_last`` networks and inputs where ``config.channels_last`` (automatic: CUDA, or CPU in
bf16) says so, and Adam fused or ``foreach`` as ``config.fused_optimizer`` says. With the
defaults (fp32, ``foreach`` Adam, contiguous on CPU) a step is the same computation as before
these options existed, bit for bit (``tests/nn/test_dcgan.py``).

Data-parallel: :attr:`DCGAN.nets` holds ``G`` and ``D`` (:attr:`DCGAN.G` and :attr:`DCGAN.D`
read it), so :class:`~mrihisto_kedro.nn.distributed.DistributedNets` swaps in their
``DistributedDataParallel`` wrappers while :func:`~mrihisto_kedro.nn.dcgan.training.train_dcgan`
trains. Each rank's step draws the noise of the whole global batch from the shared noise stream
and keeps its own rows (``share``), so the ranks' fakes are distinct, the noise generator's state
stays equal on every rank (one checkpoint resumes them all), and one process draws exactly what
it drew before. Pure PyTorch + numpy (no Kedro).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mrihisto_kedro.nn.dcgan.config import DCGANConfig, NoiseKind
from mrihisto_kedro.nn.dcgan.networks import DCGANDiscriminator, DCGANGenerator
from mrihisto_kedro.nn.device import (
    Precision,
    autocast_context,
    needs_grad_scaler,
    numerics_report,
    select_device,
    use_channels_last,
    use_fused_adam,
)
from mrihisto_kedro.nn.distributed import World
from mrihisto_kedro.nn.layers import init_weights
from mrihisto_kedro.nn.models import _model_precision
from mrihisto_kedro.params import Range, checked

__all__ = ["DCGAN", "STATE_FORMAT"]

#: the ``format`` entry of :meth:`DCGAN.state_dict`
STATE_FORMAT = "mrihisto-dcgan"

# config fields that may differ between a saved state and the model it is loaded into: where
# and how fast it runs, and how long the training is (a resumed run may train for longer)
_RUNTIME_FIELDS = frozenset({"device", "precision", "channels_last", "epochs"})


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
        precision: the resolved precision (``fp32``, ``bf16`` or ``fp16``).
        channels_last: whether networks and inputs use the channels_last memory format.
        fused_optimizer: whether both Adams run fused.
        nets: ``{"G": DCGANGenerator, "D": DCGANDiscriminator}`` (read through :attr:`G` and
            :attr:`D`).
        opt_G, opt_D: Adam optimisers.
        scaler: ``torch.amp.GradScaler`` (enabled for fp16 on CUDA only).
        noise_generator: ``torch.Generator`` (on ``device``) of the training noise, seeded with
            ``config.seed + 1``.
    """

    def __init__(self, config: DCGANConfig | None = None) -> None:
        """Build and initialise both networks (weights drawn with ``config.seed``)."""
        self.config = config if config is not None else DCGANConfig()
        cfg = self.config
        self.device = select_device(cfg.device)
        self.precision = _model_precision(self.device, cfg.precision)
        if cfg.channels_last is None:
            self.channels_last = self.device.type == "cuda" or (
                self.device.type == "cpu" and self.precision is Precision.BF16
            )
        else:
            self.channels_last = bool(cfg.channels_last)
        self.fused_optimizer = use_fused_adam(self.device, cfg.fused_optimizer)
        init_rng = torch.Generator().manual_seed(cfg.seed)
        generator = DCGANGenerator(
            cfg.nz, cfg.ngf, cfg.image_size, cfg.channels, cfg.max_mult, cfg.generator_activation
        )
        discriminator = DCGANDiscriminator(cfg.ndf, cfg.image_size, cfg.channels, cfg.max_mult)
        init_weights(generator, "normal", cfg.init_gain, generator=init_rng)
        init_weights(discriminator, "normal", cfg.init_gain, generator=init_rng)
        self.nets: dict[str, nn.Module] = {}
        for name, net in (("G", generator), ("D", discriminator)):
            net.to(self.device)
            self.nets[name] = use_channels_last(net, self.device, self.channels_last)
        self.opt_G = self._adam(self.G, cfg.lr)
        self.opt_D = self._adam(self.D, cfg.lr_discriminator)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=needs_grad_scaler(self.device, self.precision)
        )
        self.noise_generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)

    @property
    def G(self) -> nn.Module:  # noqa: N802 - the DCGAN's names
        """The generator (its ``DistributedDataParallel`` wrapper while training data-parallel)."""
        return self.nets["G"]

    @property
    def D(self) -> nn.Module:  # noqa: N802 - the DCGAN's names
        """The discriminator (its ``DistributedDataParallel`` wrapper while training
        data-parallel)."""
        return self.nets["D"]

    def _adam(self, net: nn.Module, lr: float) -> torch.optim.Adam:
        """Adam over ``net`` with the config's betas: fused, or torch's default path."""
        betas = (self.config.beta1, self.config.beta2)
        if self.fused_optimizer:
            return torch.optim.Adam(net.parameters(), lr=lr, betas=betas, fused=True)
        return torch.optim.Adam(net.parameters(), lr=lr, betas=betas)

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The autocast context of the resolved precision (a null context for fp32)."""
        return autocast_context(self.device, self.precision)

    def _autocast_off(self) -> contextlib.AbstractContextManager[object]:
        """Autocast switched off inside a step's context (back-propagation)."""
        if self.precision is Precision.FP32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, enabled=False)

    def _backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Back-propagate ``loss`` with autocast off, step ``optimizer`` through the scaler,
        then drop autocast's cast copies of the weights that just changed."""
        with self._autocast_off():
            self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        if self.precision is not Precision.FP32:
            torch.clear_autocast_cache()

    def numerics(self) -> dict[str, str]:
        """What decides this model's numbers here (:func:`~mrihisto_kedro.nn.device.
        numerics_report`: device, resolved precision, memory format, torch, CPU, threads)."""
        return numerics_report(self.device, self.precision, self.channels_last)

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
        with _eval_mode(self.G), torch.no_grad(), self.autocast():
            for start in range(0, n, step):
                z = use_channels_last(self.noise(min(step, n - start), gen), *self._format)
                chunks.append(self.G(z).float().contiguous().cpu())
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

    @property
    def _format(self) -> tuple[torch.device, bool]:
        """``(device, enabled)`` arguments of :func:`use_channels_last` for inputs."""
        return self.device, self.channels_last

    def train_step(self, real: torch.Tensor, share: World | None = None) -> dict[str, float]:
        """One DCGAN iteration: a discriminator step, then a generator step.

        All forward passes and losses run under one autocast context (none in fp32).

        Args:
            real: (N, channels, S, S) real images in [-1, 1], N >= 2 (batch norm).
            share: this process's place among the data-parallel ranks (``None``: one process):
                the step draws noise for ``N * share.size`` fakes from :attr:`noise_generator`
                and generates rows ``share.rank, share.rank + share.size, ...`` (the positions
                a ``DistributedSampler`` gives this rank), so the ranks' fakes together are the
                fakes one process with the global batch would generate.

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
        rank, size = (0, 1) if share is None else (share.rank, share.size)
        net_g, net_d = self.G, self.D
        net_g.train()
        net_d.train()
        real = use_channels_last(real.to(self.device, torch.float32), *self._format)
        n = real.shape[0]
        ones = torch.ones(n, device=self.device)
        zeros = torch.zeros(n, device=self.device)
        z = use_channels_last(self.noise(n * size)[rank::size], *self._format)

        with self.autocast():  # the step's one autocast; backward runs with it switched off
            fake = net_g(z)
            self.opt_D.zero_grad(set_to_none=True)
            logit_real = net_d(real).float()
            logit_fake = net_d(fake.detach()).float()
            loss_real = F.binary_cross_entropy_with_logits(logit_real, ones)
            loss_fake = F.binary_cross_entropy_with_logits(logit_fake, zeros)
            loss_d = loss_real + loss_fake
            self._backward_step(loss_d, self.opt_D)

            self.opt_G.zero_grad(set_to_none=True)
            for p in net_d.parameters():
                p.requires_grad_(False)
            try:
                logit_gen = net_d(fake).float()
                loss_g = F.binary_cross_entropy_with_logits(logit_gen, ones)
                self._backward_step(loss_g, self.opt_G)
            finally:
                for p in net_d.parameters():
                    p.requires_grad_(True)
        self.scaler.update()
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
        with _eval_mode(self.D), torch.no_grad(), self.autocast():
            for start in range(0, images.shape[0], step):
                batch = images[start : start + step].to(self.device, torch.float32)
                logits = self.D(use_channels_last(batch, *self._format)).float()
                out.append(torch.sigmoid(logits).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)

    # ------------------------------------------------------------------------------------------
    # persistence

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: config, both networks, both optimisers, noise RNG,
        grad scaler.

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
            "scaler": self.scaler.state_dict(),
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
        model.load_state_dict(state)
        return model

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into this model (networks, optimisers, noise, scaler).

        Raises:
            ValueError: not a DCGAN state, or one whose config differs from this model's in
                anything but ``device``, ``precision``, ``channels_last`` and ``epochs`` (the
                differing keys are named).
        """
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a DCGAN state dict (missing format {STATE_FORMAT!r})")
        saved = DCGANConfig.from_dict(dict(state["config"])).to_dict()
        mine = self.config.to_dict()
        differ = sorted(k for k in mine if k not in _RUNTIME_FIELDS and saved[k] != mine[k])
        if differ:
            details = ", ".join(f"{k}: saved {saved[k]!r} vs {mine[k]!r}" for k in differ)
            raise ValueError(f"the DCGAN state's config differs from the model's: {details}")
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.noise_generator.set_state(state["noise_rng"])
        if state.get("scaler"):  # states written before the scaler existed have none
            self.scaler.load_state_dict(state["scaler"])
