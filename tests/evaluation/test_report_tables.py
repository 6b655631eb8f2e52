"""The report tables hold the experiments the registry assigns them."""

from __future__ import annotations

import pandas as pd

from mrihisto_kedro.evaluation import report_tables as rt
from mrihisto_kedro.evaluation.table import TABLE_COLUMNS


def test_the_tables_experiments_come_from_the_registry() -> None:
    assert rt.MSI_TABLE_EXPERIMENTS == ("msi_to_he_black", "msi_to_he_white", "msi_unet")
    assert rt.WHOLE_TABLE_EXPERIMENTS == ("msi_to_he_whole", "msi_unet_whole")
    assert rt.BASELINE_TABLE_EXPERIMENTS == ("tiles_256", "unet_baseline")


def test_rows_of_generated_vs_target_need_every_experiment() -> None:
    rows = pd.DataFrame(
        {
            "experiment": ["a", "a", "b", "b"],
            "split": ["test", "train", "test", "test"],
            "comparison": ["generated_vs_histology"] * 3 + ["histology_vs_mri"],
            "metric": ["MI", "MI", "SSIM", "MI"],
            "value": [1.0, 2.0, 3.0, 4.0],
        }
    )
    table = rt.concat_rows([rows])
    assert list(table.columns) == list(TABLE_COLUMNS)
    picked = rt.generated_vs_target(table, ("a", "b"), ("test",))
    assert picked["value"].tolist() == [1.0, 3.0]  # not train, not histology_vs_mri
    assert rt.generated_vs_target(table, ("a", "c"), ("test",)).empty
