"""One trained generator measured on its experiment's tiles: the study behind Table 1's rows.

:func:`evaluate_model` runs the generator over every split of the tile set
(:func:`~mrihisto_kedro.evaluation.tiles.evaluate_split`), measures every tile and every set
(:mod:`~mrihisto_kedro.evaluation.tiles`), summarises them with bootstrap intervals over slides
(:mod:`~mrihisto_kedro.evaluation.table`), flags a degenerate model
(:mod:`~mrihisto_kedro.evaluation.degenerate`) and says which model was measured on what views.
It returns an :class:`ExperimentEvaluation`; logging it to MLflow
(:mod:`mrihisto_kedro.tracking.evaluation_runs`) and drawing its panels
(:func:`mrihisto_kedro.reporting.evaluation_figures.tile_panels`) are the caller's.

No Kedro and no MLflow imports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

import pandas as pd

from mrihisto_kedro.evaluation.backends import WeightPaths, load_backends
from mrihisto_kedro.evaluation.degenerate import experiment_flags
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
    EvaluatedSplit,
    FeatureBackends,
    TileEvaluationParams,
    comparison_names,
    evaluate_split,
    set_features,
    tile_metrics,
)
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.training import generator_digest
from mrihisto_kedro.params import Params, Range

__all__ = [
    "EvaluationParams",
    "ExperimentEvaluation",
    "TrainingRecord",
    "evaluate_model",
    "measure_split",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationParams(Params):
    """``<experiment>.evaluation``: what to measure and how (see ``parameters_experiments.yml``).

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
    n_boot: Annotated[int, Range(ge=1)] = 200
    alpha: Annotated[float, Range(gt=0.0, lt=1.0)] = 0.05
    kid_subset_size: int = 100
    kid_subsets: int = 50
    weights: WeightPaths = field(default_factory=WeightPaths)
    n_figure_tiles: int = 3
    set_metrics: bool = True
    min_spread_ratio: Annotated[float, Range(gt=0.0, le=1.0)] = 0.25


@dataclass(frozen=True)
class TrainingRecord:
    """What an evaluation reads of the training summary of the model it measures.

    Attributes:
        experiment: the experiment that trained the model (``None``: not recorded).
        run_id: its MLflow training run (``None``: not recorded).
        trained_with: the training's numerics line (``""``: unknown).
        row: the whole summary row (``val_L1``, the trivial baselines' ``*_val_L1``, ...);
            ``None`` for an empty summary.
    """

    experiment: str | None = None
    run_id: str | None = None
    trained_with: str = ""
    row: dict[str, Any] | None = None

    @classmethod
    def from_summary(cls, summary: pd.DataFrame) -> TrainingRecord:
        """The record of a one-row training summary (an empty frame: nothing known)."""
        if summary.empty:
            return cls()
        first = summary.iloc[0]
        run_id = first.get("run_id")
        trained_with = first.get("trained_with")
        return cls(
            experiment=str(first["experiment"]) if "experiment" in summary.columns else None,
            run_id=None if run_id is None or pd.isna(run_id) else str(run_id),
            trained_with=trained_with if isinstance(trained_with, str) else "",
            row={str(key): value for key, value in first.items()},
        )

    def entry(self, experiment: str) -> str:
        """``""`` when ``experiment`` evaluates its own training, else ``"<experiment>."``: the
        prefix of what it logs to the other experiment's run (``msi_unet_whole`` on
        ``msi_unet``'s)."""
        if self.experiment is None or self.experiment == experiment:
            return ""
        return f"{experiment}."

    def measured_model(self, generator: dict[str, Any]) -> str:
        """``generator <digest>[, MLflow run <id>]``: which trained model a table measured."""
        text = f"generator {generator_digest(generator)}"
        return text if self.run_id is None else f"{text}, MLflow run {self.run_id}"


@dataclass(frozen=True)
class ExperimentEvaluation:
    """One experiment measured on its tiles.

    Attributes:
        experiment: its name (the ``experiment`` column).
        per_tile: every per-tile metric, long format (``tile_id, pair_id, specimen_id, split,
            comparison, metric, value``).
        table: its rows of the metric table (``TABLE_COLUMNS`` of :mod:`.table`),
            ``flag``, ``model``, ``views`` and ``trained_with`` filled.
        splits: the evaluated splits, images in [0, 1] channels last (for the panel figure).
        flags: split -> why its numbers are not a result (``""``: they are).
    """

    experiment: str
    per_tile: pd.DataFrame
    table: pd.DataFrame
    splits: tuple[EvaluatedSplit, ...]
    flags: dict[str, str]

    @property
    def flag_text(self) -> str:
        """``"<split>: <reason>; ..."`` over the flagged splits (``""``: none)."""
        return "; ".join(f"{split}: {reason}" for split, reason in self.flags.items() if reason)

    @property
    def markdown(self) -> str:
        """The table rendered (:func:`~mrihisto_kedro.evaluation.table.render_markdown`)."""
        return render_markdown(self.table, f"{self.experiment}: evaluation")


