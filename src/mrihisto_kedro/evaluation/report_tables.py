"""The report tables built from every evaluated experiment's rows (``data/08_reporting``).

- Table 1 of paper 000: every experiment of the default run, every split, comparison and metric;
- the baseline table: pix2pix ``tiles_256`` against the U-Net regression ``unet_baseline`` on the
  MRI tiles (MI and SSIM of generated vs real histology, train and test);
- paper 003's MSI table: pix2pix with black and with white padding against the U-Net (test
  split, MI, SSIM and LPIPS), with the paper's claim and the measured direction under it;
- paper 003's own design (pipeline ``msi_whole_specimen``): pix2pix trained on whole specimen
  views against the patch-trained U-Net applied to them, with that design's claim.

Which experiments each table holds comes from the registry (:mod:`mrihisto_kedro.experiments`).
Rows are in the long format of :data:`~mrihisto_kedro.evaluation.table.TABLE_COLUMNS`. No Kedro
imports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from mrihisto_kedro.evaluation.paper003 import PAPER_CLAIM, WHOLE_DESIGN_CLAIM, claim_lines
from mrihisto_kedro.evaluation.table import TABLE_COLUMNS, render_markdown
from mrihisto_kedro.experiments import Pipeline, Table, experiments

__all__ = [
    "BASELINE_TABLE_EXPERIMENTS",
    "MSI_METRICS",
    "MSI_TABLE_EXPERIMENTS",
    "WHOLE_TABLE_EXPERIMENTS",
    "ReportTables",
    "claimed_table",
    "concat_rows",
    "generated_vs_target",
    "report_tables",
    "whole_design_table",
]

#: paper 003's table: pix2pix (black padding), pix2pix (white padding), the U-Net regression
MSI_TABLE_EXPERIMENTS: tuple[str, ...] = tuple(e.name for e in experiments(table=Table.MSI))

#: paper 003's own design: pix2pix trained on whole specimen views, and the patch-trained
#: U-Net (``msi_unet``) evaluated on the same views
WHOLE_TABLE_EXPERIMENTS: tuple[str, ...] = tuple(
    e.name for e in experiments(pipeline=None, table=Table.MSI_WHOLE)
)
#: the pix2pix-vs-U-Net table on the MRI tiles
BASELINE_TABLE_EXPERIMENTS: tuple[str, ...] = tuple(
    e.name for e in experiments(table=Table.BASELINE)
)

#: the metrics of paper 003's tables (LPIPS added: it tells texture from a conditional mean)
MSI_METRICS: tuple[str, ...] = ("MI", "SSIM", "LPIPS")

#: the U-Net of the whole-specimen design (the registry's entry that measures another's model)
_WHOLE_UNET: tuple[str, ...] = tuple(
    e.name
    for e in experiments(pipeline=Pipeline.MSI_WHOLE_SPECIMEN, table=Table.MSI_WHOLE)
    if not e.trains
)


def concat_rows(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The experiments' rows in one frame, columns :data:`TABLE_COLUMNS` in order."""
    return pd.concat(list(tables), ignore_index=True).reindex(columns=list(TABLE_COLUMNS))


def generated_vs_target(
    table: pd.DataFrame,
    experiments: tuple[str, ...],
    splits: tuple[str, ...],
    metrics: tuple[str, ...] = ("MI", "SSIM"),
) -> pd.DataFrame:
    """The ``metrics`` rows of generated vs real histology of ``experiments`` in ``splits``
    (empty unless every one of ``experiments`` is in ``table``)."""
    rows = table[
        table["experiment"].isin(experiments)
        & table["split"].isin(splits)
        & table["metric"].isin(list(metrics))
        & (table["comparison"] == "generated_vs_histology")
    ].reset_index(drop=True)
    if not set(experiments) <= set(table["experiment"]):
        return rows.iloc[0:0]
    return rows


def claimed_table(
    table: pd.DataFrame,
    experiments: tuple[str, ...],
    title: str,
    *,
    pix2pix: tuple[str, ...] = ("msi_to_he_black", "msi_to_he_white"),
    unet: str = "msi_unet",
    claim: str = PAPER_CLAIM,
) -> tuple[pd.DataFrame, str]:
    """The test-split MI/SSIM/LPIPS rows of ``experiments``, rendered, with paper 003's claim
    and the measured direction under them (``pix2pix``, ``unet``, ``claim``:
    :func:`~mrihisto_kedro.evaluation.paper003.claim_lines`)."""
    rows = generated_vs_target(table, experiments, ("test",), MSI_METRICS)
    markdown = render_markdown(rows, title)
    lines = claim_lines(rows, pix2pix=pix2pix, unet=unet, claim=claim)
    if lines:
        markdown += "\n## Paper 003's claim and what was measured\n\n" + "\n".join(lines) + "\n"
    return rows, markdown


@dataclass(frozen=True)
class ReportTables:
    """The tables of the default run, each with its markdown.

    Attributes:
        metrics, metrics_md: Table 1 of paper 000, every row of every experiment.
        baseline, baseline_md: pix2pix vs the U-Net regression on the MRI tiles (empty rows
            unless both were evaluated).
        msi, msi_md: paper 003's table on tiles (empty rows unless its three were evaluated).
    """

    metrics: pd.DataFrame
    metrics_md: str
    baseline: pd.DataFrame
    baseline_md: str
    msi: pd.DataFrame
    msi_md: str


def report_tables(tables: Iterable[pd.DataFrame]) -> ReportTables:
    """Table 1, the baseline table and paper 003's MSI table from the experiments' rows."""
    table = concat_rows(tables)
    baseline = generated_vs_target(table, BASELINE_TABLE_EXPERIMENTS, ("train", "test"))
    msi, msi_md = claimed_table(
        table,
        MSI_TABLE_EXPERIMENTS,
        "Paper 003: MSI -> H&E, pix2pix (black / white padding) vs U-Net, test split",
    )
    return ReportTables(
        metrics=table,
        metrics_md=render_markdown(
            table, "Table 1: generated vs real histology and vs MRI, per experiment and split"
        ),
        baseline=baseline,
        baseline_md=render_markdown(
            baseline, "pix2pix vs U-Net regression (paper 003): MI and SSIM"
        ),
        msi=msi,
        msi_md=msi_md,
    )


def whole_design_table(tables: Iterable[pd.DataFrame]) -> tuple[pd.DataFrame, str]:
    """Paper 003's own design: MI, SSIM and LPIPS of the test split for
    :data:`WHOLE_TABLE_EXPERIMENTS`, and its markdown with the design's claim."""
    return claimed_table(
        concat_rows(tables),
        WHOLE_TABLE_EXPERIMENTS,
        "Paper 003's own design: whole specimen views (glass and padding included), pix2pix "
        "trained on them vs the patch-trained U-Net applied to them, test split",
        pix2pix=WHOLE_TABLE_EXPERIMENTS[:1],
        unet=_WHOLE_UNET[0],
        claim=WHOLE_DESIGN_CLAIM,
    )
