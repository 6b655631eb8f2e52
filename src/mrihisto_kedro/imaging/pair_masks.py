"""Tissue masks of histology/MRI pairs, with a per-pair report of how they were made (no Kedro).

For every pair of a manifest, the downsampled slide is masked on its level 0 or, when longer
than ``SlideMaskParams.max_size``, on a thumbnail of that size, and the MRI slice on its own
grid (:mod:`mrihisto_kedro.imaging.masks`). Masks are returned as uint8 SimpleITK images with
spacing in mm; a slide mask's origin is the centre of its first pixel in the level-0 frame of
the original slide (:func:`~mrihisto_kedro.imaging.downsample.downsampled_origin_mm`, with the
factor the downsampled file records), which is where registration expects it. A slide showing
(almost) no tissue stops the study naming every such pair and its slide file: blank glass or a
failed scan would otherwise fail registration later and take the good pairs' results with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.imaging.downsample import (
    downsampled_origin_mm,
    recorded_downsample,
    slide_thumbnail,
)
from mrihisto_kedro.imaging.masks import (
    MriMaskMethod,
    SlideMaskMethod,
    mri_tissue_mask,
    slide_tissue_mask,
)
from mrihisto_kedro.imaging.pair_executor import PairExecutorParams, map_pairs
from mrihisto_kedro.imaging.slides import Slide
from mrihisto_kedro.params import Params, Range, fail

__all__ = [
    "REPORT_COLUMNS",
    "BlankSlideError",
    "MriMaskParams",
    "PairMasks",
    "PairQcView",
    "SlideMaskParams",
    "TissueMaskStudy",
    "mask_image",
    "mask_pair",
    "mask_pairs",
    "pair_qc_views",
    "refuse_blank_slides",
    "slide_mask_input",
]

#: columns of :attr:`TissueMaskStudy.report`, in order
REPORT_COLUMNS = (
    "pair_id",
    "specimen_id",
    "split",
    "slide_width_px",
    "slide_height_px",
    "slide_mpp",
    "slide_mask_method",
    "slide_mask_threshold",
    "slide_tissue_fraction",
    "mri_rows",
    "mri_cols",
    "mri_spacing_x_mm",
    "mri_spacing_y_mm",
    "mri_mask_method",
    "mri_mask_threshold",
    "mri_tissue_fraction",
)


@dataclass(frozen=True)
class SlideMaskParams(Params):
    """Tissue mask of a downsampled slide (Otsu on optical density of a thumbnail).

    Attributes:
        method: score that is thresholded (:class:`~mrihisto_kedro.imaging.masks.SlideMaskMethod`).
        threshold: fixed threshold in score units (optical density or saturation) instead of
            Otsu's; ``None``: Otsu's.
        min_threshold: floor for Otsu's threshold (score units); ``None``: no floor.
        max_size: px, longest side of the image the mask is computed on (>= 16).
        min_object_px: tissue regions smaller than this many px of that image are removed.
        closing_radius_px: radius in px of that image of the closing disk (0: none).
        min_tissue_fraction: 0..1; a slide with less tissue is refused as blank glass.
    """

    method: SlideMaskMethod = SlideMaskMethod.LOG_OD
    threshold: float | None = None
    min_threshold: float | None = 0.03
    max_size: Annotated[int, Range(ge=16)] = 2048
    min_object_px: Annotated[int, Range(ge=0)] = 64
    closing_radius_px: Annotated[int, Range(ge=0)] = 2
    min_tissue_fraction: Annotated[float, Range(ge=0.0, le=1.0)] = 0.001


@dataclass(frozen=True)
class MriMaskParams(Params):
    """Tissue mask of an MRI slice: Otsu, or a fixed threshold on the [0, 1] intensities.

    Attributes:
        method: :class:`~mrihisto_kedro.imaging.masks.MriMaskMethod`.
        threshold: intensity threshold (0..1), required by and only used with ``threshold``.
        min_object_px: connected regions smaller than this many px are removed.
    """

    method: MriMaskMethod = MriMaskMethod.OTSU
    threshold: float | None = None
    min_object_px: Annotated[int, Range(ge=0)] = 16

    def validate(self) -> None:
        """``threshold`` is set with method ``threshold`` and only then."""
        if (self.method is MriMaskMethod.THRESHOLD) != (self.threshold is not None):
            fail(
                "threshold",
                f"must be set with method 'threshold' and only then (got method "
                f"{self.method.value!r}, threshold {self.threshold})",
            )


class BlankSlideError(ValueError):
    """Slides that show (almost) no tissue: blank glass or a failed scan."""


@dataclass(frozen=True)
class PairMasks:
    """Masks of one pair and the measurements that go into the report.

    Attributes:
        slide_mask: uint8 ``(rows, cols)`` image, 1 on tissue, spacing in mm, origin the
            level-0 centre of its first pixel in mm.
        mri_mask: uint8 image on the MRI slice's grid (its spacing in mm, origin 0).
        summary: the report columns after ``pair_id, specimen_id, split``.
    """

    slide_mask: sitk.Image
    mri_mask: sitk.Image
    summary: dict[str, Any]


@dataclass(frozen=True)
class TissueMaskStudy:
    """Masks of every pair and one report row per pair.

    Attributes:
        slide_masks: ``{pair_id: slide mask}`` (see :class:`PairMasks`).
        mri_masks: ``{pair_id: MRI mask}``.
        report: :data:`REPORT_COLUMNS`: sizes (px), pixel sizes (µm for the slide, mm for the
            MRI), methods and thresholds used, and tissue fractions (0..1).
    """

    slide_masks: dict[str, sitk.Image]
    mri_masks: dict[str, sitk.Image]
    report: pd.DataFrame


def _slide_mpp(slide: Slide) -> tuple[float, float]:
    """The slide's ``(x, y)`` µm per pixel; validate_manifest settles it before downsampling."""
    if slide.mpp is None:
        raise ValueError(f"downsampled slide {slide.path} records no microns per pixel")
    return slide.mpp


