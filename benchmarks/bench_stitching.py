"""Benchmark: sliding-window inference stitched into a pyramidal TIFF, 5000^2 to 20000^2 pixels.

Each run happens in a fresh subprocess so that its peak resident memory is its own (the child's
``VmHWM`` high-water mark from ``/proc/self/status``; ``ru_maxrss`` from ``wait4`` is not used
because Linux carries the parent's RSS at fork time across ``exec`` into it). The child:

* reads a procedural one-channel "MRI" canvas (values in [-1, 1], computed per window, so the input
  takes no memory),
* predicts with a cheap fixed 3x3 convolution 1 -> 3 channels + tanh in numpy (a stand-in for a
  generator; cheap, so the stitching overhead is as visible as it gets),
* stitches with :func:`mrihisto_kedro.imaging.stitching.stitch_to_tiff` (256 px windows, 64 px
  overlap, Hann weights, batches of 8; aperio flavour, JPEG q90, mpp 0.5) into a temporary folder.

Reported per size (medians over ``--repeats``): total wall time, time inside ``predict``, time
inside ``read_input``, the stitching time (blending, normalising, uint8 conversion and strip
writes: everything before the TIFF writer minus predict and read), the TIFF writer's time,
the overhead ratio ``stitching / predict``, and the peak RSS of the child, of its stitching phase
and of its TIFF-writer phase (``VmHWM`` is reset in between through ``/proc/self/clear_refs``),
with the imports-only baseline and the band buffer ``3 x 256 x W x 4`` bytes. The extra
``5000x20000`` (W x H) case shows that memory depends on the width (strips), not on the height.

Usage::

    python benchmarks/bench_stitching.py [--sizes 5000 10000 20000 5000x20000] [--repeats 3]
        [--repeats-large 1] [--workdir DIR]

``--repeats-large`` applies to canvases above 10000^2 pixels (a 20000^2 run writes a 1.2 GB
temporary file).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WINDOW, OVERLAP, BATCH, MPP = 256, 64, 8, 0.5


def _vm_hwm() -> float:
    """This process's peak resident set size in MiB (``VmHWM``, Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _vm_rss() -> float:
    """This process's current resident set size in MiB (``VmRSS``, Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def _reset_hwm() -> None:
    """Reset this process's ``VmHWM`` to its current RSS (``clear_refs`` value 5, Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def _parse_size(text: str) -> tuple[int, int]:
    """``"5000"`` -> (5000, 5000); ``"5000x20000"`` -> (width 5000, height 20000)."""
    width, _, height = text.lower().partition("x")
    return int(width), int(height or width)


