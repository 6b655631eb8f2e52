"""The missing-sequence report: the table of a stored synthesis, its title and its markdown.

:func:`sequence_report` rebuilds the :class:`~mrihisto_kedro.sequences.synthesis.Synthesis`
stored by the synthesis step, reloads the DCGAN, measures every method
(:func:`~mrihisto_kedro.sequences.table.sequence_table`) and writes the markdown: the table,
the verdicts against the trivial baselines, and the refinement objective. The example figure is
drawn from the returned synthesis (:mod:`mrihisto_kedro.reporting.sequence_figures`).
No Kedro imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mrihisto_kedro.evaluation.backends import load_backends
from mrihisto_kedro.evaluation.baselines import verdict_markdown
from mrihisto_kedro.evaluation.table import render_markdown
from mrihisto_kedro.evaluation.tiles import FeatureBackends
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.dcgan import DCGAN
from mrihisto_kedro.nn.device import select_device
from mrihisto_kedro.sequences.dcgan_training import training_split
from mrihisto_kedro.sequences.params import SequenceTableParams, SynthesisParams
from mrihisto_kedro.sequences.refinement import refinement_markdown
from mrihisto_kedro.sequences.slices import split_slices
from mrihisto_kedro.sequences.synthesis import Synthesis, synthesis_from_tileset
from mrihisto_kedro.sequences.table import sequence_table, verdicts

__all__ = ["SequenceReport", "report_markdown", "report_title", "sequence_report"]


@dataclass(frozen=True)
class SequenceReport:
    """The measured missing-sequence study.

    Attributes:
        table: long-format rows (:func:`~mrihisto_kedro.sequences.table.sequence_table`).
        markdown: the table, the baseline verdicts and the refinement objective.
        title: the report's title (also the example figure's).
        synthesis: every method's slices of the evaluated split (for figures).
    """

    table: pd.DataFrame
    markdown: str
    title: str
    synthesis: Synthesis


def report_title(split: str, n_slices: int) -> str:
    """The title naming the evaluated split and its number of slices."""
    return (
        f"Missing sequences (seed 002): synthetic vs real T2 on the {split} slices of "
        f"ICBM152 ({n_slices} slices)"
    )


def report_markdown(table: pd.DataFrame, refinement_history: pd.DataFrame, title: str) -> str:
    """Markdown: the rendered table, the verdicts against the baselines, the refinement."""
    return "\n".join(
        (
            render_markdown(table, title),
            verdict_markdown(verdicts(table)),
            refinement_markdown(refinement_history),
        )
    )


def sequence_report(
    tileset: TileSet,
    synthetic: TileSet,
    refinement_history: pd.DataFrame,
    dcgan_state: Mapping[str, Any],
    params: SequenceTableParams,
    synthesis: SynthesisParams,
    backends: FeatureBackends | None = None,
) -> SequenceReport:
    """Measure the stored synthesis of ``synthesis.split`` (see the module docstring).

    Args:
        tileset: the ``t1_to_t2`` tile set (real slices).
        synthetic: :func:`~mrihisto_kedro.sequences.synthesis.synthesis_to_tileset`'s output.
        refinement_history: the synthesis step's refinement history.
        dcgan_state: the saved DCGAN (its ``training_split`` slices give the note's reference).
        params: table options; synthesis: the synthesis options (split, head level).
        backends: Inception / LPIPS networks; ``None``: loaded from ``params.weights``.
    """
    slices = split_slices(tileset, synthesis.split)
    result = synthesis_from_tileset(synthetic, slices, refinement_history)
    dcgan = DCGAN.from_state_dict(dcgan_state, device=str(select_device(params.device)))
    if backends is None:
        backends = load_backends(params.weights, device=params.device)
    train = split_slices(tileset, training_split(dcgan_state))
    table = sequence_table(
        result, dcgan, backends, params, train_t2=train.t2, head_level=synthesis.head_level
    )
    title = report_title(synthesis.split, len(slices))
    markdown = report_markdown(table, refinement_history, title)
    return SequenceReport(table=table, markdown=markdown, title=title, synthesis=result)
