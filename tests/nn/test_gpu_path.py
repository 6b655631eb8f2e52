"""The GPU path (issue 18), tested on CPU: one autocast per step, fused Adam, cuDNN and loaders.

CUDA-only decisions are tested through their decision functions with a CUDA ``torch.device``
(constructing one needs no GPU); nothing here is skipped on a machine without one.
"""

from __future__ import annotations

import contextlib
import copy
import io

import pytest
import torch
import torch.nn.functional as F

from mrihisto_kedro.nn.device import (
    configure_cudnn,
    cpu_has_fast_bf16,
    loader_options,
    use_fused_adam,
)
from mrihisto_kedro.nn.models import (
    CycleGAN,
    CycleGANConfig,
    Pix2Pix,
    Pix2PixConfig,
    TranslationModel,
    UNetRegression,
    UNetRegressionConfig,
)
from mrihisto_kedro.params import ParameterError

TINY = {"generator": "unet", "num_downs": 5, "ngf": 4, "device": "cpu", "seed": 3}
TINY_D = {**TINY, "ndf": 4}
CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")

# Fused vs unfused Adam on the same data, measured on this project's CPU (AVX2, torch 2.14.1,
# 2 threads): after 6 pix2pix steps of the tiny model below the largest weight difference was
# 1.7e-06 and the largest generated-pixel difference 1.9e-09 (fused Adam computes the same update
# with another operation order; one ulp of a 0.02-sized weight is 1.9e-09); on the full
# 57 M-parameter set benchmarks/bench_optimizer.py measured 1.2e-07 after 18 steps. The
# tolerances sit about 10x and 500x above.
FUSED_WEIGHT_ATOL = 2e-5
FUSED_OUTPUT_ATOL = 1e-6
FUSED_STEPS = 6