def child(size_text: str, out: str) -> None:
    """One stitched slide of ``W x H`` pixels; print timings and peak RSS as JSON."""
    import numpy as np

    from mrihisto_kedro.imaging import stitching

    width, height = _parse_size(size_text)
    if width == 0:  # baseline: imports only
        print(json.dumps({"hwm": _vm_hwm()}))
        return

    rng = np.random.default_rng(0)
    kernel = rng.normal(0.0, 0.4, size=(3, 9)).astype(np.float32)  # 3 outputs x 3x3 taps
    bias = np.array([0.3, -0.2, 0.2], dtype=np.float32)
    timers = {"predict": 0.0, "read": 0.0, "tiff": 0.0}
    peaks = {"stitch": 0.0, "tiff": 0.0, "rss_before_tiff": 0.0}

    def read(y0: int, x0: int, h: int, w: int) -> np.ndarray:
        start = time.perf_counter()
        yy = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
        xx = np.arange(x0, x0 + w, dtype=np.float32)[None, :]
        mri = 0.8 * np.sin(xx / 23.0) * np.cos(yy / 31.0) + 0.1 * np.sin((xx + yy) / 5.0)
        timers["read"] += time.perf_counter() - start
        return mri[None]

    def predict(batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        n, _, h, w = batch.shape
        padded = np.pad(batch[:, 0], ((0, 0), (1, 1), (1, 1)), mode="edge")
        out = np.empty((n, 3, h, w), dtype=np.float32)
        for c in range(3):
            acc = np.full((n, h, w), bias[c], dtype=np.float32)
            for k in range(9):
                dy, dx = divmod(k, 3)
                acc += kernel[c, k] * padded[:, dy : dy + h, dx : dx + w]
            out[:, c] = np.tanh(acc)
        timers["predict"] += time.perf_counter() - start
        return out

    writer = stitching.write_pyramidal_tiff

    def timed_writer(*args, **kwargs):  # the TIFF writer's share, measured separately
        peaks["stitch"] = _vm_hwm()  # peak of the stitching phase
        peaks["rss_before_tiff"] = _vm_rss()
        _reset_hwm()
        start = time.perf_counter()
        try:
            return writer(*args, **kwargs)
        finally:
            timers["tiff"] += time.perf_counter() - start
            peaks["tiff"] = _vm_hwm()  # peak of the TIFF writer alone

    stitching.write_pyramidal_tiff = timed_writer
    options = stitching.StitchOptions(window=WINDOW, overlap=OVERLAP, batch_size=BATCH)
    start = time.perf_counter()
    path = stitching.stitch_to_tiff(
        read, predict, (height, width), 3, out, options, mpp=MPP, flavour="aperio"
    )
    total = time.perf_counter() - start
    print(
        json.dumps(
            {
                "total": total,
                **timers,
                "windows": len(options.grid((height, width))),
                "bytes": path.stat().st_size,
                "hwm": max(peaks["stitch"], peaks["tiff"]),
                "hwm_stitch": peaks["stitch"],
                "hwm_tiff": peaks["tiff"],
                "rss_before_tiff": peaks["rss_before_tiff"],
            }
        )
    )


def run_child(size: str, out: Path) -> dict[str, float]:
    """Run one size in a fresh interpreter and return its JSON record."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", size, str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"size {size} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run every size ``--repeats`` times in subprocesses; print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="+", default=["5000", "10000", "20000", "5000x20000"], help="N or WxH"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repeats-large", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1])
        return

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        base = statistics.median(run_child("0", folder / "x")["hwm"] for _ in range(3))
        print(
            f"windows {WINDOW} px, overlap {OVERLAP} px, Hann, batch {BATCH}; aperio JPEG q90; "
            f"baseline (imports) peak RSS {base:.0f} MiB"
        )
        print(
            f"{'W x H':>11s} {'windows':>7s} {'runs':>4s} {'total s':>7s} {'predict':>7s} "
            f"{'read':>5s} {'stitch':>6s} {'tiff':>5s} {'stitch/pred':>11s} {'total/pred':>10s} "
            f"{'peak MiB':>8s} {'stitch pk':>9s} {'tiff pk':>7s} {'band':>5s} {'file MiB':>8s}"
        )
        for size in args.sizes:
            width, height = _parse_size(size)
            repeats = args.repeats if width * height <= 10000**2 else args.repeats_large
            runs = []
            for i in range(repeats):
                out = folder / f"slide_{size}_{i}.svs"
                runs.append(run_child(size, out))
                out.unlink(missing_ok=True)
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            stitch = statistics.median(
                r["total"] - r["tiff"] - r["predict"] - r["read"] for r in runs
            )
            band = 3 * WINDOW * width * 4 / 2**20
            print(
                f"{width:>5d}x{height:<5d} {int(med['windows']):7d} {repeats:4d} "
                f"{med['total']:7.1f} {med['predict']:7.1f} {med['read']:5.1f} {stitch:6.1f} "
                f"{med['tiff']:5.1f} {stitch / med['predict']:11.2f} "
                f"{med['total'] / med['predict']:10.2f} {med['hwm']:8.0f} "
                f"{med['hwm_stitch']:9.0f} {med['hwm_tiff']:7.0f} {band:5.0f} "
                f"{med['bytes'] / 2**20:8.0f}"
            )
        print(
            "seconds are medians; stitch = total - tiff - predict - read (blending, "
            "normalising, uint8, strip writes); peaks in MiB: whole child, stitching phase, "
            "TIFF-writer phase (VmHWM reset in between); band = 3 x window x W x 4 bytes"
        )


if __name__ == "__main__":
    main()
