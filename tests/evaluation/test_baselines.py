"""Trained models against trivial baselines: region metrics and the per-metric verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mrihisto_kedro.evaluation.baselines import (
    baseline_verdicts,
    region_metrics,
    verdict_markdown,
)
from mrihisto_kedro.metrics.image_metrics import masked_l1, masked_ssim


def _row(experiment: str, comparison: str, metric: str, value: float) -> dict[str, object]:
    return {"experiment": experiment, "comparison": comparison, "metric": metric, "value": value}


def test_verdicts_name_the_best_baseline_per_metric_and_who_beats_it() -> None:
    table = pd.DataFrame(
        [
            # whole slice: the background makes identity the better baseline on SSIM
            _row("identity", "whole", "SSIM", 0.83),
            _row("inverted", "whole", "SSIM", 0.26),
            _row("model_a", "whole", "SSIM", 0.77),
            _row("model_b", "whole", "SSIM", 0.85),
            # inside the head, L1 (lower is better): inversion wins
            _row("identity", "head", "L1", 0.40),
            _row("inverted", "head", "L1", 0.20),
            _row("model_a", "head", "L1", 0.10),
            _row("model_b", "head", "L1", 0.25),
            _row("model_c", "head", "L1", math.nan),  # not produced: skipped
        ]
    )
    v = baseline_verdicts(
        table,
        ["identity", "inverted"],
        ["model_a", "model_b", "model_c", "absent"],
        [("whole", "SSIM"), ("head", "L1"), ("head", "SSIM")],
    )
    got = {(r.comparison, r.model): (r.baseline, r.beats) for r in v.itertuples()}
    assert got == {
        ("whole", "model_a"): ("identity", False),
        ("whole", "model_b"): ("identity", True),
        ("head", "model_a"): ("inverted", True),
        ("head", "model_b"): ("inverted", False),
    }
    text = verdict_markdown(v)
    assert (
        "- SSIM, whole: the best baseline is identity (0.830); beaten by model_b (0.850); "
        "not beaten by model_a (0.770)" in text
    )
    assert "- L1, head: the best baseline is inverted (0.200); beaten by model_a (0.100)" in text
    assert verdict_markdown(v.iloc[0:0]) == ""


def test_region_metrics_are_the_masked_metrics_per_slice() -> None:
    rng = np.random.default_rng(0)
    target = rng.random((3, 32, 32))
    generated = np.clip(target + rng.normal(0, 0.1, target.shape), 0, 1)
    region = np.zeros(target.shape, bool)
    region[:, 8:24, 8:24] = True
    region[2] = False  # an empty region: nan, not 0
    out = region_metrics(generated, target, region)
    for i in range(2):
        assert out["L1"][i] == pytest.approx(
            masked_l1(generated[i], target[i], region[i], data_range=1.0)
        )
        assert out["SSIM"][i] == pytest.approx(
            masked_ssim(generated[i], target[i], region[i], data_range=1.0)
        )
    assert math.isnan(out["L1"][2]) and math.isnan(out["SSIM"][2])
    # the background is excluded: identical outside the region changes nothing
    outside = generated.copy()
    outside[~region] = target[~region]
    np.testing.assert_allclose(region_metrics(outside, target, region)["L1"][:2], out["L1"][:2])
    with pytest.raises(ValueError, match="share one"):
        region_metrics(generated, target, region[:, :16])
