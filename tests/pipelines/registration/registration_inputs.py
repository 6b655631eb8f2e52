"""Inputs of the registration pipeline's tests: two small pairs of real anatomy.

Each pair is a sagittal slice of nilearn's MNI152 template (2 mm, bundled: no download) and a
histology-like downsampled slide made from it through a known affine (haematoxylin optical
density by Beer-Lambert, camera noise), written as data_engineering writes downsampled slides
(pyramidal generic TIFF recording its mpp and ``Downsample`` factor). The slide grid is 0.5 mm
per pixel (about 540 x 450 px), so a pair registers in about a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.datasets.control_points_dataset import ControlPointsDataset, ControlPointsFile
from mrihisto_kedro.imaging.downsample import downsampled_origin_mm
from mrihisto_kedro.imaging.mri import (
    MriNormalisation,
    extract_slice,
    record_normalisation,
    robust_normalise,
)
from mrihisto_kedro.imaging.registration import (
    mask_image,
    resample_moving,
    transform_from_moving_to_fixed_affine,
)
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import Slide, open_slide
from mrihisto_kedro.imaging.tiff import write_pyramidal_tiff

GRID_MPP = 500.0  # µm per pixel of the downsampled slide
FACTOR = 15.0  # the downsampling factor the slide records
HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])  # optical density per unit stain, R/G/B
#: sagittal slice index offset from the middle, rotation (deg), scale, x-shear of each pair
PAIR_GEOMETRY = {"pair_a": (8, 8.0, 1.05, 0.06), "pair_b": (-10, -5.0, 0.95, -0.04)}


def _mri_slice(volume: sitk.Image, offset: int) -> sitk.Image:
    """A sagittal slice scaled to [0, 1] (float32, spacing in mm, origin 0) as data_engineering
    writes MRI slices."""
    raw = extract_slice(volume, "sagittal", volume.GetSize()[0] // 2 + offset)
    out = sitk.GetImageFromArray(robust_normalise(sitk.GetArrayFromImage(raw)))
    out.SetSpacing(raw.GetSpacing())
    record_normalisation(out, MriNormalisation())
    return out


def _affine(mri: sitk.Image, angle_deg: float, scale: float, shear: float) -> np.ndarray:
    """MRI mm -> histology mm ``(2, 3)``: the given linear part, 5 mm of glass around it."""
    t = math.radians(angle_deg)
    rotation = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    linear = scale * rotation @ np.array([[1.0, shear], [0.0, 1.0]])
    extent = np.array(mri.GetSize()) * np.array(mri.GetSpacing())
    corners = np.array([[0, 0], [extent[0], 0], [0, extent[1]], extent]) @ linear.T
    return np.hstack([linear, (5.0 - corners.min(axis=0))[:, None]])


def _histology(
    mri: sitk.Image, affine: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, sitk.Image]:
    """The slide's RGB ``(H, W, 3)`` uint8 and its empty grid (geometry of the downsample)."""
    extent = np.array(mri.GetSize()) * np.array(mri.GetSpacing())
    corners = np.array([[0, 0], [extent[0], 0], [0, extent[1]], extent]) @ affine[:, :2].T
    spacing = GRID_MPP / 1000.0
    size = np.ceil((corners.max(axis=0) + affine[:, 2] + 5.0) / spacing).astype(int)
    grid = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    grid.SetSpacing((spacing, spacing))
    grid.SetOrigin(downsampled_origin_mm(FACTOR, GRID_MPP / FACTOR))
    true = transform_from_moving_to_fixed_affine(affine)
    anatomy = sitk.GetArrayFromImage(resample_moving(mri, grid, true))
    concentration = np.where(anatomy > 0.05, 0.25 + 0.9 * (1.0 - anatomy), 0.0)
    od = concentration[..., None] * HEMATOXYLIN_OD
    rgb = 255.0 * np.power(10.0, -od) + 3.0 * rng.standard_normal(od.shape)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8), grid


