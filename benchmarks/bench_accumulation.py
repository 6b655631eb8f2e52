"""Benchmark: peak memory and time of one pix2pix step, one batch vs micro-batches, side by side.

One optimiser step of the reference-size pix2pix (U-Net-256 G 1 -> 3 channels, 70x70 PatchGAN,
fp32, instance norm, dropout on) on a batch of ``--batch`` tiles of ``--size`` px, computed
in one pass (``accumulate=1``) and as ``k`` micro-batches (``accumulate=k`` for each ``k`` of
``--accumulate``, :meth:`~mrihisto_kedro.nn.models.Pix2Pix.train_step`).

Each measurement runs in a fresh process (variants interleaved round by round, so machine load
affects them alike): build the model, one warm-up step (allocates Adam's state and the
allocator's pools), then for each of ``--steps`` steps: reset the process's peak resident set
(``/proc/self/clear_refs``, Linux), note the resident set, run the step, read the peak
(``VmHWM``). The step's memory is the peak minus the resident set before it: the step's
activations and temporaries (the weights, Adam's state and the previous step's gradients are
held before it). glibc
is told to serve every block above 64 KiB by ``mmap`` (``MALLOC_MMAP_THRESHOLD_``), so freed
activations go back to the system and the resident set follows the live tensors. On CUDA the
step's peak is ``torch.cuda.max_memory_allocated`` above the allocated memory before it.

It prints the median step memory (MiB) and time (s) per variant and their ratios to the
one-pass step.

Measured on the 2-core development machine (torch 2.14.1, 256 px, batch 4, medians of 3
processes x 2 steps): one pass 280.5 MiB, 2.20 s; 2 micro-batches of 2 120.7 MiB (0.43x),
3.07 s (1.40x); 4 micro-batches of 1 92.2 MiB (0.33x), 3.97 s (1.81x) (``docs/cluster.md``).

Usage::

    python benchmarks/bench_accumulation.py [--size 256] [--batch 4] [--accumulate 2 4]
        [--steps 2] [--repeats 3] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

_KIB = 1024


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field}")
    return int(match.group(1))


def worker(args: argparse.Namespace) -> None:
    """One process: a warm-up step, then ``args.steps`` measured steps; JSON on stdout."""
    import gc

    import torch

    from mrihisto_kedro.nn.models import Pix2Pix, Pix2PixConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Pix2Pix(Pix2PixConfig(device=args.device, precision="fp32", norm="instance", seed=0))
    g = torch.Generator().manual_seed(1)
    a = torch.rand(args.batch, 1, args.size, args.size, generator=g) * 2 - 1
    batch = {"A": a, "B": torch.cat([a, -a, 0.5 * a], dim=1)}
    cuda = model.device.type == "cuda"
    model.train_step(batch, accumulate=args.worker)  # warm-up: Adam state, allocator pools
    peaks, seconds = [], []
    for _ in range(args.steps):
        gc.collect()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set
            before = _status_kib("VmRSS") * _KIB
        started = time.perf_counter()
        model.train_step(batch, accumulate=args.worker)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
        peak = torch.cuda.max_memory_allocated() if cuda else _status_kib("VmHWM") * _KIB
        peaks.append(peak - before)
    print(json.dumps({"peak_bytes": peaks, "seconds": seconds}))


def _run(k: int, args: argparse.Namespace) -> dict[str, list[float]]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        str(k),
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--accumulate", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    variants = [1, *[k for k in args.accumulate if k != 1]]
    for k in variants:
        if args.batch % k:
            parser.error(f"--accumulate {k} does not divide --batch {args.batch}")
    print(
        f"pix2pix (unet_256, basic D, instance norm, fp32), batch {args.batch} x "
        f"{args.size}x{args.size} px, device {args.device}, {platform.processor() or 'cpu'}, "
        f"{args.repeats} processes x {args.steps} steps per variant (interleaved)"
    )
    peaks: dict[int, list[float]] = {k: [] for k in variants}
    seconds: dict[int, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for k in variants:
            result = _run(k, args)
            peaks[k].extend(result["peak_bytes"])
            seconds[k].extend(result["seconds"])
    base_peak = statistics.median(peaks[1])
    base_time = statistics.median(seconds[1])
    print(f"{'variant':<28}{'step memory MiB':>16}{'ratio':>8}{'step s':>10}{'ratio':>8}")
    for k in variants:
        peak = statistics.median(peaks[k])
        step = statistics.median(seconds[k])
        name = "one pass" if k == 1 else f"{k} micro-batches of {args.batch // k}"
        print(
            f"{name:<28}{peak / 2**20:>16.1f}{peak / base_peak:>8.2f}"
            f"{step:>10.2f}{step / base_time:>8.2f}"
        )


if __name__ == "__main__":
    main()
