"""The pipeline registry: what ``find_pipelines`` finds, what is composed from it, and the demo
remap that lets the default run analyse the demo without writing where a user's data is read."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from kedro.framework import project
from kedro.pipeline import Node

from mrihisto_kedro.experiments import EXPERIMENTS, experiments
from mrihisto_kedro.pipeline_registry import (
    DEMO_INPUTS,
    DOTTED_NAME_WARNING,
    IN_DEFAULT_RUN,
    register_pipelines,
)

PACKAGES = Path(__file__).resolve().parents[1] / "src" / "mrihisto_kedro" / "pipelines"
#: the pipelines composed in the registry (every other one is a package under pipelines/)
COMPOSED = {"__default__", "full_scale", "inference_volume", "msi", "registration_control_points"}


@pytest.fixture(scope="module")
def pipelines() -> dict:
    return register_pipelines()


def _names(pipeline) -> set[str]:  # noqa: ANN001
    return {n.name for n in pipeline.nodes}


def test_every_pipeline_package_is_registered_under_its_name(pipelines: dict) -> None:
    packages = {p.parent.name for p in PACKAGES.glob("*/__init__.py")}
    assert packages == {
        "data_engineering",
        "demo",
        "evaluation",
        "inference",
        "missing_sequences",
        "modelling",
        "msi_data_engineering",
        "msi_whole_specimen",
        "registration",
    }
    assert set(pipelines) == packages | COMPOSED


def test_the_default_run_is_the_demo_then_the_analysis_on_its_outputs(pipelines: dict) -> None:
    default = pipelines["__default__"]
    expected = set().union(*(_names(pipelines[name]) for name in ("demo", *IN_DEFAULT_RUN)))
    assert _names(default) == expected
    # nothing of the user's is read: only parameters and the trainings' checkpoint stores
    assert {d for d in default.inputs() if not d.startswith("params:")} == {
        f"{e.name}.checkpoints" for e in experiments(trains=True)
    }
    assert set(DEMO_INPUTS.values()) <= pipelines["demo"].outputs()
    assert not set(DEMO_INPUTS) & default.all_inputs()


def test_the_msi_demo_is_part_of_the_demo_and_msi_data_engineering_reads_raw_inputs(
    pipelines: dict,
) -> None:
    assert _names(pipelines["demo"]) == {"make_demo", "place_icbm152_pair", "make_msi_demo"}
    assert "make_msi_demo" not in _names(pipelines["msi_data_engineering"])
    raw = {"msi_pairs", "msi_imzml", "msi_histology", "msi_control_points", "msi_ground_truth"}
    assert raw <= pipelines["msi_data_engineering"].inputs()
    assert "msi_analysis" not in pipelines  # msi_data_engineering is the analysis now


def test_msi_is_the_msi_demo_its_analysis_and_the_msi_to_he_experiments(pipelines: dict) -> None:
    msi = pipelines["msi"]
    group = {e.name for e in EXPERIMENTS if e.group == "msi_to_he"}
    assert group == {"msi_to_he_black", "msi_to_he_white", "msi_unet"}
    trained = {f"{name}.{step}" for name in group for step in ("train", "evaluate")}
    assert _names(msi) == {"make_msi_demo"} | _names(pipelines["msi_data_engineering"]) | trained
    assert all(d.startswith("params:") or d.endswith(".checkpoints") for d in msi.inputs())
    # the group is a tag of its nodes, not a namespace around them
    assert _names(pipelines["__default__"].only_nodes_with_tags("msi_to_he")) == trained


def test_namespaces_are_experiment_names(pipelines: dict) -> None:
    """kedro-viz shows one namespace per experiment (no ``msi_to_he`` beside them)."""
    names = {e.name for e in EXPERIMENTS} | {"missing_sequences"}
    for name, pipeline in pipelines.items():
        spaces = {n.namespace.split(".")[0] for n in pipeline.nodes if n.namespace}
        assert spaces <= names, name


def test_full_scale_is_the_slide_path_of_its_experiments(pipelines: dict) -> None:
    full = pipelines["full_scale"]
    assert {"make_demo", "place_icbm152_pair"} <= _names(full)
    assert "make_msi_demo" not in _names(full)
    spaces = {n.namespace for n in full.nodes if n.namespace}
    assert spaces == {e.name for e in experiments(full_scale=True)}


def test_a_pipeline_package_that_fails_to_import_stops_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """find_pipelines would warn and leave the package out; the registry raises instead."""
    monkeypatch.setitem(sys.modules, "mrihisto_kedro.pipelines.inference", None)
    with pytest.raises(ImportError, match=r"mrihisto_kedro\.pipelines\.inference"):
        register_pipelines()


@pytest.fixture
def configured() -> Iterator[None]:
    """The project configured as ``kedro`` configures it; no pipeline filter left behind."""
    project.configure_project("mrihisto_kedro", preserve_logging=True)
    try:
        yield
    finally:
        project.pipelines.set_requested(None)


@pytest.mark.usefixtures("configured")
def test_kedro_run_of_one_composed_pipeline_finds_the_packages_it_is_made_of() -> None:
    """``kedro run --pipeline=msi`` asks Kedro (1.7) for ``msi`` alone, which find_pipelines
    would look for as a package; the registry needs and loads all of them."""
    for name in ("msi", "data_engineering", "full_scale"):
        project.pipelines.set_requested([name])
        assert project.pipelines[name].nodes, name


def test_every_dotted_dataset_name_is_a_namespace_of_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kedro warns once about dotted dataset names (a dot is its namespace separator); the
    registry silences that warning for its own namespaced datasets only, so this checks what
    the warning guards against: every dotted name is ``<namespace>.<name>`` for a namespace of
    the registered pipelines, never a dot of its own."""
    monkeypatch.setattr(Node, "__dotted_dataset_name_warned__", False, raising=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=DOTTED_NAME_WARNING)
        pipelines = register_pipelines()
    spaces = {n.namespace.split(".")[0] for p in pipelines.values() for n in p.nodes if n.namespace}
    dotted = {d for p in pipelines.values() for d in p.datasets() if "." in d and ":" not in d}
    assert "tiles_256.tileset" in dotted and "missing_sequences.table" in dotted
    assert {d.rsplit(".", 1)[0] for d in dotted} <= spaces
    assert all(d.count(".") == 1 for d in dotted)


