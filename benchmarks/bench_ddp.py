"""Benchmark: pix2pix training step time in 1 and in 2 data-parallel processes on CPU (gloo).

One run measures, side by side on the same machine:

* ``1 process``: one process, one torch thread, batch ``b`` per step;
* ``2 processes``: two processes (``torch.multiprocessing.spawn``, gloo, the project's
  :func:`~mrihisto_kedro.nn.distributed.process_group` from ``RANK``/``WORLD_SIZE`` as
  ``torchrun`` sets them), one torch thread each, batch ``b`` per process (global batch ``2 b``),
  the networks wrapped in ``DistributedDataParallel`` by
  :class:`~mrihisto_kedro.nn.distributed.DistributedNets`;
* ``1 process, 2 threads, batch 2b``: what one process does with the same cores and the same
  global batch.

Each variant times ``--steps`` :meth:`Pix2Pix.train_step` calls after ``--warmup`` untimed
ones (rank 0's clock; the ranks are in lock-step through the gradient all-reduce) and prints
the median ms per step, the median ms per tile (step / global batch) and the ratios against
the one-process baseline. The model is a small pix2pix (U-Net of ``--depth`` levels, ``--ngf``
filters, PatchGAN, instance norm, fp32) on random ``--size`` px tiles.

Usage::

    python benchmarks/bench_ddp.py [--steps 20] [--warmup 3] [--batch 2] [--size 64]
        [--ngf 16] [--depth 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from mrihisto_kedro.nn.distributed import DistributedNets, process_group
from mrihisto_kedro.nn.models import Pix2Pix, Pix2PixConfig


def _model(args: argparse.Namespace) -> Pix2Pix:
    return Pix2Pix(
        Pix2PixConfig(
            generator="unet",
            num_downs=args.depth,
            ngf=args.ngf,
            ndf=args.ngf,
            norm="instance",
            dropout=False,
            in_channels=1,
            out_channels=3,
            device="cpu",
            precision="fp32",
            channels_last=False,
            seed=0,
        )
    )


def _time_steps(model: Pix2Pix, batch: int, args: argparse.Namespace, seed: int) -> list[float]:
    """Seconds of each timed ``train_step`` on random batches of ``batch`` tiles."""
    gen = torch.Generator().manual_seed(seed)
    batches = [
        {
            "A": torch.rand(batch, 1, args.size, args.size, generator=gen) * 2 - 1,
            "B": torch.rand(batch, 3, args.size, args.size, generator=gen) * 2 - 1,
        }
        for _ in range(4)
    ]
    times = []
    ddp = DistributedNets(model)
    with ddp.training():
        for i in range(args.warmup + args.steps):
            started = time.perf_counter()
            model.train_step(batches[i % len(batches)])
            if i >= args.warmup:
                times.append(time.perf_counter() - started)
    return times


def _worker(rank: int, size: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    with process_group("cpu"):
        times = _time_steps(_model(args), args.batch, args, seed=rank)
    if rank == 0:
        Path(out).write_text(json.dumps(times))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    """Time the three variants and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2, help="tiles per process and step")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(name, None)

    results: dict[str, dict[str, Any]] = {}
    torch.set_num_threads(1)
    one = _time_steps(_model(args), args.batch, args, seed=0)
    results["1 process x 1 thread, batch b"] = {"times": one, "global_batch": args.batch}
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "times.json")
        mp.spawn(_worker, args=(2, _free_port(), args, out), nprocs=2, join=True)
        two = json.loads(Path(out).read_text())
    results["2 processes x 1 thread, batch b each"] = {"times": two, "global_batch": 2 * args.batch}
    torch.set_num_threads(2)
    wide = _time_steps(_model(args), 2 * args.batch, args, seed=0)
    results["1 process x 2 threads, batch 2b"] = {"times": wide, "global_batch": 2 * args.batch}

    base = statistics.median(one) / args.batch
    print(
        f"pix2pix U-Net depth {args.depth}, ngf {args.ngf}, {args.size} px, fp32, instance norm; "
        f"b = {args.batch}; medians of {args.steps} steps after {args.warmup} warm-up"
    )
    print(f"{'variant':40s} {'ms/step':>9s} {'ms/tile':>9s} {'tiles/s vs 1 process':>22s}")
    table = {}
    for name, record in results.items():
        step = statistics.median(record["times"])
        per_tile = step / record["global_batch"]
        table[name] = {"ms_per_step": 1e3 * step, "ms_per_tile": 1e3 * per_tile}
        table[name]["throughput_ratio"] = base / per_tile
        print(f"{name:40s} {1e3 * step:9.1f} {1e3 * per_tile:9.2f} {base / per_tile:21.2f}x")
    step_ratio = statistics.median(two) / statistics.median(one)
    print(f"step time 2 processes / 1 process (same per-process batch): {step_ratio:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"variants": table, "step_ratio": step_ratio}, indent=2))


if __name__ == "__main__":
    main()
