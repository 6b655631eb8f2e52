"""Seed 002's missing-sequence table: every method's metrics in the evaluation's long format.

Rows follow :data:`~mrihisto_kedro.evaluation.table.TABLE_COLUMNS` (``experiment`` = method,
``split`` = ``test``):

- per-slice ``L1``, ``PSNR``, ``SSIM``, ``MI`` (and ``LPIPS`` when its weights are present)
  against the real T2 of the same test slice (``generated_vs_t2``; MI also against the input,
  ``generated_vs_t1``, and the real pair ``t2_vs_t1``), mean with a bootstrap interval over
  slices. For ``dcgan`` and ``dcgan+style`` they are *not applicable* (no paired target) and
  reported as such;
- per-slice ``L1`` and ``SSIM`` inside the head only (``generated_vs_t2_in_head``;
  :func:`~mrihisto_kedro.sequences.slices.head_mask` of the real T1), where the contrast is and
  the background is not; :func:`verdicts` then names, per metric and region, the better trivial
  baseline and the models that beat it;
- ``FID`` and ``KID`` of the method's slices against the real test T2 slices (Inception pool3;
  far below 2048 samples, so biased: the note says so);
- ``checkerboard``: each slice's spectral power near the Nyquist frequency as a multiple of the
  real T2 slices' (:func:`~mrihisto_kedro.metrics.spectral.nyquist_fraction`; 1 = as real);
- ``D_accuracy``: the trained DCGAN discriminator's accuracy on the held-out real test T2 slices
  (label real) and the method's slices (label fake), pooled, and ``D_fake_detected``: the
  fraction of the method's slices called fake. Seed 002's "accuracy" of 87-96 % is most
  plausibly this quantity (it reports no other classifier). Lower means harder to tell from
  real T2 (0.5 = chance with equal counts); note the real side is constant across methods.

No Kedro imports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrihisto_kedro.evaluation.baselines import baseline_verdicts, region_metrics
from mrihisto_kedro.evaluation.table import (
    TABLE_COLUMNS,
    missing_rows,
    summarise_sets,
    summarise_tiles,
)
from mrihisto_kedro.evaluation.tiles import EvaluatedSplit, FeatureBackends, tile_metrics, to_rgb
from mrihisto_kedro.metrics.spectral import NYQUIST_BAND, nyquist_fraction
from mrihisto_kedro.nn.dcgan import DCGAN
from mrihisto_kedro.sequences.dcgan_training import discriminator_probabilities
from mrihisto_kedro.sequences.methods import TARGET, Method, base_method, is_paired, method_order
from mrihisto_kedro.sequences.params import SequenceTableParams
from mrihisto_kedro.sequences.slices import SequenceSlices, head_mask
from mrihisto_kedro.sequences.synthesis import Synthesis

__all__ = [
    "CHECKERBOARD_NOTE",
    "D_METRICS",
    "GEN_VS_TARGET",
    "IN_HEAD",
    "PAIRED_METRICS",
    "sequence_table",
    "verdicts",
]

GEN_VS_TARGET = f"generated_vs_{TARGET}"
#: the same comparison inside the head (:func:`~mrihisto_kedro.sequences.slices.head_mask` of T1)
IN_HEAD = f"{GEN_VS_TARGET}_in_head"
PAIRED_METRICS: tuple[str, ...] = ("L1", "PSNR", "SSIM", "MI")
D_METRICS: tuple[str, ...] = ("D_accuracy", "D_fake_detected")
CHECKERBOARD_NOTE = (
    f"checkerboard: the slice's power within {NYQUIST_BAND} cycles/px of the Nyquist frequency, "
    "as a multiple of the real test T2 slices' mean (1 = as real; lower is better; "
    "transposed convolutions print a 2-px pattern: mrihisto_kedro.metrics.spectral)"
)
_NOT_APPLICABLE = "not applicable: the unconditional DCGAN's samples have no paired real T2 slice"
_UNPAIRED_SETS = "DCGAN samples are unpaired: the bootstrap resamples sample i with real slice i"


@dataclass(frozen=True)
class _RealSide:
    """What every method is compared with, computed once per table.

    Attributes:
        split: the split's name; slide_ids: ``(N,)`` ``pair_id`` of each slice.
        features: Inception features ``(N, 2048)`` of the real T2 slices (``None``: no weights).
        called_real: ``(N,)`` 1.0 where the discriminator calls a real T2 slice real, else 0.0.
        d_note: the ``D_accuracy`` note.
        head: ``(N, H, W)`` bool head mask of the real T1.
        nyquist: the real T2 slices' mean Nyquist-band power fraction.
    """

    split: str
    slide_ids: np.ndarray
    features: np.ndarray | None
    called_real: np.ndarray
    d_note: str
    head: np.ndarray
    nyquist: float


def _rows(method: str, split: str, metrics: Sequence[str], note: str, n: int) -> pd.DataFrame:
    """Rows without values (missing or not applicable), one per metric."""
    return pd.DataFrame(
        [
            {
                "experiment": method,
                "split": split,
                "comparison": GEN_VS_TARGET,
                "metric": metric,
                "value": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "n_tiles": n,
                "n_slides": n,
                "note": note,
            }
            for metric in metrics
        ],
        columns=list(TABLE_COLUMNS),
    )


def _features(backends: FeatureBackends, images: np.ndarray, batch: int) -> np.ndarray:
    """Inception features ``(N, D)`` float64 of ``(N, H, W)`` slices, ``batch`` at a time."""
    rgb = to_rgb(images[..., None])
    assert backends.inception is not None
    chunks = [backends.inception(rgb[i : i + batch]) for i in range(0, len(rgb), batch)]
    return np.concatenate(chunks).astype(np.float64)


def _per_slice(
    slide_ids: np.ndarray, split: str, comparison: str, values: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """Long per-slice rows (``pair_id, split, comparison, metric, value``) for summarising."""
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "pair_id": slide_ids,
                    "split": split,
                    "comparison": comparison,
                    "metric": metric,
                    "value": vals,
                }
            )
            for metric, vals in values.items()
        ],
        ignore_index=True,
    )


def _d_note(
    real_as_real: float, n: int, params: SequenceTableParams, train_as_real: float | None
) -> str:
    note = (
        f"DCGAN discriminator ({params.discriminator_norm.value} batch-norm statistics, "
        f"threshold {params.threshold}) on {n} held-out real test T2 slices (label real) and "
        f"the method's {n} slices (label fake), pooled; the most plausible reading of seed "
        f"002's 'accuracy'. 0.5 = chance, lower = harder to tell from real T2. Held-out real "
        f"T2 called real: {real_as_real:.2f} (the same for every method)"
    )
    if train_as_real is not None:
        note += f"; its own training T2 slices called real: {train_as_real:.2f}"
    return note


def _real_side(
    slices: SequenceSlices,
    dcgan: DCGAN,
    backends: FeatureBackends,
    params: SequenceTableParams,
    train_t2: np.ndarray | None,
    head_level: float,
) -> _RealSide:
    p_real = discriminator_probabilities(dcgan, slices.t2, params.discriminator_norm)
    called_real = (p_real > params.threshold).astype(float)
    train_as_real = None
    if train_t2 is not None and len(train_t2):
        p_train = discriminator_probabilities(dcgan, train_t2, params.discriminator_norm)
        train_as_real = float((p_train > params.threshold).mean())
    return _RealSide(
        split=str(slices.manifest["split"].iloc[0]),
        slide_ids=slices.manifest["pair_id"].astype(str).to_numpy(),
        features=(
            _features(backends, slices.t2, params.batch_size) if backends.inception else None
        ),
        called_real=called_real,
        d_note=_d_note(float(called_real.mean()), len(slices), params, train_as_real),
        head=head_mask(slices.t1, head_level),
        nyquist=float(nyquist_fraction(slices.t2).mean()),
    )


def _paired_frames(
    method: str,
    generated: np.ndarray,
    slices: SequenceSlices,
    real: _RealSide,
    backends: FeatureBackends,
    params: SequenceTableParams,
    head_level: float,
) -> list[pd.DataFrame]:
    """Per-slice metrics against the real T2 of the same slice, whole and inside the head."""
    data = EvaluatedSplit(
        split=real.split,
        manifest=slices.manifest,
        a=slices.t1[..., None],
        b=slices.t2[..., None],
        generated=generated[..., None],
    )
    per_tile = tile_metrics(data, params.tile_params(), backends)
    whole = summarise_tiles(
        per_tile, method, mi_bins=params.mi_bins, mi_base=params.mi_base, **params.bootstrap
    )
    in_head = _per_slice(
        real.slide_ids, real.split, IN_HEAD, region_metrics(generated, slices.t2, real.head)
    )
    head_rows = summarise_tiles(in_head, method, **params.bootstrap)
    head_rows["note"] = f"inside the head (T1 > {head_level:g}, holes filled)"
    return [whole, head_rows]


def _set_frames(
    method: str,
    generated: np.ndarray,
    real: _RealSide,
    backends: FeatureBackends,
    params: SequenceTableParams,
) -> list[pd.DataFrame]:
    """FID and KID against the real T2 slices, and rows for the metrics without weights."""
    frames: list[pd.DataFrame] = []
    n = len(real.slide_ids)
    if real.features is not None:
        frames.append(
            summarise_sets(
                {"g": _features(backends, generated, params.batch_size), "b": real.features},
                real.slide_ids,
                [(GEN_VS_TARGET, "g", "b")],
                method,
                real.split,
                kid_subset_size=params.kid_subset_size,
                kid_subsets=params.kid_subsets,
                **params.bootstrap,
            )
        )
    missing = {k: v for k, v in backends.missing.items() if k in ("FID", "KID", "LPIPS")}
    if not is_paired(method):
        missing.pop("LPIPS", None)
    if missing:
        frames.append(missing_rows(method, real.split, [GEN_VS_TARGET], missing, n, n))
    return frames


def _discriminator_frame(
    method: str,
    generated: np.ndarray,
    real: _RealSide,
    dcgan: DCGAN,
    params: SequenceTableParams,
) -> pd.DataFrame:
    """``D_accuracy``, ``D_fake_detected`` and ``checkerboard`` of one method's slices."""
    fake_correct = (
        discriminator_probabilities(dcgan, generated, params.discriminator_norm) <= params.threshold
    ).astype(float)
    values = {
        "D_accuracy": (real.called_real + fake_correct) / 2.0,
        "D_fake_detected": fake_correct,
    }
    per_slice = _per_slice(real.slide_ids, real.split, GEN_VS_TARGET, values)
    if real.nyquist > 0:
        checker = {"checkerboard": nyquist_fraction(generated) / real.nyquist}
        per_slice = pd.concat(
            [per_slice, _per_slice(real.slide_ids, real.split, GEN_VS_TARGET, checker)],
            ignore_index=True,
        )
    rows = summarise_tiles(per_slice, method, **params.bootstrap)
    rows["note"] = rows["metric"].map(
        {
            "D_accuracy": real.d_note,
            "D_fake_detected": "fraction of the method's slices called fake",
            "checkerboard": CHECKERBOARD_NOTE,
        }
    )
    return rows


