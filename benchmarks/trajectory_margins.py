"""Margins of the training-trajectory tests across CPU kernels, thread counts and seeds.

A test that trains a small network for a few dozen steps and asserts ``last < 0.5 * first``
holds on one CPU and fails on another when its threshold sits inside the spread that float
summation order produces (issue 13: 0.508 on an AVX-512 EPYC, 0.489 elsewhere). This script
measures that spread and prints, for every criterion the tests assert, the value the test sees
(seed 0) under each numeric variant and over seeds, and the headroom of the worst one to the
test's threshold (read from the test modules, so it is the threshold CI uses).

Variants, each in a fresh process because the switches are read when torch loads:

* ``ATEN_CPU_CAPABILITY`` = ``default`` (scalar ATen kernels) or this CPU's best (``avx2``
  here; an AVX-512 CPU picks ``avx512``), which changes reductions, activations and Adam;
* ``ONEDNN_MAX_CPU_ISA`` = ``SSE41`` or this CPU's best (``ALL``), which changes the oneDNN
  convolution kernels and their blocking;
* 1 or 2 intra-op threads, which changes how reductions are split.

An AVX-512 machine's kernels are one more such variant; a threshold with room over all of
these, and over 10 seeds (a much larger perturbation: other initial weights and data), holds
there too. Run on a machine of the project's kind::

    python benchmarks/trajectory_margins.py [--seeds 10]

It prints one table (criterion, threshold, median / worst over variants, median / worst over
seeds, headroom of the overall worst) and exits 1 if any value crosses its threshold.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Criterion:
    """One asserted inequality: ``module.function(seed, **kwargs)[key]`` against a threshold."""

    module: str  # path relative to tests/
    function: str
    key: str
    threshold: str  # name of the module constant
    below: bool  # True: value < threshold must hold; False: value > threshold
    kwargs: tuple[tuple[str, str], ...] = ()  # keyword -> module constant


CRITERIA: tuple[Criterion, ...] = (
    Criterion("nn/test_models.py", "pix2pix_toy_trajectory", "G_L1_last_over_first",
              "PIX2PIX_L1_RATIO", True, (("steps", "PIX2PIX_STEPS"),)),
    Criterion("nn/test_models.py", "pix2pix_toy_trajectory", "L1_after_over_before",
              "PIX2PIX_AFTER_RATIO", True, (("steps", "PIX2PIX_STEPS"),)),
    Criterion("nn/test_models.py", "cyclegan_cycle_trajectory", "cycle_last_over_first",
              "CYCLEGAN_CYCLE_RATIO", True, (("steps", "CYCLEGAN_STEPS"),)),
    Criterion("nn/test_models.py", "unet_mse_trajectory", "MSE_last_over_first",
              "UNET_MSE_RATIO", True),
    Criterion("nn/test_training.py", "unet_against_baselines", "val_L1_over_untrained",
              "UNET_UNTRAINED_RATIO", True),
    Criterion("nn/test_training.py", "unet_against_baselines", "val_L1_over_mean_colour",
              "UNET_MEAN_COLOUR_RATIO", True),
    Criterion("nn/test_style_transfer.py", "refinement_trajectory",
              "lbfgs_total_last_over_first", "REFINE_RATIO", True),
    Criterion("nn/test_style_transfer.py", "refinement_trajectory",
              "adam_total_last_over_first", "REFINE_RATIO", True),
    Criterion("nn/test_dcgan.py", "dcgan_trajectory", "corr_untrained",
              "CORR_UNTRAINED_MAX", True, (("epochs", "DCGAN_EPOCHS"),)),
    Criterion("nn/test_dcgan.py", "dcgan_trajectory", "corr_trained", "CORR_TRAINED_MIN", False,
              (("epochs", "DCGAN_EPOCHS"),)),
    Criterion("nn/test_dcgan.py", "dcgan_trajectory", "mae_drop", "MAE_DROP_MIN", False,
              (("epochs", "DCGAN_EPOCHS"),)),
)  # fmt: skip


def _load(relative: str) -> ModuleType:
    path = ROOT / "tests" / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(seeds: list[int], threads: int) -> dict[str, Any]:
    """Every criterion's value for each seed (runs in the variant's own process)."""
    import torch

    torch.set_num_threads(threads)
    modules = {c.module: _load(c.module) for c in CRITERIA}
    values: dict[str, list[float]] = {}
    calls: dict[tuple[str, str, int], dict[str, float]] = {}
    for c in CRITERIA:
        module = modules[c.module]
        kwargs = {k: getattr(module, const) for k, const in c.kwargs}
        for seed in seeds:
            key = (c.module, c.function, seed)
            if key not in calls:
                calls[key] = getattr(module, c.function)(seed=seed, **kwargs)
            values.setdefault(c.key, []).append(float(calls[key][c.key]))
    return {
        "values": values,
        "thresholds": {c.key: float(getattr(modules[c.module], c.threshold)) for c in CRITERIA},
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }


def _run(env: dict[str, str], seeds: list[int], threads: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", ",".join(map(str, seeds)), "--threads", str(threads)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default kernels)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_child([int(s) for s in args.child.split(",")], args.threads)))
        return 0

    variants: dict[str, dict[str, Any]] = {}
    for aten, onednn, threads in itertools.product(("default", ""), ("SSE41", ""), (1, 2)):
        env = {"ATEN_CPU_CAPABILITY": aten, "ONEDNN_MAX_CPU_ISA": onednn}
        env = {k: v for k, v in env.items() if v}
        name = f"aten={aten or 'best'} onednn={onednn or 'best'} threads={threads}"
        variants[name] = _run(env, [0], threads)
        print(f"{name}: ATen {variants[name]['capability']}", file=sys.stderr)
    over_seeds = _run({}, list(range(args.seeds)), 1)
    thresholds = over_seeds["thresholds"]
    print(f"torch {over_seeds['torch']}, best ATen kernels here: {over_seeds['capability']}")
    print(f"{len(variants)} variants of seed 0 (ATen kernels x oneDNN ISA x 1/2 threads); "
          f"seeds 0-{args.seeds - 1} with the best kernels, 1 thread")  # fmt: skip
    header = (
        f"{'criterion':28s} {'test':>8s} {'variants med':>12s} {'worst':>8s} "
        f"{'spread':>8s} {'seeds med':>10s} {'worst':>8s} {'headroom':>9s}"
    )
    print(header)
    failed = False
    for c in CRITERIA:
        below = c.below
        v = [variants[name]["values"][c.key][0] for name in variants]
        s = over_seeds["values"][c.key]
        pick = max if below else min
        worst_v, worst_s = pick(v), pick(s)
        worst = pick(worst_v, worst_s)
        t = thresholds[c.key]
        # headroom: how far the worst value stays from the threshold, relative to the threshold
        headroom = (t - worst) / abs(t) if below else (worst - t) / abs(t)
        failed |= headroom <= 0
        sign = "<" if below else ">"
        print(
            f"{c.key:28s} {sign + format(t, '.3g'):>8s} {statistics.median(v):12.3f} "
            f"{worst_v:8.3f} {max(v) - min(v):8.3f} {statistics.median(s):10.3f} "
            f"{worst_s:8.3f} {headroom:8.0%}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
