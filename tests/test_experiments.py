"""The experiment registry: consistent, and the one list every pipeline is built from."""

from __future__ import annotations

import dataclasses

import pytest

from mrihisto_kedro import experiments as registry
from mrihisto_kedro.experiments import EXPERIMENTS, Experiment, Table, Task, TileSource, by_name


def test_names_are_unique_and_references_resolve() -> None:
    names = [e.name for e in EXPERIMENTS]
    assert len(names) == len(set(names))
    for e in EXPERIMENTS:
        assert by_name(e.model).trains
        assert by_name(e.tileset.removesuffix(".tileset")).tiles is not TileSource.SHARED


def test_a_broken_registry_is_refused() -> None:
    base = by_name("tiles_256")
    with pytest.raises(ValueError, match="registered twice"):
        registry._check_registry([base, base])
    orphan = Experiment("x", Task.MRI_TO_MRI, TileSource.SHARED, tiles_of="nowhere")
    with pytest.raises(ValueError, match="writes no tile set"):
        registry._check_registry([base, orphan])
    measures = dataclasses.replace(orphan, tiles_of="tiles_256", model_of="x")
    with pytest.raises(ValueError, match="trains no model"):
        registry._check_registry([base, measures])
    with pytest.raises(ValueError, match="tiles_of is given exactly"):
        Experiment("y", Task.MRI_TO_MRI, TileSource.PAIR_TILES, tiles_of="tiles_256")


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="tiles_256"):
        by_name("tiles_512")


def test_derived_names() -> None:
    assert by_name("unet_baseline").tileset == "tiles_256.tileset"
    assert by_name("msi_unet").evaluate_node == "msi_unet.evaluate"
    assert by_name("msi_unet_whole").model == "msi_unet"
    assert not by_name("msi_unet_whole").trains
    assert {e.name for e in registry.experiments(table=Table.MSI)} == {
        "msi_to_he_black",
        "msi_to_he_white",
        "msi_unet",
    }


def test_pipelines_are_built_from_the_registry() -> None:
    """Each registered experiment trains (if it does) and is evaluated in the pipeline the
    registry names, with its parameters under its own root; nothing else does."""
    from mrihisto_kedro.pipeline_registry import register_pipelines

    pipelines = register_pipelines()
    where = {registry.Pipeline.DEFAULT: "__default__"} | {
        p: p.value for p in registry.Pipeline if p is not registry.Pipeline.DEFAULT
    }
    trained = {
        n.name.split(".")[-2] for n in pipelines["modelling"].nodes if n.name.endswith(".train")
    }
    evaluated = {
        n.name.split(".")[-2] for n in pipelines["evaluation"].nodes if n.name.endswith(".evaluate")
    }
    default = registry.experiments()
    assert trained == {e.name for e in default if e.trains}
    assert evaluated == {e.name for e in default}
    for e in EXPERIMENTS:
        nodes = {n.name: n for n in pipelines[where[e.pipeline]].nodes}
        evaluate = nodes[e.evaluate_node]
        assert f"params:{e.name}.evaluation" in evaluate.inputs
        assert {e.tileset, f"{e.model}.generator"} <= set(evaluate.inputs)
        synthesis = e.evaluate_node.replace(".evaluate", ".synthesise_slides")
        assert (synthesis in nodes) is e.synthesised
        if e.trains:
            train = nodes[e.evaluate_node.replace(".evaluate", ".train")]
            assert {f"params:{e.name}.training", e.tileset} <= set(train.inputs)
            assert f"{e.name}.generator" in train.outputs
    full = {n.namespace for n in pipelines["full_scale"].nodes if n.name.endswith(".train")}
    assert full == {e.name for e in registry.experiments(full_scale=True)}