def slide_mask_input(slide: Slide, max_size: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Level-0 pixels of a (downsampled) slide, or a thumbnail within ``max_size``, and mm/px.

    Returns:
        ``(rgb, spacing)``: uint8 ``(H, W, 3)`` pixels and their ``(x, y)`` size in mm, scaled
        so that the image covers the slide's physical extent.

    Raises:
        ValueError: the slide records no microns per pixel.
    """
    width, height = slide.level_dimensions[0]
    mpp = _slide_mpp(slide)
    if max(width, height) > max_size:
        rgb = slide_thumbnail(slide, max_size)
    else:
        rgb = slide.read_region((0, 0), 0, (width, height))
    spacing = (mpp[0] * width / rgb.shape[1] / 1000.0, mpp[1] * height / rgb.shape[0] / 1000.0)
    return rgb, spacing


def mask_image(
    mask: np.ndarray,
    spacing_mm: tuple[float, float],
    level0_mpp: tuple[float, float] | None = None,
) -> sitk.Image:
    """A uint8 image of a bool ``(rows, cols)`` mask with ``(x, y)`` spacing in mm.

    With ``level0_mpp`` (µm of the original slide's level-0 pixels) the origin is the centre of
    the first mask pixel in the level-0 frame, in mm; otherwise it stays 0.
    """
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing((float(spacing_mm[0]), float(spacing_mm[1])))
    if level0_mpp is not None:
        factor = (spacing_mm[0] * 1000.0 / level0_mpp[0], spacing_mm[1] * 1000.0 / level0_mpp[1])
        image.SetOrigin(downsampled_origin_mm(factor, level0_mpp))
    return image


def mask_pair(
    slide: Slide, mri: sitk.Image, slide_params: SlideMaskParams, mri_params: MriMaskParams
) -> PairMasks:
    """Tissue masks of one downsampled slide (written by data_engineering) and its MRI slice.

    Raises:
        ValueError: the slide records no mpp; DownsampleRecordError: nor its downsampling factor.
    """
    mpp = _slide_mpp(slide)
    factor = recorded_downsample(slide)
    rgb, slide_spacing = slide_mask_input(slide, slide_params.max_size)
    smask = slide_tissue_mask(
        rgb,
        method=slide_params.method,
        threshold=slide_params.threshold,
        min_threshold=slide_params.min_threshold,
        min_object_px=slide_params.min_object_px,
        closing_radius_px=slide_params.closing_radius_px,
    )
    values = sitk.GetArrayFromImage(mri)
    mmask = mri_tissue_mask(
        values,
        method=mri_params.method,
        threshold=mri_params.threshold,
        min_object_px=mri_params.min_object_px,
    )
    width, height = slide.level_dimensions[0]
    summary = {
        "slide_width_px": width,
        "slide_height_px": height,
        "slide_mpp": mpp[0],
        "slide_mask_method": smask.method,
        "slide_mask_threshold": smask.threshold,
        "slide_tissue_fraction": smask.tissue_fraction,
        "mri_rows": values.shape[0],
        "mri_cols": values.shape[1],
        "mri_spacing_x_mm": mri.GetSpacing()[0],
        "mri_spacing_y_mm": mri.GetSpacing()[1],
        "mri_mask_method": mmask.method,
        "mri_mask_threshold": mmask.threshold,
        "mri_tissue_fraction": mmask.tissue_fraction,
    }
    return PairMasks(
        slide_mask=mask_image(smask.mask, slide_spacing, (mpp[0] / factor, mpp[1] / factor)),
        mri_mask=mask_image(mmask.mask, mri.GetSpacing()),
        summary=summary,
    )


def mask_pairs(
    pairs: pd.DataFrame,
    slides: Mapping[str, Callable[[], Slide]],
    mri_slices: Mapping[str, Callable[[], sitk.Image]],
    slide_params: SlideMaskParams,
    mri_params: MriMaskParams,
    *,
    setting: str = "slide_mask.min_tissue_fraction",
    executor: PairExecutorParams | None = None,
) -> TissueMaskStudy:
    """Mask every pair (one slide open per running pair), then refuse blank slides.

    Args:
        pairs: ``pair_id, specimen_id, split, slide`` per pair.
        slides: ``{pair_id: loader of its downsampled slide}``.
        mri_slices: ``{pair_id: loader of its MRI slice}``.
        slide_params, mri_params: how to mask each.
        setting: the parameter key of ``slide_params.min_tissue_fraction``, for the message.
        executor: how the pairs are run (:func:`~.pair_executor.map_pairs`; ``None``: one
            after another); the result is the same.

    Raises:
        BlankSlideError: naming every pair whose slide shows less tissue than the minimum.
    """
    slide_masks: dict[str, sitk.Image] = {}
    mri_masks: dict[str, sitk.Image] = {}
    rows = []
    records = pairs.to_dict("records")
    jobs = [
        (slides[str(r["pair_id"])], mri_slices[str(r["pair_id"])], slide_params, mri_params)
        for r in records
    ]
    for row, masks in zip(records, map_pairs(_mask_job, jobs, executor), strict=True):
        pair_id = str(row["pair_id"])
        slide_masks[pair_id] = masks.slide_mask
        mri_masks[pair_id] = masks.mri_mask
        ids = {"pair_id": pair_id, "specimen_id": row["specimen_id"], "split": row["split"]}
        rows.append({**ids, **masks.summary})
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    refuse_blank_slides(report, pairs, slide_params.min_tissue_fraction, setting)
    return TissueMaskStudy(slide_masks, mri_masks, report)


def _mask_job(
    job: tuple[Callable[[], Slide], Callable[[], sitk.Image], SlideMaskParams, MriMaskParams],
) -> PairMasks:
    """:func:`mask_pair` of one pair's loaders (the slide is closed before returning)."""
    load_slide, load_mri, slide_params, mri_params = job
    with load_slide() as slide:
        return mask_pair(slide, load_mri(), slide_params, mri_params)


def refuse_blank_slides(
    report: pd.DataFrame,
    pairs: pd.DataFrame,
    minimum: float,
    setting: str = "slide_mask.min_tissue_fraction",
) -> None:
    """Stop, naming every pair whose slide shows (almost) no tissue, before registration.

    Raises:
        BlankSlideError: one clause per blank pair (pair id, slide file, tissue in %), the
            minimum and the parameter ``setting`` that holds it.
    """
    slides = dict(zip(pairs["pair_id"].astype(str), pairs["slide"].astype(str), strict=True))
    blank = report[report["slide_tissue_fraction"] < minimum].to_dict("records")
    if blank:
        lines = "; ".join(
            f"pair {r['pair_id']}: slide {slides[str(r['pair_id'])]} shows tissue on "
            f"{100 * float(r['slide_tissue_fraction']):.2f} % of its downsampled image"
            for r in blank
        )
        raise BlankSlideError(
            f"{lines} (below {setting} = {minimum:g}): blank glass or a failed scan; remove "
            "those rows from the pairs manifest (the other pairs are fine) and run again"
        )


@dataclass(frozen=True)
class PairQcView:
    """What the QC figure of one pair shows (the arguments of ``pair_qc_figure``).

    Attributes:
        pair_id: the pair.
        mri: 2-D MRI slice ``(rows, cols)``; ``mri_spacing_mm`` its ``(x, y)`` pixel size.
        mri_mask: bool mask on the MRI grid.
        slide_rgb: uint8 ``(H, W, 3)`` image the slide mask was computed on;
            ``slide_spacing_mm`` its pixel size.
        slide_mask: bool slide mask; ``slide_mask_spacing_mm`` its pixel size.
        notes: specimen, split, plane and slice index.
    """

    pair_id: str
    mri: np.ndarray
    mri_spacing_mm: tuple[float, float]
    mri_mask: np.ndarray
    slide_rgb: np.ndarray
    slide_spacing_mm: tuple[float, float]
    slide_mask: np.ndarray
    slide_mask_spacing_mm: tuple[float, float]
    notes: str

    def figure_arguments(self) -> dict[str, Any]:
        """The fields as keyword arguments (arrays not copied)."""
        return dict(vars(self))


def pair_qc_views(
    pairs: pd.DataFrame,
    slides: Mapping[str, Callable[[], Slide]],
    mri_slices: Mapping[str, Callable[[], sitk.Image]],
    slide_masks: Mapping[str, Callable[[], sitk.Image]],
    mri_masks: Mapping[str, Callable[[], sitk.Image]],
    max_size: int,
) -> Iterator[PairQcView]:
    """One :class:`PairQcView` per pair, read lazily (one pair's images in memory at a time).

    ``pairs`` needs ``pair_id, specimen_id, split, plane, slice_index``; ``max_size`` is the
    ``SlideMaskParams.max_size`` the masks were made with.
    """
    for row in pairs.to_dict("records"):
        pair_id = str(row["pair_id"])
        with slides[pair_id]() as slide:
            rgb, spacing = slide_mask_input(slide, max_size)
        mri = mri_slices[pair_id]()
        smask = slide_masks[pair_id]()
        yield PairQcView(
            pair_id=pair_id,
            mri=sitk.GetArrayFromImage(mri),
            mri_spacing_mm=mri.GetSpacing(),
            mri_mask=sitk.GetArrayFromImage(mri_masks[pair_id]()).astype(bool),
            slide_rgb=rgb,
            slide_spacing_mm=spacing,
            slide_mask=sitk.GetArrayFromImage(smask).astype(bool),
            slide_mask_spacing_mm=smask.GetSpacing(),
            notes=(
                f"specimen {row['specimen_id']}, split {row['split']}, "
                f"{row['plane']} {row['slice_index']}"
            ),
        )
