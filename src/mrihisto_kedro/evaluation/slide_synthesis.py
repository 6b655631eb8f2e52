"""Synthetic whole slides of an experiment's registered pairs, and their seam comparison.

For each selected pair, the aligned MRI slice (on the downsampled histology grid, ``grid_mpp``
µm per pixel) is resampled to the model's pixel size: ``factor / scale`` model pixels per grid
pixel, where ``factor`` is the downsampling the slide records
(:func:`~mrihisto_kedro.imaging.downsample.recorded_downsample`) and ``scale`` the tile
manifest's (level-0 pixels per tile pixel). The synthetic slide then has
``grid_mpp * scale / factor`` µm per pixel. Each pair gives a lazily written
:class:`~mrihisto_kedro.evaluation.synthesis.SyntheticSlideJob`, a report row with the seam
scores of plain tiling and of blending (:func:`~mrihisto_kedro.evaluation.synthesis.compare_seams`),
and the images of a panel (drawn by
:func:`mrihisto_kedro.reporting.evaluation_figures.whole_slide_panels`).

No Kedro imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from mrihisto_kedro.evaluation.synthesis import (
    SynthesisParams,
    SyntheticSlideJob,
    compare_seams,
    mri_to_model_input,
    stitch_options,
)
from mrihisto_kedro.imaging.downsample import recorded_downsample
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.inference import GeneratorPredictor, load_predictor

__all__ = [
    "REPORT_COLUMNS",
    "SlidePanel",
    "SynthesisStudy",
    "model_scale",
    "synthesise_pairs",
]

#: one row of the seam report per synthesised pair
REPORT_COLUMNS: tuple[str, ...] = (
    "experiment",
    "pair_id",
    "split",
    "width_px",
    "height_px",
    "mpp",
    "window_px",
    "overlap_px",
    "weights",
    "seam_plain",
    "seam_blended",
)

#: ``(label, mri (H, W, C), real (H', W', 3), plain (H, W, C'), blended (H, W, C'))`` in [0, 1]
SlidePanel = tuple[str, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]

#: opens a downsampled slide (an OpenSlide-like context manager: ``level_dimensions``,
#: ``read_region``, ``properties``)
SlideOpener = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class _Model:
    """The generator as the synthesis runs it."""

    payload: Mapping[str, Any]
    predictor: GeneratorPredictor
    out_channels: int
    output_range: tuple[float, float]
    window: int
    scale: float


@dataclass(frozen=True)
class _SynthesisedPair:
    """One pair's synthetic slide, report row and panel."""

    job: SyntheticSlideJob
    row: dict[str, Any]
    panel: SlidePanel


@dataclass(frozen=True)
class SynthesisStudy:
    """Every synthesised pair of one experiment.

    Attributes:
        experiment: its name.
        jobs: ``{pair_id: job}``, written lazily by ``OpenSlideDataset``.
        report: one row per pair (:data:`REPORT_COLUMNS`; ``mpp`` in µm per pixel of the
            synthetic slide, ``width_px``/``height_px`` its size, seams 1.0 = invisible).
        panels: ``MRI | real | plain | blended`` per pair, in pair order.
    """

    experiment: str
    jobs: dict[str, SyntheticSlideJob]
    report: pd.DataFrame
    panels: tuple[SlidePanel, ...]

    @property
    def title(self) -> str:
        """The panels' title: the median seam scores of plain tiling and blending."""
        return (
            f"{self.experiment}: seam score plain {self.report['seam_plain'].median():.2f}, "
            f"blended {self.report['seam_blended'].median():.2f} (median; 1.0 = invisible)"
        )


def model_scale(tileset: TileSet, experiment: str) -> float:
    """The tiles' one ``scale`` (level-0 pixels per tile pixel), rounded to 6 decimals.

    Raises:
        ValueError: the tile set mixes scales (no single model grid to synthesise on).
    """
    scales = sorted(set(tileset.manifest["scale"].round(6)))
    if len(scales) != 1:
        raise ValueError(f"{experiment}: tiles of several scales {scales}; cannot synthesise")
    return float(scales[0])


def _rows_of(size: int | tuple[int, int]) -> int:
    """The row (first) entry of a stitching size (``StitchOptions`` stores ``(h, w)``)."""
    return size if isinstance(size, int) else size[0]


