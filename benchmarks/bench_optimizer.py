"""Benchmark: fused vs unfused Adam step time on the pix2pix parameter set, side by side.

The parameters of the reference pix2pix at full size (U-Net-256 G 1 -> 3 channels, 54,411,907
parameters, and the basic 70x70 PatchGAN on 4 channels, 2,766,657 parameters: 57,178,564 in
all) get fixed random gradients; one Adam per network (as :class:`Pix2Pix`) with lr 2e-4 and
betas (0.5, 0.999). Three implementations of ``torch.optim.Adam`` are timed in the same run,
interleaved round by round so that machine load affects them alike:

* ``default``: ``Adam(params, lr, betas)``, what the reference implementation builds and
  what ``fused_optimizer: false`` builds (on CPU torch picks its per-tensor loop; on CUDA its
  ``foreach`` path);
* ``foreach``: ``foreach=True`` (the multi-tensor path);
* ``fused``: ``fused=True`` (one kernel), what ``fused_optimizer: null`` (automatic) builds on
  CPU and CUDA.

It prints the median ms per step (both optimisers, ``--steps`` steps after ``--warmup``), the
ratio to ``default`` and the largest absolute weight difference from ``default`` after the
timed steps (same gradients each step).

Usage::

    python benchmarks/bench_optimizer.py [--steps 20] [--warmup 3] [--device cpu]
        [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from mrihisto_kedro.nn.models import Pix2Pix, Pix2PixConfig

IMPLEMENTATIONS: dict[str, dict[str, bool]] = {
    "default": {},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


def parameter_sets(device: str) -> dict[str, list[torch.Tensor]]:
    """The G and D parameters of a full-size pix2pix (as float32 leaf tensors on ``device``)."""
    model = Pix2Pix(
        Pix2PixConfig(device=device, precision="fp32", channels_last=False, fused_optimizer=False)
    )
    return {
        name: [p.detach().clone() for p in model.nets[name].parameters()] for name in ("G", "D")
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    """Time the three implementations side by side and print medians, ratios and differences."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads, device {device}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    base = parameter_sets(args.device)
    n_params = sum(p.numel() for ps in base.values() for p in ps)
    gen = torch.Generator().manual_seed(0)
    grads = {
        name: [(torch.randn(p.shape, generator=gen) * 1e-3).to(device) for p in ps]
        for name, ps in base.items()
    }
    params: dict[str, dict[str, list[torch.Tensor]]] = {}
    optimizers: dict[str, list[torch.optim.Adam]] = {}
    for impl, flags in IMPLEMENTATIONS.items():
        params[impl] = {
            name: [p.clone().requires_grad_(True) for p in ps] for name, ps in base.items()
        }
        for name, ps in params[impl].items():
            for p, g in zip(ps, grads[name], strict=True):
                p.grad = g.clone()
        optimizers[impl] = [
            torch.optim.Adam(ps, lr=2e-4, betas=(0.5, 0.999), **flags)
            for ps in params[impl].values()
        ]
    times: dict[str, list[float]] = {impl: [] for impl in IMPLEMENTATIONS}
    for round_index in range(args.warmup + args.steps):
        for impl in IMPLEMENTATIONS:
            _sync(device)
            start = time.perf_counter()
            for opt in optimizers[impl]:
                opt.step()
            _sync(device)
            if round_index >= args.warmup:
                times[impl].append((time.perf_counter() - start) * 1000.0)
    print(
        f"Adam over pix2pix unet_256 G + basic PatchGAN D: {n_params:,} parameters, "
        f"median of {args.steps} steps after {args.warmup} warm-up steps, interleaved\n"
    )
    header = (
        f"{'implementation':<15} {'ms/step':>9} {'min':>8} {'max':>8} {'ratio':>7} {'max |dw|':>10}"
    )
    print(header)
    print("-" * len(header))
    reference = statistics.median(times["default"])
    for impl in IMPLEMENTATIONS:
        diff = max(
            float((a - b).detach().abs().max())
            for name in base
            for a, b in zip(params[impl][name], params["default"][name], strict=True)
        )
        median = statistics.median(times[impl])
        print(
            f"{impl:<15} {median:>9.1f} {min(times[impl]):>8.1f} {max(times[impl]):>8.1f} "
            f"{median / reference:>6.2f}x {diff:>10.2e}"
        )
    print(
        f"\nmax |dw|: largest weight difference from 'default' after "
        f"{args.warmup + args.steps} steps with the same gradients (lr 2e-4)"
    )


if __name__ == "__main__":
    main()
