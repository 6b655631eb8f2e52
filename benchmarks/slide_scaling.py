"""Benchmark: time and peak memory of the slide data path as slides grow (issue 14).

Builds pyramidal JPEG TIFFs whose level 0 is ``10k``, ``30k`` and ``60k`` px on the long side,
mosaics of the real Aperio slide ``../shared/data/histology/CMU-1-Small-Region.svs`` (0.499 µm/px)
inside an elliptic section outline (glass outside), written in bounded memory by the project's
``write_pyramidal_tiff``, then runs on each, in a
fresh subprocess so that the peak RSS (the child's own ``VmHWM``) belongs to that slide alone:

* ``downsample``    ``downsample_slide(slide, 15)`` written as a generic pyramidal TIFF
  (data_engineering's ``downsample_slides``);
* ``masks``         the ``tissue_masks`` node on the downsampled slide and an "MRI" slice (the
  slide's inverted grey at 0.4 mm, built untimed after downsampling, with exact geometry);
* ``registration``  the ``register_pairs`` node, then its aligned MRI and mask saved as the
  catalog's PartitionedDataset saves them (lazy values called at save time) and its QC figure;
* ``tiling``        the ``build_pair_tiles`` node on those files (the pipeline's loaders; 128 px
  tiles of >= 25 % tissue) and its ``PairTilesJob`` written into a tile-set folder;
* ``synthesis``     sliding-window stitching of the aligned MRI into a pyramidal TIFF
  (``stitch_to_tiff``, Hann windows of 256 px; the "generator" is a cheap numpy function, so this
  measures the data path, not the network).

Each stage's peak RSS is its own (``VmHWM``, reset through ``/proc/self/clear_refs`` between
stages); the slide's peak is the largest of them.

Usage::

    python benchmarks/slide_scaling.py [--sizes 10000 30000 60000] [--workdir DIR]

Prints, per slide, seconds and peak RSS per stage, total seconds per level-0 megapixel, the
peak RSS in MiB and how much of it lies above the process's RSS after its imports (torch,
matplotlib, SimpleITK, pyvips: about 0.8 GB, the same for every size), then the ratios
largest/smallest of the peak RSS (goal of issue 14: at most 1.5), of the part above the
imports, and of the level-0 sizes. Disk: about 0.1 GB per 1,000 Mpx of level 0 (JPEG q90).
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
import pandas as pd
import SimpleITK as sitk
from pathlib import Path
path, work = Path(sys.argv[1]), Path(sys.argv[2])
from mrihisto_kedro.imaging.downsample import downsample_slide, downsampled_origin_mm
from mrihisto_kedro.imaging.downsample import slide_thumbnail
from mrihisto_kedro.imaging.slides import open_slide
from mrihisto_kedro.imaging.stitching import StitchOptions, array_reader, stitch_to_tiff
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff
from mrihisto_kedro.imaging.tileset import load_tileset
from mrihisto_kedro.pipelines.data_engineering.nodes import tissue_masks
from mrihisto_kedro.pipelines.modelling.nodes import build_pair_tiles
from mrihisto_kedro.pipelines.registration.nodes import register_pairs
seconds, peaks = {}, {}
_status = Path("/proc/self/status").read_text().split("\n")
baseline = next(int(l.split()[1]) for l in _status if l.startswith("VmRSS")) / 1024
def stage_done(name, start):
    # peak RSS of this stage alone: VmHWM, then reset it (Linux clear_refs 5)
    seconds[name] = time.perf_counter() - start
    status = Path("/proc/self/status").read_text().split("\n")
    peaks[name] = next(int(l.split()[1]) for l in status if l.startswith("VmHWM")) / 1024
    Path("/proc/self/clear_refs").write_text("5")
def save(image_or_lazy, dest):
    # what PartitionedDataset does: a callable is called when saved
    sitk.WriteImage(image_or_lazy() if callable(image_or_lazy) else image_or_lazy, str(dest))
t = time.perf_counter()
with open_slide(path) as slide:
    level0_mpp = slide.mpp
    write_pyramidal_tiff(downsample_slide(slide, %(factor)r), work / "down.tiff", flavour="generic")
stage_done("downsample", t)
# set-up, not timed: an "MRI" slice at 0.4 mm, the inverted grey of the slide (exact geometry)
with open_slide(work / "down.tiff") as down:
    w, h = down.dimensions
    small = slide_thumbnail(down, max(64, round(max(w, h) * down.mpp[0] / 400.0)))  # >= 64 px
mri = sitk.GetImageFromArray(1.0 - small.mean(axis=2, dtype=np.float32) / 255.0)
spacing = (level0_mpp[0] * %(factor)r * w / small.shape[1] / 1000.0,
           level0_mpp[1] * %(factor)r * h / small.shape[0] / 1000.0)
mri.SetSpacing(spacing)
mri.SetOrigin(downsampled_origin_mm(tuple(s * 1000 / m for s, m in zip(spacing, level0_mpp)),
                                    level0_mpp))
pairs = pd.DataFrame({"pair_id": ["p"], "specimen_id": ["s"], "split": ["train"]})
de = {"downsample_factor": %(factor)r}
stage_done("setup", time.perf_counter())
t = time.perf_counter()
slide_masks, mri_masks, mask_report = tissue_masks(
    pairs, {"p": lambda: open_slide(work / "down.tiff")}, {"p": lambda: mri}, de
)
stage_done("masks", t)
t = time.perf_counter()
transforms, aligned, aligned_masks, report, figures = register_pairs(
    pairs, {"p": lambda: open_slide(work / "down.tiff")}, {"p": lambda: mri},
    {"p": lambda: slide_masks["p"]}, {"p": lambda: mri_masks["p"]}, pd.DataFrame(),
    # the mosaic's texture repeats every 1.1 mm: its MI barely beats chance, which the real
    # data's registration refuses; the benchmark times the path (quality: tests/test_full_scale)
    mask_report, {"optimiser": {"min_information_gain": 0.0}}, de,
)
save(aligned["p"], work / "aligned.mha")
save(aligned_masks["p"], work / "aligned_mask.mha")
figures["p.png"].savefig(work / "qc.png", dpi=100)
dice = float(report["dice_after"].iloc[0])
del aligned, aligned_masks, figures
stage_done("registration", t)
t = time.perf_counter()
job = build_pair_tiles(  # the mosaic's registration is flagged (see above): tiled anyway
    pairs, report, {"p": lambda: sitk.ReadImage(str(work / "aligned.mha"))},
    {"p": lambda: sitk.ReadImage(str(work / "aligned_mask.mha"))},
    {"p": lambda: open_slide(work / "down.tiff")}, {"p": lambda: slide_masks["p"]},
    {"kind": "tiles", "tile_size": 128, "min_tissue_fraction": 0.25,
     "include_flagged_pairs": True}, de,
)
job.write(work / "tiles")
n_tiles = len(load_tileset(work / "tiles"))
stage_done("tiling", t)
t = time.perf_counter()
grid = sitk.GetArrayViewFromImage(sitk.ReadImage(str(work / "aligned.mha")))
canvas = (grid[None] * 2.0 - 1.0).astype(np.float32)
del grid
def predict(batch):
    return np.repeat(batch[:, :1], 3, axis=1)
stitch_to_tiff(array_reader(canvas), predict, canvas.shape[1:], 3, work / "synthetic.svs",
               StitchOptions(window=256, overlap=128, weights="hann", batch_size=8), mpp=7.5)
stage_done("synthesis", t)
del peaks["setup"], seconds["setup"]
print(json.dumps({"seconds": seconds, "peaks": peaks, "peak_mib": max(peaks.values()),
                  "baseline_mib": baseline,
                  "grid": [w, h], "tiles": n_tiles, "dice": dice}))
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
    # a section outline (an off-centre ellipse, glass outside) so that registration has a
    # shape to find; drawn at 1/64 and enlarged lazily (bounded memory)
    import numpy as np

    step = 64
    yy, xx = np.mgrid[0 : -(-height // step), 0 : -(-width // step)]
    cy, cx = yy.shape[0] * 0.52, xx.shape[1] * 0.47
    inside = ((yy - cy) / (0.42 * yy.shape[0])) ** 2 + ((xx - cx) / (0.40 * xx.shape[1])) ** 2
    outline = pyvips.Image.new_from_array((inside < 1).astype(np.uint8) * 255)
    outline = outline.resize(step, kernel="nearest").crop(0, 0, width, height)
    section = (outline > 0).ifthenelse(mosaic, [255, 255, 255])
    write_pyramidal_tiff(SlideImage(section, mpp=mpp), dest, flavour="generic")
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
            stages = ", ".join(
                f"{k} {v:.1f} s / {result['peaks'][k]:.0f} MiB"
                for k, v in result["seconds"].items()
            )
            print(
                f"{width}x{height} px ({mpx:.0f} Mpx, built in {built:.0f} s): {stages}; "
                f"total {total:.1f} s = {1000 * total / mpx:.1f} ms/Mpx; grid "
                f"{result['grid'][0]}x{result['grid'][1]}, {result['tiles']} tiles, Dice "
                f"{result['dice']:.3f}; "
                f"peak RSS {result['peak_mib']:.0f} MiB ({result['baseline_mib']:.0f} MiB after "
                f"imports, {result['peak_mib'] - result['baseline_mib']:.0f} MiB above)",
                flush=True,
            )
            for name in ("slide.tiff", "down.tiff", "synthetic.svs"):
                (work / name).unlink(missing_ok=True)
        small, large = rows[0], rows[-1]

        def above(row: tuple) -> float:
            return row[2]["peak_mib"] - row[2]["baseline_mib"]

        print(
            f"level-0 size ratio largest/smallest: {large[1] / small[1]:.1f}x; peak RSS ratio: "
            f"{large[2]['peak_mib'] / small[2]['peak_mib']:.2f} (goal <= 1.5); above the imports: "
            f"{above(large) / above(small):.2f}; time per Mpx ratio: "
            f"{(large[3] / large[1]) / (small[3] / small[1]):.2f}"
        )


if __name__ == "__main__":
    main()
