"""Style refinement of generated slices (seed 002) and the record of its objective.

The optimised image starts from the generated slice; content = the input T1 slice (for the
DCGAN, which has no input, the generated slice itself); style = one fixed real T2 slice of the
*training* slab (:func:`style_reference`). The optimisation is Gatys et al.'s
(:func:`mrihisto_kedro.nn.style_transfer.refine`). No Kedro imports.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.style_transfer import (
    StyleTransferParams,
    VGGFeatures,
    WeightsUnavailable,
    refine,
    vgg_features,
)
from mrihisto_kedro.sequences.params import RefinementParams
from mrihisto_kedro.sequences.slices import split_slices

__all__ = [
    "HISTORY_COLUMNS",
    "RefinementSetup",
    "prepare_refinement",
    "refine_outputs",
    "refinement_markdown",
    "refinement_summary",
    "style_reference",
]

logger = logging.getLogger(__name__)

#: columns of a refinement history (``status`` ``missing`` rows have no step values)
HISTORY_COLUMNS: tuple[str, ...] = (
    "method",
    "step",
    "total",
    "content",
    "style",
    "seconds",
    "status",
    "reason",
)


def style_reference(tileset: TileSet, params: RefinementParams) -> tuple[np.ndarray, int]:
    """The fixed real T2 style slice ``(H, W)`` in [0, 1] and its ``slice_index``."""
    source = split_slices(tileset, params.style_split)
    index = source.manifest.get("slice_index")
    if params.style_slice_index is None:
        row = len(source) // 2
    else:
        if index is None:
            raise ValueError("the tile set has no slice_index column; leave style_slice_index null")
        hits = np.flatnonzero(index.to_numpy() == params.style_slice_index)
        if hits.size == 0:
            raise ValueError(
                f"style_slice_index {params.style_slice_index} is not in split "
                f"{params.style_split!r} (slices {int(index.min())}..{int(index.max())})"
            )
        row = int(hits[0])
    slice_index = int(index.iloc[row]) if index is not None else row
    return source.t2[row], slice_index


@dataclass(frozen=True)
class RefinementSetup:
    """What refinement needs, or why it cannot run.

    Attributes:
        features: the VGG trunk (``None`` when disabled or its weights are missing).
        style: the style slice ``(H, W)`` in [0, 1] (``None`` when disabled).
        style_index: its ``slice_index`` (``None`` when disabled).
        missing_reason: why the ``+style`` methods are missing (``None``: they can be made).
    """

    features: VGGFeatures | None
    style: np.ndarray | None
    style_index: int | None
    missing_reason: str | None


def prepare_refinement(
    tileset: TileSet, params: RefinementParams, device: str | torch.device
) -> RefinementSetup:
    """The VGG trunk on ``device`` and the style slice, or why refinement is impossible.

    Disabled (``enabled: false``) or missing VGG weights are not errors: the reason is returned
    (and logged) and the ``+style`` methods are later reported missing with it.
    """
    if not params.enabled:
        disabled = "refinement disabled (missing_sequences.synthesis.refinement.enabled: false)"
        return RefinementSetup(None, None, None, disabled)
    features: VGGFeatures | None = None
    reason: str | None = None
    try:
        features = vgg_features(
            params.vgg, params.pooling, device, weights_path=params.weights_path
        )
    except WeightsUnavailable as exc:
        reason = str(exc)
        logger.warning("style refinement reported as missing: %s", reason)
    style, style_index = style_reference(tileset, params)
    logger.info("style reference: %s slice %d", params.style_split, style_index)
    return RefinementSetup(features, style, style_index, reason)


def refine_outputs(
    images: np.ndarray,
    content: np.ndarray,
    style: np.ndarray,
    params: StyleTransferParams,
    features: VGGFeatures,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Style-refine slices: start ``images``, content ``content`` (both ``(N, H, W)``), style
    ``(H', W')``; all in [0, 1].

    Returns:
        ``(refined (N, H, W) float32 in [0, 1], history)``; ``history`` has one row per iterate
        (``step`` 0 = the start, ``steps`` = the result) with the batch-mean ``total``,
        ``content`` and ``style`` objective terms (:func:`~mrihisto_kedro.nn.style_transfer.refine`)
        and ``seconds`` (total refinement time, s).
    """
    start = time.perf_counter()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    c = torch.from_numpy(np.ascontiguousarray(content, dtype=np.float32))[:, None]
    s = torch.from_numpy(np.ascontiguousarray(style, dtype=np.float32))[None, None]
    refined, history = refine(x.to(features.device), c, s, params, features)
    frame = pd.DataFrame(history)
    frame["seconds"] = time.perf_counter() - start
    return refined[:, 0].cpu().numpy().astype(np.float32), frame


def refinement_summary(history: pd.DataFrame) -> pd.DataFrame:
    """One row per refined method: its objective at the start and at the end.

    Returns:
        ``method, status, steps, total_start, total_end, content_start, content_end,
        style_start, style_end, seconds, reason`` (objective terms unweighted, as
        :func:`~mrihisto_kedro.nn.style_transfer.refine` reports them).
    """
    rows = []
    for method, group in history.groupby("method", sort=False):
        ok = group[group["status"] == "ok"].sort_values("step")
        row: dict[str, Any] = {"method": method, "status": group["status"].iloc[0]}
        if ok.empty:
            row["reason"] = group["reason"].iloc[0]
        else:
            row["steps"] = int(ok["step"].iloc[-1])
            for term in ("total", "content", "style"):
                row[f"{term}_start"] = float(ok[term].iloc[0])
                row[f"{term}_end"] = float(ok[term].iloc[-1])
            row["seconds"] = float(ok["seconds"].iloc[-1])
            row["reason"] = ""
        rows.append(row)
    columns = ["method", "status", "steps"]
    columns += [f"{t}_{e}" for t in ("total", "content", "style") for e in ("start", "end")]
    return pd.DataFrame(rows).reindex(columns=[*columns, "seconds", "reason"])


def refinement_markdown(history: pd.DataFrame) -> str:
    """A markdown section: each refined method's objective before and after refinement."""
    summary = refinement_summary(history)
    lines = [
        "## Style refinement: objective before -> after",
        "",
        "| method | steps | total | content | style | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples():
        if row.status != "ok":
            lines.append(f"| {row.method} | missing: {row.reason} | | | | |")
            continue
        lines.append(
            f"| {row.method} | {row.steps} | {row.total_start:.4g} -> {row.total_end:.4g} | "
            f"{row.content_start:.4g} -> {row.content_end:.4g} | "
            f"{row.style_start:.4g} -> {row.style_end:.4g} | {row.seconds:.1f} |"
        )
    return "\n".join(lines) + "\n"
