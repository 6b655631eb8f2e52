"""The metric table: one row per (experiment, split, comparison, metric), with intervals.

Long format (:data:`TABLE_COLUMNS`): ``experiment, split, comparison, metric, value, ci_low,
ci_high, n_tiles, n_slides, note, trained_with``. Intervals are percentile bootstraps over
slides (whole slides resampled with replacement, because tiles of one slide are not
independent): for tile metrics the statistic is the mean over the pooled tiles of the resampled
slides; for FID and KID the distance recomputed on those tiles. ``note`` says what a reader
must know: MI's bins and log base, FID's bias below 2048 samples, and why a metric is missing.
``trained_with`` is what decided the trained model's numbers (device, the precision actually
used, torch, the CPU's SIMD level and native bf16, threads;
:func:`~mrihisto_kedro.nn.device.describe_numerics`):
precision ``auto`` trains in bf16 on CPUs with native bf16 and in fp32 elsewhere, so tables
made on different machines differ unless ``precision: fp32`` is pinned. The markdown lists it
under the table, once per distinct setting, with the experiments it applies to. ``flag`` is
empty, or why the experiment's numbers on that split are not a result (a degenerate generator:
:mod:`~mrihisto_kedro.evaluation.degenerate`); the markdown marks the column ``FLAGGED`` and
says why under the table. ``model`` names what was measured (``generator <digest>, MLflow run
<id>``: :func:`~mrihisto_kedro.nn.training.generator_digest`), listed under the table once per
experiment, so a table can be told from one measured on a model retrained since. ``views`` says
what each experiment's images are in physical units (:func:`view_description`: pixels, µm per
pixel, mm a side), listed under the table once per experiment: the experiment names are paper
000's designs (``tiles_256``), and the miniature demo's views are smaller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from mrihisto_kedro.metrics.frechet import (
    bootstrap_interval,
    frechet_distance_from_features,
    kernel_inception_distance,
)

__all__ = [
    "FID_RELIABLE_N",
    "TABLE_COLUMNS",
    "column_flags",
    "view_description",
    "missing_rows",
    "render_markdown",
    "summarise_sets",
    "summarise_tiles",
]

TABLE_COLUMNS: tuple[str, ...] = (
    "experiment",
    "split",
    "comparison",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n_tiles",
    "n_slides",
    "note",
    "trained_with",
    "flag",
    "model",
    "views",
)

#: pytorch-fid's advice: below this many samples the covariance is rank-deficient and FID is
#: biased upwards; values at different N are not comparable.
FID_RELIABLE_N = 2048


#: the note of every row measured on one slide: a bootstrap over slides has nothing to resample
ONE_SLIDE_NOTE = "1 slide: no interval over slides"


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _slide_interval(
    fn: Callable[[np.ndarray], float], n_slides: int, n_boot: int, alpha: float, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap over slides; ``(nan, nan)`` with one slide (it would be a point)."""
    if n_slides < 2:
        return math.nan, math.nan
    return bootstrap_interval(fn, n_slides=n_slides, n_boot=n_boot, alpha=alpha, seed=seed)


def _mi_note(bins: int, base: float) -> str:
    unit = "nats" if math.isclose(base, math.e) else ("bits" if base == 2 else f"log base {base}")
    return f"grey-level MI, {bins} bins, {unit}"


