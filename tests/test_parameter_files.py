"""Every experiment's parameters, in conf/base and in the paper environment, are valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from mrihisto_kedro.evaluation.experiment import EvaluationParams
from mrihisto_kedro.experiments import EXPERIMENTS, Task, TileSource
from mrihisto_kedro.imaging.tiling_params import PairTilingParams, VolumeTilingParams
from mrihisto_kedro.nn.experiment import model_config
from mrihisto_kedro.params import parse_params
from mrihisto_kedro.tracking.training_params import TrainingParams

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("env", ["local", "paper", "full_scale"])
def test_experiment_parameters_parse(env: str) -> None:
    loader = OmegaConfigLoader(
        conf_source=str(REPO_ROOT / "conf"), base_env="base", default_run_env=env
    )
    params = loader["parameters"]
    tiling = {TileSource.PAIR_TILES: PairTilingParams, TileSource.VOLUME_SLICES: VolumeTilingParams}
    for experiment in EXPERIMENTS:  # every registered experiment has its block, in every env
        name = experiment.name
        assert name in params, f"{env}: no parameters for the registered experiment {name}"
        parse_params(EvaluationParams, params[name]["evaluation"], f"{name}.evaluation")
        if experiment.trains:
            training = parse_params(TrainingParams, params[name]["training"], f"{name}.training")
            model_config(training.model_type, training.model)  # raises on a bad model key
        else:  # it measures another experiment's model: a training block would be ignored
            assert "training" not in params[name], name
        if experiment.tiles in tiling:
            parse_params(tiling[experiment.tiles], params[name]["tiling"], f"{name}.tiling")
        else:  # its tiles come from another pipeline or experiment
            assert "tiling" not in params[name], name
    if env == "paper":
        assert params["tiles_256"]["training"]["model"]["generator"] == "unet_256"
        assert params["tiles_256"]["training"]["search"]["n_trials"] == 20
    if env == "full_scale":  # the named sizes on the paper-size grid
        assert params["tiles_256"]["tiling"]["tile_size"] == 256
        assert params["tiles_1024"]["tiling"]["tile_size"] == 1024


@pytest.mark.parametrize("env", ["local", "paper", "full_scale"])
def test_the_msi_demo_parameters_are_the_demo_pipelines_in_every_environment(env: str) -> None:
    """``make_msi_demo`` (demo pipeline) reads ``demo_msi``; msi_data_engineering has no demo."""
    from mrihisto_kedro.demo.msi_inputs import MsiDemoNodeParams

    loader = OmegaConfigLoader(
        conf_source=str(REPO_ROOT / "conf"), base_env="base", default_run_env=env
    )
    params = loader["parameters"]
    demo = parse_params(MsiDemoNodeParams, params["demo_msi"], "demo_msi")
    assert demo.simulation.n_regions == 10
    assert "demo" not in params["msi_data_engineering"]


def test_full_scale_environment_is_paper_size_and_writes_apart() -> None:
    """``--env=full_scale``: 60,000 px slides, and every dataset under data/full_scale (the
    demo's outputs are never replaced); the base environment keeps data/."""
    from mrihisto_kedro.demo.generate import DemoParams

    def load(env: str) -> OmegaConfigLoader:
        return OmegaConfigLoader(
            conf_source=str(REPO_ROOT / "conf"), base_env="base", default_run_env=env
        )

    # one loader at a time: each registers the process-wide ``globals`` resolver
    full = load("full_scale")
    demo = parse_params(DemoParams, full["parameters"]["demo"], "demo")
    assert max(demo.level0_width, demo.level0_height) >= 60_000
    catalogs = {"full": full["catalog"]}
    catalogs["base"] = load("local")["catalog"]
    for env, root in (("full", "data/full_scale/"), ("base", "data/")):
        paths = [
            entry.get("path") or entry.get("filepath")
            for name, entry in catalogs[env].items()
            if isinstance(entry, dict) and not name.startswith("_")
        ]
        assert len(paths) > 40
        assert [p for p in paths if not str(p).startswith(root)] == [], env
    assert not any(
        str(entry.get("path") or entry.get("filepath")).startswith("data/full_scale")
        for entry in catalogs["base"].values()
        if isinstance(entry, dict)
    )


def test_evaluation_and_inference_parameters_parse() -> None:
    from mrihisto_kedro.evaluation.experiment import EvaluationParams
    from mrihisto_kedro.evaluation.synthesis import SynthesisParams
    from mrihisto_kedro.pipelines.inference.nodes import InferenceParams

    loader = OmegaConfigLoader(
        conf_source=str(REPO_ROOT / "conf"), base_env="base", default_run_env="local"
    )
    params = loader["parameters"]
    for experiment in EXPERIMENTS:
        name = experiment.name
        p = parse_params(EvaluationParams, params[name]["evaluation"], f"{name}.evaluation")
        # MSI tables measure the test specimens only; every other table train and test
        expected = {"test"} if experiment.task is Task.MSI_TO_HE else {"train", "test"}
        assert set(p.tiles.splits) == expected, name
        assert p.set_metrics is (experiment.task is not Task.MSI_TO_HE), name
    assert (
        parse_params(EvaluationParams, params["t1_to_t2"]["evaluation"], "e").tiles.target_name
        == "t2"
    )
    assert parse_params(SynthesisParams, params["synthesis"], "synthesis").overlap_fraction == 0.5
    inference = parse_params(InferenceParams, params["inference"], "inference")
    assert inference.synthesis.window == 256 and inference.new_slice.slice_index is None
    with pytest.raises(
        ValueError, match=r"'tiles_256\.evaluation' has unknown key\(s\) 'n_bootstrap'"
    ):
        bad = {**params["tiles_256"]["evaluation"], "n_bootstrap": 5}
        parse_params(EvaluationParams, bad, "tiles_256.evaluation")
