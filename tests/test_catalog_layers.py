"""kedro-viz layers: every dataset of every registered pipeline, resolved through the project's
catalog (dataset factories included), is a persisted dataset in the layer of its data folder
(:data:`BY_ROLE` excepted), and kedro-viz can order the layers of every registered pipeline.

Excluded: parameters (``params:...``, ``parameters``) only. No pipeline reads or writes a
``MemoryDataset``: every node output is a catalog entry or an ``{experiment}.*`` factory match,
and this test fails on a dataset that falls back to memory (a typo, or a factory that stopped
matching) as surely as on a missing layer.
"""

from __future__ import annotations

import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline

from mrihisto_kedro.pipeline_registry import register_pipelines

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Kedro's data folders and the kedro-viz layer of each
LAYERS = {
    "01_raw": "raw",
    "02_intermediate": "intermediate",
    "03_primary": "primary",
    "04_feature": "feature",
    "05_model_input": "model_input",
    "06_models": "models",
    "07_model_output": "model_output",
    "08_reporting": "reporting",
}
#: the layer of a dataset that a later stage reads, where it differs from its folder's: kedro-viz
#: turns layers off for a pipeline whose layers it cannot order (docs/kedro_viz.md)
BY_ROLE = {
    "data_engineering_report": "primary",  # 08_reporting, read by register_pairs
    "registration_report": "primary",  # 08_reporting, read by <experiment>.build_tiles
    "{experiment}.checkpoints": "model_input",  # 06_models, read by <experiment>.train
    # 06_models, read by missing_sequences.train_dcgan: by its name (catalog entries) and by
    # the "{experiment}." form the pipeline check looks names up under
    "missing_sequences.dcgan_checkpoints": "model_input",
    "{experiment}.dcgan_checkpoints": "model_input",
}
_FOLDER = re.compile(r"(?:^|/)(0[1-8]_[a-z_]+)/")


def _expected(name: str, folder: str) -> str:
    pattern = f"{{experiment}}.{name.split('.', 1)[1]}" if "." in name else name
    return BY_ROLE.get(pattern, LAYERS[folder])


@pytest.fixture(scope="module")
def catalog() -> DataCatalog:
    loader = OmegaConfigLoader(
        conf_source=str(REPO_ROOT / "conf"), base_env="base", default_run_env="local"
    )
    return DataCatalog.from_config(loader["catalog"])


@pytest.fixture(scope="module")
def pipelines() -> dict[str, Pipeline]:
    return register_pipelines()


def _datasets(pipelines: dict[str, Pipeline]) -> set[str]:
    names: set[str] = set().union(*(p.datasets() for p in pipelines.values()))
    return {n for n in names if not n.startswith("params:") and n != "parameters"}


def _folder(config: dict) -> str:
    """The data folder (``03_primary``) of a resolved catalog entry's path."""
    path = str(config.get("filepath") or config.get("path"))
    found = _FOLDER.search(path)
    assert found, f"no data folder in {path}"
    return found.group(1)


def test_every_pipeline_dataset_has_the_layer_of_its_folder(
    catalog: DataCatalog, pipelines: dict[str, Pipeline]
) -> None:
    names = _datasets(pipelines)
    assert "tiles_256.tileset" in names and "msi_unet_whole.evaluation_metrics" in names
    wrong = {}
    for name in sorted(names):
        dataset = catalog.get(name)  # resolves the {experiment}.* factories too
        if dataset is None or isinstance(dataset, MemoryDataset):
            wrong[name] = "not in the catalog (would be a MemoryDataset)"
            continue
        layer = (getattr(dataset, "metadata", None) or {}).get("kedro-viz", {}).get("layer")
        folder = _folder(catalog.config_resolver.resolve_pattern(name))
        if layer != _expected(name, folder):
            wrong[name] = f"layer {layer!r} in {folder}"
    assert not wrong, wrong


def test_every_catalog_entry_and_factory_has_a_layer(catalog: DataCatalog) -> None:
    """Also the entries no registered pipeline uses today (and the anchors stay anchors)."""
    loader = OmegaConfigLoader(
        conf_source=str(REPO_ROOT / "conf"), base_env="base", default_run_env="local"
    )
    config = loader["catalog"]
    entries = {k: v for k, v in config.items() if not k.startswith("_")}
    assert any("{experiment}" in k for k in entries)
    for name, entry in entries.items():
        layer = entry.get("metadata", {}).get("kedro-viz", {}).get("layer")
        assert layer == BY_ROLE.get(name, LAYERS[_folder(entry)]), name


def test_tables_preview_five_rows_and_figure_folders_do_not_preview(catalog: DataCatalog) -> None:
    """kedro-viz previews a CSV's first rows and a single matplotlib figure; a folder of QC
    figures has no single file to show, so its preview is off (no warning in kedro-viz)."""
    loader = OmegaConfigLoader(
        conf_source=str(REPO_ROOT / "conf"), base_env="base", default_run_env="local"
    )
    for name, entry in loader["catalog"].items():
        viz = entry.get("metadata", {}).get("kedro-viz", {})
        if entry.get("type") == "pandas.CSVDataset":
            assert viz.get("preview_args") == {"nrows": 5}, name
        if entry.get("type") == "matplotlib.MatplotlibDataset":
            folder = not str(entry["filepath"]).endswith(".png")
            assert viz.get("preview", True) is not folder, name


def test_layers_can_be_ordered_in_every_pipeline(
    catalog: DataCatalog, pipelines: dict[str, Pipeline]
) -> None:
    """kedro-viz orders the layers by the graph (a layer read by a node, or by an experiment drawn
    collapsed as one box, comes before the layers it writes) and turns them off for a pipeline
    where that order has a cycle."""

    def layer(name: str) -> str:
        return catalog.get(name).metadata["kedro-viz"]["layer"]

    for pipeline_name, pipeline in pipelines.items():
        boxes = [(set(n.inputs), set(n.outputs)) for n in pipeline.nodes]
        for space in {n.namespace.split(".")[0] for n in pipeline.nodes if n.namespace}:
            inside = pipeline.only_nodes_with_namespaces([space])
            outside = [n for n in pipeline.nodes if n not in inside.nodes]
            read_outside = set().union(*(n.inputs for n in outside))
            written = inside.outputs() | (inside.all_outputs() & read_outside)
            boxes.append((inside.inputs(), written))
        before: dict[str, set[str]] = {}  # layer -> the layers that come before it
        for inputs, outputs in boxes:
            read = {layer(d) for d in inputs if not d.startswith("params:") and d != "parameters"}
            for written in {layer(d) for d in outputs}:
                before.setdefault(written, set()).update(read - {written})
        try:
            list(TopologicalSorter(before).static_order())
        except CycleError as cycle:
            pytest.fail(f"{pipeline_name}: layers in a cycle {cycle.args[1]}")
