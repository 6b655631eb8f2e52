"""Thin nodes of the data_engineering pipeline: unpack parameters, call library code."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure

from mrihisto_kedro.imaging.downsample import downsample_slide, downsampled_origin_mm
from mrihisto_kedro.imaging.masks import (
    MriMaskMethod,
    SlideMaskMethod,
    mri_tissue_mask,
    slide_tissue_mask,
)
from mrihisto_kedro.imaging.mri import (
    extract_slice,
    robust_normalise,
    select_volume,
)
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.imaging.slides import Slide
from mrihisto_kedro.manifest import (
    InputHeaders,
    SlideLimits,
    SplitFractions,
    assign_splits,
    validate_pairs,
)
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.pipelines.loaders import Loader
from mrihisto_kedro.reporting.qc_figures import pair_qc_figure

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MriNormalisation:
    """Robust percentile scaling of MRI slices to [0, 1]."""

    lower_percentile: float = 1.0
    upper_percentile: float = 99.5


@dataclass(frozen=True)
class SlideMaskParams:
    """Tissue mask of a downsampled slide (Otsu on optical density of a thumbnail)."""

    method: SlideMaskMethod = SlideMaskMethod.LOG_OD
    threshold: float | None = None
    min_threshold: float | None = 0.03
    max_size: int = 2048
    min_object_px: int = 64
    closing_radius_px: int = 2
    min_tissue_fraction: float = 0.001  # below: blank glass or a failed scan, refused by name


@dataclass(frozen=True)
class MriMaskParams:
    """Tissue mask of an MRI slice: Otsu, or a fixed threshold on the [0, 1] intensities."""

    method: MriMaskMethod = MriMaskMethod.OTSU
    threshold: float | None = None
    min_object_px: int = 16


@dataclass(frozen=True)
class DataEngineeringParams:
    """Parameters of data_engineering (``conf/base/parameters_data_engineering.yml``)."""

    downsample_factor: float = 15.0
    slide_mpp: float | None = None
    mri_normalisation: MriNormalisation = field(default_factory=MriNormalisation)
    slide_mask: SlideMaskParams = field(default_factory=SlideMaskParams)
    mri_mask: MriMaskParams = field(default_factory=MriMaskParams)
    splits: SplitFractions = field(default_factory=SplitFractions)
    slide_limits: SlideLimits = field(default_factory=SlideLimits)

    def __post_init__(self) -> None:
        if self.downsample_factor < 1:
            raise ValueError(f"downsample_factor must be >= 1, got {self.downsample_factor}")
        if self.slide_mpp is not None and not self.slide_mpp > 0:
            raise ValueError(f"slide_mpp must be a positive number of µm, got {self.slide_mpp}")


def _params(parameters: dict[str, Any]) -> DataEngineeringParams:
    return parse_params(DataEngineeringParams, parameters, "data_engineering")


def validate_manifest(
    pairs: pd.DataFrame,
    slides: dict[str, Loader],
    mri_volumes: dict[str, Loader],
    parameters: dict[str, Any],
) -> pd.DataFrame:
    """Validate parameters, then the pairs manifest against the slide and MRI folders.

    Runs first so that a bad parameter or manifest row fails before any slide is read; see
    :func:`mrihisto_kedro.manifest.validate_pairs` for the checks. Every slide's header is read
    (not its pixels) to settle its level-0 mpp: the manifest's ``slide_mpp``, else the file's, else
    the ``slide_mpp`` parameter; a slide with none stops the run here, naming the file.
    """
    p = _params(parameters)
    headers = InputHeaders(slides, mri_volumes, lambda name: _source_of(mri_volumes[name], name))
    return validate_pairs(
        pairs,
        set(slides),
        headers.slice_count,
        set(mri_volumes),
        slide_header=headers.slide,
        default_slide_mpp=p.slide_mpp,
        mri_header=headers.mri,
        slide_limits=p.slide_limits,
    )


def _source_of(loader: Loader, name: str) -> str:
    """The file a partition loader reads (MriFolderDataset or PartitionedDataset), else name."""
    for candidate in (*getattr(loader, "args", ()), getattr(loader, "__self__", None)):
        path = getattr(candidate, "_filepath", candidate)
        if isinstance(path, str | PurePath) and str(path):
            return str(path)
    return name


def split_by_specimen(pairs: pd.DataFrame, parameters: dict[str, Any]) -> pd.DataFrame:
    """Fill empty splits by specimen with the configured fractions."""
    out = assign_splits(pairs, _params(parameters).splits)
    for split, group in out.groupby("split"):
        logger.info(
            "split %s: %d pairs, specimens %s",
            split,
            len(group),
            sorted(group.specimen_id.unique()),
        )
    return out


def downsample_slides(
    pairs: pd.DataFrame, slides: dict[str, Loader], parameters: dict[str, Any]
) -> dict[str, Callable[[], SlideImage]]:
    """Downsample each pair's slide by ``downsample_factor``, lazily (one slide at a time).

    Returns:
        ``{pair_id: callable}``; Kedro's ``PartitionedDataset`` calls each when it saves it, so
        only one slide's pipeline is open at once and pyvips streams it in bounded memory.
    """
    factor = _params(parameters).downsample_factor
    if "slide_mpp_x_um" not in pairs.columns:
        raise ValueError(
            "the validated manifest has no slide_mpp_x_um column (written by validate_manifest); "
            "re-run the data_engineering pipeline from validate_manifest"
        )

    def make(slide_name: str, mpp: tuple[float, float]) -> Callable[[], SlideImage]:
        def run() -> SlideImage:
            logger.info("downsampling %s by %s (level-0 %.4g µm/px)", slide_name, factor, mpp[0])
            with slides[slide_name]() as slide:  # the lazy result stays valid after closing
                return downsample_slide(slide, factor, mpp=mpp)

        return run

    return {
        row.pair_id: make(row.slide, (float(row.slide_mpp_x_um), float(row.slide_mpp_y_um)))
        for row in pairs.itertuples()
    }


def extract_mri_slices(
    pairs: pd.DataFrame, mri_volumes: dict[str, Loader], parameters: dict[str, Any]
) -> dict[str, sitk.Image]:
    """Extract and normalise each pair's MRI slice (float32 in [0, 1], spacing in mm kept)."""
    norm = _params(parameters).mri_normalisation
    cache: dict[str, sitk.Image] = {}
    out: dict[str, sitk.Image] = {}
    for row in pairs.itertuples():
        if row.mri not in cache:
            cache[row.mri] = mri_volumes[row.mri]()
        index = int(getattr(row, "mri_volume", 0))
        plane_image = extract_slice(
            select_volume(cache[row.mri], index), row.plane, row.slice_index
        )
        array = robust_normalise(
            sitk.GetArrayViewFromImage(plane_image), norm.lower_percentile, norm.upper_percentile
        )
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(plane_image)
        for key in plane_image.GetMetaDataKeys():
            image.SetMetaData(key, plane_image.GetMetaData(key))
        out[row.pair_id] = image
    return out