def _batch(n: int = 2, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    b = torch.cat([a, -a, 0.5 * a], dim=1)
    return {"A": a, "B": b}


def _models(precision: str, **extra: object) -> list[TranslationModel]:
    return [
        Pix2Pix(Pix2PixConfig(**TINY_D, precision=precision, **extra)),  # type: ignore[arg-type]
        CycleGAN(
            CycleGANConfig(
                **TINY_D,  # type: ignore[arg-type]
                in_channels=1,
                out_channels=1,
                norm="batch",
                precision=precision,
                **extra,
            )
        ),
        UNetRegression(UNetRegressionConfig(**TINY, precision=precision, **extra)),  # type: ignore[arg-type]
    ]


def _batch_for(model: TranslationModel) -> dict[str, torch.Tensor]:
    batch = _batch()
    if model.config.out_channels == 1:
        batch["B"] = batch["B"][:, :1]
    return batch


# -- one autocast per step, backward outside it -------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_each_train_step_enters_autocast_once(precision: str) -> None:
    """pix2pix, CycleGAN and the U-Net baseline enter the model's autocast once per step."""
    with (
        pytest.warns(UserWarning)
        if precision == "bf16" and not _native_bf16()
        else contextlib.nullcontext()
    ):
        models = _models(precision)
    for model in models:
        entered: list[int] = []
        original = model.autocast

        def counting(original: object = original, entered: list[int] = entered) -> object:
            entered.append(1)
            return original()  # type: ignore[operator]

        model.autocast = counting  # type: ignore[method-assign]
        for _ in range(2):
            model.train_step(_batch_for(model))
        assert len(entered) == 2, (
            f"{type(model).__name__} entered autocast {entered} times in 2 steps"
        )


def test_backward_runs_with_autocast_off_and_forward_with_it_on() -> None:
    """In bf16 the forward passes see autocast on, every gradient is computed with it off."""
    with pytest.warns(UserWarning) if not _native_bf16() else contextlib.nullcontext():
        models = _models("bf16")
    for model in models:
        seen_backward: list[bool] = []
        seen_forward: list[bool] = []
        for net in model.nets.values():
            net.register_forward_hook(
                lambda *_, seen=seen_forward: seen.append(torch.is_autocast_enabled("cpu"))
            )
            first = next(net.parameters())
            first.register_hook(
                lambda grad, seen=seen_backward: (
                    seen.append(torch.is_autocast_enabled("cpu")) or grad
                )
            )
        model.train_step(_batch_for(model))
        assert seen_forward and all(seen_forward), type(model).__name__
        assert seen_backward and not any(seen_backward), type(model).__name__
        assert not torch.is_autocast_enabled("cpu")


def test_fp32_pix2pix_step_is_the_reference_step_bit_for_bit() -> None:
    """fp32 + unfused Adam: one pix2pix step equals the reference's optimize_parameters
    (forward G; D on fake/real pairs, 0.5 (fake + real), Adam step; G with GAN + L1, Adam step)
    written out with torch's default Adam, in every weight."""
    model = Pix2Pix(Pix2PixConfig(**TINY_D, precision="fp32", dropout=False, fused_optimizer=False))
    net_g, net_d = copy.deepcopy(model.nets["G"]), copy.deepcopy(model.nets["D"])
    opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = torch.nn.BCEWithLogitsLoss()
    batch = _batch()
    for _ in range(2):
        model.train_step(batch)
        real_a, real_b = batch["A"], batch["B"]
        fake_b = net_g(real_a)
        for p in net_d.parameters():
            p.requires_grad_(True)
        opt_d.zero_grad()
        pred_fake = net_d(torch.cat([real_a, fake_b], 1).detach())
        pred_real = net_d(torch.cat([real_a, real_b], 1))
        loss_d = 0.5 * (
            bce(pred_fake, torch.zeros_like(pred_fake)) + bce(pred_real, torch.ones_like(pred_real))
        )
        loss_d.backward()
        opt_d.step()
        for p in net_d.parameters():
            p.requires_grad_(False)
        opt_g.zero_grad()
        pred_fake = net_d(torch.cat([real_a, fake_b], 1))
        loss_g = bce(pred_fake, torch.ones_like(pred_fake)) + F.l1_loss(fake_b, real_b) * 100.0
        loss_g.backward()
        opt_g.step()
    for name, ref in (("G", net_g), ("D", net_d)):
        for (key, ours), theirs in zip(
            model.nets[name].state_dict().items(), ref.state_dict().values(), strict=True
        ):
            assert torch.equal(ours, theirs), f"{name}.{key}"


# -- fused Adam ---------------------------------------------------------------------------------


def test_fused_adam_decision() -> None:
    """Automatic: fused on CPU and CUDA, not on MPS; explicit False always honoured."""
    assert use_fused_adam(CPU) is True
    assert use_fused_adam(CUDA) is True
    assert use_fused_adam(torch.device("mps")) is False
    assert use_fused_adam(CUDA, False) is False
    assert use_fused_adam(CPU, True) is True
    with pytest.raises(ValueError, match="fused_optimizer"):
        use_fused_adam(torch.device("mps"), True)


def test_fused_optimizer_field_is_declared_and_typed() -> None:
    assert Pix2PixConfig().fused_optimizer is None
    assert Pix2PixConfig.from_dict({"fused_optimizer": False}).fused_optimizer is False
    with pytest.raises(ParameterError, match="fused_optimizer"):
        Pix2PixConfig.from_dict({"fused_optimizer": "yes please"})


def test_models_build_fused_adam_by_default_and_unfused_on_request() -> None:
    for model in _models("fp32"):
        assert model.fused_optimizer
        assert all(g["fused"] for o in model.optimizers.values() for g in o.param_groups)
    for model in _models("fp32", fused_optimizer=False):
        assert not model.fused_optimizer
        assert not any(g["fused"] for o in model.optimizers.values() for g in o.param_groups)


def test_fused_and_unfused_adam_agree_within_tolerance() -> None:
    """Same seed and data, fused vs unfused: weights and outputs agree within the stated
    tolerance after several steps, and differ (the fused path is really taken)."""
    runs = {}
    for fused in (True, False):
        model = Pix2Pix(
            Pix2PixConfig(**TINY_D, precision="fp32", dropout=False, fused_optimizer=fused)
        )
        for step in range(FUSED_STEPS):
            model.train_step(_batch(seed=step))
        runs[fused] = model
    weight_diff = max(
        float((a - b).detach().abs().max())
        for name in ("G", "D")
        for a, b in zip(
            runs[True].nets[name].parameters(), runs[False].nets[name].parameters(), strict=True
        )
    )
    probe = _batch(seed=99)["A"]
    output_diff = float((runs[True].generate(probe) - runs[False].generate(probe)).abs().max())
    assert 0.0 < weight_diff <= FUSED_WEIGHT_ATOL, weight_diff
    assert output_diff <= FUSED_OUTPUT_ATOL, output_diff


def test_resume_honours_the_resumed_config_optimizer_choice() -> None:
    """A checkpoint of an unfused run resumed with fused Adam runs fused (and vice versa), and
    continues from the saved moments."""
    batch = _batch()
    unfused = Pix2Pix(Pix2PixConfig(**TINY_D, precision="fp32", fused_optimizer=False))
    unfused.train_step(batch)
    buf = io.BytesIO()
    torch.save(unfused.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=False)
    fused = Pix2Pix(Pix2PixConfig(**TINY_D, precision="fp32", fused_optimizer=True))
    fused.load_state_dict(state)
    opt = fused.optimizers["G"]
    assert all(g["fused"] for g in opt.param_groups)
    assert all(not g.get("foreach") for g in opt.param_groups)
    before = next(fused.nets["G"].parameters()).detach().clone()
    fused.train_step(batch)
    assert not torch.equal(before, next(fused.nets["G"].parameters()))
    assert all(float(s["step"]) == 2.0 for s in opt.state.values())
    back = Pix2Pix(Pix2PixConfig(**TINY_D, precision="fp32", fused_optimizer=False))
    back.load_state_dict(fused.state_dict())
    assert not any(g["fused"] for g in back.optimizers["D"].param_groups)
    back.train_step(batch)


# -- cuDNN benchmark, loaders ---------------------------------------------------------------------


def test_cudnn_benchmark_only_on_cuda_with_fixed_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert configure_cudnn(CPU, fixed_input_size=True) is False
    assert torch.backends.cudnn.benchmark is False
    assert configure_cudnn(CUDA, fixed_input_size=False) is False
    assert torch.backends.cudnn.benchmark is False
    assert configure_cudnn(CUDA, fixed_input_size=True) is True
    assert torch.backends.cudnn.benchmark is True


def test_loader_options_pin_on_cuda_and_persist_workers() -> None:
    assert loader_options(CPU, 0) == {
        "num_workers": 0,
        "pin_memory": False,
        "persistent_workers": False,
    }
    assert loader_options(CUDA, 0)["pin_memory"] is True
    assert loader_options(CUDA, 2) == {
        "num_workers": 2,
        "pin_memory": True,
        "persistent_workers": True,
    }
    # an augmented dataset changes per epoch: persistent workers would never see set_epoch
    assert loader_options(CUDA, 2, per_epoch_draws=True)["persistent_workers"] is False
    with pytest.raises(ValueError, match="num_workers"):
        loader_options(CPU, -1)


def test_loader_options_build_a_working_loader() -> None:
    """The options are accepted by DataLoader and the batches come through (CPU, 1 worker)."""
    data = torch.utils.data.TensorDataset(torch.arange(8.0))
    loader = torch.utils.data.DataLoader(data, batch_size=4, **loader_options(CPU, 1))  # type: ignore[arg-type]
    for _ in range(2):  # a second epoch reuses the persistent worker
        assert [b[0].tolist() for b in loader] == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]


# -- helpers ----------------------------------------------------------------------------------


def _native_bf16() -> bool:
    return cpu_has_fast_bf16()
