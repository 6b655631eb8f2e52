"""Thin nodes of the missing_sequences pipeline (seed 002 on the ICBM152 T1/T2 pair).

The library code is :mod:`mrihisto_kedro.evaluation.sequences`; these nodes parse parameters,
load networks, log to MLflow and hand outputs to the catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from mrihisto_kedro.evaluation.backends import load_backends
from mrihisto_kedro.evaluation.baselines import verdict_markdown
from mrihisto_kedro.evaluation.sequences import (
    Method,
    SequenceTableParams,
    SynthesisParams,
    example_figure,
    refinement_markdown,
    sequence_table,
    split_slices,
    style_reference,
    synthesis_from_tileset,
    synthesis_to_tileset,
    synthesise,
    train_sequence_dcgan,
    verdicts,
)
from mrihisto_kedro.evaluation.table import render_markdown
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.dcgan import DCGAN, DCGANConfig
from mrihisto_kedro.nn.device import Precision, numerics_report, select_device
from mrihisto_kedro.nn.style_transfer import WeightsUnavailable, vgg_features
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.tracking.mlflow_tracking import log_numerics, training_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DCGANTrainingParams:
    """``missing_sequences.dcgan``.

    Attributes:
        split: the slices it learns from (``train``: the T2 of the training slices).
        model: :class:`~mrihisto_kedro.nn.dcgan.DCGANConfig` keys (``image_size`` 64 or 128:
            the slices are resized to it; ``epochs``, ``batch_size``, ``lr``, ``lr_D``, ...).
    """

    split: str = "train"
    model: dict[str, Any] = field(default_factory=dict)


def train_sequence_dcgan_node(
    tileset: TileSet, dcgan: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train the DCGAN on the T2 slices of the training split (an MLflow run).

    Returns:
        ``(state, history)``: :meth:`~mrihisto_kedro.nn.dcgan.DCGAN.state_dict` plus
        ``training_split`` (loads with ``weights_only=True``) and one row per epoch (losses,
        D outputs, ``seconds`` since the start).
    """
    p = parse_params(DCGANTrainingParams, dcgan, "missing_sequences.dcgan")
    try:
        config = DCGANConfig.from_dict(p.model)
    except ValueError as exc:
        raise ValueError(f"missing_sequences.dcgan.model: {exc}") from exc
    slices = split_slices(tileset, p.split)
    params = {"model": config.to_dict(), "split": p.split, "n_images": len(slices)}
    with training_run("missing_sequences-dcgan", params, {"experiment": "missing_sequences"}):
        # the DCGAN trains in fp32 (no autocast) on its configured device
        log_numerics(numerics_report(select_device(config.device), Precision.FP32, False))

        def log_epoch(epoch: int, means: Mapping[str, float], model: DCGAN) -> None:
            mlflow.log_metrics({k: float(v) for k, v in means.items()}, step=epoch + 1)

        model, history = train_sequence_dcgan(slices.t2, config, log_epoch)
        seconds = float(history["seconds"].iloc[-1]) if len(history) else 0.0
        mlflow.log_metric("seconds", seconds)
    logger.info(
        "DCGAN: %d %s T2 slices at %d px, %d epochs in %.1f s",
        len(slices),
        p.split,
        config.image_size,
        config.epochs,
        seconds,
    )
    return {**model.state_dict(), "training_split": p.split}, history


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
        column; :func:`~mrihisto_kedro.evaluation.sequences.synthesis_to_tileset`) and the
        refinement objective per method and step.
    """
    p = parse_params(SynthesisParams, synthesis, "missing_sequences.synthesis")
    slices = split_slices(tileset, p.split)
    device = select_device(p.device)
    dcgan = DCGAN.from_state_dict(dcgan_state, device=str(device))
    features = style = None
    reason: str | None = None
    r = p.refinement
    if not r.enabled:
        reason = "refinement disabled (missing_sequences.synthesis.refinement.enabled: false)"
    else:
        try:
            features = vgg_features(r.vgg, r.pooling, device, weights_path=r.weights_path)
        except WeightsUnavailable as exc:
            reason = str(exc)
            logger.warning("style refinement reported as missing: %s", reason)
        style, style_index = style_reference(tileset, r)
        logger.info("style reference: %s slice %d", r.style_split, style_index)
    result = synthesise(
        slices,
        {Method.PIX2PIX: pix2pix_generator, Method.CYCLEGAN: cyclegan_generator},
        dcgan,
        p,
        style=style,
        features=features,
        missing_reason=reason,
    )
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
    slices = split_slices(tileset, s.split)
    result = synthesis_from_tileset(synthetic, slices, refinement_history)
    dcgan = DCGAN.from_state_dict(dcgan_state, device=str(select_device(p.device)))
    backends = load_backends(p.weights, device=p.device)
    train = split_slices(tileset, str(dcgan_state.get("training_split", "train")))
    rows = sequence_table(result, dcgan, backends, p, train_t2=train.t2, head_level=s.head_level)
    title = (
        f"Missing sequences (seed 002): synthetic vs real T2 on the {s.split} slices of "
        f"ICBM152 ({len(slices)} slices)"
    )
    markdown = "\n".join(
        (
            render_markdown(rows, title),
            verdict_markdown(verdicts(rows)),
            refinement_markdown(refinement_history),
        )
    )
    figure = example_figure(result, p.n_figure_slices, title)
    return rows, markdown, figure
