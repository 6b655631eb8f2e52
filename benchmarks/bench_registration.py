"""Benchmark: seconds per pair to register a 98 x 128 MRI slice to a 6000 x 10000 slide.

The paper's sizes (seed ``000``): a sagittal MRI slice of 98 x 128 pixels at 0.4 mm and a
histology slide downsampled 15x to about 6000 x 10000 pixels. Both are synthesised from real
anatomy (nilearn's 1 mm MNI152 T1 template, shipped with the package):

* MRI (moving): a sagittal slice 6 mm off the midline resampled to 0.4 mm, 128 x 98 pixels
  around the corpus callosum; an ex-vivo "block" (an ellipse 36 x 21 mm: corpus callosum,
  lateral ventricle, cingulate cortex) keeps the tissue, the rest is 0 (dark embedding
  medium).
* Slide (fixed): 10000 x 6000 RGB pixels at 3.75 um (level-0 mpp 0.25, downsampled 15x, origin
  from ``downsampled_origin_mm``), showing the same block through a known affine (rotation 8 deg,
  scale 0.95 for fixation shrinkage, shear 0.04, shift), stained GFAP-like: DAB strongest in
  white matter, a haematoxylin counterstain strongest in grey matter, per-pixel texture and
  camera noise, white glass around the tissue.

Timed per run (the median of ``--runs`` is reported): the tissue channel of the 60-Mpixel RGB
(``fixed_image_from_rgb``) plus ``register_affine`` (fixed reduction, initialisation,
similarity + affine optimisation, checks). Reported beside it: resampling the MRI onto the full
slide grid (what the pipeline saves), TRE against the ground truth on a 0.5 mm grid inside the
tissue (mm, MRI voxels, um), Dice of thresholded masks and mutual information before (identity
placement) and after.

Usage::

    python benchmarks/bench_registration.py [--runs 5] [--channel optical_density]
        [--registration-threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import numpy as np
import SimpleITK as sitk

from mrihisto_kedro.imaging import registration as reg
from mrihisto_kedro.imaging.mri import extract_slice, robust_normalise
from mrihisto_kedro.metrics.mutual_information import mutual_information

MRI_COLS, MRI_ROWS, MRI_SPACING = 128, 98, 0.4  # pixels, pixels, mm
SLIDE_W, SLIDE_H, LEVEL0_MPP, FACTOR = 10_000, 6_000, 0.25, 15
BLOCK_SEMI_AXES_MM = (18.0, 10.5)
DAB_OD = np.array([0.27, 0.57, 0.78], dtype=np.float32)  # skimage rgb_from_hed rows
HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29], dtype=np.float32)


def _template_slice() -> sitk.Image:
    """1 mm para-sagittal slice of the MNI152 T1 template, float32 in [0, 1]."""
    import tempfile

    from nilearn import datasets

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mni152_1mm.nii.gz")
        datasets.load_mni152_template(resolution=1).to_filename(path)
        volume = sitk.ReadImage(path, sitk.sitkFloat32)
    raw = extract_slice(volume, "sagittal", volume.GetSize()[0] // 2 + 6)
    out = sitk.GetImageFromArray(robust_normalise(sitk.GetArrayFromImage(raw)))
    out.SetSpacing(raw.GetSpacing())
    return out


def make_mri(anatomy: sitk.Image) -> tuple[sitk.Image, sitk.Image, np.ndarray]:
    """The moving image, the anatomy in MRI-slice coordinates, and the block centre (mm).

    Returns:
        ``(mri, anatomy_in_mri_coords, centre_mm)``: the 128 x 98 MRI slice at 0.4 mm (origin 0,
        block only), the 1 mm template slice shifted so that its physical coordinates are the
        MRI slice's, and the block centre in MRI mm.
    """
    brain = sitk.GetArrayViewFromImage(anatomy) > 0.05
    rows, cols = np.nonzero(brain)
    # the brain's centroid lies just below the corpus callosum: centre the block 8 mm higher
    centre_1mm = np.array([cols.mean(), rows.mean() - 8.0]) * np.array(anatomy.GetSpacing())
    fov = np.array([MRI_COLS, MRI_ROWS]) * MRI_SPACING
    shifted = sitk.Image(anatomy)
    # crop corner (centre - fov/2) becomes the MRI origin (0, 0); pixel centres at k * spacing
    shifted.SetOrigin(tuple(float(v) for v in -(centre_1mm - fov / 2.0)))
    grid = sitk.Image([MRI_COLS, MRI_ROWS], sitk.sitkFloat32)
    grid.SetSpacing((MRI_SPACING, MRI_SPACING))
    mri = sitk.Resample(shifted, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    centre = fov / 2.0
    yy, xx = np.mgrid[0:MRI_ROWS, 0:MRI_COLS] * MRI_SPACING
    block = _ellipse(xx, yy, centre)
    array = sitk.GetArrayFromImage(mri) * block
    out = sitk.GetImageFromArray(array.astype(np.float32))
    out.SetSpacing((MRI_SPACING, MRI_SPACING))
    return out, shifted, centre


def _ellipse(x: np.ndarray, y: np.ndarray, centre: np.ndarray) -> np.ndarray:
    a, b = BLOCK_SEMI_AXES_MM
    return ((x - centre[0]) / a) ** 2 + ((y - centre[1]) / b) ** 2 <= 1.0


def ground_truth(block_centre_mm: np.ndarray) -> np.ndarray:
    """2x3 affine MRI mm -> histology mm placing the block in the middle of the slide."""
    t = math.radians(8.0)
    rotation = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    linear = 0.95 * rotation @ np.array([[1.0, 0.04], [0.0, 1.0]])
    slide_centre = np.array([SLIDE_W, SLIDE_H]) * LEVEL0_MPP * FACTOR / 1000.0 / 2.0
    translation = slide_centre - linear @ block_centre_mm + np.array([0.7, -0.4])
    return np.hstack([linear, translation[:, None]])


def make_slide(
    anatomy_mri_coords: sitk.Image, true: sitk.Transform, block_centre_mm: np.ndarray, seed: int
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """The 6000 x 10000 RGB slide (uint8), its spacing and origin in mm."""
    spacing = LEVEL0_MPP * FACTOR / 1000.0
    origin = reg.downsampled_origin_mm(FACTOR, LEVEL0_MPP)
    grid = sitk.Image([SLIDE_W, SLIDE_H], sitk.sitkUInt8)
    grid.SetSpacing((spacing, spacing))
    grid.SetOrigin(origin)
    t1 = sitk.GetArrayFromImage(
        sitk.Resample(anatomy_mri_coords, grid, true, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    )
    matrix = reg.affine_to_matrix(true)
    rng = np.random.default_rng(seed)
    rgb = np.empty((SLIDE_H, SLIDE_W, 3), dtype=np.uint8)
    cols = origin[0] + np.arange(SLIDE_W, dtype=np.float64) * spacing
    for start in range(0, SLIDE_H, 500):
        stop = min(start + 500, SLIDE_H)
        rows = origin[1] + np.arange(start, stop, dtype=np.float64) * spacing
        # where each slide pixel comes from in the MRI slice: inside the block?
        mx = matrix[0, 0] * cols[None, :] + matrix[0, 1] * rows[:, None] + matrix[0, 2]
        my = matrix[1, 0] * cols[None, :] + matrix[1, 1] * rows[:, None] + matrix[1, 2]
        tissue = _ellipse(mx, my, block_centre_mm) & (t1[start:stop] > 0.05)
        value = t1[start:stop]
        white = np.clip((value - 0.55) / 0.35, 0.0, 1.0)
        texture = np.exp(0.25 * rng.standard_normal(value.shape, dtype=np.float32))
        dab = (0.15 + 0.65 * white) * texture
        hema = (0.1 + 0.35 * (1.0 - white)) * np.exp(
            0.35 * rng.standard_normal(value.shape, dtype=np.float32)
        )
        od = dab[..., None] * DAB_OD + hema[..., None] * HEMATOXYLIN_OD
        od *= tissue[..., None]
        od += 0.02  # glass and mounting medium
        intensity = 255.0 * np.power(np.float32(10.0), -od)
        intensity += 3.0 * rng.standard_normal(intensity.shape, dtype=np.float32)
        rgb[start:stop] = np.clip(np.round(intensity), 0, 255).astype(np.uint8)
    return rgb, (spacing, spacing), origin


def evaluate(
    fixed: sitk.Image,
    optical_density: sitk.Image,
    mri: sitk.Image,
    transform: sitk.Transform,
    true: sitk.Transform,
) -> dict[str, float]:
    """TRE (grid inside the tissue), Dice and MI before/after on a 10x reduced slide grid.

    The histology tissue mask is the optical density above 0.3 (whatever channel was
    registered); MI is that of the registered channel and the resampled MRI (32 bins, nats).
    """
    small = sitk.BinShrink(optical_density, [10, 10])
    histology_mask = sitk.GetArrayFromImage(small) > 0.3
    identity = sitk.Transform(2, sitk.sitkIdentity)
    out: dict[str, float] = {}
    fixed_small = sitk.GetArrayFromImage(sitk.BinShrink(fixed, [10, 10]))
    for label, tx in (("before", identity), ("after", transform)):
        warped = sitk.GetArrayFromImage(reg.resample_moving(mri, small, tx))
        out[f"dice_{label}"] = reg.dice(histology_mask, warped > 0.05)
        out[f"mi_{label}"] = mutual_information(fixed_small, warped, bins=32)
    tissue = reg.mask_image(histology_mask, small)
    points = reg.grid_points_in_mask(tissue, step_mm=0.5)
    tre = reg.target_registration_error(transform, true, points)
    out["tre_points"] = float(len(points))
    out["tre_mean_mm"] = float(tre.mean())
    out["tre_max_mm"] = float(tre.max())
    out["tre_mean_px"] = float(tre.mean() / MRI_SPACING)
    out["tre_mean_um"] = float(tre.mean() * 1000.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--channel", default="optical_density", choices=list(reg.TissueChannel))
    parser.add_argument(
        "--registration-threads",
        type=int,
        default=1,
        help="RegistrationParams.number_of_threads (0 = ITK default, all cores)",
    )
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    anatomy = _template_slice()
    mri, anatomy_mri, centre = make_mri(anatomy)
    gt = ground_truth(centre)
    true = reg.transform_from_moving_to_fixed_affine(gt)
    rgb, spacing, origin = make_slide(anatomy_mri, true, centre, args.seed)
    itk_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    print(
        f"synthesised MRI {mri.GetSize()} px at {MRI_SPACING} mm and slide {rgb.shape} "
        f"({rgb.nbytes / 2**20:.0f} MiB) at {spacing[0] * 1000:.2f} um in "
        f"{time.perf_counter() - t0:.1f} s; ITK threads {itk_threads}, cpus {os.cpu_count()}"
    )
    threads = args.registration_threads or None
    params = reg.RegistrationParams(number_of_threads=threads)

    channel_s, register_s, total_s = [], [], []
    result = None
    fixed = None
    for run in range(args.runs):
        start = time.perf_counter()
        fixed = reg.fixed_image_from_rgb(rgb, spacing, args.channel, origin_mm=origin)
        mid = time.perf_counter()
        result = reg.register_affine(fixed, mri, params)
        end = time.perf_counter()
        channel_s.append(mid - start)
        register_s.append(end - mid)
        total_s.append(end - start)
        print(
            f"run {run + 1}: channel {mid - start:.2f} s + registration {end - mid:.2f} s = "
            f"{end - start:.2f} s (iterations {result.iterations_per_stage})"
        )
    assert result is not None and fixed is not None

    start = time.perf_counter()
    on_slide = reg.resample_moving(mri, fixed, result.transform)
    resample_s = time.perf_counter() - start
    optical_density = reg.fixed_image_from_rgb(rgb, spacing, "optical_density", origin_mm=origin)
    metrics = evaluate(fixed, optical_density, mri, result.transform, true)
    summary = {
        "mri_px": list(mri.GetSize()),
        "slide_px": [SLIDE_W, SLIDE_H],
        "channel": args.channel,
        "registration_threads": threads,
        "runs": args.runs,
        "median_channel_s": statistics.median(channel_s),
        "median_registration_s": statistics.median(register_s),
        "median_total_s": statistics.median(total_s),
        "resample_mri_to_slide_s": resample_s,
        "resampled_px": list(on_slide.GetSize()),
        "optimisation_spacing_mm": list(result.optimisation_spacing_mm),
        "converged": result.converged,
        "mi_check_nats": result.mutual_information,
        **metrics,
    }
    print(
        f"\nmedian of {args.runs}: {summary['median_total_s']:.2f} s per pair "
        f"(channel {summary['median_channel_s']:.2f} s, registration "
        f"{summary['median_registration_s']:.2f} s); resampling the MRI onto the full slide "
        f"grid {resample_s:.2f} s"
    )
    print(
        f"TRE mean {metrics['tre_mean_mm']:.3f} mm = {metrics['tre_mean_px']:.3f} MRI px = "
        f"{metrics['tre_mean_um']:.0f} um (max {metrics['tre_max_mm']:.3f} mm, "
        f"{int(metrics['tre_points'])} points); Dice {metrics['dice_before']:.3f} -> "
        f"{metrics['dice_after']:.3f}; MI (32 bins, nats) {metrics['mi_before']:.3f} -> "
        f"{metrics['mi_after']:.3f}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
