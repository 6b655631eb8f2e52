"""Thin nodes of the missing_sequences pipeline (seed 002 on the ICBM152 T1/T2 pair).

The library code is :mod:`mrihisto_kedro.sequences` (the example figure:
:mod:`mrihisto_kedro.reporting.sequence_figures`); these nodes parse parameters, log the DCGAN's
training to MLflow and hand outputs to the catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.checkpoint_store import CheckpointStore
from mrihisto_kedro.nn.dcgan import DCGAN
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.reporting.sequence_figures import example_figure
from mrihisto_kedro.sequences import (
    DCGANTrainingParams,
    Method,
    SequenceTableParams,
    SynthesisParams,
    sequence_report,
    split_slices,
    synthesis_to_tileset,
    synthesise_split,
    train_split_dcgan,
)
from mrihisto_kedro.tracking.mlflow_tracking import (
    log_numerics,
    log_step_metrics,
    log_summary_metrics,
    training_run,
)

__all__ = [
    "DCGANTrainingParams",
    "SequenceTableParams",
    "SynthesisParams",
    "sequence_table_node",
    "synthesise_sequences",
    "train_sequence_dcgan_node",
]

logger = logging.getLogger(__name__)


def _log_epoch(epoch: int, means: Mapping[str, float], model: DCGAN) -> None:
    """One DCGAN epoch's means as MLflow metrics (step = the 1-based epoch)."""
    log_step_metrics(means, epoch + 1)


def train_sequence_dcgan_node(
    tileset: TileSet, dcgan: dict[str, Any], checkpoints: CheckpointStore | None = None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train the DCGAN on the T2 slices of the training split (an MLflow run).

    With ``checkpoints`` (the catalog's ``missing_sequences.dcgan_checkpoints``) every epoch is
    checkpointed and the same run after a kill resumes from the last complete epoch
    (``dcgan.resume: never`` starts again; :func:`~mrihisto_kedro.sequences.train_split_dcgan`).

    Returns:
        ``(state, history)``: :meth:`~mrihisto_kedro.nn.dcgan.DCGAN.state_dict` plus
        ``training_split`` (loads with ``weights_only=True``) and one row per epoch (losses,
        D outputs, ``seconds`` since the start; NaN for epochs resumed from the checkpoint).
    """
    p = parse_params(DCGANTrainingParams, dcgan, "missing_sequences.dcgan")
    slices = split_slices(tileset, p.split)
    run_params = {**p.to_dict(), "n_images": len(slices)}  # split, model, processes, resume
    with training_run("missing_sequences-dcgan", run_params, {"experiment": "missing_sequences"}):
        training = train_split_dcgan(slices, p, _log_epoch, checkpoints)
        log_numerics(training.model.numerics())  # device, resolved precision, memory format
        log_summary_metrics({"seconds": training.seconds, "resumed_epoch": training.resumed_epoch})
    logger.info("DCGAN: %s", training.summary())
    return training.state, training.history


def synthesise_sequences(
    tileset: TileSet,
    pix2pix_generator: dict[str, Any],
    cyclegan_generator: dict[str, Any],
    dcgan_state: dict[str, Any],
    synthesis: dict[str, Any],
) -> tuple[TileSet, pd.DataFrame]:
    """T2 slices of every method for the test split, with and without style refinement.

    Without VGG weights (or with ``refinement.enabled: false``) the ``+style`` methods are
    recorded as missing with the reason and everything else goes on.

    Returns:
        ``(synthetic, refinement_history)``: the synthetic slices as a tile set (``method``
        column; :func:`~mrihisto_kedro.sequences.synthesis.synthesis_to_tileset`) and the
        refinement objective per method and step.
    """
    p = parse_params(SynthesisParams, synthesis, "missing_sequences.synthesis")
    generators = {Method.PIX2PIX: pix2pix_generator, Method.CYCLEGAN: cyclegan_generator}
    result = synthesise_split(tileset, generators, dcgan_state, p)
    return synthesis_to_tileset(result), result.history


def sequence_table_node(
    tileset: TileSet,
    synthetic: TileSet,
    refinement_history: pd.DataFrame,
    dcgan_state: dict[str, Any],
    table: dict[str, Any],
    synthesis: dict[str, Any],
) -> tuple[pd.DataFrame, str, Figure]:
    """The seed-002 table (long format) of every method, its markdown, and example slices."""
    p = parse_params(SequenceTableParams, table, "missing_sequences.table")
    s = parse_params(SynthesisParams, synthesis, "missing_sequences.synthesis")
    report = sequence_report(tileset, synthetic, refinement_history, dcgan_state, p, s)
    figure = example_figure(report.synthesis, p.n_figure_slices, report.title)
    return report.table, report.markdown, figure