def _identity(x: object) -> object:
    return x


def test_a_dotted_name_outside_the_registry_still_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The filter is the registry's alone: Kedro's warning is still raised elsewhere."""
    monkeypatch.setattr(Node, "__dotted_dataset_name_warned__", False, raising=False)
    with pytest.warns(UserWarning, match=DOTTED_NAME_WARNING):
        Node(_identity, "some.input", "output", name="copy")


def test_experiment_nodes_are_tagged_with_their_task_and_group(pipelines: dict) -> None:
    """kedro-viz's tag filter: one tag per task, plus the group (``msi_to_he``)."""
    for experiment in EXPERIMENTS:
        source = pipelines[
            "msi_whole_specimen" if experiment.pipeline.value != "default" else "__default__"
        ]
        nodes = [n for n in source.nodes if n.namespace == experiment.name]
        expected = {experiment.task.value} | ({experiment.group} if experiment.group else set())
        # msi_data_engineering cuts the MSI tile sets (data engineering, not the experiments')
        tagged = [
            n
            for n in nodes
            if n.name not in {"msi_to_he_black.build_tiles", "msi_to_he_white.build_tiles"}
        ]
        assert tagged, experiment.name
        assert all(n.tags == expected for n in tagged), experiment.name
    tags = {t for n in pipelines["__default__"].nodes for t in n.tags}
    assert tags == {"mri_to_histology", "mri_to_mri", "msi_to_he"}
    assert {t for n in pipelines["missing_sequences"].nodes for t in n.tags} == {"mri_to_mri"}
