"""Thin nodes of the evaluation pipeline: measure each trained experiment, build the tables."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure

from mrihisto_kedro.evaluation.backends import WeightPaths, load_backends
from mrihisto_kedro.evaluation.degenerate import experiment_flags
from mrihisto_kedro.evaluation.paper003 import WHOLE_DESIGN_CLAIM, claim_lines
from mrihisto_kedro.evaluation.synthesis import (
    SynthesisParams,
    SyntheticSlideJob,
    compare_seams,
    mri_to_model_input,
    stitch_options,
)
from mrihisto_kedro.evaluation.table import (
    TABLE_COLUMNS,
    missing_rows,
    render_markdown,
    summarise_sets,
    summarise_tiles,
    view_description,
)
from mrihisto_kedro.evaluation.tiles import (
    SET_METRICS,
    TileEvaluationParams,
    comparison_names,
    evaluate_split,
    set_features,
    tile_metrics,
)
from mrihisto_kedro.imaging.downsample import recorded_downsample
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.inference import load_predictor
from mrihisto_kedro.nn.training import generator_digest
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.reporting.evaluation_figures import tile_panels, whole_slide_panels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationParams:
    """``evaluation.<experiment>``: what to measure and how (see ``parameters_evaluation.yml``).

    Attributes:
        tiles: tile selection and per-tile metric settings.
        n_boot: bootstrap replicates over slides; alpha: two-sided level of the intervals.
        kid_subset_size, kid_subsets: KID subsets.
        weights: explicit weight files (``inception``, ``alexnet``); ``None``: look them up
            in the torch hub cache (``mrihisto-weights`` puts them there).
        n_figure_tiles: tiles per split in the panel figure.
        set_metrics: compute FID and KID (Inception features); ``False``: no FID/KID rows
            (paper 003's MSI table needs MI and SSIM only).
        min_spread_ratio: a split whose generated images vary less than this fraction of
            the real ones (inside an image, or between inputs) is flagged degenerate
            (:mod:`mrihisto_kedro.evaluation.degenerate`), in (0, 1].
    """

    tiles: TileEvaluationParams = field(default_factory=TileEvaluationParams)
    n_boot: int = 200
    alpha: float = 0.05
    kid_subset_size: int = 100
    kid_subsets: int = 50
    weights: WeightPaths = field(default_factory=WeightPaths)
    n_figure_tiles: int = 4
    set_metrics: bool = True
    min_spread_ratio: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.min_spread_ratio <= 1:
            raise ValueError(f"min_spread_ratio must be in (0, 1], got {self.min_spread_ratio}")


def _entry(experiment: str, summary: pd.DataFrame) -> str:
    """``""`` when ``experiment`` evaluates its own training, else ``"<experiment>."``: the
    prefix of what it logs to the other experiment's run (``msi_unet_whole`` on ``msi_unet``'s)."""
    if summary.empty or "experiment" not in summary.columns:
        return ""
    return "" if str(summary.loc[0, "experiment"]) == experiment else f"{experiment}."


def _log_to_training_run(
    summary: pd.DataFrame, table: pd.DataFrame, markdown: str, entry: str = ""
) -> None:
    """Attach the experiment's metric table to its MLflow training run (when one is known).

    ``entry`` (``"msi_unet_whole."``) prefixes the artifacts, tags and metrics of an
    evaluation of another experiment's model, so that they do not replace its own."""
    if summary.empty or "run_id" not in summary.columns or pd.isna(summary.loc[0, "run_id"]):
        return
    run_id = str(summary.loc[0, "run_id"])
    client = mlflow.tracking.MlflowClient()
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        logger.warning("training run %s is not in the tracking store; table not logged", run_id)
        return
    folder = f"evaluation/{entry.rstrip('.')}" if entry else "evaluation"
    client.log_text(run_id, markdown, f"{folder}/metrics_table.md")
    client.log_text(run_id, table.to_csv(index=False), f"{folder}/metrics_table.csv")
    if "model" in table.columns and len(table):
        client.set_tag(run_id, f"mrihisto.{entry}evaluated_model", str(table["model"].iloc[0]))
    for row in table.itertuples():
        if isinstance(row.value, float) and math.isfinite(row.value):
            key = f"eval.{entry}{row.split}.{row.comparison}.{row.metric}"
            client.log_metric(run_id, key, float(row.value))


