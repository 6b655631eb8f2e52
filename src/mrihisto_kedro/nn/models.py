"""Image-translation models: pix2pix, CycleGAN and the U-Net regression baseline.

Each model is a plain class that owns its networks, optimisers, learning-rate schedulers (and,
for CycleGAN, image pools), built from a frozen, validated config dataclass
(:mod:`mrihisto_kedro.nn.configs`):

* :class:`Pix2Pix` (Isola et al. 2017; seed 000): U-Net generator G, PatchGAN D on the input
  and output concatenated, ``G loss = GAN(D(A, G(A)), real) + lambda_L1 * L1(G(A), B)``,
  ``D loss = 0.5 * (GAN(D(A, B), real) + GAN(D(A, G(A)), fake))`` (+ gradient penalty with
  ``wgangp``). One iteration updates D, then G with D frozen, as the reference.
* :class:`CycleGAN` (Zhu et al. 2017; seed 004): G_A: A -> B, G_B: B -> A, D_A judges domain B,
  D_B domain A; cycle losses weighted ``lambda_A``/``lambda_B``, identity losses weighted
  ``lambda_identity`` (only when A and B have the same channel count), discriminators fed from
  image pools of past fakes. One iteration updates both G, then both D, as the reference.
* :class:`UNetRegression` (seed 003 baseline): one U-Net with a sigmoid output trained with MSE
  against B, Adam.

Conventions: batches are dicts with ``"A"`` ``(N, Ca, H, W)`` and ``"B"`` ``(N, Cb, H, W)``
float tensors in ``[-1, 1]`` (see :mod:`mrihisto_kedro.nn.data`); :meth:`generate` returns
``(N, Cb, H, W)`` float32 in ``[-1, 1]`` for every model (the regression baseline's ``[0, 1]``
sigmoid output is mapped with ``2 y - 1``). Losses are returned as Python floats with the
reference names; ``G_L1``, ``cycle_*`` and ``idt_*`` are reported already multiplied by their
weights, as the reference prints them.

Learning rate: Adam with ``lr``, ``(beta1, beta2)``; policy ``linear`` keeps ``lr`` for
``n_epochs`` epochs, then decays it linearly to zero over ``n_epochs_decay`` epochs with the
reference rule (:func:`linear_lr_multiplier`); the schedulers step once per epoch
(:meth:`TranslationModel.step_schedulers`, called by the training loop).

Device and precision: networks live on ``select_device(config.device)``; the forward passes and
losses of one training step run under one
:func:`~mrihisto_kedro.nn.device.autocast_context`, entered once per step, so a weight used by
several forward passes between two optimiser steps is cast once (the autocast weight cache
lives as long as the context); back-propagation runs with autocast switched off, as PyTorch's
AMP guide recommends, and the cache is cleared after every optimiser step (the weights it
holds copies of have just changed). The precision (``auto``: bf16 on CUDA with native bf16
(Ampere and later), fp16 with a ``GradScaler`` on older CUDA devices, bf16 on CPUs with
native bf16 (AVX512/AMX, :func:`cpu_has_fast_bf16`), fp32 elsewhere: on an AVX2-only CPU
bf16 is emulated and a pix2pix step is ~18x slower than fp32); losses are
computed in float32; fp16 on CUDA uses a ``GradScaler``. With
``channels_last=None`` the networks and inputs use the channels_last memory format on CUDA
always and on CPU when the precision is bf16 (the combination measured fastest on this
project's CPU, STACK.md). Adam is fused (``torch.optim.Adam(fused=True)``) on CPU and CUDA
unless ``fused_optimizer=False`` (:func:`~mrihisto_kedro.nn.device.use_fused_adam`); the
unfused optimiser is the reference's default Adam, bit for bit.

Gradient accumulation (``train_step(batch, accumulate=k)``, set by ``data.accumulate_steps``
of :class:`~mrihisto_kedro.nn.experiment.DataParams`): one optimiser step per batch of ``N``
tiles, computed as ``k`` micro-batches of ``N / k`` so that only one micro-batch's activations
are held at a time (large tiles on a small GPU). Each micro-batch's loss is weighted by
``n_i / N`` and back-propagated; gradients add up; each optimiser steps once. The GAN updates
keep their order (pix2pix: fake = G(A) for every micro-batch, kept detached; D over all
micro-batches, step; G over all micro-batches against the updated D, step, recomputing
``G(A_i)`` under the dropout RNG state of its first forward; CycleGAN: both G over all
micro-batches, step; both D on the pooled fakes, step). Under DDP every micro-batch but the last
runs inside each wrapped network's ``no_sync()``, so the ranks average gradients once per step.
Each micro-batch's forward has its own autocast context. The reported losses are the
micro-batch means weighted by ``n_i / N``. With per-sample normalisation (instance norm, none)
and no dropout the step equals the one-pass step on the whole batch up to float rounding
(``tests/nn/test_accumulation.py``); batch norm normalises each micro-batch with its own
statistics (and updates the running statistics once per micro-batch), so it trains differently;
the wgangp interpolation weights are drawn per micro-batch. ``k = 1`` is the one-pass step.

Pure PyTorch (no Kedro, no MLflow).
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import warnings
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from mrihisto_kedro.nn.configs import (
    CycleGANConfig,
    GANConfigBase,
    LRPolicy,
    ModelConfig,
    ModelConfigBase,
    Pix2PixConfig,
    UNetRegressionConfig,
)
from mrihisto_kedro.nn.device import (
    Precision,
    autocast_context,
    cpu_has_fast_bf16,
    needs_grad_scaler,
    numerics_report,
    resolve_precision,
    select_device,
    use_channels_last,
    use_fused_adam,
)
from mrihisto_kedro.nn.discriminators import build_discriminator
from mrihisto_kedro.nn.generators import FinalActivation, Upsampling, build_generator
from mrihisto_kedro.nn.image_pool import ImagePool
from mrihisto_kedro.nn.losses import GANLoss, GANMode, gradient_penalty

# the configs live in nn/configs.py; they stay importable from here
__all__ = [
    "CycleGAN",
    "CycleGANConfig",
    "GANConfigBase",
    "LRPolicy",
    "LinearDecay",
    "ModelConfig",
    "ModelConfigBase",
    "Pix2Pix",
    "Pix2PixConfig",
    "TranslationModel",
    "UNetRegression",
    "UNetRegressionConfig",
    "build_model",
    "cpu_has_fast_bf16",
    "linear_lr_multiplier",
    "set_requires_grad",
]

# config fields that may differ between a checkpoint and the model it is loaded into
_RUNTIME_FIELDS = frozenset({"device", "precision", "channels_last", "fused_optimizer"})


def linear_lr_multiplier(
    epoch: int, *, n_epochs: int, n_epochs_decay: int, epoch_count: int = 1
) -> float:
    """The reference pix2pix/CycleGAN ``lambda_rule``: the lr factor of 0-based ``epoch``.

    ``1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_epochs_decay + 1)``: 1 for the
    first ``n_epochs`` epochs (with the default ``epoch_count=1``), then ``k/(n_epochs_decay+1)``
    for ``k = n_epochs_decay, ..., 1``; it would reach 0 after the last epoch. Example:
    ``n_epochs=3, n_epochs_decay=2`` gives 1, 1, 1, 2/3, 1/3.
    """
    return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_epochs_decay + 1)


@dataclass
class LinearDecay:
    """Picklable callable for ``LambdaLR`` implementing :func:`linear_lr_multiplier`.

    A callable object (not a lambda) so that ``LambdaLR.state_dict`` can hold it.
    """

    n_epochs: int
    n_epochs_decay: int
    epoch_count: int = 1

    def __call__(self, epoch: int) -> float:
        """Multiplier of the initial lr for 0-based ``epoch``."""
        return linear_lr_multiplier(
            epoch,
            n_epochs=self.n_epochs,
            n_epochs_decay=self.n_epochs_decay,
            epoch_count=self.epoch_count,
        )


@dataclass
class ConstantRate:
    """Picklable callable for ``LambdaLR``: multiplier 1 for every epoch."""

    def __call__(self, epoch: int) -> float:
        """Always 1.0."""
        return 1.0


def _model_precision(device: torch.device, requested: Precision) -> Precision:
    """The precision a model uses: :func:`resolve_precision`, except ``auto`` on a CPU
    without native bf16, which is fp32 (bf16 would be emulated, orders of magnitude slower).

    An explicit ``bf16`` on such a CPU is honoured with a warning.
    """
    if device.type == "cpu" and not cpu_has_fast_bf16():
        if requested is Precision.AUTO:
            return Precision.FP32
        if requested in (Precision.BF16, Precision.FP16):
            warnings.warn(
                f"precision={requested.value!r} on a CPU without native {requested.value} "
                "support: PyTorch emulates it and training will be far slower than fp32",
                stacklevel=3,
            )
    return resolve_precision(device, requested)


def _check_accumulate(accumulate: int) -> int:
    """``accumulate`` as a positive int, or a ``ValueError`` naming it."""
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise ValueError(f"accumulate must be an integer >= 1, got {accumulate!r}")
    return accumulate


def _buffers(net: nn.Module) -> list[torch.Tensor]:
    """Copies of a network's buffers (batch-norm running statistics and counters)."""
    return [buffer.detach().clone() for buffer in net.buffers()]


