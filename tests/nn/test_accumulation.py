"""Gradient accumulation (issue 18): ``train_step(batch, accumulate=k)`` of the three models.

``k`` micro-batches of ``N / k`` tiles with one optimiser step per batch make the updates of one
pass over the ``N`` tiles when every loss is a per-sample mean and the networks normalise per
sample (instance norm) without dropout: only the float summation order differs. Each test runs
both from the same initial weights and compares every weight and every network's output.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

from mrihisto_kedro.nn.experiment import DataParams
from mrihisto_kedro.nn.models import (
    CycleGAN,
    CycleGANConfig,
    Pix2Pix,
    Pix2PixConfig,
    TranslationModel,
    UNetRegression,
    UNetRegressionConfig,
)
from mrihisto_kedro.params import ParameterError, parse_params

TINY = {"generator": "unet", "num_downs": 5, "ngf": 4, "device": "cpu", "precision": "fp32"}
STEPS = 3
WEIGHT_TOLERANCE = 3e-4
OUTPUT_TOLERANCE = 1e-5
"""Largest absolute differences allowed after 3 steps between 2 micro-batches of 2 and one
batch of 4 (lr 0.01: the weights move by up to 0.03), in every weight that changes an output
and in every network's output on fixed inputs. Measured here (torch 2.14.1, AVX2, 1-2 threads):
weights at most 4.5e-5 to 6.0e-5 (pix2pix: one up-convolution's weights, whose small gradients
Adam normalises), 2.6e-6 (CycleGAN), 1.1e-6 (U-Net regression); outputs at most 1.5e-6,
1.8e-6, 6e-8. The micro-batch sums and the one-pass batch mean differ only in float summation
order, which Adam's division by the gradient's magnitude amplifies where gradients are small.
The tolerances sit 5x above the largest measurement; the weights move 50x beyond them."""

_BUILD: dict[str, Any] = {
    # instance norm, no dropout; CycleGAN without pools (the pools are exercised below)
    "pix2pix": lambda **kw: Pix2Pix(Pix2PixConfig(**{**TINY, "ndf": 4, "dropout": False, **kw})),
    "cyclegan": lambda **kw: CycleGAN(
        CycleGANConfig(**{**TINY, "ndf": 4, "in_channels": 1, "out_channels": 3, **kw})
    ),
    "unet_regression": lambda **kw: UNetRegression(UNetRegressionConfig(**{**TINY, **kw})),
}


def _batch(n: int = 4, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    b = torch.cat([a, -a, 0.5 * a], dim=1)
    return {"A": a, "B": b}


def _weights(model: TranslationModel) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": value.detach().clone()
        for name, net in model.nets.items()
        for key, value in net.state_dict().items()
    }


def _inert(model: TranslationModel) -> set[str]:
    """Biases of convolutions right before an instance norm: the norm subtracts them, their
    gradient is rounding noise that Adam scales to steps of size lr; no output depends on them
    (the outputs are compared as well)."""
    inert = set()
    for name, net in model.nets.items():
        for prefix, module in net.named_modules():
            if isinstance(module, nn.Sequential):
                layers = list(module.named_children())
                for (index, layer), (_, after) in zip(layers, layers[1:], strict=False):
                    if isinstance(after, nn.InstanceNorm2d) and layer.bias is not None:
                        inert.add(f"{name}.{prefix}.{index}.bias".replace("..", "."))
    return inert


def _outputs(model: TranslationModel) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(99)
    out = {}
    with torch.no_grad():
        for name, net in model.nets.items():
            first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
            out[name] = net(torch.rand(2, first.in_channels, 32, 32, generator=gen) * 2 - 1)
    return out


def _train(model: TranslationModel, accumulate: int) -> list[dict[str, float]]:
    torch.manual_seed(0)
    return [model.train_step(_batch(seed=s), accumulate=accumulate) for s in range(STEPS)]


@pytest.mark.parametrize("model_type", ["pix2pix", "cyclegan", "unet_regression"])
def test_two_micro_batches_of_two_make_the_step_of_one_batch_of_four(model_type: str) -> None:
    extra: dict[str, Any] = {"lr": 0.01, "seed": 5, "norm": "instance"}
    if model_type == "cyclegan":
        extra["pool_size"] = 0
    whole, parts = _BUILD[model_type](**extra), _BUILD[model_type](**extra)
    start = _weights(whole)
    losses_whole = _train(whole, 1)
    losses_parts = _train(parts, 2)
    inert = _inert(whole)
    assert inert  # the instance-norm networks have such biases
    ours, theirs = _weights(parts), _weights(whole)
    gaps = {k: float((ours[k] - theirs[k]).abs().max()) for k in ours if k not in inert}
    print(model_type, "largest weight difference", max(gaps.values()))
    assert max(gaps.values()) <= WEIGHT_TOLERANCE, gaps
    moved = max(float((theirs[k] - start[k]).abs().max()) for k in gaps)
    assert moved > 50 * WEIGHT_TOLERANCE  # the weights trained: the tolerance is not vacuous
    out_parts, out_whole = _outputs(parts), _outputs(whole)
    for name in out_whole:
        gap = float((out_parts[name] - out_whole[name]).abs().max())
        print(model_type, name, "largest output difference", gap)
        assert gap <= OUTPUT_TOLERANCE, name
    # the reported losses are the micro-batch means: those of the whole batch
    for got, want in zip(losses_parts, losses_whole, strict=True):
        assert got.keys() == want.keys()
        for name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-4, abs=1e-6), name
    assert parts.steps == whole.steps == STEPS


def test_cyclegan_pools_see_the_same_images_in_the_same_order() -> None:
    """With image pools, micro-batches query each pool image by image in the batch order, so
    the pools hold the same images and draw the same swaps as in one pass."""
    whole = _BUILD["cyclegan"](lr=0.01, seed=5, pool_size=3)
    parts = _BUILD["cyclegan"](lr=0.01, seed=5, pool_size=3)
    _train(whole, 1)
    _train(parts, 2)
    for name in ("fake_A", "fake_B"):
        a, b = whole.pools[name].state_dict(), parts.pools[name].state_dict()
        assert torch.equal(a["rng_state"], b["rng_state"]), name
        for x, y in zip(a["images"], b["images"], strict=True):
            assert float((x - y).abs().max()) <= OUTPUT_TOLERANCE, name


def test_pix2pix_dropout_masks_of_the_recomputed_fakes_are_those_of_the_first_pass() -> None:
    """With dropout, the G update recomputes G(A_i) under the RNG state of its first forward:
    the D update and the G update see the same fake (hooked output of the generator)."""
    config = {**TINY, "num_downs": 6, "ndf": 4, "norm": "instance", "dropout": True, "seed": 2}
    model = Pix2Pix(Pix2PixConfig(**config))
    assert any(isinstance(m, nn.Dropout) for m in model.nets["G"].modules())
    seen: list[torch.Tensor] = []
    model.nets["G"].register_forward_hook(lambda *args: seen.append(args[2].detach().clone()))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    losses = model.train_step(_batch(size=64), accumulate=2)
    assert len(seen) == 4  # two fakes without a graph, two recomputed with one
    assert torch.equal(seen[0], seen[2]) and torch.equal(seen[1], seen[3])
    assert not torch.equal(seen[0], seen[1])  # different tiles, different masks
    assert not torch.equal(torch.get_rng_state(), before)  # the RNG moved on, once
    assert all(torch.isfinite(torch.tensor(list(losses.values()))))


def test_batch_norm_trains_with_micro_batch_statistics() -> None:
    """Batch norm normalises each micro-batch with its own mean and variance (2 tiles instead of
    4) and updates its running statistics once per micro-batch, so accumulation does not make
    the one-pass step: the weights differ by far more than the rounding tolerance. It still
    trains: finite losses, weights that move, running statistics updated once per micro-batch
    forward (the recomputed generator forward of pix2pix does not count again)."""
    whole = Pix2Pix(Pix2PixConfig(**TINY, ndf=4, norm="batch", dropout=False, lr=0.01))
    parts = Pix2Pix(Pix2PixConfig(**TINY, ndf=4, norm="batch", dropout=False, lr=0.01))
    start = _weights(parts)
    _train(whole, 1)
    history = _train(parts, 2)
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
    ours, theirs = _weights(parts), _weights(whole)
    learned = [k for k in ours if ours[k].is_floating_point()]
    assert max(float((ours[k] - start[k]).abs().max()) for k in learned) > 50 * WEIGHT_TOLERANCE
    gap = max(float((ours[k] - theirs[k]).abs().max()) for k in learned)
    print("batch norm: largest weight difference, 2 x 2 vs 4:", gap)
    assert gap > 100 * WEIGHT_TOLERANCE
    for weights, forwards in ((ours, 2), (theirs, 1)):  # forwards per step and network
        counts = {k: int(v) for k, v in weights.items() if k.endswith("num_batches_tracked")}
        assert {v for k, v in counts.items() if k.startswith("G.")} == {forwards * STEPS}
        # D runs on the fake pairs, the real pairs and in the G update: 3 forwards per batch
        assert {v for k, v in counts.items() if k.startswith("D.")} == {3 * forwards * STEPS}


def test_a_batch_that_does_not_split_evenly_is_weighted_by_micro_batch_size() -> None:
    """An epoch's smaller last batch (3 tiles, k = 2) splits into 2 + 1 tiles weighted 2/3 and
    1/3: still the update of the whole batch."""
    whole, parts = (_BUILD["unet_regression"](norm="instance", lr=0.01) for _ in range(2))
    batch = _batch(n=3)
    want = whole.train_step(batch)
    got = parts.train_step(batch, accumulate=2)
    assert got["MSE"] == pytest.approx(want["MSE"], rel=1e-5)
    inert = _inert(whole)
    ours, theirs = _weights(parts), _weights(whole)
    gap = max(float((ours[k] - theirs[k]).abs().max()) for k in ours if k not in inert)
    assert gap <= WEIGHT_TOLERANCE


def test_accumulate_one_is_the_one_pass_step_bit_for_bit() -> None:
    a = Pix2Pix(Pix2PixConfig(**TINY, ndf=4, norm="instance", seed=1))
    b = Pix2Pix(Pix2PixConfig(**TINY, ndf=4, norm="instance", seed=1))
    torch.manual_seed(0)
    la = a.train_step(_batch())
    torch.manual_seed(0)
    lb = b.train_step(_batch(), accumulate=1)
    assert la == lb
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bad_accumulate_values_are_refused() -> None:
    model = UNetRegression(UNetRegressionConfig(**TINY))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="accumulate"):
            model.train_step(_batch(), accumulate=bad)


def test_accumulate_steps_must_divide_the_batch_size_at_parse_time() -> None:
    assert DataParams().accumulate_steps == 1
    assert parse_params(DataParams, {"batch_size": 8, "accumulate_steps": 4}).accumulate_steps == 4
    with pytest.raises(ParameterError, match=r"'training\.data\.accumulate_steps' = 3 does not"):
        parse_params(DataParams, {"batch_size": 4, "accumulate_steps": 3}, "training.data")
    with pytest.raises(ParameterError, match="accumulate_steps"):
        parse_params(DataParams, {"accumulate_steps": 0}, "training.data")


@pytest.mark.parametrize(("model_type", "per_micro_batch"), [("pix2pix", 3), ("cyclegan", 2)])
def test_under_amp_each_micro_batch_forward_has_its_own_autocast(
    model_type: str, per_micro_batch: int
) -> None:
    """bf16: one autocast per micro-batch pass (pix2pix: the fakes, the D update, the G update;
    CycleGAN: the G update, the D update), forwards under it, every backward with it off."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without native bf16 warns
        model = _BUILD[model_type](precision="bf16", norm="instance")
    entered: list[int] = []
    original = model.autocast

    def counting() -> Any:
        entered.append(1)
        return original()

    model.autocast = counting
    forward: list[bool] = []
    backward: list[bool] = []
    for net in model.nets.values():
        net.register_forward_hook(lambda *_: forward.append(torch.is_autocast_enabled("cpu")))
        next(net.parameters()).register_hook(
            lambda grad: (backward.append(torch.is_autocast_enabled("cpu")), grad)[1]
        )
    losses = model.train_step(_batch(), accumulate=2)
    assert len(entered) == 2 * per_micro_batch
    assert forward and all(forward) and backward and not any(backward)
    assert all(torch.isfinite(torch.tensor(list(losses.values()))))