def _flag_degenerate(
    experiment: str, flags: dict[str, str], summary: pd.DataFrame, entry: str = ""
) -> None:
    """One warning naming the experiment, and the tag ``mrihisto.<entry>degenerate`` on its
    training run."""
    flagged = {split: reason for split, reason in flags.items() if reason}
    if not flagged:
        return
    text = "; ".join(f"{split}: {reason}" for split, reason in flagged.items())
    logger.warning("%s is flagged in Table 1: %s", experiment, text)
    if not summary.empty and "run_id" in summary.columns and not pd.isna(summary.loc[0, "run_id"]):
        try:
            mlflow.tracking.MlflowClient().set_tag(
                str(summary.loc[0, "run_id"]), f"mrihisto.{entry}degenerate", text[:5000]
            )
        except mlflow.exceptions.MlflowException:
            logger.warning("the training run of %s is not in the tracking store", experiment)


def _measured_model(generator: dict[str, Any], summary: pd.DataFrame) -> str:
    """``generator <digest>[, MLflow run <id>]``: which trained model a table measured."""
    text = f"generator {generator_digest(generator)}"
    if not summary.empty and "run_id" in summary.columns and not pd.isna(summary.loc[0, "run_id"]):
        text += f", MLflow run {summary.loc[0, 'run_id']}"
    return text


def _views(tileset: TileSet, generator: dict[str, Any]) -> str:
    """What the evaluated images are physically (empty when the generator has no input spec)."""
    spec = generator.get("input_spec")
    if not isinstance(spec, dict) or "pixel_size_um" not in spec:
        return ""
    return view_description(int(tileset.a.shape[1]), float(spec["pixel_size_um"][0]))


def _trained_with(summary: pd.DataFrame) -> str:
    """The training's numerics line (``trained_with`` of its summary; empty when unknown)."""
    if summary.empty or "trained_with" not in summary.columns:
        return ""
    value = summary.loc[0, "trained_with"]
    return value if isinstance(value, str) else ""


def evaluate_experiment(
    tileset: TileSet,
    generator: dict[str, Any],
    training_summary: pd.DataFrame,
    evaluation: dict[str, Any],
    experiment: str,
) -> tuple[pd.DataFrame, pd.DataFrame, Figure]:
    """Measure one trained generator on the train and test tiles of its experiment.

    Returns:
        ``(per_tile, table, figure)``: every per-tile metric (long format), the experiment's
        rows of the metric table (:data:`~mrihisto_kedro.evaluation.table.TABLE_COLUMNS`),
        and a panel figure ``input | real | generated``.
    """
    p = parse_params(EvaluationParams, evaluation, f"evaluation.{experiment}")
    backends = load_backends(p.weights, device=p.tiles.device, inception=p.set_metrics)
    labels = comparison_names(p.tiles)
    pairs = [(labels[0], "g", "b"), (labels[1], "g", "a"), (labels[2], "b", "a")]
    per_tile_frames, table_frames, evaluated = [], [], []
    for split in p.tiles.splits:
        data = evaluate_split(tileset, generator, split, p.tiles)
        if data is None:
            logger.info("%s: no %s tiles to evaluate", experiment, split)
            continue
        evaluated.append(data)
        per_tile = tile_metrics(data, p.tiles, backends)
        per_tile_frames.append(per_tile)
        table_frames.append(
            summarise_tiles(
                per_tile,
                experiment,
                n_boot=p.n_boot,
                alpha=p.alpha,
                seed=p.tiles.seed,
                mi_bins=p.tiles.mi_bins,
                mi_base=p.tiles.mi_base,
            )
        )
        n_tiles, n_slides = len(data.manifest), data.manifest["pair_id"].nunique()
        features = set_features(data, backends, p.tiles.batch_size)
        if features is not None:
            table_frames.append(
                summarise_sets(
                    features,
                    data.manifest["pair_id"].to_numpy(),
                    pairs,
                    experiment,
                    split,
                    n_boot=p.n_boot,
                    alpha=p.alpha,
                    seed=p.tiles.seed,
                    kid_subset_size=p.kid_subset_size,
                    kid_subsets=p.kid_subsets,
                )
            )
        missing = {m: r for m, r in backends.missing.items() if m in (*SET_METRICS, "LPIPS")}
        if missing:
            table_frames.append(missing_rows(experiment, split, labels, missing, n_tiles, n_slides))
    if not evaluated:
        raise ValueError(
            f"{experiment}: none of the splits {list(p.tiles.splits)} has tiles; the tile set "
            f"has {tileset.splits}"
        )
    table = pd.concat(table_frames, ignore_index=True).reindex(columns=list(TABLE_COLUMNS))
    table["trained_with"] = _trained_with(training_summary)
    flags = experiment_flags(
        {d.split: (d.generated, d.b) for d in evaluated},
        None if training_summary.empty else training_summary.iloc[0].to_dict(),
        p.min_spread_ratio,
    )
    table["flag"] = table["split"].map(flags).fillna("")
    table["model"] = _measured_model(generator, training_summary)
    table["views"] = _views(tileset, generator)
    entry = _entry(experiment, training_summary)
    _flag_degenerate(experiment, flags, training_summary, entry)
    markdown = render_markdown(table, f"{experiment}: evaluation")
    _log_to_training_run(training_summary, table, markdown, entry)
    figure = tile_panels(evaluated, p.n_figure_tiles, experiment)
    return pd.concat(per_tile_frames, ignore_index=True), table, figure


