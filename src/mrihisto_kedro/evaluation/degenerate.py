"""Degenerate generators: outputs that do not vary like the real images do (issue 16).

A model that collapsed is a defect, not a table row: the demo's ``whole_slide_4096`` drew the
same uniform grey square for every input (test PSNR 9 dB) and its column stood in Table 1 beside
the others. Two spreads of a set of images ``(N, H, W, C)`` in [0, 1] tell such a model from one
that learned (:func:`output_spread`):

* ``within``: the mean over images of the pixel standard deviation inside each image (per
  channel, averaged): about 0 for a constant image, whatever its colour;
* ``between``: the mean absolute difference between the images of different inputs (each image
  against the next one of the set): about 0 for a model that draws one image for every input.

:func:`check_degenerate` compares the generated images' spreads with the real targets' on the
same tiles; a ratio below ``min_ratio`` (a parameter, ``<experiment>.evaluation.min_spread_ratio``,
0.25 by default) flags the experiment, with the numbers, in the log, Table 1 and MLflow.
:func:`baseline_shortfall` flags, the same way, a model whose validation L1 is not below that
of a trivial baseline of its training summary (mean colour; identity and inverted input).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DegeneracyCheck",
    "OutputSpread",
    "baseline_shortfall",
    "check_degenerate",
    "experiment_flags",
    "output_spread",
]

#: the trivial baselines of a training summary, by column prefix (``<prefix>_val_L1``)
TRIVIAL_BASELINES: tuple[tuple[str, str], ...] = (
    ("mean_colour", "the mean training colour everywhere"),
    ("identity", "the input itself"),
    ("inverted", "the intensity-inverted input"),
)


@dataclass(frozen=True)
class OutputSpread:
    """How much a set of images varies.

    Attributes:
        within: mean over images of the per-channel pixel standard deviation, averaged over
            channels (intensity units of [0, 1]).
        between: mean absolute difference between image ``i`` and image ``i + 1`` (the set's
            order, wrapping round); ``nan`` for a single image.
    """

    within: float
    between: float


def output_spread(images: np.ndarray) -> OutputSpread:
    """:class:`OutputSpread` of ``images``, float ``(N, H, W, C)`` in [0, 1].

    Memory: one image at a time beyond the input (float64 reductions per image).
    """
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"expected images (N, H, W, C) with N >= 1, got {images.shape}")
    n = images.shape[0]
    channels = images.shape[-1]
    within = float(  # float64: a float32 std of a constant image is about 1e-5, not 0
        np.mean(
            [images[i].reshape(-1, channels).std(axis=0, dtype=np.float64).mean() for i in range(n)]
        )
    )
    if n < 2:
        return OutputSpread(within, float("nan"))
    between = float(
        np.mean(
            [np.abs(images[i].astype(np.float64) - images[(i + 1) % n]).mean() for i in range(n)]
        )
    )
    return OutputSpread(within, between)


@dataclass(frozen=True)
class DegeneracyCheck:
    """Generated against real spreads on the same tiles, and the verdict.

    Attributes:
        generated: spread of the generated images.
        real: spread of the real targets.
        within_ratio: ``generated.within / real.within``.
        between_ratio: ``generated.between / real.between`` (``nan`` for one tile).
        min_ratio: the threshold below which a ratio flags the model.
        reason: empty when the model passes, else one sentence with the numbers.
    """

    generated: OutputSpread
    real: OutputSpread
    within_ratio: float
    between_ratio: float
    min_ratio: float
    reason: str

    @property
    def degenerate(self) -> bool:
        """Whether either spread ratio is below ``min_ratio``."""
        return bool(self.reason)


def _ratio(generated: float, real: float) -> float:
    if not np.isfinite(generated) or not np.isfinite(real):
        return float("nan")
    return generated / real if real > 0 else float("inf")


def check_degenerate(
    generated: np.ndarray, real: np.ndarray, min_ratio: float = 0.25
) -> DegeneracyCheck:
    """Flag generated images that vary far less than the real ones, inside or between images.

    Args:
        generated: generator outputs ``(N, H, W, C)`` in [0, 1].
        real: the real targets of the same inputs, same shape.
        min_ratio: a spread ratio (generated / real) below this flags the model, in (0, 1].

    Returns:
        The spreads, both ratios and ``reason`` (empty when neither ratio is below).
    """
    if generated.shape != real.shape:
        raise ValueError(f"generated {generated.shape} and real {real.shape} differ in shape")
    if not 0 < min_ratio <= 1:
        raise ValueError(f"min_ratio must be in (0, 1], got {min_ratio}")
    g, r = output_spread(generated), output_spread(real)
    within, between = _ratio(g.within, r.within), _ratio(g.between, r.between)
    problems = []
    if within < min_ratio:
        problems.append(
            f"its images vary {within:.2f}x as much inside an image as the real ones "
            f"(pixel std {g.within:.4f} vs {r.within:.4f})"
        )
    if between < min_ratio:
        problems.append(
            f"its images for different inputs differ {between:.2f}x as much as the real ones "
            f"(mean |difference| {g.between:.4f} vs {r.between:.4f})"
        )
    reason = ""
    if problems:
        reason = (
            "degenerate output: "
            + "; ".join(problems)
            + f" (threshold {min_ratio:g}): a collapsed model, not a result"
        )
    return DegeneracyCheck(g, r, within, between, min_ratio, reason)


def baseline_shortfall(summary: dict[str, object]) -> str:
    """Why a trained model does not beat its trivial baselines on validation L1 ("" if it does).

    Args:
        summary: one training summary row (``val_L1``, ``<baseline>_val_L1`` for the
            baselines of :data:`TRIVIAL_BASELINES` that apply; L1 in [-1, 1] units).
    """
    model = summary.get("val_L1")
    if not isinstance(model, int | float) or not np.isfinite(model):
        return ""
    lost = []
    for prefix, what in TRIVIAL_BASELINES:
        value = summary.get(f"{prefix}_val_L1")
        if isinstance(value, int | float) and np.isfinite(value) and model >= value:
            lost.append(f"{what} ({model:.3f} vs {value:.3f})")
    if not lost:
        return ""
    return "no better than a trivial baseline on validation L1: " + "; ".join(lost)


def experiment_flags(
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    summary: Mapping[str, object] | None,
    min_ratio: float = 0.25,
) -> dict[str, str]:
    """Why each evaluated split of an experiment is not a result ("" where it is).

    Args:
        splits: split name -> ``(generated, real)`` images ``(N, H, W, C)`` in [0, 1].
        summary: the experiment's training summary row (``None``: no baseline check).
        min_ratio: as :func:`check_degenerate`.

    Returns:
        split -> the :func:`check_degenerate` reason and the :func:`baseline_shortfall`
        (which concerns the model, so every split), joined by "; ".
    """
    shortfall = baseline_shortfall(dict(summary)) if summary is not None else ""
    return {
        split: "; ".join(
            filter(None, (check_degenerate(generated, real, min_ratio).reason, shortfall))
        )
        for split, (generated, real) in splits.items()
    }