def _ordered(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Frames joined in :func:`method_order`; the DCGAN's FID/KID rows say they are unpaired."""
    table = pd.concat(frames, ignore_index=True).reindex(columns=list(TABLE_COLUMNS))
    order = {m: i for i, m in enumerate(method_order())}
    table = table.sort_values("experiment", key=lambda s: s.map(order), kind="stable").reset_index(
        drop=True
    )
    unpaired = (
        table["experiment"].map(lambda m: not is_paired(m))
        & table["metric"].isin(("FID", "KID"))
        & table["value"].notna()
    )
    table.loc[unpaired, "note"] = table.loc[unpaired, "note"].map(
        lambda s: (s + "; " if s else "") + _UNPAIRED_SETS
    )
    return table


def sequence_table(
    synthesis: Synthesis,
    dcgan: DCGAN,
    backends: FeatureBackends,
    params: SequenceTableParams,
    train_t2: np.ndarray | None = None,
    head_level: float = 0.1,
) -> pd.DataFrame:
    """The metric table of every method (long format, see the module docstring).

    Args:
        synthesis: the slices of every method and the split's real slices.
        dcgan: the trained DCGAN (its discriminator gives ``D_accuracy``).
        backends: Inception / LPIPS networks, or why they are missing
            (:func:`mrihisto_kedro.evaluation.backends.load_backends`).
        params: options.
        train_t2: the DCGAN's training slices ``(M, H, W)``; when given, the fraction of them
            its discriminator calls real is printed in the ``D_accuracy`` note (a reference:
            held-out slices hold other anatomy than the training slices).
        head_level: T1 level of :func:`~mrihisto_kedro.sequences.slices.head_mask` (image
            units) for the in-head rows.

    Returns:
        Rows in :data:`~mrihisto_kedro.evaluation.table.TABLE_COLUMNS` order, methods in
        :func:`~mrihisto_kedro.sequences.methods.method_order` order; methods that could not be
        produced have every metric ``missing: <reason>``.
    """
    slices = synthesis.slices
    real = _real_side(slices, dcgan, backends, params, train_t2, head_level)
    frames: list[pd.DataFrame] = []
    for method in method_order():
        if method not in synthesis.outputs:
            reason = synthesis.missing.get(method, "not produced")
            metrics = (*PAIRED_METRICS, "FID", "KID", *D_METRICS)
            frames.append(_rows(method, real.split, metrics, f"missing: {reason}", len(slices)))
            continue
        generated = synthesis.outputs[method]
        if is_paired(method):
            frames += _paired_frames(method, generated, slices, real, backends, params, head_level)
        else:
            metrics = (*PAIRED_METRICS, "LPIPS") if backends.lpips else PAIRED_METRICS
            frames.append(_rows(method, real.split, metrics, _NOT_APPLICABLE, len(slices)))
        frames += _set_frames(method, generated, real, backends, params)
        frames.append(_discriminator_frame(method, generated, real, dcgan, params))
    return _ordered(frames)


def verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Which trivial baseline is best per metric, whole slice and inside the head, and which
    T1 -> T2 methods beat it (:func:`~mrihisto_kedro.evaluation.baselines.baseline_verdicts`)."""
    trained = [m for m in method_order() if base_method(m) in (Method.PIX2PIX, Method.CYCLEGAN)]
    checks = [(c, m) for c in (GEN_VS_TARGET, IN_HEAD) for m in ("L1", "SSIM")]
    return baseline_verdicts(
        table, [Method.IDENTITY_T1.value, Method.INVERTED_T1.value], trained, checks
    )