def _read_real(open_slide: SlideOpener) -> tuple[float, np.ndarray]:
    """``(recorded downsampling factor, level-0 pixels (H, W, 3) float32 in [0, 1])``."""
    with open_slide() as slide:
        factor = recorded_downsample(slide)  # what the grid is, not today's parameter
        w, h = slide.level_dimensions[0]
        real = slide.read_region((0, 0), 0, (w, h)).astype(np.float32) / 255.0
    return factor, real


def _synthesise_pair(
    pair_id: str,
    split: str,
    mri_image: sitk.Image,
    open_slide: SlideOpener,
    model: _Model,
    params: SynthesisParams,
    experiment: str,
) -> _SynthesisedPair:
    """One pair's synthetic slide job, seam comparison and panel (see the module docstring)."""
    factor, real = _read_real(open_slide)
    model_per_grid = factor / model.scale  # model pixels per pixel of the downsampled grid
    grid_mpp = float(mri_image.GetSpacing()[0]) * 1000.0
    mri = mri_to_model_input(mri_image, model_per_grid, params.a_range)
    window = min(model.window, *mri.shape[1:])
    options = stitch_options(params, window)
    seams = compare_seams(
        mri, model.predictor, model.out_channels, window, params, model.output_range
    )
    job = SyntheticSlideJob(
        mri=mri,
        generator=model.payload,
        options=options,
        mpp=grid_mpp / model_per_grid,
        device=params.device,
        description={"Experiment": experiment, "Pair": pair_id},
    )
    row = {
        "experiment": experiment,
        "pair_id": pair_id,
        "split": split,
        "width_px": mri.shape[2],
        "height_px": mri.shape[1],
        "mpp": job.mpp,
        "window_px": _rows_of(options.window),
        "overlap_px": _rows_of(options.overlap),
        "weights": str(options.weights),
        "seam_plain": seams.plain,
        "seam_blended": seams.blended,
    }
    mri01 = (np.moveaxis(mri, 0, -1) + 1.0) / 2.0
    return _SynthesisedPair(
        job, row, (pair_id, mri01, real, seams.plain_image, seams.blended_image)
    )


def synthesise_pairs(
    generator: Mapping[str, Any],
    tileset: TileSet,
    pairs: pd.DataFrame,
    aligned_mri: Mapping[str, Callable[[], sitk.Image]],
    downsampled_slides: Mapping[str, SlideOpener],
    params: SynthesisParams,
    experiment: str,
) -> SynthesisStudy:
    """Synthetic whole slides of the pairs of ``params.splits``, in ``pair_id`` order.

    Args:
        generator: the exported generator (``architecture.out_channels``, ``output_range``).
        tileset: the experiment's tiles (their ``scale`` and size: the model's grid and window).
        pairs: ``pair_id, split`` of every registered pair.
        aligned_mri: ``{pair_id: load}`` of the aligned MRI slices (2-D, spacing in mm).
        downsampled_slides: ``{pair_id: open}`` of the downsampled slides.
        params: :class:`~mrihisto_kedro.evaluation.synthesis.SynthesisParams`.
        experiment: named in the jobs' descriptions, the report and messages.

    Raises:
        ValueError: tiles of several scales, or no pair in ``params.splits``.
        KeyError: a selected pair without an aligned MRI or a downsampled slide.
    """
    scale = model_scale(tileset, experiment)
    low, high = (float(v) for v in generator.get("output_range", (-1.0, 1.0)))
    model = _Model(
        payload=generator,
        predictor=load_predictor(dict(generator), device=params.device),
        out_channels=int(generator["architecture"]["out_channels"]),
        output_range=(low, high),
        window=params.window or int(tileset.a.shape[1]),
        scale=scale,
    )
    done: list[_SynthesisedPair] = []
    for row in pairs[pairs["split"].isin(params.splits)].sort_values("pair_id").itertuples():
        pair_id = str(row.pair_id)
        if pair_id not in aligned_mri or pair_id not in downsampled_slides:
            raise KeyError(f"{experiment}: no aligned MRI or downsampled slide for {pair_id!r}")
        image = aligned_mri[pair_id]()
        slide = downsampled_slides[pair_id]
        done.append(
            _synthesise_pair(pair_id, str(row.split), image, slide, model, params, experiment)
        )
    if not done:
        raise ValueError(f"{experiment}: no pair in splits {list(params.splits)} to synthesise")
    report = pd.DataFrame([p.row for p in done], columns=list(REPORT_COLUMNS))
    jobs = {p.row["pair_id"]: p.job for p in done}
    return SynthesisStudy(experiment, jobs, report, tuple(p.panel for p in done))
