"""Trained models against trivial baselines, per metric: who wins where (no Kedro imports).

A T1 -> T2 model is worth reporting only where it beats what needs no training: the T1 slice
itself (``identity_t1``) and its inversion inside the head (``inverted_t1``). Which of the two
is the stronger depends on the metric and on the region: over the whole slice the dark
background dominates L1 and SSIM (both baselines get it right for free), inside the head the
contrast does. :func:`region_metrics` measures a region; :func:`baseline_verdicts` says, for
each (comparison, metric), which baseline is best and which models beat it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mrihisto_kedro.metrics.image_metrics import masked_l1, masked_ssim

__all__ = ["LOWER_IS_BETTER", "baseline_verdicts", "region_metrics", "verdict_markdown"]

#: metrics where a smaller value is better (the rest: larger is better)
LOWER_IS_BETTER: frozenset[str] = frozenset({"L1", "LPIPS", "FID", "KID", "checkerboard"})


def region_metrics(
    generated: np.ndarray, target: np.ndarray, region: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-slice ``L1`` and ``SSIM`` inside a region (e.g. the head).

    Args:
        generated, target: ``(N, H, W)`` float in [0, 1].
        region: ``(N, H, W)`` bool, the pixels measured (SSIM: window centres in the region).

    Returns:
        ``{"L1": (N,), "SSIM": (N,)}`` float64; ``nan`` for a slice whose region is empty.
    """
    if not generated.shape == target.shape == region.shape or generated.ndim != 3:
        raise ValueError(
            f"generated, target and region must share one (N, H, W) shape, got "
            f"{generated.shape}, {target.shape}, {region.shape}"
        )
    triples = list(zip(generated, target, region, strict=True))
    return {
        "L1": np.array([masked_l1(g, t, m, data_range=1.0) for g, t, m in triples]),
        "SSIM": np.array([masked_ssim(g, t, m, data_range=1.0) for g, t, m in triples]),
    }


def baseline_verdicts(
    table: pd.DataFrame,
    baselines: Sequence[str],
    models: Sequence[str],
    checks: Sequence[tuple[str, str]],
) -> pd.DataFrame:
    """For each ``(comparison, metric)``: the best baseline and whether each model beats it.

    Args:
        table: a long metric table (``experiment, comparison, metric, value``, one split).
        baselines: experiments that are trivial baselines (e.g. ``identity_t1``).
        models: experiments that must beat them (those absent or without a value are skipped).
        checks: the ``(comparison, metric)`` pairs to judge.

    Returns:
        One row per (check, model): ``comparison, metric, baseline, baseline_value, model,
        value, beats`` (bool; strictly better than the best baseline).
    """
    values = table.dropna(subset=["value"]).set_index(["experiment", "comparison", "metric"])[
        "value"
    ]
    rows = []
    for comparison, metric in checks:
        lower = metric in LOWER_IS_BETTER
        known = {
            b: float(values[(b, comparison, metric)])
            for b in baselines
            if (b, comparison, metric) in values.index
        }
        if not known:
            continue
        best = (min if lower else max)(known, key=known.__getitem__)
        for model in models:
            if (model, comparison, metric) not in values.index:
                continue
            value = float(values[(model, comparison, metric)])
            beats = value < known[best] if lower else value > known[best]
            rows.append(
                {
                    "comparison": comparison,
                    "metric": metric,
                    "baseline": best,
                    "baseline_value": known[best],
                    "model": model,
                    "value": value,
                    "beats": bool(beats),
                }
            )
    columns = ["comparison", "metric", "baseline", "baseline_value", "model", "value", "beats"]
    return pd.DataFrame(rows, columns=columns)


def verdict_markdown(verdicts: pd.DataFrame) -> str:
    """The verdicts as markdown: one line per (comparison, metric), winners and losers named."""
    if verdicts.empty:
        return ""
    lines = ["## Against the trivial baselines", ""]
    for (comparison, metric), group in verdicts.groupby(["comparison", "metric"], sort=False):
        first = group.iloc[0]
        won = [f"{r.model} ({r.value:.3f})" for r in group.itertuples() if r.beats]
        lost = [f"{r.model} ({r.value:.3f})" for r in group.itertuples() if not r.beats]
        line = (
            f"- {metric}, {comparison}: the best baseline is {first.baseline} "
            f"({first.baseline_value:.3f}); beaten by {', '.join(won) or 'no model'}"
        )
        if lost:
            line += f"; not beaten by {', '.join(lost)}"
        lines.append(line)
    return "\n".join(lines) + "\n"
