"""The hyper-parameter search: the best trial, short-budget trials and their validation."""

from __future__ import annotations

import pytest

from mrihisto_kedro.tracking.search import SearchParams, apply_choices, run_search

SPACE = {"lr": [2e-4, 2e-5], "lambda_L1": [10.0, 50.0, 100.0]}


def test_random_search_returns_the_best_trial_of_those_it_ran() -> None:
    seen: list[dict] = []

    def score(values: dict) -> float:
        return abs(values["lambda_L1"] - 50.0) + values["lr"]

    def objective(number: int, values: dict) -> float:
        seen.append(values)
        return score(values)

    params = SearchParams(n_trials=6, sampler="random", seed=0, space=SPACE)
    best, trials = run_search(objective, params)
    assert len(trials) == len(seen) == 6
    scores = [score(v) for v in seen]
    assert best == seen[scores.index(min(scores))]
    assert trials["val_L1"].min() == pytest.approx(min(scores))
    # the same seed draws the same trials
    again: list[dict] = []
    run_search(lambda n, v: again.append(v) or 0.0, params)
    assert again == seen


def test_ssim_metric_is_maximised() -> None:
    params = SearchParams(n_trials=4, sampler="random", seed=1, space=SPACE, metric="val_SSIM")
    best, trials = run_search(lambda n, v: v["lambda_L1"], params)
    assert params.direction == "maximize"
    assert best["lambda_L1"] == trials["lambda_L1"].max()


def test_trial_overrides_apply_to_trials_only() -> None:
    model = {"n_epochs": 15, "n_epochs_decay": 15, "lr": 2e-4, "gan_mode": "vanilla"}
    overrides = {"n_epochs": 2, "n_epochs_decay": 1}
    choice = {"lr": 2e-5}
    trial = apply_choices(model, choice, overrides)
    assert trial == {"n_epochs": 2, "n_epochs_decay": 1, "lr": 2e-5, "gan_mode": "vanilla"}
    final = apply_choices(model, choice)
    assert final["n_epochs"] == 15 and final["lr"] == 2e-5
    assert model["lr"] == 2e-4  # not mutated


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_trials": 2}, r"space. must not be empty for a search"),
        ({"n_trials": -1}, "n_trials"),
        ({"n_trials": 1, "space": {"lr": []}}, "space.lr"),
        ({"holdout_specimens": 0}, "holdout_specimens"),
        (
            {"n_trials": 1, "space": {"n_epochs": [2, 4]}, "trial_overrides": {"n_epochs": 1}},
            "n_epochs",
        ),
    ],
)
def test_invalid_search_parameters_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchParams(**kwargs)
