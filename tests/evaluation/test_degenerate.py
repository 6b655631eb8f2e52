"""A collapsed generator is flagged, with its numbers, in the log, the table and MLflow."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from evaluation_inputs import tiny_pix2pix
from scipy import ndimage
from skimage.data import immunohistochemistry

from mrihisto_kedro.evaluation.degenerate import check_degenerate, output_spread
from mrihisto_kedro.evaluation.experiment import EvaluationParams, evaluate_model
from mrihisto_kedro.evaluation.table import render_markdown
from mrihisto_kedro.imaging.tileset import TileSet
from mrihisto_kedro.nn.training import export_generator, generator_digest
from mrihisto_kedro.params import parse_params


@pytest.fixture(scope="module")
def real_tiles() -> np.ndarray:
    """16 tiles of 64 px of a real IHC image (DAB + haematoxylin), float ``(16, 64, 64, 3)``."""
    image = immunohistochemistry().astype(np.float32) / 255.0  # (512, 512, 3)
    tiles = [image[y : y + 64, x : x + 64] for y in range(0, 512, 128) for x in range(0, 512, 128)]
    return np.stack(tiles)


def test_spreads_equal_their_definitions(real_tiles: np.ndarray) -> None:
    spread = output_spread(real_tiles)
    within = np.mean([[t[..., c].std() for c in range(3)] for t in real_tiles])
    between = np.mean([np.abs(real_tiles[i] - real_tiles[(i + 1) % 16]).mean() for i in range(16)])
    assert spread.within == pytest.approx(within, rel=1e-5)
    assert spread.between == pytest.approx(between, rel=1e-5)
    assert np.isnan(output_spread(real_tiles[:1]).between)


def test_a_constant_model_is_flagged_a_blurred_one_is_not(real_tiles: np.ndarray) -> None:
    mean_colour = np.broadcast_to(real_tiles.mean(axis=(0, 1, 2)), real_tiles.shape)
    check = check_degenerate(mean_colour.copy(), real_tiles)
    assert check.degenerate and check.within_ratio < 1e-9 and check.between_ratio == 0.0
    assert check.reason.startswith("degenerate output: its images vary 0.00x as much inside")
    assert "(threshold 0.25): a collapsed model, not a result" in check.reason
    # one textured image for every input (mode collapse): only "between" gives it away
    collapsed = np.broadcast_to(real_tiles[3], real_tiles.shape).copy()
    check = check_degenerate(collapsed, real_tiles)
    assert check.degenerate and check.within_ratio > 0.5 and check.between_ratio == 0.0
    assert "inside an image" not in check.reason and "for different inputs" in check.reason
    # a model that learned the layout but lost detail (Gaussian blur, 2 px) passes
    blurred = ndimage.gaussian_filter(real_tiles, sigma=(0, 2, 2, 0))
    check = check_degenerate(blurred, real_tiles)
    assert not check.degenerate and check.reason == ""
    assert 0.25 < check.within_ratio < 1.0 and 0.25 < check.between_ratio < 1.0
    with pytest.raises(ValueError, match="min_ratio"):
        check_degenerate(blurred, real_tiles, min_ratio=0.0)


def _constant_payload() -> dict:
    """An exported pix2pix generator whose last layer is zeroed: tanh(0.3) everywhere."""
    model = tiny_pix2pix()
    last = [m for m in model.generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(0.3)
    return export_generator(model)


def test_the_evaluation_flags_a_constant_generator(
    real_tiles: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    b = (real_tiles[..., :3] * 255).round().astype(np.uint8)
    a = b.mean(axis=-1, keepdims=True).astype(np.float32) / 255.0
    manifest = pd.DataFrame(
        {
            "tile_id": [f"t{i:02d}" for i in range(16)],
            "pair_id": [f"slide{i // 4}" for i in range(16)],
            "specimen_id": [f"spec{i // 4}" for i in range(16)],
            "split": ["train"] * 8 + ["test"] * 8,
            "x": [64 * i for i in range(16)],
            "y": [0] * 16,
            "size": [64] * 16,
            "scale": [1.0] * 16,
        }
    )
    evaluation = {"set_metrics": False, "n_boot": 10, "tiles": {"device": "cpu"}}
    params = parse_params(EvaluationParams, evaluation, "flat_model.evaluation")
    with caplog.at_level(logging.WARNING):
        result = evaluate_model(
            TileSet(manifest=manifest, a=a, b=b), _constant_payload(), params, "flat_model"
        )
    table = result.table
    assert set(result.flags) == {"train", "test"} and result.flag_text.startswith("train: ")
    assert set(table["flag"].str.startswith("degenerate output: ")) == {True}
    assert "flat_model is flagged in Table 1: train: degenerate output" in caplog.text
    assert caplog.text.count("flat_model is flagged") == 1  # one warning, both splits in it
    text = render_markdown(table, "Table 1")
    assert "| flat_model / train (FLAGGED) | flat_model / test (FLAGGED) |" in text
    assert "- FLAGGED flat_model / test (FLAGGED): degenerate output" not in text
    assert "- FLAGGED flat_model / test: degenerate output: its images vary 0.00x" in text
    # the table names the model it measured (no training run known here)
    payload = _constant_payload()
    assert set(table["model"]) == {f"generator {generator_digest(payload)}"}
    assert f"- Measured flat_model: generator {generator_digest(payload)}" in text


def test_the_generator_digest_follows_the_weights_not_the_file(tmp_path) -> None:
    payload = _constant_payload()
    torch.save(payload, tmp_path / "g.pt")
    again = torch.load(tmp_path / "g.pt", weights_only=True)
    assert generator_digest(again) == generator_digest(payload)
    assert len(generator_digest(payload)) == 16
    changed = {**payload, "state_dict": dict(payload["state_dict"])}
    name = next(iter(changed["state_dict"]))
    changed["state_dict"][name] = changed["state_dict"][name] + 1e-6  # any retraining step
    assert generator_digest(changed) != generator_digest(payload)
    wider = {**payload, "architecture": {**payload["architecture"], "ngf": 9}}
    assert generator_digest(wider) != generator_digest(payload)


def test_a_model_no_better_than_a_trivial_baseline_is_flagged() -> None:
    from mrihisto_kedro.evaluation.degenerate import baseline_shortfall

    # the demo's whole_slide_4096 after 8 epochs (40 iterations), as measured
    grey = {"val_L1": 0.681, "mean_colour_val_L1": 0.211, "untrained_val_L1": 0.753}
    assert baseline_shortfall(grey) == (
        "no better than a trivial baseline on validation L1: the mean training colour "
        "everywhere (0.681 vs 0.211)"
    )
    assert baseline_shortfall({**grey, "val_L1": 0.057}) == ""
    t1_to_t2 = {"val_L1": 0.2, "identity_val_L1": 0.5, "inverted_val_L1": 0.15}
    assert baseline_shortfall(t1_to_t2).endswith("the intensity-inverted input (0.200 vs 0.150)")
    assert baseline_shortfall({"val_L1": float("nan"), "mean_colour_val_L1": 0.2}) == ""
