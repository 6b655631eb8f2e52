"""Every experiment's parameters, in conf/base and in the paper environment, are valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from mrihisto_kedro.nn.experiment import model_config
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.pipelines.modelling.nodes import (
    PairTilingParams,
    TrainingParams,
    VolumeTilingParams,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("tiles_256", "tiles_1024", "whole_slide_4096", "unet_baseline", "t1_to_t2")


@pytest.mark.parametrize("env", ["local", "paper"])
def test_experiment_parameters_parse(env: str) -> None:
    loader = OmegaConfigLoader(
        conf_source=str(REPO_ROOT / "conf"), base_env="base", default_run_env=env
    )
    params = loader["parameters"]
    for name in EXPERIMENTS:
        training = parse_params(TrainingParams, params[name]["training"], f"{name}.training")
        assert training.name == name
        model_config(training.model_type, training.model)  # raises on a bad model key
        if "tiling" in params[name]:
            cls = VolumeTilingParams if name == "t1_to_t2" else PairTilingParams
            parse_params(cls, params[name]["tiling"], f"{name}.tiling")
    if env == "paper":
        assert params["tiles_256"]["training"]["model"]["generator"] == "unet_256"
        assert params["tiles_256"]["training"]["search"]["n_trials"] == 20
