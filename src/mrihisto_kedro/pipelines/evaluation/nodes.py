"""Nodes of the evaluation pipeline: measure each trained experiment, build the tables.

Each node parses its parameters, calls one library study and returns what the catalog saves:

- :func:`evaluate_experiment`: :func:`~mrihisto_kedro.evaluation.experiment.evaluate_model`,
  logged to the training run (:mod:`mrihisto_kedro.tracking.evaluation_runs`), panels drawn
  by :func:`~mrihisto_kedro.reporting.evaluation_figures.tile_panels`;
- :func:`synthesise_slides`: :func:`~mrihisto_kedro.evaluation.slide_synthesis.synthesise_pairs`,
  panels drawn by :func:`~mrihisto_kedro.reporting.evaluation_figures.whole_slide_panels`;
- :func:`combine_tables` and :func:`whole_design_tables`:
  :mod:`mrihisto_kedro.evaluation.report_tables`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure

from mrihisto_kedro.evaluation.experiment import EvaluationParams, TrainingRecord, evaluate_model
from mrihisto_kedro.evaluation.report_tables import report_tables, whole_design_table
from mrihisto_kedro.evaluation.slide_synthesis import SlideOpener, synthesise_pairs
from mrihisto_kedro.evaluation.synthesis import SynthesisParams, SyntheticSlideJob
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.reporting.evaluation_figures import tile_panels, whole_slide_panels
from mrihisto_kedro.tracking.evaluation_runs import log_evaluation_table, tag_degenerate

__all__ = ["combine_tables", "evaluate_experiment", "synthesise_slides", "whole_design_tables"]


def evaluate_experiment(
    tileset: TileSet,
    generator: dict[str, Any],
    training_summary: pd.DataFrame,
    evaluation: dict[str, Any],
    experiment: str,
) -> tuple[pd.DataFrame, pd.DataFrame, Figure]:
    """Measure one trained generator on the train and test tiles of its experiment.

    The table is attached to the MLflow run that trained the generator (prefixed by
    ``<experiment>.`` when the experiment measures another's model), which is tagged
    ``degenerate`` when a split is flagged.

    Returns:
        ``(per_tile, table, figure)``: every per-tile metric (long format), the experiment's
        rows of the metric table (:data:`~mrihisto_kedro.evaluation.table.TABLE_COLUMNS`),
        and a panel figure ``input | real | generated``.
    """
    params = parse_params(EvaluationParams, evaluation, f"{experiment}.evaluation")
    training = TrainingRecord.from_summary(training_summary)
    result = evaluate_model(tileset, generator, params, experiment, training)
    entry = training.entry(experiment)
    tag_degenerate(training.run_id, result.flag_text, experiment, entry)
    log_evaluation_table(training.run_id, result.table, result.markdown, entry)
    figure = tile_panels(result.splits, params.n_figure_tiles, experiment)
    return result.per_tile, result.table, figure


def synthesise_slides(
    generator: dict[str, Any],
    tileset: TileSet,
    pairs: pd.DataFrame,
    aligned_mri: dict[str, Callable[[], sitk.Image]],
    downsampled_slides: dict[str, SlideOpener],
    synthesis: dict[str, Any],
    experiment: str,
) -> tuple[dict[str, SyntheticSlideJob], pd.DataFrame, Figure]:
    """Synthetic whole slides of the selected pairs, and the seam comparison.

    Each aligned MRI slice (on the downsampled histology grid) is resampled to the model's
    pixel size, translated window by window with overlap and blending, and saved lazily as a
    pyramidal TIFF (``OpenSlideDataset`` calls the job's ``write_tiff``) with the model grid's
    microns per pixel (:mod:`mrihisto_kedro.evaluation.slide_synthesis`).

    Returns:
        ``(slides, seam_report, figure)``: ``{pair_id: job}``, one report row per pair
        (``pair_id, split, window_px, overlap_px, weights, mpp, seam_plain, seam_blended``),
        and panels MRI | real | plain | blended.
    """
    params = parse_params(SynthesisParams, synthesis, "synthesis")
    study = synthesise_pairs(
        generator, tileset, pairs, aligned_mri, downsampled_slides, params, experiment
    )
    return study.jobs, study.report, whole_slide_panels(study.panels, study.title)


def combine_tables(
    *tables: pd.DataFrame,
) -> tuple[pd.DataFrame, str, pd.DataFrame, str, pd.DataFrame, str]:
    """Table 1 of paper 000 over every evaluated experiment, and paper 003's MI/SSIM tables.

    Returns:
        ``(metrics_table, metrics_table_md, baseline_table, baseline_table_md, msi_table,
        msi_table_md)``. The baseline table (pix2pix ``tiles_256`` against the U-Net regression
        ``unet_baseline`` on the MRI tiles, MI and SSIM of generated vs real histology) and
        the MSI table (paper 003 itself: pix2pix with black and with white padding against
        the U-Net, test split) are empty when one of their experiments was not evaluated.
    """
    t = report_tables(tables)
    return t.metrics, t.metrics_md, t.baseline, t.baseline_md, t.msi, t.msi_md


def whole_design_tables(*tables: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Paper 003's own design (pipeline ``msi_whole_specimen``): pix2pix trained on whole
    specimen views against the patch-trained U-Net applied to them, with the claim.

    Returns:
        ``(msi_whole_table, msi_whole_table_md)``: MI, SSIM and LPIPS of the test split for
        :data:`~mrihisto_kedro.evaluation.report_tables.WHOLE_TABLE_EXPERIMENTS`, and its
        markdown.
    """
    return whole_design_table(tables)
