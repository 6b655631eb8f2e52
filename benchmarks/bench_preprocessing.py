"""Benchmark: data_engineering + registration on the demo, 1 -> 2 workers, in one run.

Copies the project's configuration to a temporary folder, generates the demo there (``kedro run
--pipelines=demo``; default 8 pairs of 8000 x 6000 px, ``--demo-params`` to change), points the
raw inputs at it (``conf/local/catalog.yml``, as ``docs/your_data.md`` tells a user) and runs
``kedro run --pipelines=data_engineering,registration`` once per configuration and repeat,
rounds interleaved:

* ``sequential``: ``SequentialRunner``, per-pair executor ``sequential`` (the default)
* ``ThreadRunner`` / ``ParallelRunner``: Kedro's runners (independent nodes at once), pairs
  still sequential inside each node
* ``threads x2`` / ``processes x2`` / ``dask x2``: ``SequentialRunner`` with
  ``<pipeline>.executor`` = ``{kind: threads | processes | dask, max_workers: 2}`` (pairs of one
  node at once; ``dask``: a ``LocalCluster`` of 2 worker processes, started by each node)

Times are Kedro's own "Pipeline execution completed ... in N sec" (session start-up excluded);
the median of ``--repeats`` and its ratio to ``sequential`` are printed, and every
configuration's outputs are compared byte for byte with the sequential run's (Kedro's partition
indexes, which record the time, and the report's ``seconds`` column left out).

Then ``downsample_slides``' save alone: the demo slides' lazy downsamples (the node's
``downsample_factor``) written by ``StagedPartitionedDataset`` with ``parallel_saves`` 1 and 2
(rounds interleaved, median of ``--repeats``), outputs compared byte for byte.

Usage::

    python benchmarks/bench_preprocessing.py [--repeats 3] [--demo-params demo.n_specimens=8]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import pandas as pd

from mrihisto_kedro.datasets.staged_partitioned_dataset import (
    RECORD_NAME,
    StagedPartitionedDataset,
)
from mrihisto_kedro.imaging.downsample import downsample_slide
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import open_slide

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from demo_as_your_data import use_demo_as_your_data  # noqa: E402
from project_copy import copy_project  # noqa: E402

PIPELINES = "data_engineering,registration"
CONFIGS: dict[str, tuple[str, str]] = {
    "sequential": ("SequentialRunner", ""),
    "ThreadRunner": ("ThreadRunner", ""),
    "ParallelRunner": ("ParallelRunner", ""),
    "threads x2": ("SequentialRunner", "threads"),
    "processes x2": ("SequentialRunner", "processes"),
    "dask x2": ("SequentialRunner", "dask"),
}
DOWNSAMPLED = {  # conf/base/catalog.yml's downsampled_slides
    "dataset": {
        "type": "mrihisto_kedro.datasets.slide_dataset.OpenSlideDataset",
        "save_args": {"flavour": "generic", "compression": "jpeg", "quality": 90, "tile_size": 256},
    },
    "filename_suffix": ".tiff",
}
DOWNSAMPLE_FACTOR = 15.0  # DataEngineeringParams' default


def kedro(project: Path, *args: str) -> float:
    """Run ``kedro run ARGS`` in ``project``; return Kedro's pipeline execution time (s)."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    done = subprocess.run(
        ["kedro", "run", *args], check=False, cwd=project, env=env, capture_output=True, text=True
    )
    log = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"kedro run {' '.join(args)} failed:\n{log[-3000:]}")
    match = re.search(r"successfully\s+in\s+([\d.]+)\s+sec", re.sub(r"\s+", " ", log))
    if match is None:
        raise SystemExit(f"no execution time in the log of kedro run {' '.join(args)}")
    return float(match.group(1))


def outputs_digest(data: Path) -> str:
    """One hash of every output file (partition indexes out; report without ``seconds``)."""
    digest = hashlib.sha256()
    for layer in ("02_intermediate", "03_primary", "08_reporting"):
        for path in sorted((data / layer).rglob("*")):
            if not path.is_file() or path.name == "_partitions.json":
                continue
            digest.update(str(path.relative_to(data)).encode())
            if path.name == "registration_report.csv":
                table = pd.read_csv(path).drop(columns="seconds")
                buffer = io.StringIO()
                table.to_csv(buffer)
                digest.update(buffer.getvalue().encode())
            else:
                digest.update(path.read_bytes())
    return digest.hexdigest()


