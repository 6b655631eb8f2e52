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


def test_the_whole_design_table_states_its_own_claim_and_the_tile_table_is_unchanged() -> None:
    """``whole_design_table`` (pipeline ``msi_whole_specimen``): pix2pix trained on whole views
    vs the patch-trained U-Net applied to them; ``report_tables`` ignores those rows."""
    from mrihisto_kedro.evaluation.paper003 import WHOLE_DESIGN_CLAIM
    from mrihisto_kedro.evaluation.report_tables import report_tables, whole_design_table

    values = {
        (e, m): v
        for e, base in (("msi_to_he_black", 0.2), ("msi_to_he_white", 0.21), ("msi_unet", 0.3))
        for m, v in (("MI", base), ("SSIM", base + 0.1), ("LPIPS", 0.5 - base))
    }
    tiles = _rows(values).assign(ci_low=0.0, ci_high=1.0, n_tiles=82, n_slides=2, note="")
    whole = _rows(
        {
            ("msi_to_he_whole", "MI"): 0.259,
            ("msi_unet_whole", "MI"): 0.290,
            ("msi_to_he_whole", "SSIM"): 0.262,
            ("msi_unet_whole", "SSIM"): 0.318,
            ("msi_to_he_whole", "LPIPS"): 0.592,
            ("msi_unet_whole", "LPIPS"): 0.603,
        }
    ).assign(ci_low=0.0, ci_high=1.0, n_tiles=2, n_slides=2, note="")
    tables = report_tables([tiles, whole])
    msi_table, msi_md = tables.msi, tables.msi_md
    assert set(msi_table["experiment"]) == {"msi_to_he_black", "msi_to_he_white", "msi_unet"}
    assert "whole" not in msi_md
    table, markdown = whole_design_table([whole])
    assert set(table["experiment"]) == {"msi_to_he_whole", "msi_unet_whole"}
    assert markdown.startswith("# Paper 003's own design: whole specimen views")
    assert "| msi_to_he_whole / test | msi_unet_whole / test |" in markdown
    assert f"- {WHOLE_DESIGN_CLAIM}" in markdown
    assert "MI (higher is better) pix2pix 0.259 vs U-Net 0.290: the U-Net is better" in markdown
    assert "LPIPS (lower is better) pix2pix 0.592 vs U-Net 0.603: pix2pix is better" in markdown
    # one of the two not evaluated: no table, no claim
    table, markdown = whole_design_table([whole[whole["experiment"] == "msi_to_he_whole"]])
    assert table.empty and "No experiment was evaluated" in markdown
