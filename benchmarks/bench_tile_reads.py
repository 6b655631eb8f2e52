"""Benchmark: random 256 px tile reads, ours (before/after) against raw OpenSlide and raw pyvips.

Builds (in a temporary folder) a real-content pyramid: a mosaic of the real Aperio sample
``../shared/data/histology/CMU-1-Small-Region.svs`` (2220 x 2967, H&E, mirrored copies side by
side) cropped to ``--size`` (default 20000 x 15000), re-encoded as a tiled pyramidal JPEG TIFF
(256 px tiles, Q 90, mpp 0.25; OpenSlide vendor ``generic-tiff``) and as an Aperio-style SVS of
the same pixels (4x levels, vendor ``aperio``). Then, in one run, times reading the same random
``--tiles`` tiles (level-0 corners anywhere in the slide, tiles inside it) with:

* ``ours before``: ``Slide(path, libvips=False).read_region`` (the OpenSlide path, as before)
* ``ours after``: ``Slide(path).read_region`` (libvips where the pixels are OpenSlide's)
* ``ours batch``: ``Slide(path).read_regions`` (all tiles of the level in one call), with
  ``workers=1`` and ``workers=2`` (two threads: only meaningful on two otherwise idle cores)
* ``openslide``: ``openslide.OpenSlide.read_region`` + ``np.asarray`` (RGBA, no compositing)
* ``pyvips``: ``pyvips.Region.fetch`` + ``np.frombuffer`` on ``tiffload(page=0)``

Each is repeated ``--repeats`` times (rounds interleaved, so machine load hits all alike); the
median tiles/s and its ratio to raw OpenSlide and raw pyvips are printed. The pixels of ours are
checked equal to OpenSlide's for every tile before timing.

Usage::

    python benchmarks/bench_tile_reads.py [--tiles 1000] [--repeats 5] [--size 20000x15000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openslide
import pyvips
import tifffile

from mrihisto_kedro.imaging.slides import composite_rgba, open_slide

CMU = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "histology"
CMU = CMU / "CMU-1-Small-Region.svs"
TILE = 256


def build_generic(path: Path, width: int, height: int) -> None:
    """The CMU sample mirrored into a ``width x height`` mosaic, saved as a JPEG pyramid."""
    src = pyvips.Image.new_from_file(str(CMU), access="sequential")[0:3].copy_memory()
    quad = [src, src.fliphor(), src.flipver(), src.rot180()]
    across = -(-width // src.width)
    down = -(-height // src.height)
    cells = [quad[(i + 2 * (j % 2)) % 4] for j in range(down) for i in range(across)]
    mosaic = pyvips.Image.arrayjoin(cells, across=across).crop(0, 0, width, height)
    mosaic.tiffsave(
        str(path), tile=True, tile_width=TILE, tile_height=TILE, pyramid=True,
        compression="jpeg", Q=90, xres=4000, yres=4000, strip=True,
    )  # fmt: skip


def build_aperio(generic: Path, path: Path) -> None:
    """The same pixels as an Aperio-style SVS (levels 4x apart, JPEG tiles, mpp 0.25)."""
    img = pyvips.Image.tiffload(str(generic), page=0)
    w, h = img.width, img.height
    desc = f"Aperio Image Library v12.0.0\n{w}x{h} [0,0 {w}x{h}] (256x256) JPEG/RGB Q=90"
    desc += "|MPP = 0.25|AppMag = 40"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for k, level in enumerate([img, img.shrink(4, 4), img.shrink(16, 16)]):
            tw.write(
                level.numpy(), tile=(TILE, TILE), photometric="rgb", compression="jpeg",
                compressionargs={"level": 90},
                description=desc if k == 0 else "Aperio reduced", metadata=None,
            )  # fmt: skip


def corners(path: Path, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` random level-0 tile corners, tiles inside the slide (raw ``fetch`` refuses others)."""
    with open_slide(path) as slide:
        w, h = slide.dimensions
    rng = np.random.default_rng(seed)
    xs = rng.integers(0, w - TILE + 1, n)
    ys = rng.integers(0, h - TILE + 1, n)
    return [(int(x), int(y)) for x, y in zip(xs, ys, strict=True)]


def readers(path: Path, where: list[tuple[int, int]]) -> dict[str, Callable[[], None]]:
    """One callable per method, each reading every tile of ``where`` once."""
    before = open_slide(path, libvips=False)
    after = open_slide(path)
    osr = openslide.OpenSlide(path)
    region = pyvips.Region.new(pyvips.Image.tiffload(str(path), page=0))
    size = (TILE, TILE)

    def ours_before() -> None:
        for xy in where:
            before.read_region(xy, 0, size)

    def ours_after() -> None:
        for xy in where:
            after.read_region(xy, 0, size)

    def ours_batch() -> None:
        after.read_regions(where, 0, size)

    def ours_batch2() -> None:
        after.read_regions(where, 0, size, workers=2)

    def raw_openslide() -> None:
        for xy in where:
            np.asarray(osr.read_region(xy, 0, size))

    def raw_pyvips() -> None:
        for x, y in where:
            np.frombuffer(region.fetch(x, y, TILE, TILE), np.uint8).reshape(TILE, TILE, 3)

    for xy in where:  # the path we time gives OpenSlide's pixels, and verifies each level first
        want = composite_rgba(np.asarray(osr.read_region(xy, 0, size)))
        assert np.array_equal(after.read_region(xy, 0, size), want), xy
        assert np.array_equal(before.read_region(xy, 0, size), want), xy
    assert after.vips_levels, f"{path}: no level read through libvips"
    return {
        "ours before (OpenSlide path)": ours_before,
        "ours after (read_region)": ours_after,
        "ours after (read_regions batch)": ours_batch,
        "ours after (batch, 2 threads)": ours_batch2,
        "raw OpenSlide read_region": raw_openslide,
        "raw pyvips Region.fetch": raw_pyvips,
    }


def bench(path: Path, n: int, repeats: int) -> None:
    """Time every reader on the same tiles, interleaved; print medians and ratios."""
    where = corners(path, n)
    fns = readers(path, where)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    rates = {k: n / statistics.median(v) for k, v in times.items()}
    osr, vips = rates["raw OpenSlide read_region"], rates["raw pyvips Region.fetch"]
    print(f"\n{path.name}: {n} random {TILE} px level-0 tiles, median of {repeats}")
    print(f"{'method':34s} {'tiles/s':>9s} {'vs OpenSlide':>13s} {'vs pyvips':>10s}")
    for name, rate in rates.items():
        print(f"{name:34s} {rate:9.0f} {rate / osr:12.2f}x {rate / vips:9.2f}x")
    before, after = rates["ours before (OpenSlide path)"], rates["ours after (read_region)"]
    print(f"ours after / ours before: {after / before:.2f}x")


def main() -> None:
    """Build the pyramids and print the table for each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", default="20000x15000", help="level-0 WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if not CMU.is_file():
        raise SystemExit(f"real sample not found: {CMU}")
    with tempfile.TemporaryDirectory() as tmp:
        generic, aperio = Path(tmp) / "mosaic.tif", Path(tmp) / "mosaic.svs"
        t0 = time.perf_counter()
        build_generic(generic, width, height)
        build_aperio(generic, aperio)
        print(f"built {width}x{height} pyramids in {time.perf_counter() - t0:.1f} s")
        for path in (generic, aperio):
            bench(path, args.tiles, args.repeats)


if __name__ == "__main__":
    main()