def run_config(project: Path, runner: str, executor: str) -> tuple[float, str]:
    """Clear the outputs, run the two pipelines; return (seconds, outputs digest)."""
    for layer in ("02_intermediate", "03_primary", "08_reporting"):
        shutil.rmtree(project / "data" / layer)
        (project / "data" / layer).mkdir()
    args = [f"--pipelines={PIPELINES}", f"--runner={runner}"]
    if executor:
        keys = [
            f"{pipeline}.executor.{key}={value}"
            for pipeline in ("data_engineering", "registration")
            for key, value in (("kind", executor), ("max_workers", 2))
        ]
        args.append("--params=" + ",".join(keys))
    seconds = kedro(project, *args)
    return seconds, outputs_digest(project / "data")


def _downsampled(path: Path, factor: float) -> SlideImage:
    """What ``downsample_slides``' lazy partitions do: open the slide, return its downsample."""
    with open_slide(path) as slide:
        return downsample_slide(slide, factor)


def time_saves(slides: list[Path], out: Path, parallel_saves: int) -> tuple[float, str]:
    """Save every slide's lazy downsample; return (seconds, digest of the written files)."""
    dataset = StagedPartitionedDataset(path=str(out), parallel_saves=parallel_saves, **DOWNSAMPLED)
    lazy = {path.stem: partial(_downsampled, path, DOWNSAMPLE_FACTOR) for path in slides}
    start = time.perf_counter()
    dataset.save(lazy)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256()
    for path in sorted(out.iterdir()):
        if path.name != RECORD_NAME:
            digest.update(path.name.encode() + path.read_bytes())
    return seconds, digest.hexdigest()


def bench_saves(project: Path, repeats: int) -> None:
    """``parallel_saves`` 1 vs 2 on the demo slides; print medians and the ratio."""
    slides = sorted((project / "data" / "01_raw" / "demo" / "slides").iterdir())
    slides = [path for path in slides if path.is_file() and not path.name.startswith(("_", "."))]
    out = project / "data" / "02_intermediate" / "bench_downsampled"
    times: dict[int, list[float]] = {1: [], 2: []}
    digests: dict[int, set[str]] = {1: set(), 2: set()}
    for _ in range(repeats):
        for n in (1, 2):
            seconds, digest = time_saves(slides, out, n)
            times[n].append(seconds)
            digests[n].add(digest)
    base = statistics.median(times[1])
    same = "identical" if digests[2] == digests[1] and len(digests[1]) == 1 else "DIFFER"
    print(f"\ndownsample_slides' save, {len(slides)} demo slides by {DOWNSAMPLE_FACTOR:g}, "
          f"median of {repeats}")  # fmt: skip
    print(f"{'parallel_saves':16s} {'seconds':>8s} {'speed-up':>9s}  outputs")
    for n, values in times.items():
        median = statistics.median(values)
        print(f"{n:<16d} {median:8.2f} {base / median:8.2f}x  {same if n > 1 else '-'}")


def main() -> None:
    """Generate the demo, time every configuration, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo-params", default="", help="e.g. demo.n_specimens=8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(Path(tmp))
        demo_args = ["--pipelines=demo"] + (
            [f"--params={args.demo_params}"] * bool(args.demo_params)
        )
        print(f"demo generated in {kedro(project, *demo_args):.1f} s")
        use_demo_as_your_data(project)
        pairs = len(pd.read_csv(project / "data" / "01_raw" / "demo" / "pairs.csv"))
        times: dict[str, list[float]] = {name: [] for name in CONFIGS}
        digests: dict[str, set[str]] = {name: set() for name in CONFIGS}
        for _ in range(args.repeats):
            for name, (runner, executor) in CONFIGS.items():
                seconds, digest = run_config(project, runner, executor)
                times[name].append(seconds)
                digests[name].add(digest)
        base = statistics.median(times["sequential"])
        reference = digests["sequential"]
        print(f"\n{PIPELINES} on the demo ({pairs} pairs, {os.cpu_count()} cores), "
              f"median of {args.repeats}")  # fmt: skip
        print(f"{'configuration':16s} {'seconds':>8s} {'speed-up':>9s}  outputs")
        for name, values in times.items():
            median = statistics.median(values)
            same = "identical" if digests[name] == reference and len(reference) == 1 else "DIFFER"
            print(f"{name:16s} {median:8.1f} {base / median:8.2f}x  {same}")

        bench_saves(project, max(args.repeats, 5))


if __name__ == "__main__":
    main()
