"""The experiment evaluation study: the training record it reads, the rows of each split."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from evaluation_inputs import tiny_pix2pix

from mrihisto_kedro.evaluation.experiment import (
    EvaluationParams,
    TrainingRecord,
    evaluate_model,
)
from mrihisto_kedro.evaluation.table import TABLE_COLUMNS
from mrihisto_kedro.evaluation.tiles import FeatureBackends, TileEvaluationParams
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.training import export_generator, generator_digest
from mrihisto_kedro.params import ParameterError, parse_params


def _tileset() -> TileSet:
    """8 tiles of 32 px on 4 slides, all ``test``."""
    rng = np.random.default_rng(1)
    a = rng.random((8, 32, 32, 1), dtype=np.float32)
    b = (np.repeat(a, 3, axis=-1) * 255).astype(np.uint8)
    manifest = pd.DataFrame(
        {
            "tile_id": [f"t{i}" for i in range(8)],
            "pair_id": [f"slide{i // 2}" for i in range(8)],
            "specimen_id": [f"spec{i // 2}" for i in range(8)],
            "split": ["test"] * 8,
            "x": [32 * i for i in range(8)],
            "y": [0] * 8,
            "size": [32] * 8,
            "scale": [1.0] * 8,
        }
    )
    return TileSet(manifest=manifest, a=a, b=b)


@pytest.fixture(scope="module")
def payload() -> dict:
    return export_generator(tiny_pix2pix())


def test_the_training_record_of_a_summary() -> None:
    assert TrainingRecord.from_summary(pd.DataFrame()) == TrainingRecord()
    summary = pd.DataFrame(
        [{"experiment": "msi_unet", "run_id": "abc", "trained_with": "cpu fp32", "val_L1": 0.1}]
    )
    record = TrainingRecord.from_summary(summary)
    assert (record.experiment, record.run_id, record.trained_with) == (
        "msi_unet",
        "abc",
        "cpu fp32",
    )
    assert record.row is not None and record.row["val_L1"] == 0.1
    assert record.entry("msi_unet") == "" and record.entry("msi_unet_whole") == "msi_unet_whole."
    # a summary written without a run (MLflow off) or numerics: nothing is claimed
    bare = TrainingRecord.from_summary(pd.DataFrame([{"run_id": math.nan, "trained_with": 3}]))
    assert (bare.experiment, bare.run_id, bare.trained_with) == (None, None, "")
    assert bare.entry("anything") == ""


def test_the_measured_model_names_the_weights_and_the_run(payload: dict) -> None:
    digest = generator_digest(payload)
    assert TrainingRecord().measured_model(payload) == f"generator {digest}"
    assert (
        TrainingRecord(run_id="r1").measured_model(payload) == f"generator {digest}, MLflow run r1"
    )


def test_set_metrics_and_missing_metrics_become_rows(payload: dict) -> None:
    """Injected backends: FID and KID from a (toy) feature network; LPIPS missing, its rows
    say why."""

    def features(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1)[:, :16].astype(np.float64)

    backends = FeatureBackends(inception=features, missing={"LPIPS": "no AlexNet weights"})
    params = EvaluationParams(
        tiles=TileEvaluationParams(splits=("train", "test"), device="cpu"), n_boot=5
    )
    result = evaluate_model(_tileset(), payload, params, "toy", backends=backends)
    table = result.table
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert [s.split for s in result.splits] == ["test"]  # no train tiles: skipped
    assert set(result.flags) == {"test"}
    fid = table[table["metric"] == "FID"]
    assert len(fid) == 3 and fid["value"].notna().all()  # one per comparison
    assert set(table[table["metric"] == "KID"]["comparison"]) == set(fid["comparison"])
    lpips = table[table["metric"] == "LPIPS"]
    assert len(lpips) == 3 and lpips["value"].isna().all()
    assert set(lpips["note"]) == {"missing: no AlexNet weights"}
    assert set(lpips["n_tiles"]) == {8} and set(lpips["n_slides"]) == {4}
    assert set(table["views"]) == {""}  # the generator records no input spec
    assert result.markdown.startswith("# toy: evaluation")
    assert set(result.per_tile["metric"]) == {"L1", "PSNR", "SSIM", "MI"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_spread_ratio": 0.0}, "'x.evaluation.min_spread_ratio' must be in (0, 1], got 0.0"),
        ({"min_spread_ratio": 1.5}, "'x.evaluation.min_spread_ratio' must be in (0, 1], got 1.5"),
        ({"n_boot": 0}, "'x.evaluation.n_boot' must be >= 1, got 0"),
        ({"alpha": 1.0}, "'x.evaluation.alpha' must be in (0, 1), got 1.0"),
        ({"tiles": {"mi_bins": 1}}, "'x.evaluation.tiles.mi_bins' must be >= 2, got 1"),
        ({"weights": {"vgg": None}}, "'x.evaluation.weights' has unknown key(s) 'vgg'"),
    ],
)
def test_evaluation_parameters_name_the_dotted_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError) as error:
        parse_params(EvaluationParams, values, "x.evaluation")
    assert message in str(error.value)


def test_evaluation_parameters_accept_the_closed_upper_bound() -> None:
    params = EvaluationParams(min_spread_ratio=1, tiles={"splits": ["test"]})
    assert params.min_spread_ratio == 1.0 and params.tiles.splits == ("test",)
