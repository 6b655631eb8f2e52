"""The one-row summary of a training: its validation metrics beside its baselines (no MLflow).

A trained generator is only worth what it beats: the summary puts the trained model's final
validation L1 / SSIM / foreground SSIM next to those of the same generator untrained, of the
mean training colour everywhere and, when A and B have the same channels, of copying the input
and of its inversion (:func:`~mrihisto_kedro.nn.experiment.run_training`'s ``info``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mrihisto_kedro.nn.device import describe_numerics
from mrihisto_kedro.nn.models import TranslationModel
from mrihisto_kedro.nn.training import TrainingResult

__all__ = ["training_summary"]

_METRICS = ("val_L1", "val_SSIM", "val_SSIM_fg")


def training_summary(
    name: str,
    model_type: str,
    run_id: str,
    model: TranslationModel,
    result: TrainingResult,
    info: Mapping[str, Any],
    search_info: Mapping[str, Any],
) -> dict[str, Any]:
    """The summary row of one training.

    Args:
        name: the experiment.
        model_type: ``pix2pix``, ``cyclegan`` or ``unet_regression``.
        run_id: the training's MLflow run.
        model: the trained model (its precision and numerics are reported).
        result: what :func:`~mrihisto_kedro.nn.training.train` returned.
        info: :func:`~mrihisto_kedro.nn.experiment.run_training`'s ``info`` (split sizes and
            baseline metrics).
        search_info: what a preceding search validated on (``search_val``), or empty.

    Returns:
        ``experiment, model_type, run_id, val_split, n_train_tiles, n_val_tiles, epochs,
        resumed_from_epoch, seconds, precision, trained_with``, ``search_info``'s keys, then
        ``val_L1, val_SSIM, val_SSIM_fg`` of the model and the same three prefixed with
        ``untrained_``, ``mean_colour_`` and each input baseline (``identity_``,
        ``inverted_``). L1 is in [-1, 1] units, SSIM on [0, 1] images; seconds are wall time.
    """
    final = result.final
    summary: dict[str, Any] = {
        "experiment": name,
        "model_type": model_type,
        "run_id": run_id,
        "val_split": info["val_split"],
        "n_train_tiles": info["n_train"],
        "n_val_tiles": info["n_val"],
        "epochs": result.epochs_completed,
        "resumed_from_epoch": result.resumed_from or 0,  # epochs trained before this run
        "seconds": result.seconds,
        "precision": model.precision.value,
        "trained_with": describe_numerics(model.numerics()),
        **search_info,
        **{metric: final.get(metric) for metric in _METRICS},
        **{f"untrained_{metric}": info["untrained"][metric] for metric in _METRICS},
        "mean_colour_val_L1": info["mean_colour"]["val_L1"],
        "mean_colour_val_SSIM": info["mean_colour"].get("val_SSIM"),
        "mean_colour_val_SSIM_fg": info["mean_colour"].get("val_SSIM_fg"),
    }
    for baseline, metrics in info["input"].items():
        summary.update({f"{baseline}_{metric}": metrics[metric] for metric in _METRICS})
    return summary