@torch.no_grad()
def _restore_buffers(net: nn.Module, saved: list[torch.Tensor]) -> None:
    """Write :func:`_buffers` back in place (the tensors DDP and the optimisers know)."""
    for buffer, value in zip(net.buffers(), saved, strict=True):
        buffer.copy_(value)


def _add_weighted(
    sums: dict[str, torch.Tensor], terms: Mapping[str, torch.Tensor], weight: float
) -> None:
    """``sums[name] += weight * terms[name]`` (detached), the micro-batch mean of each loss."""
    for name, value in terms.items():
        part = value.detach() * weight
        sums[name] = sums[name] + part if name in sums else part


def set_requires_grad(nets: nn.Module | list[nn.Module], requires_grad: bool) -> None:
    """Switch gradient computation on or off for all parameters of ``nets`` (reference helper)."""
    for net in nets if isinstance(nets, list) else [nets]:
        for param in net.parameters():
            param.requires_grad_(requires_grad)


# ----------------------------------------------------------------------------------------------
# models


class TranslationModel(abc.ABC):
    """Base of the three models: device, precision, optimisers, schedulers and state handling.

    Subclasses fill :attr:`nets`, :attr:`optimizers` (and :attr:`pools`) in ``__init__`` and
    call :meth:`_finish_setup`; they implement :meth:`train_step` and :meth:`generate`.

    Attributes:
        config: the frozen config.
        device: where the networks live.
        precision: the resolved precision (``fp32``, ``bf16`` or ``fp16``).
        channels_last: whether networks and inputs use the channels_last memory format.
        nets: ``{name: network}``.
        optimizers: ``{name: Adam}``.
        schedulers: ``{name: LambdaLR}``, one per optimiser.
        pools: ``{name: ImagePool}`` (CycleGAN only).
    """

    config_class: ClassVar[type[ModelConfigBase]]
    generator_name: ClassVar[str] = "G"
    generator_activation: ClassVar[FinalActivation] = FinalActivation.TANH

    def __init__(self, config: ModelConfig) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got "
                f"{type(config).__name__}"
            )
        self.config = config
        self.device = select_device(config.device)
        self.precision = _model_precision(self.device, config.precision)
        if config.channels_last is None:
            self.channels_last = self.device.type == "cuda" or (
                self.device.type == "cpu" and self.precision is Precision.BF16
            )
        else:
            self.channels_last = bool(config.channels_last)
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, Optimizer] = {}
        self.schedulers: dict[str, LambdaLR] = {}
        self.pools: dict[str, ImagePool] = {}
        self.fused_optimizer = use_fused_adam(self.device, config.fused_optimizer)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=needs_grad_scaler(self.device, self.precision)
        )
        self.steps = 0
        self._init_rng = torch.Generator().manual_seed(config.seed)

    # -- construction helpers ------------------------------------------------------------------

    def _build_generator(self, in_channels: int, out_channels: int) -> nn.Module:
        """Build one generator from the config, initialised from the config's seed."""
        c = self.config
        return build_generator(
            c.generator,
            in_channels,
            out_channels,
            ngf=c.ngf,
            norm=c.norm,
            use_dropout=c.dropout,
            num_downs=c.num_downs,
            init=c.init,
            init_gain=c.init_gain,
            final_activation=self.generator_activation,
            upsampling=self.upsampling,
            generator=self._init_rng,
        )

    def _build_discriminator(self, in_channels: int) -> nn.Module:
        """Build one discriminator from the config, initialised from the config's seed."""
        c = self.config
        assert isinstance(c, GANConfigBase)  # only the GAN models build discriminators
        return build_discriminator(
            c.discriminator,
            in_channels,
            ndf=c.ndf,
            n_layers=c.n_layers_D,
            norm=c.norm,
            init=c.init,
            init_gain=c.init_gain,
            generator=self._init_rng,
        )

    def _adam(self, params: Iterator[nn.Parameter]) -> Adam:
        """Adam with the config's lr and betas: fused, or torch's default path (the reference's)."""
        c = self.config
        if self.fused_optimizer:
            return Adam(params, lr=c.lr, betas=(c.beta1, c.beta2), fused=True)
        return Adam(params, lr=c.lr, betas=(c.beta1, c.beta2))

    def _apply_optimizer_choice(self, optimizer: Optimizer) -> None:
        """Make a loaded optimiser run fused or unfused as this model's config says.

        ``Optimizer.load_state_dict`` takes ``fused``/``foreach`` from the checkpoint; a run
        resumed with another choice keeps its own. Fused Adam keeps its ``step`` counters on the
        parameters' device (the default path keeps them on the CPU), so they are moved too.
        """
        for group in optimizer.param_groups:
            group["fused"] = True if self.fused_optimizer else None
            if self.fused_optimizer:
                group["foreach"] = None
            for param in group["params"]:
                state = optimizer.state.get(param)
                if state and isinstance(state.get("step"), torch.Tensor):
                    device = param.device if self.fused_optimizer else torch.device("cpu")
                    state["step"] = state["step"].to(device=device, dtype=torch.float32)

    def _finish_setup(self) -> None:
        """Move networks to the device/memory format and create one scheduler per optimiser."""
        for name, net in self.nets.items():
            net.to(self.device)
            self.nets[name] = use_channels_last(net, self.device, self.channels_last)
        c = self.config
        for name, optimizer in self.optimizers.items():
            if c.lr_policy is LRPolicy.LINEAR:
                rule: LinearDecay | ConstantRate = LinearDecay(
                    c.n_epochs, c.n_epochs_decay, c.epoch_count
                )
            else:
                rule = ConstantRate()
            self.schedulers[name] = LambdaLR(optimizer, lr_lambda=rule)
        self.train()

    # -- modes, inputs, precision --------------------------------------------------------------

    def train(self) -> None:
        """Put every network in training mode (batch statistics, dropout on)."""
        for net in self.nets.values():
            net.train()

    def eval(self) -> None:
        """Put every network in evaluation mode (running statistics, dropout off)."""
        for net in self.nets.values():
            net.eval()

    @property
    def generator(self) -> nn.Module:
        """The A -> B generator (exported for inference)."""
        return self.nets[self.generator_name]

    @property
    def generator_spec(self) -> dict[str, Any]:
        """Keyword arguments of :func:`build_generator` that rebuild :attr:`generator`."""
        c = self.config
        return {
            "kind": c.generator.value,
            "in_channels": c.in_channels,
            "out_channels": c.out_channels,
            "ngf": c.ngf,
            "norm": c.norm.value,
            "use_dropout": c.dropout,
            "num_downs": c.num_downs,
            "final_activation": self.generator_activation.value,
            **(
                {"upsampling": self.upsampling.value}
                if self.upsampling is not Upsampling.TRANSPOSE
                else {}
            ),
        }

    @property
    def upsampling(self) -> Upsampling:
        """The ResNet generators' up-sampling (the reference's ``transpose`` unless set)."""
        return getattr(self.config, "upsampling", Upsampling.TRANSPOSE)

    @property
    def output_range(self) -> tuple[float, float]:
        """Range of the raw :attr:`generator` output (``(-1, 1)`` tanh, ``(0, 1)`` sigmoid)."""
        if self.generator_activation is FinalActivation.SIGMOID:
            return (0.0, 1.0)
        return (-1.0, 1.0)

    def autocast(self) -> AbstractContextManager[object]:
        """The autocast context of the configured precision on the model's device.

        A training step enters it once, around all its forward passes and losses.
        """
        return autocast_context(self.device, self.precision)

    def _autocast_off(self) -> AbstractContextManager[object]:
        """Autocast switched off inside the step's context (back-propagation, gradient penalty).

        Nested in the step's autocast it keeps that context's weight cache; with fp32 there is no
        autocast to switch off.
        """
        if self.precision is Precision.FP32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, enabled=False)

    def numerics(self) -> dict[str, str]:
        """What decides this model's numbers here: the device and the precision actually used,
        torch, the CPU's SIMD level and bf16, threads (see
        :func:`~mrihisto_kedro.nn.device.numerics_report`)."""
        return numerics_report(self.device, self.precision, self.channels_last)

    def _to_device(self, x: torch.Tensor, channels: int, name: str) -> torch.Tensor:
        """Validate an ``(N, channels, H, W)`` batch and move it to the device (float32)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a tensor (N, {channels}, H, W), got {shape}")
        x = x.to(self.device, dtype=torch.float32, non_blocking=True)
        return use_channels_last(x, self.device, self.channels_last)

    def _batch(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` of a batch dict, on the device."""
        missing = [k for k in ("A", "B") if k not in batch]
        if missing:
            raise KeyError(f"batch lacks {missing}; has {sorted(batch)}")
        a = self._to_device(batch["A"], self.config.in_channels, "batch['A']")
        b = self._to_device(batch["B"], self.config.out_channels, "batch['B']")
        return a, b

    def _backward_step(self, loss: torch.Tensor, optimizer: Optimizer) -> None:
        """Back-propagate ``loss`` with autocast off and step ``optimizer`` (through the grad
        scaler); then drop autocast's cast copies of the weights the step just changed."""
        self._backward(loss)
        self._step(optimizer)

    def _backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` (scaled by the grad scaler) with autocast off; gradients add
        up in ``.grad`` until the optimiser steps."""
        with self._autocast_off():
            self.scaler.scale(loss).backward()

    def _step(self, optimizer: Optimizer) -> None:
        """Step ``optimizer`` through the grad scaler, then drop autocast's cast weights."""
        self.scaler.step(optimizer)
        if self.precision is not Precision.FP32:
            torch.clear_autocast_cache()

    # -- gradient accumulation -----------------------------------------------------------------

    def _micro_batches(
        self, real_a: torch.Tensor, real_b: torch.Tensor, accumulate: int
    ) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """Split a batch into ``accumulate`` micro-batches ``(A_i, B_i, n_i / N)``.

        The weight ``n_i / N`` turns the micro-batches' mean losses into the batch's mean loss
        (``1 / accumulate`` when ``N`` divides evenly; a smaller last batch of an epoch may split
        unevenly, into at most ``N`` parts).
        """
        n = real_a.shape[0]
        if real_b.shape[0] != n:
            raise ValueError(f"A has {n} tiles but B has {real_b.shape[0]}")
        parts = min(accumulate, n)
        return [
            (a, b, a.shape[0] / n)
            for a, b in zip(
                torch.tensor_split(real_a, parts), torch.tensor_split(real_b, parts), strict=True
            )
        ]

    def _sync_unless(self, last: bool) -> AbstractContextManager[object]:
        """Gradient synchronisation only at the last micro-batch of a step.

        Under DDP (:class:`~mrihisto_kedro.nn.distributed.DistributedNets` puts the wrappers in
        :attr:`nets`) every micro-batch but the last runs inside each wrapper's ``no_sync()``
        (its forward and backward), so gradients add up locally and the ranks average them
        once, at the last backward. Plain networks have no ``no_sync``: nothing to do.
        """
        stack = contextlib.ExitStack()
        if not last:
            for net in self.nets.values():
                no_sync = getattr(net, "no_sync", None)
                if callable(no_sync):
                    stack.enter_context(no_sync())
        return stack

    def _rng_state(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The global RNG states dropout draws from: the CPU's and the model's accelerator's."""
        if self.device.type == "cuda":
            return torch.get_rng_state(), torch.cuda.get_rng_state(self.device)
        if self.device.type == "mps":
            return torch.get_rng_state(), torch.mps.get_rng_state()
        return torch.get_rng_state(), None

    def _set_rng_state(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        """Restore :meth:`_rng_state`."""
        cpu, accelerator = state
        torch.set_rng_state(cpu)
        if accelerator is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(accelerator, self.device)
        elif accelerator is not None and self.device.type == "mps":
            torch.mps.set_rng_state(accelerator)

    # -- public API ----------------------------------------------------------------------------

    @abc.abstractmethod
    def train_step(
        self, batch: Mapping[str, torch.Tensor], accumulate: int = 1
    ) -> dict[str, float]:
        """One optimisation iteration on ``batch`` (``A`` (N, Ca, H, W), ``B`` (N, Cb, H, W)).

        Each model (pix2pix, CycleGAN, U-Net regression) defines its own losses and updates.
        With ``accumulate = k > 1`` the batch is computed as ``k`` micro-batches of ``N / k``
        tiles whose gradients add up before each optimiser step (see "Gradient accumulation"
        in the module docstring); ``k = 1`` is the one-pass step.

        Returns:
            ``{loss name: value}`` of this iteration (with ``k > 1``: the mean over the
            micro-batches, weighted by their sizes).
        """

    def _generate_raw(self, a: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.generator(a)

    @torch.no_grad()
    def generate(self, a: torch.Tensor) -> torch.Tensor:
        """Translate A to B, always in evaluation mode (running BN statistics, no dropout).

        The generator's previous mode is restored afterwards; no gradients are kept.

        Args:
            a: ``(N, Ca, H, W)`` in ``[-1, 1]``, any device.

        Returns:
            ``(N, Cb, H, W)`` float32 in ``[-1, 1]`` on the model's device.
        """
        a = self._to_device(a, self.config.in_channels, "A")
        net = self.generator
        was_training = net.training
        net.eval()
        try:
            out = self._generate_raw(a).float()
        finally:
            net.train(was_training)
        if self.generator_activation is FinalActivation.SIGMOID:
            out = out * 2.0 - 1.0
        return out.contiguous()

    def learning_rates(self) -> dict[str, float]:
        """Current learning rate of each optimiser, ``{"lr_<name>": lr}``."""
        return {
            f"lr_{name}": float(opt.param_groups[0]["lr"]) for name, opt in self.optimizers.items()
        }

    def step_schedulers(self) -> None:
        """Advance every lr scheduler by one epoch."""
        for scheduler in self.schedulers.values():
            scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training: nets, optimisers, schedulers, pools, scaler.

        Only tensors, numbers, strings, lists, tuples and dicts (loads with
        ``torch.load(weights_only=True)``).
        """
        return {
            "model": type(self).__name__,
            "config": self.config.to_dict(),
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: sch.state_dict() for name, sch in self.schedulers.items()},
            "pools": {name: pool.state_dict() for name, pool in self.pools.items()},
            "scaler": self.scaler.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into this model.

        Raises:
            ValueError: the state is of another model class, or its config differs from this
                model's in anything but ``device``, ``precision`` and ``channels_last`` (the
                differing fields are named).
        """
        if state.get("model") != type(self).__name__:
            raise ValueError(
                f"state is of a {state.get('model')!r} model, not {type(self).__name__!r}"
            )
        saved = dict(state["config"])
        mine = self.config.to_dict()
        differ = sorted(
            k
            for k in set(saved) | set(mine)
            if k not in _RUNTIME_FIELDS and saved.get(k) != mine.get(k)
        )
        if differ:
            details = ", ".join(f"{k}: saved {saved.get(k)!r} vs {mine.get(k)!r}" for k in differ)
            raise ValueError(f"checkpoint config differs from the model's: {details}")
        for group, mine_group in (
            ("nets", self.nets),
            ("optimizers", self.optimizers),
            ("schedulers", self.schedulers),
            ("pools", self.pools),
        ):
            if set(state[group]) != set(mine_group):
                raise ValueError(
                    f"state {group} {sorted(state[group])} do not match the model's "
                    f"{sorted(mine_group)}"
                )
        for name, net in self.nets.items():
            net.load_state_dict(state["nets"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            self._apply_optimizer_choice(opt)
        for name, sch in self.schedulers.items():
            sch.load_state_dict(state["schedulers"][name])
        for name, pool in self.pools.items():
            pool.load_state_dict(state["pools"][name])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.steps = int(state.get("steps", 0))

    def parameter_counts(self) -> dict[str, int]:
        """Number of parameters of each network."""
        return {name: sum(p.numel() for p in net.parameters()) for name, net in self.nets.items()}


class Pix2Pix(TranslationModel):
    """pix2pix: conditional GAN with a U-Net generator and a PatchGAN on ``cat(A, B)``.

    Networks ``G`` (Ca -> Cb) and ``D`` (Ca + Cb channels); optimisers ``G`` and ``D``.
    Losses of :meth:`train_step`: ``G_GAN``, ``G_L1`` (already times ``lambda_L1``),
    ``D_real``, ``D_fake`` and, for ``wgangp``, ``D_gp`` (already times ``lambda_gp``).
    """

    config_class = Pix2PixConfig
    config: Pix2PixConfig

    def __init__(self, config: Pix2PixConfig) -> None:
        super().__init__(config)
        self.nets["G"] = self._build_generator(config.in_channels, config.out_channels)
        self.nets["D"] = self._build_discriminator(config.in_channels + config.out_channels)
        self.criterion_gan = GANLoss(config.gan_mode).to(self.device)
        self.optimizers["G"] = self._adam(self.nets["G"].parameters())
        self.optimizers["D"] = self._adam(self.nets["D"].parameters())
        self._finish_setup()

    def _discriminator_loss(
        self, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D loss ``0.5 (GAN(D(A, G(A)), fake) + GAN(D(A, B), real))`` (+ gradient penalty).

        Args:
            real_a: ``(n, Ca, H, W)``; real_b: ``(n, Cb, H, W)``; fake_b: ``(n, Cb, H, W)``
                detached generator output.

        Returns:
            The loss and its terms ``D_real``, ``D_fake`` (+ ``D_gp``).
        """
        c = self.config
        net_d = self.nets["D"]
        fake_ab = torch.cat([real_a, fake_b.to(real_a.dtype)], 1)  # (n, Ca+Cb, H, W)
        real_ab = torch.cat([real_a, real_b], 1)
        pred_fake = net_d(fake_ab)  # (n, 1, H', W') logits
        pred_real = net_d(real_ab)
        loss_d_fake = self.criterion_gan(pred_fake, False)
        loss_d_real = self.criterion_gan(pred_real, True)
        loss_d = 0.5 * (loss_d_fake + loss_d_real)
        terms = {"D_real": loss_d_real, "D_fake": loss_d_fake}
        if c.gan_mode is GANMode.WGANGP:
            with self._autocast_off():
                penalty, _ = gradient_penalty(net_d, real_ab, fake_ab, lambda_gp=c.lambda_gp)
            loss_d = loss_d + penalty
            terms["D_gp"] = penalty
        return loss_d, terms

    def _generator_loss(
        self, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """G loss ``GAN(D(A, G(A)), real) + lambda_L1 L1(G(A), B)``; terms ``G_GAN``, ``G_L1``."""
        pred_fake = self.nets["D"](torch.cat([real_a, fake_b.to(real_a.dtype)], 1))
        loss_g_gan = self.criterion_gan(pred_fake, True)
        loss_g_l1 = F.l1_loss(fake_b.float(), real_b) * self.config.lambda_L1
        return loss_g_gan + loss_g_l1, {"G_GAN": loss_g_gan, "G_L1": loss_g_l1}

    def train_step(
        self, batch: Mapping[str, torch.Tensor], accumulate: int = 1
    ) -> dict[str, float]:
        """One pix2pix iteration: forward G, update D, then update G with D frozen.

        Args:
            batch: ``{"A": (N, Ca, H, W), "B": (N, Cb, H, W)}`` in ``[-1, 1]``.
            accumulate: micro-batches per step (see :meth:`_accumulated_step`).

        Returns:
            ``{"G_GAN", "G_L1", "D_real", "D_fake"}`` (+ ``"D_gp"`` for wgangp).
        """
        accumulate = _check_accumulate(accumulate)
        net_g, net_d = self.nets["G"], self.nets["D"]
        opt_g, opt_d = self.optimizers["G"], self.optimizers["D"]
        real_a, real_b = self._batch(batch)
        if accumulate > 1:
            return self._accumulated_step(real_a, real_b, accumulate)
        with self.autocast():  # the step's one autocast; backward runs with it switched off
            fake_b = net_g(real_a)  # (N, Cb, H, W)

            # D: real pairs -> real, generated pairs -> fake
            set_requires_grad(net_d, True)
            opt_d.zero_grad(set_to_none=True)
            loss_d, losses = self._discriminator_loss(real_a, real_b, fake_b.detach())
            self._backward_step(loss_d, opt_d)

            # G: fool D, stay close to B
            set_requires_grad(net_d, False)
            opt_g.zero_grad(set_to_none=True)
            loss_g, g_terms = self._generator_loss(real_a, real_b, fake_b)
            self._backward_step(loss_g, opt_g)
        self.scaler.update()
        set_requires_grad(net_d, True)
        self.steps += 1
        losses = {**g_terms, **losses}
        return {name: float(value.detach()) for name, value in losses.items()}

    def _accumulated_step(
        self, real_a: torch.Tensor, real_b: torch.Tensor, accumulate: int
    ) -> dict[str, float]:
        """The pix2pix iteration over micro-batches, holding one micro-batch's graph at a time.

        1. Each micro-batch's ``G(A_i)`` is computed without a graph, under the global RNG
           state saved before it (dropout masks), and only the detached outputs are kept.
        2. D: ``sum_i w_i loss_D_i`` is back-propagated micro-batch by micro-batch, then D steps.
        3. G (D frozen, already updated, as in the one-pass step): for each micro-batch the
           saved RNG state is restored and ``G(A_i)`` recomputed with a graph (the same values
           as in 1: same weights, same dropout masks), ``w_i loss_G_i`` back-propagated; G steps.

        ``w_i = n_i / N``. The recomputation's extra batch-norm running-statistics updates are
        undone (G's buffers are those after 1), and the global RNG continues from where the D
        update left it. Costs one extra generator forward per micro-batch.
        """
        net_g, net_d = self.nets["G"], self.nets["D"]
        opt_g, opt_d = self.optimizers["G"], self.optimizers["D"]
        parts = self._micro_batches(real_a, real_b, accumulate)
        last = len(parts) - 1
        states = []
        fakes = []
        for a, _, _ in parts:
            states.append(self._rng_state())
            with torch.no_grad(), self.autocast():
                fakes.append(net_g(a).detach())  # (n_i, Cb, H, W)
        g_buffers = _buffers(net_g)

        sums: dict[str, torch.Tensor] = {}
        set_requires_grad(net_d, True)
        opt_d.zero_grad(set_to_none=True)
        for i, ((a, b, weight), fake_b) in enumerate(zip(parts, fakes, strict=True)):
            with self._sync_unless(i == last), self.autocast():
                loss_d, terms = self._discriminator_loss(a, b, fake_b)
                self._backward(loss_d * weight)
            _add_weighted(sums, terms, weight)
        self._step(opt_d)
        after_d = self._rng_state()
        del fakes

        set_requires_grad(net_d, False)
        opt_g.zero_grad(set_to_none=True)
        for i, ((a, b, weight), state) in enumerate(zip(parts, states, strict=True)):
            self._set_rng_state(state)
            with self._sync_unless(i == last), self.autocast():
                fake_b = net_g(a)
                loss_g, terms = self._generator_loss(a, b, fake_b)
                self._backward(loss_g * weight)
            _add_weighted(sums, terms, weight)
        self._step(opt_g)
        _restore_buffers(net_g, g_buffers)
        self._set_rng_state(after_d)
        self.scaler.update()
        set_requires_grad(net_d, True)
        self.steps += 1
        order = ("G_GAN", "G_L1", "D_real", "D_fake", "D_gp")
        return {name: float(sums[name]) for name in order if name in sums}


class CycleGAN(TranslationModel):
    """CycleGAN: two generators and two discriminators trained with cycle consistency.

    Networks ``G_A`` (A -> B, the exported generator), ``G_B`` (B -> A), ``D_A`` (judges
    domain B: real B vs G_A(A)), ``D_B`` (judges domain A); optimisers ``G`` (both generators)
    and ``D`` (both discriminators); image pools ``fake_A`` and ``fake_B``.
    Losses of :meth:`train_step`: ``D_A, G_A, cycle_A, idt_A, D_B, G_B, cycle_B, idt_B``
    (cycle and identity already weighted; identity reported as 0 when the channel counts of
    A and B differ) and, for ``wgangp``, ``D_A_gp``, ``D_B_gp``.
    """

    config_class = CycleGANConfig
    config: CycleGANConfig
    generator_name = "G_A"

    def __init__(self, config: CycleGANConfig) -> None:
        super().__init__(config)
        ca, cb = config.in_channels, config.out_channels
        self.nets["G_A"] = self._build_generator(ca, cb)
        self.nets["G_B"] = self._build_generator(cb, ca)
        self.nets["D_A"] = self._build_discriminator(cb)
        self.nets["D_B"] = self._build_discriminator(ca)
        self.use_identity = config.lambda_identity > 0 and ca == cb
        self.criterion_gan = GANLoss(config.gan_mode).to(self.device)
        self.optimizers["G"] = self._adam(
            itertools.chain(self.nets["G_A"].parameters(), self.nets["G_B"].parameters())
        )
        self.optimizers["D"] = self._adam(
            itertools.chain(self.nets["D_A"].parameters(), self.nets["D_B"].parameters())
        )
        for offset, name in enumerate(("fake_A", "fake_B"), start=1):
            rng = torch.Generator().manual_seed(config.seed + offset)
            self.pools[name] = ImagePool(config.pool_size, generator=rng)
        self._finish_setup()

    def _discriminator_loss(
        self, net_d: nn.Module, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reference ``backward_D_basic`` loss: 0.5 (real + fake) (+ gradient penalty).

        Args:
            net_d: a discriminator.
            real: real images (N, C, H, W).
            fake: pooled generated images (N, C, H, W), detached.

        Returns:
            The loss and, for wgangp, the penalty term included in it.
        """
        pred_real = net_d(real)  # under the step's autocast
        pred_fake = net_d(fake.detach())
        loss = 0.5 * (self.criterion_gan(pred_real, True) + self.criterion_gan(pred_fake, False))
        penalty = None
        if self.config.gan_mode is GANMode.WGANGP:
            with self._autocast_off():
                penalty, _ = gradient_penalty(
                    net_d, real, fake.detach().to(real.dtype), lambda_gp=self.config.lambda_gp
                )
            loss = loss + penalty
        return loss, penalty

    def _generator_losses(
        self, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Forward both generators and the generator loss (discriminators frozen).

        Args:
            real_a: ``(n, Ca, H, W)``; real_b: ``(n, Cb, H, W)``.

        Returns:
            ``(loss_G, terms, fake_B (n, Cb, H, W), fake_A (n, Ca, H, W))``; terms ``G_A``,
            ``G_B``, ``cycle_A``, ``cycle_B``, ``idt_A``, ``idt_B`` (weighted).
        """
        c = self.config
        g_a, g_b, d_a, d_b = (self.nets[k] for k in ("G_A", "G_B", "D_A", "D_B"))
        fake_b = g_a(real_a)  # (n, Cb, H, W)
        rec_a = g_b(fake_b)  # (n, Ca, H, W)
        fake_a = g_b(real_b)  # (n, Ca, H, W)
        rec_b = g_a(fake_a)  # (n, Cb, H, W)
        zero = torch.zeros((), device=self.device)
        loss_idt_a = loss_idt_b = zero
        if self.use_identity:
            idt_a = g_a(real_b)
            idt_b = g_b(real_a)
            weight = c.lambda_identity
            loss_idt_a = F.l1_loss(idt_a.float(), real_b) * c.lambda_B * weight
            loss_idt_b = F.l1_loss(idt_b.float(), real_a) * c.lambda_A * weight
        pred_fake_b = d_a(fake_b)
        pred_fake_a = d_b(fake_a)
        loss_g_a = self.criterion_gan(pred_fake_b, True)
        loss_g_b = self.criterion_gan(pred_fake_a, True)
        loss_cycle_a = F.l1_loss(rec_a.float(), real_a) * c.lambda_A
        loss_cycle_b = F.l1_loss(rec_b.float(), real_b) * c.lambda_B
        loss_g = loss_g_a + loss_g_b + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b
        terms = {
            "G_A": loss_g_a,
            "cycle_A": loss_cycle_a,
            "idt_A": loss_idt_a,
            "G_B": loss_g_b,
            "cycle_B": loss_cycle_b,
            "idt_B": loss_idt_b,
        }
        return loss_g, terms, fake_b, fake_a

    def _discriminators_loss(
        self, real_a: torch.Tensor, real_b: torch.Tensor, fake_b: torch.Tensor, fake_a: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Both discriminators' loss on the pooled fakes (the pools are queried and updated).

        Returns:
            ``(loss_D_A + loss_D_B, terms)``; terms ``D_A``, ``D_B`` (+ ``D_A_gp``, ``D_B_gp``).
        """
        pooled_b = self.pools["fake_B"].query(fake_b.detach().float())
        loss_d_a, gp_a = self._discriminator_loss(self.nets["D_A"], real_b, pooled_b)
        pooled_a = self.pools["fake_A"].query(fake_a.detach().float())
        loss_d_b, gp_b = self._discriminator_loss(self.nets["D_B"], real_a, pooled_a)
        terms = {"D_A": loss_d_a, "D_B": loss_d_b}
        if gp_a is not None and gp_b is not None:
            terms["D_A_gp"] = gp_a
            terms["D_B_gp"] = gp_b
        return loss_d_a + loss_d_b, terms

    _LOSS_ORDER = (
        "D_A",
        "G_A",
        "cycle_A",
        "idt_A",
        "D_B",
        "G_B",
        "cycle_B",
        "idt_B",
        "D_A_gp",
        "D_B_gp",
    )

    def train_step(
        self, batch: Mapping[str, torch.Tensor], accumulate: int = 1
    ) -> dict[str, float]:
        """One CycleGAN iteration: update G_A and G_B with D frozen, then D_A and D_B.

        With ``accumulate = k > 1``: for each of ``k`` micro-batches the generators' forward
        and ``w_i loss_G_i`` backward (``w_i = n_i / N``), keeping only the detached fakes; G
        steps; then for each micro-batch the pools are queried with its fakes (in order: the
        pools see the same images in the same order as in one pass) and ``w_i loss_D_i`` is
        back-propagated; D steps.

        Args:
            batch: ``{"A": (N, Ca, H, W), "B": (N, Cb, H, W)}`` in ``[-1, 1]`` (unpaired).
            accumulate: micro-batches per step.

        Returns:
            ``{"D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"}``
            (+ ``"D_A_gp"``, ``"D_B_gp"`` for wgangp).
        """
        accumulate = _check_accumulate(accumulate)
        d_a, d_b = self.nets["D_A"], self.nets["D_B"]
        opt_g, opt_d = self.optimizers["G"], self.optimizers["D"]
        real_a, real_b = self._batch(batch)
        if accumulate > 1:
            return self._accumulated_step(real_a, real_b, accumulate)
        with self.autocast():  # the step's one autocast; backward runs with it switched off
            # generators
            set_requires_grad([d_a, d_b], False)
            opt_g.zero_grad(set_to_none=True)
            loss_g, terms, fake_b, fake_a = self._generator_losses(real_a, real_b)
            self._backward_step(loss_g, opt_g)

            # discriminators, fed from the pools of past fakes
            set_requires_grad([d_a, d_b], True)
            opt_d.zero_grad(set_to_none=True)
            loss_d, d_terms = self._discriminators_loss(real_a, real_b, fake_b, fake_a)
            self._backward_step(loss_d, opt_d)
        self.scaler.update()
        self.steps += 1
        losses = {**terms, **d_terms}
        return {name: float(losses[name].detach()) for name in self._LOSS_ORDER if name in losses}

    def _accumulated_step(
        self, real_a: torch.Tensor, real_b: torch.Tensor, accumulate: int
    ) -> dict[str, float]:
        """:meth:`train_step` over micro-batches (one micro-batch's graph at a time)."""
        d_a, d_b = self.nets["D_A"], self.nets["D_B"]
        opt_g, opt_d = self.optimizers["G"], self.optimizers["D"]
        parts = self._micro_batches(real_a, real_b, accumulate)
        last = len(parts) - 1
        sums: dict[str, torch.Tensor] = {}
        fakes = []
        set_requires_grad([d_a, d_b], False)
        opt_g.zero_grad(set_to_none=True)
        for i, (a, b, weight) in enumerate(parts):
            with self._sync_unless(i == last), self.autocast():
                loss_g, terms, fake_b, fake_a = self._generator_losses(a, b)
                self._backward(loss_g * weight)
            fakes.append((fake_b.detach(), fake_a.detach()))
            _add_weighted(sums, terms, weight)
        self._step(opt_g)

        set_requires_grad([d_a, d_b], True)
        opt_d.zero_grad(set_to_none=True)
        for i, ((a, b, weight), (fake_b, fake_a)) in enumerate(zip(parts, fakes, strict=True)):
            with self._sync_unless(i == last), self.autocast():
                loss_d, terms = self._discriminators_loss(a, b, fake_b, fake_a)
                self._backward(loss_d * weight)
            _add_weighted(sums, terms, weight)
        self._step(opt_d)
        self.scaler.update()
        self.steps += 1
        return {name: float(sums[name]) for name in self._LOSS_ORDER if name in sums}


class UNetRegression(TranslationModel):
    """Seed 003 baseline: a U-Net with a sigmoid output regressing B with an MSE loss.

    Range conversion: batches hold B in ``[-1, 1]`` (the shared data convention); the loss
    compares the sigmoid output ``y`` in ``[0, 1]`` with ``(B + 1) / 2``, i.e. B in ``[0, 1]``
    image units (so the MSE is in [0, 1] units, as the paper's Keras model on images scaled to
    [0, 1]). :meth:`generate` returns ``2 y - 1`` in ``[-1, 1]`` like the GAN models; the
    exported generator outputs ``y`` itself (``output_range`` ``(0, 1)``).

    Network ``G``; optimiser ``G``; loss of :meth:`train_step`: ``MSE``.
    """

    config_class = UNetRegressionConfig
    config: UNetRegressionConfig
    generator_activation = FinalActivation.SIGMOID

    def __init__(self, config: UNetRegressionConfig) -> None:
        super().__init__(config)
        self.nets["G"] = self._build_generator(config.in_channels, config.out_channels)
        self.optimizers["G"] = self._adam(self.nets["G"].parameters())
        self._finish_setup()

    def train_step(
        self, batch: Mapping[str, torch.Tensor], accumulate: int = 1
    ) -> dict[str, float]:
        """One Adam step on ``MSE(G(A), (B + 1) / 2)``.

        Args:
            batch: ``{"A": (N, Ca, H, W), "B": (N, Cb, H, W)}`` in ``[-1, 1]``.
            accumulate: micro-batches per step: ``w_i MSE_i`` (``w_i = n_i / N``) is
                back-propagated micro-batch by micro-batch, then Adam steps once.

        Returns:
            ``{"MSE": value}`` in [0, 1] image units.
        """
        accumulate = _check_accumulate(accumulate)
        real_a, real_b = self._batch(batch)
        opt = self.optimizers["G"]
        opt.zero_grad(set_to_none=True)
        if accumulate > 1:
            parts = self._micro_batches(real_a, real_b, accumulate)
            sums: dict[str, torch.Tensor] = {}
            for i, (a, b, weight) in enumerate(parts):
                with self._sync_unless(i == len(parts) - 1), self.autocast():
                    pred01 = self.nets["G"](a)  # (n_i, Cb, H, W) in [0, 1]
                    loss = F.mse_loss(pred01.float(), (b + 1.0) * 0.5)
                    self._backward(loss * weight)
                _add_weighted(sums, {"MSE": loss}, weight)
            self._step(opt)
            self.scaler.update()
            self.steps += 1
            return {"MSE": float(sums["MSE"])}
        with self.autocast():  # the step's one autocast; backward runs with it switched off
            pred01 = self.nets["G"](real_a)  # (N, Cb, H, W) in [0, 1]
            loss = F.mse_loss(pred01.float(), (real_b + 1.0) * 0.5)
            self._backward_step(loss, opt)
        self.scaler.update()
        self.steps += 1
        return {"MSE": float(loss.detach())}


_MODELS: dict[type[ModelConfigBase], type[TranslationModel]] = {
    Pix2PixConfig: Pix2Pix,
    CycleGANConfig: CycleGAN,
    UNetRegressionConfig: UNetRegression,
}


def build_model(config: ModelConfig) -> TranslationModel:
    """The model class matching the config's type (Pix2Pix, CycleGAN or UNetRegression)."""
    try:
        cls = _MODELS[type(config)]
    except KeyError:
        raise TypeError(f"no model for config type {type(config).__name__}") from None
    return cls(config)
