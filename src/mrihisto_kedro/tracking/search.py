"""Hyper-parameter search with Optuna (paper 000, section 2.4: a random search).

``RandomSampler`` reproduces the paper's random search; ``TPESampler`` is the better default.
Each trial is trained by the caller's objective (which opens its own nested MLflow run).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

import optuna
import pandas as pd

from mrihisto_kedro.nn.training import VALIDATION_METRICS
from mrihisto_kedro.params import Params, Range, fail


class SamplerKind(StrEnum):
    """Optuna sampler."""

    RANDOM = "random"
    TPE = "tpe"


@dataclass(frozen=True)
class SearchParams(Params):
    """A search over categorical choices of model parameters.

    Attributes:
        n_trials: number of trials (0: no search, train once with the given parameters).
        sampler: ``random`` (the paper) or ``tpe``.
        seed: sampler seed.
        space: model parameter -> list of choices, e.g. ``{"gan_mode": ["vanilla", "lsgan",
            "wgangp"], "lr": [2e-4, 2e-5], "beta1": [0.4, 0.5, 0.8], "lambda_L1": [10, 50, 100]}``.
        metric: validation metric to minimise (``val_L1``) or maximise (``val_SSIM``).
        holdout_specimens: when the tiles have no validation split, the trials validate on
            this many training specimens held out of their training (never on the test
            split); the final training then uses all training specimens.
        trial_overrides: model parameters applied to the trials only, e.g. ``{"n_epochs": 2,
            "n_epochs_decay": 1}`` for short-budget trials; the final training keeps the
            model's own values (and the best choices). Keys may not also be searched.
    """

    n_trials: Annotated[int, Range(ge=0)] = 0
    sampler: SamplerKind = SamplerKind.TPE
    seed: int = 0
    space: dict[str, list[Any]] = field(default_factory=dict)
    metric: str = "val_L1"
    holdout_specimens: Annotated[int, Range(ge=1)] = 1
    trial_overrides: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """A search has choices, a validation metric, and no key both searched and fixed."""
        for key, choices in self.space.items():
            if not choices:
                fail(f"space.{key}", "must be a non-empty list of choices")
        if not self.n_trials:
            return
        if not self.space:
            fail("space", "must not be empty for a search (n_trials > 0)")
        if self.metric not in VALIDATION_METRICS:
            fail(
                "metric",
                f"= {self.metric!r} is not a validation metric; choose one of "
                f"{', '.join(VALIDATION_METRICS)}",
            )
        both = sorted(set(self.trial_overrides) & set(self.space))
        if both:
            fail(
                "trial_overrides",
                f"and space both set {both}: a searched value would be overridden in every trial",
            )

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        """``maximize`` for SSIM-like metrics, else ``minimize``."""
        return "maximize" if "SSIM" in self.metric else "minimize"


def run_search(
    objective: Callable[[int, dict[str, Any]], float], params: SearchParams
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Run ``params.n_trials`` trials of ``objective(trial_number, chosen_values) -> metric``.

    Returns:
        ``(best_values, trials)``: the best trial's choices and one row per trial (number,
        choices, metric value, state).
    """
    sampler: optuna.samplers.BaseSampler = (
        optuna.samplers.RandomSampler(seed=params.seed)
        if params.sampler is SamplerKind.RANDOM
        else optuna.samplers.TPESampler(seed=params.seed)
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=params.direction, sampler=sampler)

    def wrapped(trial: optuna.Trial) -> float:
        values = {
            key: trial.suggest_categorical(key, list(choices))
            for key, choices in params.space.items()
        }
        return objective(trial.number, values)

    study.optimize(wrapped, n_trials=params.n_trials)
    rows = [
        {"trial": t.number, **t.params, params.metric: t.value, "state": t.state.name}
        for t in study.trials
    ]
    return dict(study.best_params), pd.DataFrame(rows)


def apply_choices(
    model: Mapping[str, Any],
    values: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Model parameters with a trial's choices (then ``overrides``, if given) substituted.

    Unknown keys are caught when the model config is built from the result (its ``from_dict``
    names them).
    """
    return {**model, **values, **(overrides or {})}
