"""Tests for ``mrihisto_kedro.nn.models``: configs, lr schedule, training steps, state."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from mrihisto_kedro.nn import models as models_module
from mrihisto_kedro.nn.device import Precision
from mrihisto_kedro.nn.generators import GeneratorKind
from mrihisto_kedro.nn.losses import GANMode
from mrihisto_kedro.nn.models import (
    CycleGAN,
    CycleGANConfig,
    LRPolicy,
    Pix2Pix,
    Pix2PixConfig,
    UNetRegression,
    UNetRegressionConfig,
    build_model,
    cpu_has_fast_bf16,
    linear_lr_multiplier,
)
from mrihisto_kedro.params import ParameterError, parse_params

SMALL = {
    "generator": "unet",
    "num_downs": 5,
    "ngf": 8,
    "device": "cpu",
    "precision": "fp32",
}
SMALL_D = {**SMALL, "ndf": 8}

# Thresholds of the training-trajectory tests. Float summation order differs between CPUs
# (AVX2 / AVX-512 kernels), thread counts and oneDNN ISAs, and a 40-step GAN trajectory
# amplifies it, so each threshold sits well outside the spread measured over kernel and thread
# variants and over seeds: `python benchmarks/trajectory_margins.py` (issue 13).
PIX2PIX_STEPS = 80  # 40 steps: the eval-mode L1 ratio was 0.59-0.60 against 0.6 (0.65 worst)
PIX2PIX_L1_RATIO = 0.5
PIX2PIX_AFTER_RATIO = 0.5
CYCLEGAN_STEPS = 120  # 40 steps: 0.487-0.508 against 0.5 (issue 13), 0.62 worst over seeds
CYCLEGAN_CYCLE_RATIO = 0.5
UNET_MSE_RATIO = 0.5


def _toy_batch(n: int = 4, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Smooth random A (1 channel) and B = a fixed colour mapping of A (3 channels)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, size // 8, size // 8, generator=g) * 2 - 1
    a = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    b = torch.cat([a, -a, 0.5 * a + 0.25], dim=1).clamp(-1, 1)
    return {"A": a, "B": b}


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# ---- lr schedule ---------------------------------------------------------------------------


def test_linear_lr_multiplier_matches_reference_rule() -> None:
    values = [linear_lr_multiplier(e, n_epochs=3, n_epochs_decay=2) for e in range(5)]
    assert values == pytest.approx([1.0, 1.0, 1.0, 2 / 3, 1 / 3])
    # the reference formula, literally
    for n_epochs, n_decay, count in ((100, 100, 1), (5, 3, 1), (4, 4, 3)):
        for epoch in range(n_epochs + n_decay):
            ref = 1.0 - max(0, epoch + count - n_epochs) / float(n_decay + 1)
            got = linear_lr_multiplier(
                epoch, n_epochs=n_epochs, n_epochs_decay=n_decay, epoch_count=count
            )
            assert got == ref


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_model_schedulers_step_per_epoch() -> None:
    model = Pix2Pix(Pix2PixConfig(**SMALL_D, n_epochs=3, n_epochs_decay=2, lr=2e-4))
    seen = []
    for _ in range(5):
        seen.append(model.learning_rates())
        model.step_schedulers()
    expected = [2e-4 * m for m in (1.0, 1.0, 1.0, 2 / 3, 1 / 3)]
    assert [s["lr_G"] for s in seen] == pytest.approx(expected)
    assert [s["lr_D"] for s in seen] == pytest.approx(expected)
    const = UNetRegression(UNetRegressionConfig(**SMALL, n_epochs=1, n_epochs_decay=3, lr=0.01))
    const_policy = UNetRegression(
        UNetRegressionConfig(**SMALL, n_epochs=1, n_epochs_decay=3, lr=0.01, lr_policy="constant")
    )
    rates, rates_const = [], []
    for _ in range(4):
        rates.append(const.learning_rates()["lr_G"])
        rates_const.append(const_policy.learning_rates()["lr_G"])
        const.step_schedulers()
        const_policy.step_schedulers()
    assert rates == pytest.approx([0.01, 0.0075, 0.005, 0.0025])
    assert rates_const == pytest.approx([0.01] * 4)


# ---- configs -------------------------------------------------------------------------------


def test_config_defaults_are_the_reference_ones() -> None:
    p = Pix2PixConfig()
    assert (p.generator, p.ngf, p.ndf, p.n_layers_D, p.gan_mode) == (
        GeneratorKind.UNET_256,
        64,
        64,
        3,
        GANMode.VANILLA,
    )
    assert (p.lr, p.beta1, p.beta2, p.lambda_L1, p.n_epochs, p.n_epochs_decay) == (
        2e-4,
        0.5,
        0.999,
        100.0,
        100,
        100,
    )
    c = CycleGANConfig()
    assert (c.generator, c.gan_mode, c.lambda_A, c.lambda_B, c.lambda_identity) == (
        GeneratorKind.RESNET_9BLOCKS,
        GANMode.LSGAN,
        10.0,
        10.0,
        0.5,
    )
    assert c.pool_size == 50 and c.norm.value == "instance" and c.dropout is False
    u = UNetRegressionConfig()
    assert u.lr == 0.01 and u.lr_policy is LRPolicy.LINEAR


def test_config_validation_and_round_trip() -> None:
    cfg = Pix2PixConfig(gan_mode="lsgan", precision="bf16", norm="instance")
    assert cfg.gan_mode is GANMode.LSGAN and cfg.precision is Precision.BF16
    assert Pix2PixConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["gan_mode"] == "lsgan"
    with pytest.raises(ValueError, match="gan_mode"):
        Pix2PixConfig(gan_mode="hinge")
    with pytest.raises(ValueError, match="num_downs"):
        Pix2PixConfig(generator="unet_256", num_downs=6)
    with pytest.raises(ValueError, match="num_downs"):
        Pix2PixConfig(generator="resnet_9blocks", num_downs=5)
    with pytest.raises(ValueError, match="beta1"):
        Pix2PixConfig(beta1=1.0)
    with pytest.raises(ValueError, match="lr"):
        Pix2PixConfig(lr=0)
    with pytest.raises(ValueError, match="device"):
        Pix2PixConfig(device="tpu")
    with pytest.raises(ValueError, match="n_epochs"):
        Pix2PixConfig(n_epochs=0, n_epochs_decay=0)
    with pytest.raises(ValueError, match="unknown"):
        Pix2PixConfig.from_dict({"lambda_l1": 10})
    # through the project's parameter parser: errors name the dotted key
    parsed = parse_params(Pix2PixConfig, {"gan_mode": "wgangp", "lambda_L1": 50}, "tiles_256.model")
    assert parsed.gan_mode is GANMode.WGANGP and parsed.lambda_L1 == 50.0
    with pytest.raises(ParameterError, match="tiles_256.model.gan_mode"):
        parse_params(Pix2PixConfig, {"gan_mode": "nope"}, "tiles_256.model")


# ---- pix2pix -------------------------------------------------------------------------------


def pix2pix_toy_trajectory(seed: int = 0, steps: int = 40) -> dict[str, float]:
    """Pix2pix on the toy colour mapping: G_L1 of the last 5 steps over the first 5, and the
    generated image's L1 after training over before (both < 1 when it learns).

    Margins (``benchmarks/trajectory_margins.py``, 8 kernel/thread variants of seed 0 and
    seeds 0-9; issue 13): see the thresholds in the test below.
    """
    torch.manual_seed(seed)
    model = Pix2Pix(Pix2PixConfig(**SMALL_D, lr=1e-3, lambda_L1=100.0, seed=1 + seed))
    batch = _toy_batch(seed=seed)
    before = (model.generate(batch["A"]) - batch["B"]).abs().mean().item()
    history = [model.train_step(batch) for _ in range(steps)]
    first = sum(h["G_L1"] for h in history[:5]) / 5
    last = sum(h["G_L1"] for h in history[-5:]) / 5
    after = (model.generate(batch["A"]) - batch["B"]).abs().mean().item()
    return {"G_L1_last_over_first": last / first, "L1_after_over_before": after / before}


def test_pix2pix_losses_decrease_on_a_toy_colour_mapping() -> None:
    ratios = pix2pix_toy_trajectory(steps=PIX2PIX_STEPS)
    assert ratios["G_L1_last_over_first"] < PIX2PIX_L1_RATIO, ratios
    assert ratios["L1_after_over_before"] < PIX2PIX_AFTER_RATIO, ratios
    model = Pix2Pix(Pix2PixConfig(**SMALL_D))
    history = [model.train_step(_toy_batch(n=2))]
    assert set(history[0]) == {"G_GAN", "G_L1", "D_real", "D_fake"}
    model.train()
    model.generate(_toy_batch(n=1)["A"])  # generate always runs in eval mode
    assert model.nets["G"].training  # ... and restores the previous mode
    assert all(p.requires_grad for p in model.nets["D"].parameters())


def test_pix2pix_updates_d_before_g_and_both_change() -> None:
    model = Pix2Pix(Pix2PixConfig(**SMALL_D))
    g0 = [p.detach().clone() for p in model.nets["G"].parameters()]
    d0 = [p.detach().clone() for p in model.nets["D"].parameters()]
    model.train_step(_toy_batch(n=2))
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.nets["G"].parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.nets["D"].parameters(), strict=True))
    assert model.steps == 1


@pytest.mark.parametrize("gan_mode", ["lsgan", "wgangp"])
def test_pix2pix_other_gan_modes_give_finite_losses(gan_mode: str) -> None:
    model = Pix2Pix(Pix2PixConfig(**SMALL_D, gan_mode=gan_mode))
    for _ in range(3):
        losses = model.train_step(_toy_batch(n=2))
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    if gan_mode == "wgangp":
        assert "D_gp" in losses and losses["D_gp"] >= 0.0
    else:
        assert "D_gp" not in losses


def _bf16_warning() -> contextlib.AbstractContextManager[object]:
    """Explicit bf16 on a CPU without native bf16 warns; elsewhere it is silent."""
    if cpu_has_fast_bf16():
        return contextlib.nullcontext()
    return pytest.warns(UserWarning, match="emulates")


def test_auto_precision_avoids_emulated_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Pix2PixConfig(**{**SMALL_D, "precision": "auto"})
    import mrihisto_kedro.nn.device as device_module

    for module in (models_module, device_module):
        monkeypatch.setattr(module, "cpu_has_fast_bf16", lambda: False)
    slow_cpu = Pix2Pix(cfg)
    assert slow_cpu.precision is Precision.FP32 and not slow_cpu.channels_last
    for module in (models_module, device_module):
        monkeypatch.setattr(module, "cpu_has_fast_bf16", lambda: True)
    fast_cpu = Pix2Pix(cfg)
    assert fast_cpu.precision is Precision.BF16 and fast_cpu.channels_last


def test_generate_handles_any_size_and_bf16_channels_last() -> None:
    with _bf16_warning():
        model = Pix2Pix(Pix2PixConfig(**{**SMALL_D, "precision": "bf16"}))
    assert model.precision is Precision.BF16
    assert model.channels_last  # auto: CPU + bf16
    out = model.generate(torch.zeros(2, 1, 40, 36))
    assert out.shape == (2, 3, 40, 36) and out.dtype == torch.float32
    losses = model.train_step(_toy_batch(n=2))
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert not Pix2Pix(Pix2PixConfig(**SMALL_D)).channels_last  # auto: fp32 CPU
    with pytest.raises(ValueError, match="batch\\['A'\\]"):
        model.train_step({"A": torch.zeros(1, 3, 32, 32), "B": torch.zeros(1, 3, 32, 32)})


# ---- CycleGAN ------------------------------------------------------------------------------


def _unpaired_batch(n: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    toy = _toy_batch(n=n, seed=seed)
    return {"A": toy["A"], "B": -_toy_batch(n=n, seed=seed + 100)["A"]}


@pytest.mark.parametrize("gan_mode", ["lsgan", "wgangp"])
def test_cyclegan_step_losses_and_pools(gan_mode: str) -> None:
    cfg = CycleGANConfig(**SMALL_D, pool_size=3, gan_mode=gan_mode)
    model = CycleGAN(cfg)
    assert set(model.nets) == {"G_A", "G_B", "D_A", "D_B"}
    assert set(model.optimizers) == {"G", "D"}
    for i in range(3):
        losses = model.train_step(_unpaired_batch(seed=i))
    expected = {"D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"}
    if gan_mode == "wgangp":
        expected |= {"D_A_gp", "D_B_gp"}
    assert set(losses) == expected
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert losses["idt_A"] > 0 and losses["idt_B"] > 0
    assert len(model.pools["fake_A"]) == 3 and len(model.pools["fake_B"]) == 3


def cyclegan_cycle_trajectory(seed: int = 0, steps: int = 40) -> dict[str, float]:
    """CycleGAN on a fixed unpaired batch: the cycle loss (A + B) of the last 3 steps over the
    first 3 (< 1 when it learns the round trip)."""
    torch.manual_seed(seed)
    model = CycleGAN(CycleGANConfig(**SMALL_D, lr=1e-3, pool_size=4, seed=seed))
    batch = _unpaired_batch(n=4, seed=seed)
    history = [model.train_step(batch) for _ in range(steps)]
    first = sum(h["cycle_A"] + h["cycle_B"] for h in history[:3])
    last = sum(h["cycle_A"] + h["cycle_B"] for h in history[-3:])
    return {"cycle_last_over_first": last / first}


def test_cyclegan_cycle_loss_decreases() -> None:
    ratios = cyclegan_cycle_trajectory(steps=CYCLEGAN_STEPS)
    assert ratios["cycle_last_over_first"] < CYCLEGAN_CYCLE_RATIO, ratios


def test_cyclegan_identity_off_when_channel_counts_differ() -> None:
    model = CycleGAN(CycleGANConfig(**SMALL_D, in_channels=1, out_channels=3, pool_size=2))
    assert not model.use_identity
    losses = model.train_step(_toy_batch(n=2))
    assert losses["idt_A"] == 0.0 and losses["idt_B"] == 0.0
    assert model.generate(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)


# ---- U-Net regression ----------------------------------------------------------------------


def unet_mse_trajectory(seed: int = 0, steps: int = 40) -> dict[str, float]:
    """The U-Net regression on the toy mapping: MSE of the last 5 steps over the first 5."""
    torch.manual_seed(seed)
    model = UNetRegression(UNetRegressionConfig(**SMALL, lr=1e-3, seed=seed))
    batch = _toy_batch(seed=seed)
    history = [model.train_step(batch)["MSE"] for _ in range(steps)]
    return {"MSE_last_over_first": sum(history[-5:]) / sum(history[:5])}


def test_unet_regression_mse_decreases_and_range_conversion() -> None:
    ratios = unet_mse_trajectory()
    assert ratios["MSE_last_over_first"] < UNET_MSE_RATIO, ratios
    model = UNetRegression(UNetRegressionConfig(**SMALL, lr=1e-3))
    batch = _toy_batch()
    model.train_step(batch)
    # generate maps the sigmoid output y in [0, 1] to 2y - 1 in [-1, 1]
    net = model.nets["G"]
    net.eval()
    with torch.no_grad():
        y = net(batch["A"])
    assert y.min() >= 0 and y.max() <= 1
    torch.testing.assert_close(model.generate(batch["A"]), 2 * y - 1)
    assert model.output_range == (0.0, 1.0)
    assert model.generator_spec["final_activation"] == "sigmoid"


# ---- state ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "cfg"),
    [
        (Pix2Pix, Pix2PixConfig(**SMALL_D)),
        (CycleGAN, CycleGANConfig(**SMALL_D, pool_size=2)),
        (UNetRegression, UNetRegressionConfig(**SMALL)),
    ],
)
def test_state_dict_round_trip_continues_identically(cls: type, cfg: object) -> None:
    batch = _toy_batch(n=2) if cls is not CycleGAN else _unpaired_batch()
    model = build_model(cfg)
    assert isinstance(model, cls)
    model.train_step(batch)
    model.step_schedulers()
    state = _roundtrip(model.state_dict())  # weights_only=True
    clone = build_model(cfg)
    clone.load_state_dict(state)
    assert clone.learning_rates() == model.learning_rates()
    torch.manual_seed(5)
    expected = model.train_step(batch)
    torch.manual_seed(5)
    got = clone.train_step(batch)
    assert got == expected
    for name in model.nets:
        theirs = clone.nets[name].state_dict()
        for key, value in model.nets[name].state_dict().items():
            assert torch.equal(value, theirs[key]), (name, key)


def test_load_state_dict_refuses_other_configs() -> None:
    model = Pix2Pix(Pix2PixConfig(**SMALL_D))
    state = model.state_dict()
    other = Pix2Pix(Pix2PixConfig(**{**SMALL_D, "ngf": 4}))
    with pytest.raises(ValueError, match="ngf"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="Pix2Pix"):
        UNetRegression(UNetRegressionConfig(**SMALL)).load_state_dict(state)
    # runtime fields may differ
    with _bf16_warning():
        bf16 = Pix2Pix(Pix2PixConfig(**{**SMALL_D, "precision": "bf16"}))
    bf16.load_state_dict(state)


def test_cyclegan_resize_conv_upsampling_is_exported_and_rebuilt() -> None:
    from mrihisto_kedro.nn.training import export_generator, generator_digest, load_generator

    cfg = dict(generator="resnet_6blocks", ngf=4, ndf=4, device="cpu", seed=0)
    model = CycleGAN(CycleGANConfig(**cfg, upsampling="resize_conv"))
    payload = export_generator(model)
    assert payload["architecture"]["upsampling"] == "resize_conv"
    rebuilt = load_generator(payload)
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    model.nets["G_A"].eval()
    with torch.no_grad():
        # (the trained copy may run channels_last: float rounding only)
        torch.testing.assert_close(rebuilt(x), model.nets["G_A"](x), rtol=1e-4, atol=1e-5)
    # the reference default leaves the exported architecture (and so its digest) as it was
    reference = export_generator(CycleGAN(CycleGANConfig(**cfg)))
    assert "upsampling" not in reference["architecture"]
    assert generator_digest(reference) != generator_digest(payload)
    with pytest.raises(ValueError, match="applies to the ResNet generators"):
        CycleGANConfig(generator="unet_128", upsampling="resize_conv")
    with pytest.raises(ValueError, match="upsampling"):
        CycleGANConfig(upsampling="bilinear")
