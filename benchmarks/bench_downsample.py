"""Benchmark: downsample a 20000 x 15000 slide 15x, ours against libvips' own ``thumbnail``.

Builds (in a temporary folder) a synthetic tissue-like 20000 x 15000 pyramidal JPEG TIFF with
pyvips (levels 2x apart, mpp 0.25, OpenSlide vendor ``generic-tiff``) and an Aperio-style copy of it
(levels 4x apart, vendor ``aperio``), then times, each in a fresh subprocess so that the peak
resident memory belongs to that measurement alone (the child's own ``VmHWM`` high-water mark;
``ru_maxrss`` from ``wait4``/``RUSAGE_CHILDREN`` is not used because Linux carries the parent's
RSS at fork time across ``exec`` into it):

* ``ours:downsample``        ``downsample_slide(slide, 15)`` materialised to numpy
* ``ours:downsample+write``  the same written by ``write_pyramidal_tiff`` (aperio flavour)
* ``ours:...+write generic`` the same written as a generic (libvips) pyramid
* ``ours:openslide reader``  ``downsample_slide(..., reader="openslide")`` (the non-TIFF fallback)
* ``vips:thumbnail``         ``pyvips.Image.thumbnail(path, 1333)`` materialised to numpy
* ``vips:thumbnail+write``   the same saved with ``tiffsave(tile=True, pyramid=True)``

Usage::

    python benchmarks/bench_downsample.py [--repeats 5] [--workdir DIR]

Times are wall-clock medians (seconds) of the work only (imports excluded); memory is the median
peak RSS in MiB of the whole child process (``baseline`` = the imports alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH, HEIGHT, FACTOR, MPP = 20_000, 15_000, 15, 0.25

TASKS = {
    "baseline (imports only)": "baseline",
    "ours: downsample -> numpy": "ours_numpy",
    "ours: downsample + write (aperio)": "ours_write_aperio",
    "ours: downsample + write (generic)": "ours_write_generic",
    "ours: openslide reader -> numpy": "ours_openslide",
    "vips: thumbnail -> numpy": "vips_numpy",
    "vips: thumbnail + tiffsave pyramid": "vips_write",
}


def build_slide(path: Path) -> None:
    """Write a 20000 x 15000 tissue-like pyramidal JPEG TIFF (mpp 0.25) in bounded memory."""
    import pyvips

    w, h = WIDTH, HEIGHT
    # tissue mask: low-frequency noise blobs, thresholded (about half the slide is tissue)
    blobs = pyvips.Image.gaussnoise(w // 64 + 1, h // 64 + 1, sigma=1.0, mean=0.0, seed=1)
    blobs = blobs.gaussblur(2.0).resize(64, kernel="cubic").crop(0, 0, w, h)
    tissue = blobs > 0.0
    # stain: mid-frequency structure, fine grain and dark "nuclei" (blobs of 3-6 px)
    mid = pyvips.Image.gaussnoise(w // 8 + 1, h // 8 + 1, sigma=1.0, mean=0.0, seed=2)
    mid = mid.gaussblur(1.5).resize(8, kernel="linear").crop(0, 0, w, h)
    nuclei = pyvips.Image.gaussnoise(w // 2 + 1, h // 2 + 1, sigma=1.0, mean=0.0, seed=4)
    nuclei = nuclei.gaussblur(1.0)
    nuclei = (nuclei > 0.4).resize(2, kernel="linear").crop(0, 0, w, h)
    fine = pyvips.Image.gaussnoise(w, h, sigma=12.0, mean=0.0, seed=3)
    stain = mid.linear(25.0, 0.0) + fine + nuclei.linear(0.35, 0.0)
    r = stain.linear(-0.6, 215.0)
    g = stain.linear(-1.2, 160.0)
    b = stain.linear(-0.4, 205.0)
    rgb = r.bandjoin([g, b])
    img = tissue.ifthenelse(rgb, [244, 242, 246]).cast("uchar").copy(interpretation="srgb")
    img.tiffsave(
        str(path),
        tile=True,
        tile_width=256,
        tile_height=256,
        pyramid=True,
        compression="jpeg",
        Q=85,
        resunit="cm",
        xres=1000.0 / MPP,
        yres=1000.0 / MPP,
    )


def child(task: str, src: str, out: str) -> None:
    """Run one measurement in this (fresh) process and print its timing as JSON."""
    import numpy as np
    import pyvips

    from mrihisto_kedro.imaging.downsample import downsample_dimensions, downsample_slide
    from mrihisto_kedro.imaging.slides import open_slide
    from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff

    width = downsample_dimensions((WIDTH, HEIGHT), FACTOR)[0]
    start = time.perf_counter()
    shape: tuple[int, ...] = ()
    if task == "ours_numpy":
        with open_slide(src) as slide:
            shape = downsample_slide(slide, FACTOR).pixels.numpy().shape
    elif task in ("ours_write_aperio", "ours_write_generic"):
        with open_slide(src) as slide:
            image = downsample_slide(slide, FACTOR)
            flavour = "aperio" if task == "ours_write_aperio" else "generic"
            write_pyramidal_tiff(image, out, flavour=flavour)
            shape = (image.height, image.width, 3)
    elif task == "ours_openslide":
        with open_slide(src) as slide:
            shape = downsample_slide(slide, FACTOR, reader="openslide").pixels.numpy().shape
    elif task == "vips_numpy":
        shape = pyvips.Image.thumbnail(src, width).numpy().shape
    elif task == "vips_write":
        thumb = pyvips.Image.thumbnail(src, width)
        thumb.tiffsave(
            out,
            tile=True,
            pyramid=True,
            compression="jpeg",
            Q=90,
            resunit="cm",
            xres=1000.0 / (MPP * FACTOR),
            yres=1000.0 / (MPP * FACTOR),
        )
        shape = (thumb.height, thumb.width, thumb.bands)
    elif task != "baseline":
        raise SystemExit(f"unknown task {task}")
    elapsed = time.perf_counter() - start
    _ = np  # imported for the baseline's footprint, like the real tasks
    print(json.dumps({"task": task, "seconds": elapsed, "shape": list(shape), "hwm": _vm_hwm()}))


def _vm_hwm() -> float:
    """This process's peak resident set size in MiB (``VmHWM``, Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def run_child_measured(task: str, src: Path, out: Path) -> tuple[float, float, list[int]]:
    """Run ``task`` in a fresh interpreter; return (seconds, peak RSS MiB, output shape).

    The child is reaped with ``os.wait4`` so its rusage is its own (``RUSAGE_CHILDREN`` would
    report the maximum over every child so far).
    """
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", task, str(src), str(out)],
            stdout=subprocess.PIPE,
            stderr=errors,  # a file, so a chatty child cannot block on a full pipe
            text=True,
        )
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"task {task} failed ({proc.returncode}):\n{errors.read()}")
    result = json.loads(stdout.strip().splitlines()[-1])
    # ru_maxrss of a forked-then-exec'd child starts from the parent's RSS at fork time (Linux
    # carries the old mm's high-water mark across exec), so it is only an upper bound; the
    # child's own VmHWM (reset by exec) is the peak of the measurement itself.
    _ = usage.ru_maxrss
    return float(result["seconds"]), float(result["hwm"]), result["shape"]


