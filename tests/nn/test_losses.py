"""GAN losses and the gradient penalty on inputs with known values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mrihisto_kedro.nn.losses import GANLoss, GANMode, PenaltyKind, gradient_penalty


class LinearCritic(nn.Module):
    """D(x) = sum(w * x) per sample: its input gradient is w everywhere."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(1)


@pytest.mark.parametrize("target_is_real", [True, False])
def test_vanilla_loss_of_zero_logits_is_log2(target_is_real: bool) -> None:
    loss = GANLoss("vanilla")(torch.zeros(2, 1, 30, 30), target_is_real)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_vanilla_loss_is_bce_with_logits() -> None:
    logits = torch.tensor([[-2.0, 0.5], [3.0, 1.0]])
    real = GANLoss(GANMode.VANILLA)(logits, True)
    fake = GANLoss(GANMode.VANILLA)(logits, False)
    torch.testing.assert_close(real, -torch.log(torch.sigmoid(logits)).mean())
    torch.testing.assert_close(fake, -torch.log(1 - torch.sigmoid(logits)).mean())


@pytest.mark.parametrize("target_is_real", [True, False])
def test_lsgan_loss_of_half_is_quarter(target_is_real: bool) -> None:
    loss = GANLoss("lsgan")(torch.full((3, 1, 4, 4), 0.5), target_is_real)
    assert loss.item() == pytest.approx(0.25)


def test_lsgan_custom_labels() -> None:
    loss = GANLoss("lsgan", target_real_label=0.9, target_fake_label=0.1)
    assert loss(torch.ones(4), True).item() == pytest.approx(0.01)
    assert loss(torch.ones(4), False).item() == pytest.approx(0.81)


def test_wgangp_sign() -> None:
    prediction = torch.tensor([1.0, 2.0, 6.0])
    loss = GANLoss("wgangp")
    assert loss(prediction, True).item() == pytest.approx(-3.0)
    assert loss(prediction, False).item() == pytest.approx(3.0)


def test_loss_gradients_push_in_the_right_direction() -> None:
    for mode in GANMode:
        logits = torch.zeros(5, requires_grad=True)
        GANLoss(mode)(logits, True).backward()
        assert logits.grad is not None
        assert (logits.grad < 0).all(), mode  # real target: raising the logits lowers the loss


def test_low_precision_predictions_are_upcast() -> None:
    loss = GANLoss("lsgan")(torch.full((8,), 0.5, dtype=torch.bfloat16), True)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(0.25)


def test_labels_are_buffers_and_mode_validated() -> None:
    loss = GANLoss("vanilla")
    assert set(dict(loss.named_buffers())) == {"real_label", "fake_label"}
    with pytest.raises(ValueError, match="'gan_mode' = 'hinge' is not one of: vanilla, lsgan"):
        GANLoss("hinge")


def test_gradient_penalty_of_linear_critic_is_exact() -> None:
    critic = LinearCritic(torch.tensor([[[[3.0, 4.0]]]]))  # (1, 1, 1, 2), ||w|| = 5
    real, fake = torch.randn(4, 1, 1, 2), torch.randn(4, 1, 1, 2)
    penalty, gradients = gradient_penalty(critic, real, fake)
    assert penalty.item() == 10.0 * (5.0 - 1.0) ** 2  # exactly 160
    assert gradients is not None
    assert torch.equal(gradients, torch.tensor([[3.0, 4.0]]).expand(4, 2))


@pytest.mark.parametrize("kind", list(PenaltyKind))
def test_gradient_penalty_random_linear_critic(kind: PenaltyKind) -> None:
    weight = torch.randn(1, 3, 5, 4)
    critic = LinearCritic(weight)
    real, fake = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    penalty, _ = gradient_penalty(critic, real, fake, lambda_gp=7.0, constant=2.0, kind=kind)
    expected = 7.0 * (weight.norm() - 2.0) ** 2
    torch.testing.assert_close(penalty, expected)


def test_gradient_penalty_trains_the_critic_only() -> None:
    critic = nn.Sequential(nn.Conv2d(2, 4, 3), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3))
    real = torch.randn(3, 2, 8, 8)
    fake = torch.randn(3, 2, 8, 8, requires_grad=True)
    penalty, gradients = gradient_penalty(critic, real, fake)
    assert gradients is not None and gradients.shape == (3, 2 * 8 * 8)
    penalty.backward()
    weights = [p for p in critic.parameters() if p.dim() > 1]  # biases do not move the gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)
    assert fake.grad is None  # detached: no gradient into the generator
    assert not real.requires_grad  # the caller's tensor is left alone


def test_gradient_penalty_interpolation_is_reproducible() -> None:
    critic = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Conv2d(2, 1, 3))
    real, fake = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)

    def run(seed: int) -> torch.Tensor:
        return gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(seed))[
            0
        ]

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_gradient_penalty_disabled_and_shape_checks() -> None:
    critic = LinearCritic(torch.ones(1, 1, 2, 2))
    penalty, gradients = gradient_penalty(
        critic, torch.ones(2, 1, 2, 2), torch.ones(2, 1, 2, 2), lambda_gp=0.0
    )
    assert penalty.item() == 0.0 and gradients is None
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, torch.ones(2, 1, 2, 2), torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="kind' = 'both' is not one of: real, fake, mixed"):
        gradient_penalty(critic, torch.ones(2, 1, 2, 2), torch.ones(2, 1, 2, 2), kind="both")
