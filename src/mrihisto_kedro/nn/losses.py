"""GAN objectives and the WGAN-GP gradient penalty, as in the reference pix2pix/CycleGAN code.

- ``vanilla``: binary cross-entropy on logits (``BCEWithLogitsLoss``) against a label tensor of
  the prediction's shape filled with the real (1.0) or fake (0.0) label.
- ``lsgan``: mean squared error against the same label tensor (Mao et al. 2017).
- ``wgangp``: Wasserstein critic loss, ``-mean(prediction)`` for real targets and
  ``+mean(prediction)`` for fake ones (Gulrajani et al. 2017); the discriminator step adds
  :func:`gradient_penalty`.

Discriminators must output raw logits (no sigmoid). Predictions in float16/bfloat16 (autocast) are
up-cast to float32 before the reduction, so the losses are computed in at least float32.

Pure PyTorch (no Kedro).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import torch
from torch import nn

from mrihisto_kedro.nn.layers import parse_option

__all__ = ["GANLoss", "GANMode", "PenaltyKind", "gradient_penalty"]

_GRADIENT_NORM_EPS = 1e-16  # added to the gradients before the norm, as in the reference
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class GANMode(StrEnum):
    """GAN objective (reference ``--gan_mode``)."""

    VANILLA = "vanilla"  # BCE with logits (pix2pix default)
    LSGAN = "lsgan"  # least squares (CycleGAN default)
    WGANGP = "wgangp"  # Wasserstein with gradient penalty


class PenaltyKind(StrEnum):
    """Points at which the gradient penalty is evaluated."""

    REAL = "real"  # the real samples
    FAKE = "fake"  # the generated samples
    MIXED = "mixed"  # random per-sample interpolations between real and fake (WGAN-GP)


class GANLoss(nn.Module):
    """GAN loss for a discriminator's logits, against "real" or "fake" as the target.

    ``loss(prediction, True)`` is the discriminator's loss on real samples and the generator's
    adversarial loss on its fakes; ``loss(prediction, False)`` is the discriminator's loss on
    fakes. The labels are buffers, so they follow ``.to(device)``.
    """

    real_label: torch.Tensor
    fake_label: torch.Tensor

    def __init__(
        self,
        mode: GANMode | str = GANMode.VANILLA,
        target_real_label: float = 1.0,
        target_fake_label: float = 0.0,
    ) -> None:
        """Choose the objective.

        Args:
            mode: ``vanilla``, ``lsgan`` or ``wgangp``.
            target_real_label: label of real samples (vanilla, lsgan); e.g. 0.9 for one-sided
                label smoothing.
            target_fake_label: label of fake samples (vanilla, lsgan).
        """
        super().__init__()
        self.mode = parse_option(GANMode, mode, name="gan_mode")
        self.register_buffer("real_label", torch.tensor(float(target_real_label)))
        self.register_buffer("fake_label", torch.tensor(float(target_fake_label)))
        self.criterion: nn.Module | None
        if self.mode is GANMode.VANILLA:
            self.criterion = nn.BCEWithLogitsLoss()
        elif self.mode is GANMode.LSGAN:
            self.criterion = nn.MSELoss()
        else:
            self.criterion = None

    def target_tensor(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """The label tensor: the real or fake label expanded to ``prediction``'s shape.

        Args:
            prediction: discriminator logits of any shape, e.g. (N, 1, H', W').

        Returns:
            A tensor of ``prediction``'s shape and dtype (an expanded view, no copy).
        """
        label = self.real_label if target_is_real else self.fake_label
        return label.to(dtype=prediction.dtype).expand_as(prediction)

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """The loss of ``prediction`` against the chosen target.

        Args:
            prediction: discriminator logits of any shape, e.g. (N, 1, H', W').
            target_is_real: True to compare with the real label, False with the fake label.

        Returns:
            A scalar tensor (shape ()), the mean over all elements.
        """
        if prediction.dtype in _LOW_PRECISION:
            prediction = prediction.float()
        if self.criterion is None:  # wgangp
            return -prediction.mean() if target_is_real else prediction.mean()
        return self.criterion(prediction, self.target_tensor(prediction, target_is_real))

    def extra_repr(self) -> str:
        """Mode and labels, shown by ``print(module)``."""
        return (
            f"mode={self.mode.value}, real_label={self.real_label.item()}, "
            f"fake_label={self.fake_label.item()}"
        )


def gradient_penalty(
    discriminator: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    lambda_gp: float = 10.0,
    constant: float = 1.0,
    kind: PenaltyKind | str = PenaltyKind.MIXED,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """WGAN-GP gradient penalty, ``lambda_gp * mean_i((||grad_x D(x_i)||_2 - constant)^2)``.

    As the reference ``cal_gradient_penalty``: ``x_i = alpha_i real_i + (1 - alpha_i) fake_i``
    with one ``alpha_i ~ U[0, 1)`` per sample (``mixed``), or the real or fake samples themselves;
    the gradient of the summed discriminator output with respect to x is flattened per sample,
    1e-16 is added before the norm (keeps its gradient finite at 0), and the graph is kept
    (``create_graph=True``) so that the penalty can be back-propagated into the discriminator.
    ``real`` and ``fake`` are detached first: the penalty trains the discriminator only, and the
    caller's tensors are not modified (the reference sets ``requires_grad`` on them in place).

    Args:
        discriminator: maps (N, C, H, W) to outputs of any shape with batch dim N (e.g. logits
            (N, 1, H', W')).
        real: real samples (N, C, H, W) (for pix2pix, input and target concatenated).
        fake: generated samples of the same shape.
        lambda_gp: weight of the penalty; <= 0 disables it.
        constant: target gradient norm.
        kind: ``mixed`` (WGAN-GP), ``real`` or ``fake``.
        generator: optional random source for the interpolation weights (CPU generator, or one on
            ``real``'s device).

    Returns:
        ``(penalty, gradients)``: the scalar penalty (shape ()) and the per-sample flattened
        gradients (N, C*H*W); ``(tensor(0.), None)`` when ``lambda_gp <= 0``.
    """
    kind = parse_option(PenaltyKind, kind, name="gradient penalty kind")
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    if lambda_gp <= 0.0:
        return torch.zeros((), device=real.device, dtype=real.dtype), None
    real = real.detach()
    fake = fake.detach()
    if kind is PenaltyKind.REAL:
        points = real.clone()
    elif kind is PenaltyKind.FAKE:
        points = fake.clone()
    else:
        batch = real.shape[0]
        alpha_device = generator.device if generator is not None else real.device
        alpha = torch.rand(batch, device=alpha_device, generator=generator)
        alpha = alpha.to(device=real.device, dtype=real.dtype).view(
            batch, *([1] * (real.dim() - 1))
        )
        points = alpha * real + (1.0 - alpha) * fake
    points.requires_grad_(True)
    output = discriminator(points)
    (gradients,) = torch.autograd.grad(
        outputs=output,
        inputs=points,
        grad_outputs=torch.ones_like(output),
        create_graph=True,
        retain_graph=True,
    )
    gradients = gradients.reshape(real.shape[0], -1)
    norms = (gradients + _GRADIENT_NORM_EPS).norm(2, dim=1)
    penalty = ((norms - constant) ** 2).mean() * lambda_gp
    return penalty, gradients
