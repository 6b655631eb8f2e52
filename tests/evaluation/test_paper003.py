"""Paper 003's claim set against a measured table: each metric's direction, stated as measured."""

from __future__ import annotations

import pandas as pd

from mrihisto_kedro.evaluation.paper003 import PAPER_CLAIM, WHY_IT_DIFFERS, claim_lines


def _rows(values: dict[tuple[str, str], float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "experiment": e,
                "split": "test",
                "comparison": "generated_vs_histology",
                "metric": m,
                "value": v,
            }
            for (e, m), v in values.items()
        ]
    )


def test_claim_lines_state_each_metric_as_measured() -> None:
    table = _rows(
        {
            ("msi_to_he_black", "MI"): 0.26,
            ("msi_to_he_white", "MI"): 0.27,
            ("msi_unet", "MI"): 0.31,
            ("msi_to_he_black", "SSIM"): 0.40,
            ("msi_to_he_white", "SSIM"): 0.30,
            ("msi_unet", "SSIM"): 0.35,
            ("msi_to_he_black", "LPIPS"): 0.14,
            ("msi_to_he_white", "LPIPS"): 0.12,
            ("msi_unet", "LPIPS"): 0.19,
        }
    )
    lines = claim_lines(table)
    assert lines[0] == f"- {PAPER_CLAIM}" and lines[-1] == f"- {WHY_IT_DIFFERS}"
    measured = lines[1]
    assert "MI (higher is better) pix2pix 0.260 / 0.270 vs U-Net 0.310: the U-Net is better" in (
        measured
    )
    assert "SSIM (higher is better) pix2pix 0.400 / 0.300 vs U-Net 0.350: mixed" in measured
    assert "LPIPS (lower is better) pix2pix 0.140 / 0.120 vs U-Net 0.190: pix2pix is better" in (
        measured
    )
    # a metric missing for one model is left out; no compared experiment at all: no lines
    partial = claim_lines(table[~((table.experiment == "msi_unet") & (table.metric == "SSIM"))])
    assert "SSIM" not in partial[1] and "MI (" in partial[1]
    assert claim_lines(table[table.experiment != "msi_unet"]) == []
