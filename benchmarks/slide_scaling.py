"""Benchmark: time and peak memory of the slide data path as slides grow (issue 14).

Builds pyramidal JPEG TIFFs whose level 0 is ``10k``, ``30k`` and ``60k`` px on the long side,
mosaics of the real Aperio slide ``../shared/data/histology/CMU-1-Small-Region.svs`` (0.499 µm/px,
written in bounded memory by the project's ``write_pyramidal_tiff``), then runs on each, in a
fresh subprocess so that the peak RSS (the child's own ``VmHWM``) belongs to that slide alone:

* ``downsample``  ``downsample_slide(slide, 15)`` written as a generic pyramidal TIFF
  (data_engineering's ``downsample_slides``);
* ``mask``        the tissue mask of the downsampled slide (``tissue_masks``);
* ``tiling``      ``build_pair_tiles``' path: the pair's downsampled grid read, cut into 128 px
  tiles of >= 25 % tissue and written into a tile-set folder by ``PairTilesJob`` (memory-mapped,
  one pair at a time);
* ``synthesis``   sliding-window stitching of the downsampled grid into a pyramidal TIFF
  (``stitch_to_tiff``, Hann windows of 256 px; the "generator" is a cheap numpy function, so this
  measures the data path, not the network).

Registration is not included: it works on the downsampled grid and the MRI, whose size does not
depend on level 0.

Usage::

    python benchmarks/slide_scaling.py [--sizes 10000 30000 60000] [--workdir DIR]

Prints, per slide, seconds per stage, total seconds per level-0 megapixel and the peak RSS in MiB,
then the ratio of peak RSS largest/smallest (goal of issue 14: at most 1.5) and of the level-0
sizes. Disk: about 0.1 GB per 1,000 Mpx of level 0 (JPEG q90).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "histology"
SOURCE_SLIDE = SOURCE / "CMU-1-Small-Region.svs"
FACTOR = 15.0
CHILD = r"""
import json, sys, time
import numpy as np
from pathlib import Path
path, work = Path(sys.argv[1]), Path(sys.argv[2])
from mrihisto_kedro.imaging.downsample import downsample_slide
from mrihisto_kedro.imaging.masks import slide_tissue_mask
from mrihisto_kedro.imaging.slides import open_slide
from mrihisto_kedro.imaging.stitching import StitchOptions, array_reader, stitch_to_tiff
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff
from mrihisto_kedro.imaging.tileset import load_tileset
from mrihisto_kedro.imaging.tiling import AlignedPair, PairTilesJob, TilingParams
from mrihisto_kedro.pipelines.data_engineering.nodes import _slide_mask_input
seconds = {}
t = time.perf_counter()
with open_slide(path) as slide:
    write_pyramidal_tiff(downsample_slide(slide, %(factor)r), work / "down.tiff", flavour="generic")
seconds["downsample"] = time.perf_counter() - t
t = time.perf_counter()
with open_slide(work / "down.tiff") as down:
    rgb, _ = _slide_mask_input(down, 2048)
    mask = slide_tissue_mask(rgb, method="log_od", min_threshold=0.03).mask
seconds["mask"] = time.perf_counter() - t
t = time.perf_counter()
def load():
    with open_slide(work / "down.tiff") as down:
        grid = down.read_region((0, 0), 0, down.dimensions)
    mri = 1.0 - grid.mean(axis=2, dtype=np.float32) / 255.0
    return AlignedPair("p", "s", "train", mri, grid, mri > 0.1, %(factor)r), (0.499, 0.499)
PairTilesJob([load], TilingParams(128, 128, 0.25, 128)).write(work / "tiles")
n_tiles = len(load_tileset(work / "tiles"))
seconds["tiling"] = time.perf_counter() - t
pair, _ = load()
mri, (h, w) = pair.mri, pair.mri.shape
del pair
t = time.perf_counter()
canvas = (mri[None] * 2.0 - 1.0).astype(np.float32)
def predict(batch):
    return np.repeat(batch[:, :1], 3, axis=1)
stitch_to_tiff(array_reader(canvas), predict, canvas.shape[1:], 3, work / "synthetic.svs",
               StitchOptions(window=256, overlap=128, weights="hann", batch_size=8), mpp=7.5)
seconds["synthesis"] = time.perf_counter() - t
status = Path("/proc/self/status").read_text().split("\n")
hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": seconds, "peak_mib": hwm, "grid": [w, h], "tiles": n_tiles}))
"""


def build_slide(long_side: int, dest: Path) -> tuple[int, int]:
    """A mosaic of CMU-1-Small-Region with level 0 ``long_side`` px wide (aspect 4:3)."""
    import pyvips

    from mrihisto_kedro.imaging.slide_image import SlideImage
    from mrihisto_kedro.imaging.slides import open_slide
    from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff

    with open_slide(SOURCE_SLIDE) as slide:
        mpp = slide.mpp
        tile = pyvips.Image.new_from_array(slide.read_level(0)).copy(interpretation="srgb")
    width, height = long_side, long_side * 3 // 4
    across = -(-width // tile.width)
    down = -(-height // tile.height)
    mosaic = tile.replicate(across, down).crop(0, 0, width, height)
    write_pyramidal_tiff(SlideImage(mosaic, mpp=mpp), dest, flavour="generic")
    return width, height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 60_000])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if not SOURCE_SLIDE.is_file():
        sys.exit(f"{SOURCE_SLIDE} is absent (../shared/data)")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        rows = []
        for size in args.sizes:
            work = Path(tmp) / str(size)
            work.mkdir()
            start = time.perf_counter()
            width, height = build_slide(size, work / "slide.tiff")
            built = time.perf_counter() - start
            child = CHILD % {"factor": FACTOR}
            out = subprocess.run(
                [sys.executable, "-c", child, str(work / "slide.tiff"), str(work)],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                sys.exit(f"{size} px child failed:\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            mpx = width * height / 1e6
            total = sum(result["seconds"].values())
            rows.append((size, mpx, result, total))
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in result["seconds"].items())
            print(
                f"{width}x{height} px ({mpx:.0f} Mpx, built in {built:.0f} s): {stages}; "
                f"total {total:.1f} s = {1000 * total / mpx:.1f} ms/Mpx; grid "
                f"{result['grid'][0]}x{result['grid'][1]}, {result['tiles']} tiles; "
                f"peak RSS {result['peak_mib']:.0f} MiB",
                flush=True,
            )
            for name in ("slide.tiff", "down.tiff", "synthetic.svs"):
                (work / name).unlink(missing_ok=True)
        small, large = rows[0], rows[-1]
        print(
            f"level-0 size ratio largest/smallest: {large[1] / small[1]:.1f}x; peak RSS ratio: "
            f"{large[2]['peak_mib'] / small[2]['peak_mib']:.2f} (goal <= 1.5); time per Mpx "
            f"ratio: {(large[3] / large[1]) / (small[3] / small[1]):.2f}"
        )


if __name__ == "__main__":
    main()