def _views(tileset: TileSet, generator: dict[str, Any]) -> str:
    """What the evaluated images are physically (empty when the generator has no input spec)."""
    spec = generator.get("input_spec")
    if not isinstance(spec, dict) or "pixel_size_um" not in spec:
        return ""
    return view_description(int(tileset.a.shape[1]), float(spec["pixel_size_um"][0]))


def measure_split(
    data: EvaluatedSplit, params: EvaluationParams, backends: FeatureBackends, experiment: str
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Every metric of one evaluated split.

    Returns:
        ``(per_tile, rows)``: the per-tile metrics and the table rows (tile metrics with
        intervals; FID and KID when Inception is loaded; a row per missing metric).
    """
    p = params
    labels = comparison_names(p.tiles)
    per_tile = tile_metrics(data, p.tiles, backends)
    rows = [
        summarise_tiles(
            per_tile,
            experiment,
            n_boot=p.n_boot,
            alpha=p.alpha,
            seed=p.tiles.seed,
            mi_bins=p.tiles.mi_bins,
            mi_base=p.tiles.mi_base,
        )
    ]
    slides = data.manifest["pair_id"]
    features = set_features(data, backends, p.tiles.batch_size)
    if features is not None:
        pairs = [(labels[0], "g", "b"), (labels[1], "g", "a"), (labels[2], "b", "a")]
        rows.append(
            summarise_sets(
                features,
                slides.to_numpy(),
                pairs,
                experiment,
                data.split,
                n_boot=p.n_boot,
                alpha=p.alpha,
                seed=p.tiles.seed,
                kid_subset_size=p.kid_subset_size,
                kid_subsets=p.kid_subsets,
            )
        )
    missing = {m: r for m, r in backends.missing.items() if m in (*SET_METRICS, "LPIPS")}
    if missing:
        rows.append(
            missing_rows(experiment, data.split, labels, missing, len(slides), slides.nunique())
        )
    return per_tile, rows


def evaluate_model(
    tileset: TileSet,
    generator: dict[str, Any],
    params: EvaluationParams,
    experiment: str,
    training: TrainingRecord | None = None,
    backends: FeatureBackends | None = None,
) -> ExperimentEvaluation:
    """Measure one trained generator on the splits of its experiment's tile set.

    Args:
        tileset: paired tiles (A the input, B the target) with ``split`` and ``pair_id``.
        generator: the exported generator (:func:`~mrihisto_kedro.nn.training.export_generator`).
        params: what to measure (:class:`EvaluationParams`).
        experiment: the name in the table's ``experiment`` column and in messages.
        training: the measured model's training (``None``: nothing known).
        backends: feature networks (``None``: loaded from ``params.weights``).

    Raises:
        ValueError: none of ``params.tiles.splits`` has tiles.
    """
    training = training or TrainingRecord()
    if backends is None:
        backends = load_backends(
            params.weights, device=params.tiles.device, inception=params.set_metrics
        )
    per_tile, rows, evaluated = [], [], []
    for split in params.tiles.splits:
        data = evaluate_split(tileset, generator, split, params.tiles)
        if data is None:
            logger.info("%s: no %s tiles to evaluate", experiment, split)
            continue
        evaluated.append(data)
        tiles, split_rows = measure_split(data, params, backends, experiment)
        per_tile.append(tiles)
        rows.extend(split_rows)
    if not evaluated:
        raise ValueError(
            f"{experiment}: none of the splits {list(params.tiles.splits)} has tiles; the tile "
            f"set has {tileset.splits}"
        )
    flags = experiment_flags(
        {d.split: (d.generated, d.b) for d in evaluated}, training.row, params.min_spread_ratio
    )
    table = pd.concat(rows, ignore_index=True).reindex(columns=list(TABLE_COLUMNS))
    table["trained_with"] = training.trained_with
    table["flag"] = table["split"].map(flags).fillna("")
    table["model"] = training.measured_model(generator)
    table["views"] = _views(tileset, generator)
    result = ExperimentEvaluation(
        experiment, pd.concat(per_tile, ignore_index=True), table, tuple(evaluated), flags
    )
    if result.flag_text:
        logger.warning("%s is flagged in Table 1: %s", experiment, result.flag_text)
    return result