def summarise_tiles(
    per_tile: pd.DataFrame,
    experiment: str,
    *,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    mi_bins: int = 20,
    mi_base: float = math.e,
) -> pd.DataFrame:
    """Mean of each per-tile metric with a bootstrap interval over slides.

    Args:
        per_tile: rows ``pair_id, split, comparison, metric, value`` (one per tile and metric),
            as :func:`mrihisto_kedro.evaluation.tiles.tile_metrics` returns.
        experiment: label of the experiment column.
        n_boot: bootstrap replicates; alpha: two-sided level; seed: resampling seed.
        mi_bins, mi_base: printed in the MI rows' note.

    Returns:
        Table rows (:data:`TABLE_COLUMNS`).
    """
    rows = []
    for (split, comparison, metric), group in per_tile.groupby(
        ["split", "comparison", "metric"], sort=True
    ):
        by_slide = [g["value"].to_numpy(float) for _, g in group.groupby("pair_id", sort=True)]

        def pooled_mean(idx: np.ndarray, parts: Sequence[np.ndarray] = by_slide) -> float:
            return float(np.concatenate([parts[i] for i in idx]).mean())

        low, high = _slide_interval(pooled_mean, len(by_slide), n_boot, alpha, seed)
        rows.append(
            {
                "experiment": experiment,
                "split": split,
                "comparison": comparison,
                "metric": metric,
                "value": float(group["value"].mean()),
                "ci_low": low,
                "ci_high": high,
                "n_tiles": len(group),
                "n_slides": len(by_slide),
                "note": _join(
                    _mi_note(mi_bins, mi_base) if metric == "MI" else "",
                    ONE_SLIDE_NOTE if len(by_slide) < 2 else "",
                ),
            }
        )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _distance_functions(
    fx: np.ndarray,
    fy: np.ndarray,
    members: Sequence[np.ndarray],
    kid_subset_size: int,
    kid_subsets: int,
    seed: int,
) -> tuple[Callable[[np.ndarray], float], Callable[[np.ndarray], float]]:
    """FID and KID of the pooled tiles of the slides ``idx`` (indices into ``members``)."""

    def rows_of(idx: np.ndarray) -> np.ndarray:
        return np.concatenate([members[i] for i in idx])

    def fid_of(idx: np.ndarray) -> float:
        r = rows_of(idx)
        return frechet_distance_from_features(fx[r], fy[r]) if r.size >= 2 else math.nan

    def kid_of(idx: np.ndarray) -> float:
        r = rows_of(idx)
        if r.size < 2:
            return math.nan
        return kernel_inception_distance(
            fx[r], fy[r], subset_size=kid_subset_size, n_subsets=kid_subsets, seed=seed
        )[0]

    return fid_of, kid_of


def summarise_sets(
    features: Mapping[str, np.ndarray],
    slides: Sequence[str] | np.ndarray,
    comparisons: Iterable[tuple[str, str, str]],
    experiment: str,
    split: str,
    *,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    kid_subset_size: int = 100,
    kid_subsets: int = 50,
) -> pd.DataFrame:
    """FID and KID of each comparison, with bootstrap intervals over slides.

    Args:
        features: ``{key: (N, D) features}``, rows aligned with ``slides`` (tile ``i`` of every
            key belongs to slide ``slides[i]``).
        slides: ``(N,)`` slide id of each tile.
        comparisons: ``(label, key_x, key_y)``, e.g. ``("generated_vs_histology", "g", "b")``.
        experiment, split: labels of the rows.
        n_boot, alpha, seed: bootstrap settings (replicates compute KID as the value does).
        kid_subset_size, kid_subsets: KID subsets (capped at N).

    Returns:
        Table rows (:data:`TABLE_COLUMNS`), FID then KID for each comparison.
    """
    slide_ids = np.asarray(slides).astype(str)
    names = sorted(set(slide_ids))
    members = [np.flatnonzero(slide_ids == s) for s in names]
    n = slide_ids.size
    note_fid = (
        f"N={n} tiles < {FID_RELIABLE_N}: FID is biased upwards at this N; compare values only "
        "at equal N"
        if n < FID_RELIABLE_N
        else ""
    )
    rows = []
    for label, kx, ky in comparisons:
        fx, fy = features[kx], features[ky]

        fid_of, kid_of = _distance_functions(fx, fy, members, kid_subset_size, kid_subsets, seed)
        everything = np.arange(len(names))
        for metric, fn, value, note in (
            ("FID", fid_of, fid_of(everything), note_fid),
            (
                "KID",
                kid_of,
                kid_of(everything),
                f"polynomial-kernel MMD^2, subsets of {min(kid_subset_size, n)}",
            ),
        ):
            low, high = _slide_interval(fn, len(names), n_boot, alpha, seed)
            rows.append(
                {
                    "experiment": experiment,
                    "split": split,
                    "comparison": label,
                    "metric": metric,
                    "value": float(value),
                    "ci_low": low,
                    "ci_high": high,
                    "n_tiles": n,
                    "n_slides": len(names),
                    "note": _join(note, ONE_SLIDE_NOTE if len(names) < 2 else ""),
                }
            )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def missing_rows(
    experiment: str,
    split: str,
    comparisons: Iterable[str],
    missing: Mapping[str, str],
    n_tiles: int,
    n_slides: int,
) -> pd.DataFrame:
    """Rows with an empty value for each unavailable metric, the reason in ``note``."""
    rows = [
        {
            "experiment": experiment,
            "split": split,
            "comparison": label,
            "metric": metric,
            "value": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "n_tiles": n_tiles,
            "n_slides": n_slides,
            "note": f"missing: {reason}",
        }
        for label in comparisons
        for metric, reason in missing.items()
    ]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _cell(row: pd.Series) -> str:
    if not np.isfinite(row["value"]):
        return "missing"
    digits = 1 if row["metric"] in {"FID", "PSNR"} else 3
    text = f"{row['value']:.{digits}f}"
    if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]):
        text += f" [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"
    return f"{text} ({int(row['n_tiles'])}/{int(row['n_slides'])})"