def main() -> None:
    """Build the slides, run every task ``--repeats`` times, print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=3, metavar=("TASK", "SRC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        generic = folder / "synthetic_20000x15000.tif"
        start = time.perf_counter()
        build_slide(generic)
        built = time.perf_counter() - start
        print(f"built {generic.name}: {generic.stat().st_size / 2**20:.0f} MiB in {built:.1f} s")

        import pyvips

        from mrihisto_kedro.imaging.downsample import downsample_slide
        from mrihisto_kedro.imaging.slide_image import SlideImage
        from mrihisto_kedro.imaging.slides import open_slide
        from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff

        aperio = folder / "synthetic_20000x15000.svs"
        start = time.perf_counter()
        write_pyramidal_tiff(
            SlideImage(pyvips.Image.tiffload(str(generic)), mpp=(MPP, MPP), app_mag=40), aperio
        )
        print(
            f"wrote {aperio.name} (aperio flavour): {aperio.stat().st_size / 2**20:.0f} MiB "
            f"in {time.perf_counter() - start:.1f} s"
        )
        for src in (generic, aperio):
            with open_slide(src) as slide:
                print(
                    f"  {src.name}: vendor {slide.vendor}, mpp {slide.mpp}, levels "
                    f"{slide.level_dimensions}"
                )

        for src in (generic, aperio):
            print(f"\n== source {src.name} ({args.repeats} repeats, median) ==")
            print(f"{'task':38s} {'seconds':>8s} {'peak RSS MiB':>13s} {'above base':>10s}  output")
            medians: dict[str, tuple[float, float]] = {}
            for label, task in TASKS.items():
                times, peaks = [], []
                shape: list[int] = []
                for i in range(args.repeats):
                    out = folder / f"out_{task}_{i}.tif"
                    seconds, peak, shape = run_child_measured(task, src, out)
                    times.append(seconds)
                    peaks.append(peak)
                    out.unlink(missing_ok=True)
                medians[task] = (statistics.median(times), statistics.median(peaks))
                above = medians[task][1] - medians["baseline"][1]
                print(
                    f"{label:38s} {medians[task][0]:8.3f} {medians[task][1]:13.0f} {above:10.0f}  "
                    f"{'x'.join(map(str, shape[:2][::-1])) if shape else ''}"
                )
            ours, vips = medians["ours_numpy"], medians["vips_numpy"]
            ours_w, vips_w = medians["ours_write_generic"], medians["vips_write"]
            print(
                f"ratio ours/vips, to numpy: time {ours[0] / vips[0]:.2f}x, "
                f"peak RSS {ours[1] / vips[1]:.2f}x"
            )
            print(
                f"ratio ours/vips, written as generic pyramid: time {ours_w[0] / vips_w[0]:.2f}x, "
                f"peak RSS {ours_w[1] / vips_w[1]:.2f}x"
            )
            with open_slide(src) as slide:
                mine = downsample_slide(slide, FACTOR).pixels.numpy().astype(float)
            theirs = pyvips.Image.thumbnail(str(src), mine.shape[1]).numpy()[..., :3]
            print(
                f"pixels ours vs vips thumbnail: mean |diff| {abs(mine - theirs).mean():.2f} "
                f"grey levels (max {abs(mine - theirs).max():.0f})"
            )


if __name__ == "__main__":
    main()