#: paper 003's table: pix2pix (black padding), pix2pix (white padding), the U-Net regression
MSI_TABLE_EXPERIMENTS: tuple[str, ...] = ("msi_to_he_black", "msi_to_he_white", "msi_unet")

#: paper 003's own design: pix2pix trained on whole specimen views, and the patch-trained
#: U-Net (``msi_unet``) evaluated on the same views
WHOLE_TABLE_EXPERIMENTS: tuple[str, ...] = ("msi_to_he_whole", "msi_unet_whole")

#: the metrics of paper 003's tables (LPIPS added: it tells texture from a conditional mean)
MSI_METRICS: tuple[str, ...] = ("MI", "SSIM", "LPIPS")


def _mi_ssim(
    table: pd.DataFrame,
    experiments: tuple[str, ...],
    splits: tuple[str, ...],
    metrics: tuple[str, ...] = ("MI", "SSIM"),
) -> pd.DataFrame:
    """``metrics`` (MI and SSIM) of generated vs real histology for ``experiments`` (empty
    unless all are present)."""
    rows = table[
        table["experiment"].isin(experiments)
        & table["split"].isin(splits)
        & table["metric"].isin(list(metrics))
        & (table["comparison"] == "generated_vs_histology")
    ].reset_index(drop=True)
    if not set(experiments) <= set(table["experiment"]):
        return rows.iloc[0:0]
    return rows


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
    table = pd.concat(tables, ignore_index=True).reindex(columns=list(TABLE_COLUMNS))
    markdown = render_markdown(
        table, "Table 1: generated vs real histology and vs MRI, per experiment and split"
    )
    baseline = _mi_ssim(table, ("tiles_256", "unet_baseline"), ("train", "test"))
    baseline_md = render_markdown(baseline, "pix2pix vs U-Net regression (paper 003): MI and SSIM")
    msi_table, msi_md = _msi_table(table)
    return table, markdown, baseline, baseline_md, msi_table, msi_md


def _claimed_table(
    table: pd.DataFrame, experiments: tuple[str, ...], title: str, **claim: Any
) -> tuple[pd.DataFrame, str]:
    """The test-split MI/SSIM/LPIPS rows of ``experiments``, rendered, with paper 003's claim
    and the measured direction under them (``claim``: :func:`claim_lines`' keywords)."""
    rows = _mi_ssim(table, experiments, ("test",), MSI_METRICS)
    markdown = render_markdown(rows, title)
    lines = claim_lines(rows, **claim)
    if lines:
        markdown += "\n## Paper 003's claim and what was measured\n\n" + "\n".join(lines) + "\n"
    return rows, markdown