def render_markdown(table: pd.DataFrame, title: str) -> str:
    """A markdown rendering: rows (metric, comparison), columns ``experiment / split``.

    Cells read ``value [ci_low, ci_high] (n_tiles/n_slides)``; notes are listed below the
    table, once each.
    """
    if table.empty:
        return f"# {title}\n\nNo experiment was evaluated.\n"
    t = table.copy()
    t["column"] = t["experiment"] + " / " + t["split"]
    t["cell"] = t.apply(_cell, axis=1)
    pivot = t.pivot_table(
        index=["metric", "comparison"], columns="column", values="cell", aggfunc="first"
    )
    columns = list(dict.fromkeys(t["column"]))
    pivot = pivot.reindex(columns=columns)
    flags = column_flags(t)
    pivot.columns = [f"{c} (FLAGGED)" if c in flags else c for c in columns]
    columns = list(pivot.columns)
    order = {m: i for i, m in enumerate(("FID", "KID", "LPIPS", "L1", "SSIM", "PSNR", "MI"))}
    pivot = pivot.sort_index(key=lambda idx: idx.map(lambda v: order.get(v, 99)), level=0)
    header = "| metric | comparison | " + " | ".join(columns) + " |"
    lines = [f"# {title}", "", header, "|" + "---|" * (len(columns) + 2)]
    rows: list[tuple[str, str]] = pivot.index.tolist()  # the (metric, comparison) MultiIndex
    for (metric, comparison), cells in zip(rows, pivot.to_numpy(dtype=object), strict=True):
        values = " | ".join("" if pd.isna(c) else str(c) for c in cells)
        lines.append(f"| {metric} | {comparison} | {values} |")
    notes = sorted({n for n in t["note"] if isinstance(n, str) and n})
    lines += [
        "",
        "Cells: value [bootstrap interval over slides] (N tiles/N slides). Lower is better for "
        "FID, KID, LPIPS and L1; higher for SSIM, PSNR and MI against the target.",
    ]
    lines += [f"- {n}" for n in notes]
    lines += [f"- FLAGGED {column}: {reason}" for column, reason in flags.items()]
    lines += _trained_with_lines(t)
    lines += _model_lines(t)
    lines += _per_experiment_lines(t, "views", "Views of")
    return "\n".join(lines) + "\n"


def view_description(pixels: int, pixel_size_um: float) -> str:
    """``"64 px at 270 µm/px (17.3 mm a side)"``: what one evaluated image is, physically.

    Args:
        pixels: side of the (square) image the generator sees, in pixels.
        pixel_size_um: µm per pixel of that image (the generator's input spec).
    """
    side_mm = pixels * pixel_size_um / 1000.0
    um = f"{pixel_size_um:.0f}" if pixel_size_um >= 10 else f"{pixel_size_um:.2g}"
    return f"{pixels} px at {um} µm/px ({side_mm:.3g} mm a side)"


def _per_experiment_lines(table: pd.DataFrame, column: str, label: str) -> list[str]:
    """``<label> <experiment>: <value>`` once per experiment with a value in ``column``."""
    if column not in table.columns:
        return []
    known = table[table[column].map(lambda v: isinstance(v, str) and bool(v))]
    values = dict(zip(known["experiment"], known[column], strict=True))
    return [f"- {label} {experiment}: {value}" for experiment, value in values.items()]


def _model_lines(table: pd.DataFrame) -> list[str]:
    """``Measured <experiment>: <model>`` once per experiment whose model is recorded."""
    return _per_experiment_lines(table, "model", "Measured")


def column_flags(table: pd.DataFrame) -> dict[str, str]:
    """``experiment / split`` -> its flag, for the columns that have one."""
    if "flag" not in table.columns:
        return {}
    flagged = table[table["flag"].map(lambda v: isinstance(v, str) and bool(v))]
    return dict(zip(flagged["column"], flagged["flag"], strict=True))


def _trained_with_lines(table: pd.DataFrame) -> list[str]:
    """``Trained with <setting>: <experiments>`` once per distinct ``trained_with`` value."""
    if "trained_with" not in table.columns:
        return []
    known = table[table["trained_with"].map(lambda v: isinstance(v, str) and bool(v))]
    groups = known.groupby("trained_with", sort=True)["experiment"]
    return [
        f"- Trained with {setting}: {', '.join(dict.fromkeys(experiments))}"
        for setting, experiments in groups
    ]
