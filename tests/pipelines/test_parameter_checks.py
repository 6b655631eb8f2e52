"""Parameters are checked before the first node, each bad one named by its full dotted key."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kedro.config import OmegaConfigLoader

from mrihisto_kedro.params import ParameterError
from mrihisto_kedro.pipeline_registry import register_pipelines
from mrihisto_kedro.pipelines.modelling import nodes as modelling
from mrihisto_kedro.pipelines.parameter_checks import (
    NODE_PARAMETERS,
    check_pipeline_parameters,
    parameter_inputs,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def parameters() -> dict[str, Any]:
    loader = OmegaConfigLoader(
        conf_source=str(REPO_ROOT / "conf"), base_env="base", default_run_env="local"
    )
    return loader["parameters"]


def _loader(params: dict[str, Any]):
    def load(dataset: str) -> Any:
        value: Any = params
        for part in dataset.removeprefix("params:").split("."):
            value = value[part]
        return value

    return load


def _with(params: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(params)
    *path, last = dotted.split(".")
    node = out
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value
    return out


def test_every_parameter_input_of_every_pipeline_has_a_check() -> None:
    pipelines = register_pipelines()
    missing = sorted(
        {
            (node, argument, dataset)
            for pipeline in pipelines.values()
            for node, argument, dataset, check in parameter_inputs(pipeline)
            if check is None
        }
    )
    assert missing == []


def test_the_shipped_parameters_pass(parameters: dict[str, Any]) -> None:
    for pipeline in register_pipelines().values():
        check_pipeline_parameters(pipeline, _loader(parameters))


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("data_engineering.slide_mask.method", "foo", "data_engineering.slide_mask.method"),
        (
            "tiles_256.training.model.gan_mode",
            "foo",
            r"'tiles_256\.training\.model\.gan_mode' = 'foo' is not one of",
        ),
        ("tiles_256.training.model.lr", -0.001, r"'tiles_256\.training\.model\.lr' must be >="),
        (
            "tiles_256.training.model.lamda_L1",
            10,
            r"'tiles_256\.training\.model' has unknown key\(s\) 'lamda_L1'",
        ),
        ("tiles_256.training.search.metric", "val_L2", r"tiles_256\.training\.search\.metric"),
        (
            "tiles_256.training.search.space.gan_mode",
            ["vanilla", "foo"],
            r"'tiles_256\.training\.search\.space\.gan_mode' choice 'foo'",
        ),
        ("registration.max_grid_px", 10, r"'registration\.max_grid_px' must be >= 64"),
        ("tiles_1024.tiling.tile_size", "big", r"tiles_1024\.tiling\.tile_size"),
    ],
)
def test_a_bad_parameter_is_named_before_any_node(
    parameters: dict[str, Any], dotted: str, value: Any, message: str
) -> None:
    bad = _with(parameters, dotted, value)
    with pytest.raises(ParameterError, match=message) as error:
        check_pipeline_parameters(register_pipelines()["__default__"], _loader(bad))
    assert "nothing was run" in str(error.value)


def test_all_problems_are_reported_at_once(parameters: dict[str, Any]) -> None:
    bad = _with(parameters, "tiles_256.training.search.metric", "val_L2")
    bad = _with(bad, "data_engineering.downsample_factor", 0.5)
    with pytest.raises(ParameterError) as error:
        check_pipeline_parameters(register_pipelines()["__default__"], _loader(bad))
    text = str(error.value)
    assert text.startswith("2 parameter group(s) are invalid")
    assert "tiles_256.training.search.metric" in text and "downsample_factor" in text


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(["lr", "gan_mode", "n_epochs", "ngf", "beta1", "norm", "lamda_L1"]),
    value=_JSON,
)
def test_any_model_value_is_accepted_or_refused_by_name(key: str, value: Any) -> None:
    """Fuzz: whatever a user types for a model key, the check either accepts it or raises a
    ParameterError that names the training's key, never another exception."""
    training = {
        "model_type": "pix2pix",
        "model": {"generator": "unet", "num_downs": 6, "ngf": 16, key: value},
    }
    try:
        NODE_PARAMETERS[modelling.train_experiment]["training"](training, "tiles_256.training")
    except ParameterError as exc:
        assert "tiles_256.training" in str(exc)


@pytest.mark.timeout(300)
def test_kedro_run_with_a_bad_parameter_stops_before_any_work(tmp_path: Path) -> None:
    """What a user sees: ``kedro run`` refuses in a second, and writes nothing under data/."""
    project = tmp_path / "project"
    shutil.copytree(
        REPO_ROOT,
        project,
        ignore=shutil.ignore_patterns("data", ".git", "mlflow.db", "*.egg-info", "__pycache__"),
    )

    def refused(params: str) -> str:  # what `kedro run` printed; it must have failed
        done = subprocess.run(
            [sys.executable, "-m", "kedro", "run", "--pipeline=modelling"]
            + ["--namespaces=tiles_256", f"--params={params}"],
            cwd=project,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(project / "src"), "COLUMNS": "1000"},
            check=False,
        )
        assert done.returncode != 0
        return done.stdout + done.stderr

    output = refused("tiles_256.training.search.metric=val_L2")
    assert "'tiles_256.training.search.metric' = 'val_L2' is not a validation metric" in output
    assert not (project / "data").exists()

    # issue 16: an explicit value of a searched key is not silently replaced by the search
    output = refused("tiles_256.training.model.gan_mode=lsgan")
    assert (
        "tiles_256.training.model.gan_mode='lsgan' is given on the command line, but "
        "tiles_256.training.search.space.gan_mode searches ['vanilla', 'lsgan', 'wgangp']"
    ) in output
    assert not (project / "data").exists()


def test_a_command_line_value_of_a_searched_key_is_a_conflict(parameters: dict[str, Any]) -> None:
    pipeline = register_pipelines()["__default__"]
    given = {"tiles_256": {"training": {"model": {"lr": 0.001, "ngf": 8}}}}
    with pytest.raises(ParameterError) as error:
        check_pipeline_parameters(pipeline, _loader(parameters), given)
    text = str(error.value)
    assert "tiles_256.training.model.lr=0.001 is given on the command line" in text
    assert "searches [0.0002, 2e-05]" in text
    assert '--params="tiles_256.training.search.space.lr=[0.001]"' in text
    assert '--params="tiles_256.training.search.n_trials=0"' in text
    assert "ngf" not in text  # not searched: the value is used as given
    # either way out is accepted: a one-choice space, or no search
    fixed = _with(parameters, "tiles_256.training.search.space.lr", [0.001])
    check_pipeline_parameters(pipeline, _loader(fixed), given)
    no_search = _with(parameters, "tiles_256.training.search.n_trials", 0)
    check_pipeline_parameters(pipeline, _loader(no_search), given)
    # a value given in the YAML only is the search's default, not a conflict
    check_pipeline_parameters(pipeline, _loader(parameters), {"tiles_256": {"training": {}}})
