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

Tiling of one pair (``--pair-size``, default 4000 x 3000: the downsampled grid of a 60,000 px
slide at 15x): the mosaic's pixels written as data_engineering writes a downsampled slide
(:func:`write_pyramidal_tiff`, generic flavour, 256 px JPEG tiles), its tissue mask (mean
< 200), a random MRI on the same grid, and :func:`cut_tiles` over every planned tile
(non-overlapping, tissue >= 0.5) for each ``--tile-sizes`` side (stored at that side, as the
paper's 256 px tiles):

* ``before (window by window)``: the previous path, one ``LevelArray[y:y+s, x:x+s]`` read
  (``Slide.read_region``) per tile, then the previous resize and rounding (``np.rint`` also of
  uint8 tiles, which numpy computes in float16)
* ``window by window, new cast``: the same reads, with ``cut_tiles``' rounding (uint8 tiles
  copied as they are): the share of the gain that is not the batching
* ``after, read_workers=N``: ``cut_tiles`` (``LevelArray.iter_windows``: batched
  ``Slide.read_regions``, bounded batches, N threads)

Tiles are checked byte-identical across all paths first; medians of ``--repeats`` interleaved
rounds, tiles/s and the ratio to ``before``.

Usage::

    python benchmarks/bench_tile_reads.py [--tiles 1000] [--repeats 5] [--size 20000x15000]
        [--pair-size 4000x3000] [--tile-sizes 256 64] [--workers 1 2 3] [--only-tiling]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import openslide
import pyvips
import tifffile

from mrihisto_kedro.imaging.level_array import LevelArray
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import composite_rgba, open_slide
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff
from mrihisto_kedro.imaging.tiling import (
    AlignedPair,
    TilingParams,
    _as_uint8,
    _resize,
    cut_tiles,
    plan_tiles,
)

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


def cut_window_by_window(
    pair: AlignedPair, params: TilingParams, cast: Callable[[np.ndarray], np.ndarray]
) -> list[np.ndarray]:
    """The previous ``cut_tiles`` path: one region read per planned tile, then ``cast``."""
    out_size = params.output_size or params.tile_size
    side = params.tile_size
    tiles = []
    for y, x, _ in plan_tiles(pair, params):
        window = (slice(y, y + side), slice(x, x + side))
        _resize(pair.mri[window], out_size, order=1)[..., None].astype(np.float32)
        tiles.append(cast(_resize(pair.histology[window], out_size, order=1)))
    return tiles


def cut_batched(pair: AlignedPair, params: TilingParams) -> list[np.ndarray]:
    """The histology tiles of :func:`cut_tiles` (batched reads, ``params.read_workers``)."""
    return [b for _, b in cut_tiles(pair, params, plan_tiles(pair, params))]


def _old_cast(b: np.ndarray) -> np.ndarray:
    """The previous rounding, also of uint8 tiles (``np.rint`` of uint8 computes in float16)."""
    return np.clip(np.rint(b), 0, 255).astype(np.uint8)


def bench_tiling(
    mosaic: Path, folder: Path, width: int, height: int, sides: list[int], workers: list[int],
    repeats: int,
) -> None:  # fmt: skip
    """Time the tiling of one pair, before (window by window) and after (batched reads)."""
    pixels = pyvips.Image.tiffload(str(mosaic), page=0).crop(0, 0, width, height)
    slide = write_pyramidal_tiff(SlideImage(pixels, (3.75, 3.75)), folder / "down.tiff",
                                 flavour="generic")  # fmt: skip
    rgb = pixels.numpy()
    tissue = rgb.mean(axis=2) < 200
    mri = np.random.default_rng(0).random((height, width), dtype=np.float32)
    del rgb
    view = LevelArray(open_slide(slide))
    pair = AlignedPair("p", "s", "train", mri, view, tissue, 15.0)
    for side in sides:
        base = TilingParams(tile_size=side, min_tissue_fraction=0.5)
        n = len(plan_tiles(pair, base))
        runs: dict[str, Callable[[], list[np.ndarray]]] = {
            "before (window by window)": partial(cut_window_by_window, pair, base, _old_cast),
            "window by window, new cast": partial(cut_window_by_window, pair, base, _as_uint8),
        }
        for k in workers:
            params = TilingParams(tile_size=side, min_tissue_fraction=0.5, read_workers=k)
            runs[f"after, read_workers={k}"] = partial(cut_batched, pair, params)
        want = runs["before (window by window)"]()
        for name, run in runs.items():  # every path gives the same tiles, byte for byte
            assert all(np.array_equal(a, b) for a, b in zip(run(), want, strict=True)), name
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
        medians = {k: statistics.median(v) for k, v in times.items()}
        before = medians["before (window by window)"]
        print(f"\ntiling one {width}x{height} pair: {n} tiles of {side} px, median of {repeats}")
        print(f"{'path':28s} {'seconds':>8s} {'tiles/s':>9s} {'vs before':>10s}")
        for name, sec in medians.items():
            print(f"{name:28s} {sec:8.3f} {n / sec:9.0f} {before / sec:9.2f}x")
    view.close()


def main() -> None:
    """Build the pyramids and print the table for each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", default="20000x15000", help="level-0 WIDTHxHEIGHT")
    parser.add_argument("--pair-size", default="4000x3000", help="downsampled pair WIDTHxHEIGHT")
    parser.add_argument("--tile-sizes", type=int, nargs="+", default=[256, 64])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--only-tiling", action="store_true", help="skip the tile-read tables")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    pair_w, pair_h = (int(v) for v in args.pair_size.lower().split("x"))
    if not CMU.is_file():
        raise SystemExit(f"real sample not found: {CMU}")
    if args.only_tiling:  # the pair's pixels only
        width, height = pair_w, pair_h
    if pair_w > width or pair_h > height:
        raise SystemExit(f"--pair-size {args.pair_size} exceeds --size {args.size}")
    with tempfile.TemporaryDirectory() as tmp:
        generic, aperio = Path(tmp) / "mosaic.tif", Path(tmp) / "mosaic.svs"
        t0 = time.perf_counter()
        build_generic(generic, width, height)
        if not args.only_tiling:
            build_aperio(generic, aperio)
        print(f"built {width}x{height} pyramids in {time.perf_counter() - t0:.1f} s")
        if not args.only_tiling:
            for path in (generic, aperio):
                bench(path, args.tiles, args.repeats)
        bench_tiling(generic, Path(tmp), pair_w, pair_h, args.tile_sizes, args.workers,
                     args.repeats)  # fmt: skip


if __name__ == "__main__":
    main()