def _msi_table(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Paper 003's table on tiles, with the paper's claim and the measured direction."""
    return _claimed_table(
        table,
        MSI_TABLE_EXPERIMENTS,
        "Paper 003: MSI -> H&E, pix2pix (black / white padding) vs U-Net, test split",
    )


def whole_design_tables(*tables: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Paper 003's own design (pipeline ``msi_whole_specimen``): pix2pix trained on whole
    specimen views against the patch-trained U-Net applied to them, with the claim.

    Returns:
        ``(msi_whole_table, msi_whole_table_md)``: MI, SSIM and LPIPS of the test split for
        :data:`WHOLE_TABLE_EXPERIMENTS`, and its markdown.
    """
    return _claimed_table(
        pd.concat(tables, ignore_index=True).reindex(columns=list(TABLE_COLUMNS)),
        WHOLE_TABLE_EXPERIMENTS,
        "Paper 003's own design: whole specimen views (glass and padding included), pix2pix "
        "trained on them vs the patch-trained U-Net applied to them, test split",
        pix2pix=WHOLE_TABLE_EXPERIMENTS[:1],
        unet="msi_unet_whole",
        claim=WHOLE_DESIGN_CLAIM,
    )


def synthesise_slides(
    generator: dict[str, Any],
    tileset: TileSet,
    pairs: pd.DataFrame,
    aligned_mri: dict[str, Callable[[], sitk.Image]],
    downsampled_slides: dict[str, Callable[[], Any]],
    synthesis: dict[str, Any],
    experiment: str,
) -> tuple[dict[str, SyntheticSlideJob], pd.DataFrame, Figure]:
    """Synthetic whole slides of the selected pairs, and the seam comparison.

    Each aligned MRI slice (on the 15x histology grid) is resampled to the model's pixel size
    (the tile manifest's ``scale``), translated window by window with overlap and blending, and
    saved lazily as a pyramidal TIFF (``OpenSlideDataset`` calls the job's ``write_tiff``) with
    the model grid's microns per pixel. The seam report compares plain tiling with blending.

    Returns:
        ``(slides, seam_report, figure)``: ``{pair_id: job}``, one report row per pair
        (``pair_id, split, window_px, overlap_px, weights, mpp, seam_plain, seam_blended``),
        and panels MRI | real | plain | blended.
    """
    p = parse_params(SynthesisParams, synthesis, "synthesis")
    scales = sorted(set(tileset.manifest["scale"].round(6)))
    if len(scales) != 1:
        raise ValueError(f"{experiment}: tiles of several scales {scales}; cannot synthesise")
    window = p.window or int(tileset.a.shape[1])
    out_channels = int(generator["architecture"]["out_channels"])
    output_range = tuple(float(v) for v in generator.get("output_range", (-1.0, 1.0)))
    predictor = load_predictor(dict(generator), device=p.device)
    selected = pairs[pairs["split"].isin(p.splits)].sort_values("pair_id")
    jobs: dict[str, SyntheticSlideJob] = {}
    rows, panels = [], []
    for row in selected.itertuples():
        if row.pair_id not in aligned_mri or row.pair_id not in downsampled_slides:
            raise KeyError(f"{experiment}: no aligned MRI or downsampled slide for {row.pair_id!r}")
        with downsampled_slides[row.pair_id]() as slide:
            factor = recorded_downsample(slide)  # what the grid is, not today's parameter
            w, h = slide.level_dimensions[0]
            real = slide.read_region((0, 0), 0, (w, h)).astype(np.float32) / 255.0
        model_per_grid = factor / float(scales[0])  # model pixels per pixel of the 15x grid
        image = aligned_mri[row.pair_id]()
        grid_mpp = float(image.GetSpacing()[0]) * 1000.0
        mri = mri_to_model_input(image, model_per_grid, p.a_range)
        mpp = grid_mpp / model_per_grid
        options = stitch_options(p, min(window, *mri.shape[1:]))
        seams = compare_seams(
            mri, predictor, out_channels, min(window, *mri.shape[1:]), p, output_range
        )
        jobs[row.pair_id] = SyntheticSlideJob(
            mri=mri,
            generator=generator,
            options=options,
            mpp=mpp,
            device=p.device,
            description={"Experiment": experiment, "Pair": str(row.pair_id)},
        )
        rows.append(
            {
                "experiment": experiment,
                "pair_id": row.pair_id,
                "split": row.split,
                "width_px": mri.shape[2],
                "height_px": mri.shape[1],
                "mpp": mpp,
                "window_px": options.window[0],
                "overlap_px": options.overlap[0],
                "weights": str(options.weights),
                "seam_plain": seams.plain,
                "seam_blended": seams.blended,
            }
        )
        mri01 = (np.moveaxis(mri, 0, -1) + 1.0) / 2.0
        panels.append((str(row.pair_id), mri01, real, seams.plain_image, seams.blended_image))
    report = pd.DataFrame(rows)
    if report.empty:
        raise ValueError(f"{experiment}: no pair in splits {list(p.splits)} to synthesise")
    title = (
        f"{experiment}: seam score plain {report['seam_plain'].median():.2f}, blended "
        f"{report['seam_blended'].median():.2f} (median; 1.0 = invisible)"
    )
    return jobs, report, whole_slide_panels(panels, title)