@dataclass(frozen=True)
class RegistrationInputs:
    """Everything the registration pipeline reads, for two pairs (``pair_a``, ``pair_b``).

    Attributes:
        pairs: the manifest with splits (``pair_id, specimen_id, split``).
        slides: the downsampled slides as written (mpp ``GRID_MPP``, ``Downsample`` recorded).
        slide_paths: the same slides as pyramidal TIFF files.
        mri_slices: MRI slices, float32 in [0, 1], 2 mm spacing.
        slide_masks: tissue masks on each slide's grid (uint8 0/1).
        mri_masks: tissue masks on each MRI grid (uint8 0/1).
        truth: the true MRI mm -> histology mm affine ``(2, 3)`` of each pair.
        ground_truth: the ground-truth table as the demo writes it, for ``pair_a`` only.
        mask_report: data_engineering's report (the mask methods and thresholds).
    """

    pairs: pd.DataFrame
    slides: dict[str, SlideImage]
    slide_paths: dict[str, Path]
    mri_slices: dict[str, sitk.Image]
    slide_masks: dict[str, sitk.Image]
    mri_masks: dict[str, sitk.Image]
    truth: dict[str, np.ndarray]
    ground_truth: pd.DataFrame
    mask_report: pd.DataFrame

    def node_inputs(self) -> tuple[Any, ...]:
        """The first seven inputs of ``register_pairs``, folders as ``{pair_id: loader}``."""

        def loaders(images: dict[str, Any]) -> dict[str, Callable[[], Any]]:
            return {k: (lambda v=v: v) for k, v in images.items()}

        slides: dict[str, Callable[[], Slide]] = {
            k: (lambda p=p: open_slide(p)) for k, p in self.slide_paths.items()
        }
        return (
            self.pairs,
            slides,
            loaders(self.mri_slices),
            loaders(self.slide_masks),
            loaders(self.mri_masks),
            self.ground_truth,
            self.mask_report,
        )

    def write_control_points(self, folder: Path) -> dict[str, Path]:
        """One landmark CSV per pair (``fixed_*_mm``, ``moving_*_mm``), clicked exactly."""
        files = {}
        for pair_id, affine in self.truth.items():
            mri = self.mri_slices[pair_id]
            extent = np.array(mri.GetSize()) * np.array(mri.GetSpacing())
            moving = extent * np.array(
                [[0.3, 0.3], [0.7, 0.3], [0.5, 0.5], [0.3, 0.7], [0.7, 0.7], [0.4, 0.6]]
            )
            fixed = moving @ affine[:, :2].T + affine[:, 2]
            table = pd.DataFrame(
                {
                    "label": [f"p{i}" for i in range(len(moving))],
                    "fixed_x_mm": fixed[:, 0],
                    "fixed_y_mm": fixed[:, 1],
                    "moving_x_mm": moving[:, 0],
                    "moving_y_mm": moving[:, 1],
                }
            )
            files[pair_id] = folder / f"{pair_id}.csv"
            ControlPointsDataset(filepath=str(files[pair_id])).save(table)
        return files

    def control_point_loaders(self, folder: Path) -> dict[str, Callable[[], ControlPointsFile]]:
        """``{pair_id: loader}`` of the landmark files, as the ``control_points`` folder loads."""
        return {
            k: (lambda p=p: ControlPointsFile(str(p)))
            for k, p in self.write_control_points(folder).items()
        }


def make_registration_inputs(folder: Path) -> RegistrationInputs:
    """Two pairs of real anatomy with known affines, their files written into ``folder``."""
    from nilearn import datasets

    template = folder / "mni152_2mm.nii.gz"
    datasets.load_mni152_template(resolution=2).to_filename(template)
    volume = sitk.ReadImage(str(template), sitk.sitkFloat32)
    rng = np.random.default_rng(17)
    slides, paths, mri, slide_masks, mri_masks, truth = {}, {}, {}, {}, {}, {}
    for pair_id, (offset, angle, scale, shear) in PAIR_GEOMETRY.items():
        mri[pair_id] = _mri_slice(volume, offset)
        truth[pair_id] = _affine(mri[pair_id], angle, scale, shear)
        rgb, grid = _histology(mri[pair_id], truth[pair_id], rng)
        slides[pair_id] = SlideImage(
            rgb, mpp=(GRID_MPP, GRID_MPP), description={"Downsample": format(FACTOR, "g")}
        )
        paths[pair_id] = write_pyramidal_tiff(
            slides[pair_id], folder / f"{pair_id}.tiff", flavour="generic"
        )
        slide_masks[pair_id] = mask_image(rgb.mean(axis=2) < 235, grid)
        mri_masks[pair_id] = mask_image(sitk.GetArrayFromImage(mri[pair_id]) > 0.05, mri[pair_id])
    a = truth["pair_a"]
    return RegistrationInputs(
        pairs=pd.DataFrame(
            {
                "pair_id": list(PAIR_GEOMETRY),
                "specimen_id": ["s1", "s2"],
                "split": ["train", "test"],
            }
        ),
        slides=slides,
        slide_paths=paths,
        mri_slices=mri,
        slide_masks=slide_masks,
        mri_masks=mri_masks,
        truth=truth,
        ground_truth=pd.DataFrame(
            [
                {
                    "pair_id": "pair_a",
                    "a11": a[0, 0],
                    "a12": a[0, 1],
                    "a21": a[1, 0],
                    "a22": a[1, 1],
                    "tx": a[0, 2],
                    "ty": a[1, 2],
                }
            ]
        ),
        mask_report=pd.DataFrame(
            {
                "pair_id": list(PAIR_GEOMETRY),
                "slide_mask_method": "otsu",
                "slide_mask_threshold": [0.21, 0.23],
                "mri_mask_method": "otsu",
                "mri_mask_threshold": [0.05, 0.06],
                "tissue_fraction": [0.4, 0.5],
            }
        ),
    )
