"""Margins of the end-to-end run's trained-model assertions, read from a finished project.

``tests/test_pipelines_run.py`` asserts, on the default ``kedro run`` of the demo, that each
trained model beats its untrained network and its trivial baselines, and that Table 1 has the
paper's direction (generated nearer the histology than the MRI on FID and LPIPS). This prints
each of those inequalities with both sides and the relative headroom
(``(bound - value) / |bound|`` for ``value < bound``), so a change of CPU, threads or training
length can be checked against how much room the test has (issue 13)::

    kedro run && python benchmarks/e2e_margins.py .
    python benchmarks/e2e_margins.py /path/to/another/project

Exits 1 if any inequality does not hold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def _summary(project: Path, experiment: str) -> pd.Series:
    path = project / "data" / "08_reporting" / experiment / "training_summary.csv"
    return pd.read_csv(path).iloc[0]


def inequalities(project: Path) -> list[tuple[str, float, float]]:
    """``(label, smaller, larger)`` for every trained-model inequality the e2e test asserts."""
    out: list[tuple[str, float, float]] = []
    for experiment in ("tiles_256", "unet_baseline"):
        s = _summary(project, experiment)
        out.append(
            (f"{experiment} val_L1 < 0.5 untrained", s["val_L1"], 0.5 * s["untrained_val_L1"])
        )
        out.append((f"{experiment} val_L1 < mean colour", s["val_L1"], s["mean_colour_val_L1"]))
    s = _summary(project, "t1_to_t2")
    out += [
        ("t1_to_t2 val_L1 < identity", s["val_L1"], s["identity_val_L1"]),
        ("t1_to_t2 val_L1 < inverted", s["val_L1"], s["inverted_val_L1"]),
        ("t1_to_t2 inverted SSIM < val_SSIM", s["inverted_val_SSIM"], s["val_SSIM"]),
        ("t1_to_t2 untrained SSIM < val_SSIM", s["untrained_val_SSIM"], s["val_SSIM"]),
    ]
    for base in ("identity", "inverted", "untrained"):
        label = f"t1_to_t2 {base} SSIM_fg < val_SSIM_fg"
        out.append((label, s[f"{base}_val_SSIM_fg"], s["val_SSIM_fg"]))
    s = _summary(project, "t1_to_t2_pix2pix")
    out += [
        ("t1_to_t2_pix2pix identity SSIM < val_SSIM", s["identity_val_SSIM"], s["val_SSIM"]),
        ("t1_to_t2_pix2pix inverted SSIM < val_SSIM", s["inverted_val_SSIM"], s["val_SSIM"]),
        ("t1_to_t2_pix2pix val_L1 < identity", s["val_L1"], s["identity_val_L1"]),
    ]
    table = pd.read_csv(project / "data" / "08_reporting" / "metrics_table.csv")
    for experiment in ("tiles_256", "tiles_1024", "whole_slide_4096"):
        e = table[(table["experiment"] == experiment) & (table["split"] == "test")]
        e = e.set_index(["comparison", "metric"])["value"]
        for metric in ("LPIPS", "FID"):
            near, far = e[("generated_vs_histology", metric)], e[("generated_vs_mri", metric)]
            out.append((f"{experiment} test {metric}: vs histology < vs MRI", near, far))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="a project folder after `kedro run`")
    args = parser.parse_args()
    rows = inequalities(args.project)
    print(f"{'inequality':48s} {'smaller':>9s} {'larger':>9s} {'headroom':>9s}")
    failed = False
    for label, small, large in rows:
        headroom = (large - small) / abs(large)
        failed |= not small < large
        print(f"{label:48s} {small:9.4f} {large:9.4f} {headroom:8.1%}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
