"""Each missing_sequences node called directly on small in-memory inputs (``conftest.py``)."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import tiny_sequences as tiny
from matplotlib.figure import Figure

from mrihisto_kedro.evaluation.table import TABLE_COLUMNS
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.dcgan import DCGAN
from mrihisto_kedro.params import ParameterError
from mrihisto_kedro.pipelines.missing_sequences.nodes import (
    sequence_table_node,
    synthesise_sequences,
    train_sequence_dcgan_node,
)
from mrihisto_kedro.sequences import STYLE_SUFFIX, method_order, refinement_summary, split_slices

UNREFINED = [m for m in method_order() if not m.endswith(STYLE_SUFFIX)]


def _runs() -> list[Any]:
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


# ----------------------------------------------------------------------------------------------
# train_dcgan


def test_train_node_returns_the_state_and_history_and_logs_one_run(
    tileset: TileSet, dcgan_params: dict[str, Any], mlflow_store: str
) -> None:
    state, history = train_sequence_dcgan_node(tileset, dcgan_params)
    assert state["format"] == "mrihisto-dcgan" and state["training_split"] == "train"
    model = DCGAN.from_state_dict(state)
    assert model.config.image_size == 32 and model.config.epochs == 2
    assert list(history["epoch"]) == [1.0, 2.0] and (history["n_images"] == 8).all()
    assert {"loss_D", "loss_G", "D_real", "D_fake", "seconds"} <= set(history.columns)
    (run,) = _runs()
    assert run.info.run_name == "missing_sequences-dcgan"
    assert run.data.tags["experiment"] == "missing_sequences"
    params = run.data.params
    assert (params["split"], params["n_images"], params["model.image_size"]) == ("train", "8", "32")
    assert "runtime.device" in params  # the numerics the DCGAN trained with
    loss = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "loss_D")
    assert [m.step for m in loss] == [1, 2]
    assert loss[-1].value == pytest.approx(history["loss_D"].iloc[-1])
    assert run.data.metrics["seconds"] == pytest.approx(history["seconds"].iloc[-1])


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ({"image_size": 48}, r"'missing_sequences\.dcgan\.model\.image_size' must be a power"),
        ({"epochz": 2}, r"'missing_sequences\.dcgan\.model' has unknown key\(s\) 'epochz'"),
        ({"noise": "pink"}, r"'missing_sequences\.dcgan\.model\.noise' = 'pink' is not one"),
    ],
)
def test_train_node_names_a_bad_model_key_before_any_run(
    tileset: TileSet, model: dict[str, Any], key: str, mlflow_store: str
) -> None:
    with pytest.raises(ParameterError, match=key):
        train_sequence_dcgan_node(tileset, {"model": model})
    assert _runs() == []


def test_train_node_refuses_a_split_without_slices(tileset: TileSet, mlflow_store: str) -> None:
    with pytest.raises(ValueError, match="no slices in split 'holdout'"):
        train_sequence_dcgan_node(tileset, {"split": "holdout", "model": tiny.TINY_DCGAN})


# ----------------------------------------------------------------------------------------------
# synthesise


def test_synthesise_node_makes_every_method_and_refines_three(
    tileset: TileSet,
    generators: tuple[dict[str, Any], dict[str, Any]],
    dcgan_state: dict[str, Any],
    synthesis_params: dict[str, Any],
    tiny_vgg: None,
) -> None:
    synthetic, history = synthesise_sequences(tileset, *generators, dcgan_state, synthesis_params)
    methods = synthetic.manifest["method"].to_numpy()
    assert list(dict.fromkeys(methods)) == method_order()
    assert synthetic.b is not None and synthetic.b.shape == (4 * len(method_order()), 32, 32, 1)
    assert synthetic.b.dtype == np.float32 and 0.0 <= synthetic.b.min() <= synthetic.b.max() <= 1
    test = split_slices(tileset, "test")
    np.testing.assert_array_equal(synthetic.b[methods == "identity_t1", ..., 0], test.t1)
    np.testing.assert_array_equal(synthetic.a[methods == "pix2pix", ..., 0], test.t1)
    assert not synthetic.a[methods == "dcgan"].any()  # unpaired: no input
    assert set(synthetic.manifest["source_tile_id"]) == set(test.manifest["tile_id"])
    summary = refinement_summary(history).set_index("method")
    assert set(summary.index) == {m + STYLE_SUFFIX for m in ("pix2pix", "cyclegan", "dcgan")}
    assert (summary["status"] == "ok").all() and (summary["steps"] == 2).all()
    assert (summary["total_end"] < summary["total_start"]).all(), summary


@pytest.mark.parametrize(
    ("refinement", "reason"),
    [
        ({"enabled": False}, "refinement disabled"),
        ({"weights_path": "WEIGHTS"}, "vgg16 weights unavailable: explicit path"),
    ],
)
def test_synthesise_node_reports_the_refined_methods_missing(
    tileset: TileSet,
    generators: tuple[dict[str, Any], dict[str, Any]],
    dcgan_state: dict[str, Any],
    refinement: dict[str, Any],
    reason: str,
    tmp_path: Any,
) -> None:
    if refinement.get("weights_path") == "WEIGHTS":
        refinement = {"weights_path": tiny.missing_file(tmp_path)}
    params = {"device": "cpu", "refinement": refinement}
    synthetic, history = synthesise_sequences(tileset, *generators, dcgan_state, params)
    assert list(dict.fromkeys(synthetic.manifest["method"])) == UNREFINED
    assert (history["status"] == "missing").all() and len(history) == 3
    assert history["reason"].str.startswith(reason).all(), history["reason"]


def test_synthesise_node_names_a_bad_key(
    tileset: TileSet,
    generators: tuple[dict[str, Any], dict[str, Any]],
    dcgan_state: dict[str, Any],
) -> None:
    params = {"refinement": {"style_split": "test"}}
    with pytest.raises(
        ParameterError,
        match=r"'missing_sequences\.synthesis\.refinement\.style_split' must differ from split",
    ):
        synthesise_sequences(tileset, *generators, dcgan_state, params)


# ----------------------------------------------------------------------------------------------
# table


def test_table_node_returns_the_table_markdown_and_figure(
    tileset: TileSet,
    synthesised: tuple[TileSet, pd.DataFrame],
    dcgan_state: dict[str, Any],
    synthesis_params: dict[str, Any],
    table_params: dict[str, Any],
) -> None:
    synthetic, history = synthesised
    table, markdown, figure = sequence_table_node(
        tileset, synthetic, history, dcgan_state, table_params, synthesis_params
    )
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(dict.fromkeys(table["experiment"])) == method_order()
    t = table.set_index(["experiment", "comparison", "metric"])
    for method in method_order():
        assert np.isfinite(t.loc[(method, "generated_vs_t2", "D_accuracy"), "value"]), method
        fid = t.loc[(method, "generated_vs_t2", "FID")]
        assert np.isnan(fid["value"]) and "fid weights unavailable" in fid["note"], method
    for method in ("pix2pix", "cyclegan+style", "identity_t1"):
        assert np.isfinite(t.loc[(method, "generated_vs_t2_in_head", "SSIM"), "value"]), method
    note = t.loc[("pix2pix", "generated_vs_t2", "D_accuracy"), "note"]
    assert "its own training T2 slices called real" in note
    assert markdown.startswith("# Missing sequences (seed 002): synthetic vs real T2 on the test")
    assert "(4 slices)" in markdown and "## Against the trivial baselines" in markdown
    assert "## Style refinement: objective before -> after" in markdown
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 2 * (2 + len(method_order()))  # n_figure_slices = 2


def test_table_node_refuses_a_synthesis_of_other_slices(
    tileset: TileSet,
    synthesised: tuple[TileSet, pd.DataFrame],
    dcgan_state: dict[str, Any],
    table_params: dict[str, Any],
) -> None:
    synthetic, history = synthesised
    other = {"split": "val", "device": "cpu"}  # the synthesis was of the test split
    with pytest.raises(ValueError, match="do not match the evaluated split's slices"):
        sequence_table_node(tileset, synthetic, history, dcgan_state, table_params, other)
    with pytest.raises(
        ParameterError, match=r"'missing_sequences\.table\.threshold' must be in \(0, 1\), got 1\.5"
    ):
        sequence_table_node(
            tileset, synthetic, history, dcgan_state, {"threshold": 1.5}, {"device": "cpu"}
        )
