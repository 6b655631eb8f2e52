"""Thin nodes of the data_engineering pipeline: unpack parameters, call library code."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import PurePath
from typing import Annotated, Any

import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure

from mrihisto_kedro.imaging.downsample import downsample_slide
from mrihisto_kedro.imaging.mri import MriNormalisation
from mrihisto_kedro.imaging.pair_executor import PairExecutorParams
from mrihisto_kedro.imaging.pair_masks import (
    MriMaskParams,
    SlideMaskParams,
    mask_pairs,
    pair_qc_views,
)
from mrihisto_kedro.imaging.pair_slices import pair_mri_slices
from mrihisto_kedro.imaging.slide_image import SlideImage
from mrihisto_kedro.manifest import (
    InputHeaders,
    SlideLimits,
    SplitFractions,
    assign_splits,
    validate_pairs,
)
from mrihisto_kedro.params import Params, Range, parse_params
from mrihisto_kedro.pipelines.loaders import Loader
from mrihisto_kedro.reporting.qc_figures import pair_qc_figure

logger = logging.getLogger(__name__)

_KEY = "data_engineering"


@dataclass(frozen=True)
class DataEngineeringParams(Params):
    """Parameters of data_engineering (``conf/base/parameters_data_engineering.yml``).

    ``downsample_factor`` (>= 1; the paper downsampled its .svs slides 15x in QuPath) is used
    by ``downsample_slides`` only: later steps read the factor each downsampled slide records.
    ``slide_mpp`` (µm, > 0) is the fallback level-0 pixel size of slides whose file and manifest
    row record none. ``executor`` runs the per-pair loop of ``tissue_masks`` sequentially, on
    threads/processes or on a Dask cluster (same outputs). Every key, default and range is
    declared here and in the nested classes; the YAML sets only what differs.
    """

    downsample_factor: Annotated[float, Range(ge=1.0)] = 15.0
    slide_mpp: Annotated[float, Range(gt=0.0)] | None = None
    mri_normalisation: MriNormalisation = field(default_factory=MriNormalisation)
    slide_mask: SlideMaskParams = field(default_factory=SlideMaskParams)
    mri_mask: MriMaskParams = field(default_factory=MriMaskParams)
    splits: SplitFractions = field(default_factory=SplitFractions)
    slide_limits: SlideLimits = field(default_factory=SlideLimits)
    executor: PairExecutorParams = field(default_factory=PairExecutorParams)


def _params(parameters: dict[str, Any]) -> DataEngineeringParams:
    return parse_params(DataEngineeringParams, parameters, _KEY)


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
    """Downsample each pair's slide by ``downsample_factor``, lazily (one callable per slide).

    Returns:
        ``{pair_id: callable}``; the catalog's ``StagedPartitionedDataset`` calls each when it
        saves it, so only ``parallel_saves`` slides' pipelines (default 1) are open at once and
        pyvips streams each in bounded memory.
    """
    factor = _params(parameters).downsample_factor
    if "slide_mpp_x_um" not in pairs.columns:
        raise ValueError(
            "the validated manifest has no slide_mpp_x_um column (written by validate_manifest); "
            "re-run the data_engineering pipeline from validate_manifest"
        )
    return {
        str(row["pair_id"]): partial(
            _downsample,
            slides[str(row["slide"])],
            str(row["slide"]),
            factor,
            (float(row["slide_mpp_x_um"]), float(row["slide_mpp_y_um"])),
        )
        for row in pairs.to_dict("records")
    }


def _downsample(load: Loader, name: str, factor: float, mpp: tuple[float, float]) -> SlideImage:
    """Open one slide and return its lazy downsample (valid after the slide is closed)."""
    logger.info("downsampling %s by %s (level-0 %.4g µm/px)", name, factor, mpp[0])
    with load() as slide:
        return downsample_slide(slide, factor, mpp=mpp)


def extract_mri_slices(
    pairs: pd.DataFrame, mri_volumes: dict[str, Loader], parameters: dict[str, Any]
) -> dict[str, sitk.Image]:
    """Extract and normalise each pair's MRI slice (float32 in [0, 1], spacing in mm kept)."""
    return pair_mri_slices(pairs, mri_volumes, _params(parameters).mri_normalisation)


def tissue_masks(
    pairs: pd.DataFrame,
    downsampled_slides: dict[str, Loader],
    mri_slices: dict[str, Loader],
    parameters: dict[str, Any],
) -> tuple[dict[str, sitk.Image], dict[str, sitk.Image], pd.DataFrame]:
    """Tissue masks of downsampled slides and MRI slices, with the thresholds used.

    Returns:
        ``(slide_masks, mri_masks, report)``: masks as uint8 images with spacing in mm, and one
        report row per pair with sizes, pixel sizes, thresholds and tissue fractions
        (:func:`mrihisto_kedro.imaging.pair_masks.mask_pairs`). A blank slide stops the run.
    """
    p = _params(parameters)
    study = mask_pairs(
        pairs,
        downsampled_slides,
        mri_slices,
        p.slide_mask,
        p.mri_mask,
        setting=f"{_KEY}.slide_mask.min_tissue_fraction",
        executor=p.executor,
    )
    return study.slide_masks, study.mri_masks, study.report


def qc_figures(
    pairs: pd.DataFrame,
    downsampled_slides: dict[str, Loader],
    mri_slices: dict[str, Loader],
    slide_masks: dict[str, Loader],
    mri_masks: dict[str, Loader],
    parameters: dict[str, Any],
) -> dict[str, Figure]:
    """One QC figure per pair: MRI slice and downsampled slide side by side, masks outlined."""
    max_size = _params(parameters).slide_mask.max_size
    views = pair_qc_views(pairs, downsampled_slides, mri_slices, slide_masks, mri_masks, max_size)
    return {f"{v.pair_id}.png": pair_qc_figure(**v.figure_arguments()) for v in views}