def _slide_mask_input(slide: Slide, max_size: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Level-0 pixels of a (downsampled) slide, or a thumbnail within ``max_size``, and mm/px."""
    width, height = slide.level_dimensions[0]
    mpp = slide.mpp
    if mpp is None:  # validate_manifest settles every slide's mpp before downsampling
        raise ValueError(f"downsampled slide {slide.path} records no microns per pixel")
    rgb = slide.thumbnail(max_size) if max(width, height) > max_size else None
    if rgb is None:
        rgb = slide.read_region((0, 0), 0, (width, height))
    spacing = (mpp[0] * width / rgb.shape[1] / 1000.0, mpp[1] * height / rgb.shape[0] / 1000.0)
    return rgb, spacing


def _mask_image(
    mask: np.ndarray,
    spacing_mm: tuple[float, float],
    level0_mpp: tuple[float, float] | None = None,
) -> sitk.Image:
    """A uint8 mask image in mm; a slide mask gets the pixel-centre origin of its reduced grid."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing_mm))
    if level0_mpp is not None:
        factor = tuple(s * 1000.0 / m for s, m in zip(spacing_mm, level0_mpp, strict=True))
        image.SetOrigin(downsampled_origin_mm(factor, level0_mpp))
    return image


def tissue_masks(
    pairs: pd.DataFrame,
    downsampled_slides: dict[str, Loader],
    mri_slices: dict[str, Loader],
    parameters: dict[str, Any],
) -> tuple[dict[str, sitk.Image], dict[str, sitk.Image], pd.DataFrame]:
    """Tissue masks of downsampled slides and MRI slices, with the thresholds used.

    Returns:
        ``(slide_masks, mri_masks, report)``: masks as uint8 images with spacing in mm, and one
        report row per pair with sizes, pixel sizes, thresholds and tissue fractions.
    """
    p = _params(parameters)
    slide_masks: dict[str, sitk.Image] = {}
    mri_masks: dict[str, sitk.Image] = {}
    rows = []
    for row in pairs.itertuples():
        slide: Slide = downsampled_slides[row.pair_id]()
        rgb, slide_spacing = _slide_mask_input(slide, p.slide_mask.max_size)
        smask = slide_tissue_mask(
            rgb,
            method=p.slide_mask.method,
            threshold=p.slide_mask.threshold,
            min_threshold=p.slide_mask.min_threshold,
            min_object_px=p.slide_mask.min_object_px,
            closing_radius_px=p.slide_mask.closing_radius_px,
        )
        level0_mpp = (
            (slide.mpp[0] / p.downsample_factor, slide.mpp[1] / p.downsample_factor)
            if slide.mpp
            else None
        )
        slide_masks[row.pair_id] = _mask_image(smask.mask, slide_spacing, level0_mpp)
        mri_image: sitk.Image = mri_slices[row.pair_id]()
        mri = sitk.GetArrayFromImage(mri_image)
        mmask = mri_tissue_mask(
            mri,
            method=p.mri_mask.method,
            threshold=p.mri_mask.threshold,
            min_object_px=p.mri_mask.min_object_px,
        )
        mri_masks[row.pair_id] = _mask_image(mmask.mask, mri_image.GetSpacing())
        width, height = slide.level_dimensions[0]
        rows.append(
            {
                "pair_id": row.pair_id,
                "specimen_id": row.specimen_id,
                "split": row.split,
                "slide_width_px": width,
                "slide_height_px": height,
                "slide_mpp": slide.mpp[0] if slide.mpp else np.nan,
                "slide_mask_method": smask.method,
                "slide_mask_threshold": smask.threshold,
                "slide_tissue_fraction": float(smask.mask.mean()),
                "mri_rows": mri.shape[0],
                "mri_cols": mri.shape[1],
                "mri_spacing_x_mm": mri_image.GetSpacing()[0],
                "mri_spacing_y_mm": mri_image.GetSpacing()[1],
                "mri_mask_method": mmask.method,
                "mri_mask_threshold": mmask.threshold,
                "mri_tissue_fraction": float(mmask.mask.mean()),
            }
        )
        slide.close()
    report = pd.DataFrame(rows)
    _refuse_blank_slides(report, pairs, p.slide_mask.min_tissue_fraction)
    return slide_masks, mri_masks, report


def _refuse_blank_slides(report: pd.DataFrame, pairs: pd.DataFrame, minimum: float) -> None:
    """Stop, naming every pair whose slide shows (almost) no tissue, before registration."""
    slides = pairs.set_index("pair_id")["slide"]
    blank = report[report["slide_tissue_fraction"] < minimum]
    if len(blank):
        lines = "; ".join(
            f"pair {r.pair_id}: slide {slides[r.pair_id]} shows tissue on "
            f"{100 * r.slide_tissue_fraction:.2f} % of its downsampled image"
            for r in blank.itertuples()
        )
        raise ValueError(
            f"{lines} (below data_engineering.slide_mask.min_tissue_fraction = {minimum:g}): "
            "blank glass or a failed scan; remove those rows from the pairs manifest (the "
            "other pairs are fine) and run again"
        )


def qc_figures(
    pairs: pd.DataFrame,
    downsampled_slides: dict[str, Loader],
    mri_slices: dict[str, Loader],
    slide_masks: dict[str, Loader],
    mri_masks: dict[str, Loader],
    parameters: dict[str, Any],
) -> dict[str, Figure]:
    """One QC figure per pair: MRI slice and downsampled slide side by side, masks outlined."""
    p = _params(parameters)
    figures: dict[str, Figure] = {}
    for row in pairs.itertuples():
        slide: Slide = downsampled_slides[row.pair_id]()
        rgb, spacing = _slide_mask_input(slide, p.slide_mask.max_size)
        slide.close()
        mri_image: sitk.Image = mri_slices[row.pair_id]()
        smask: sitk.Image = slide_masks[row.pair_id]()
        mmask: sitk.Image = mri_masks[row.pair_id]()
        figures[f"{row.pair_id}.png"] = pair_qc_figure(
            pair_id=row.pair_id,
            mri=sitk.GetArrayFromImage(mri_image),
            mri_spacing_mm=mri_image.GetSpacing(),
            mri_mask=sitk.GetArrayFromImage(mmask).astype(bool),
            slide_rgb=rgb,
            slide_spacing_mm=spacing,
            slide_mask=sitk.GetArrayFromImage(smask).astype(bool),
            slide_mask_spacing_mm=smask.GetSpacing(),
            notes=f"specimen {row.specimen_id}, split {row.split}, {row.plane} {row.slice_index}",
        )
    return figures
