"""Per-tile evaluation of a generator and the metric table (bootstrap over slides)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from evaluation_inputs import tiny_pix2pix, tiny_tileset
from pytorch_fid import fid_score
from skimage.metrics import structural_similarity

from mrihisto_kedro.evaluation.table import (
    TABLE_COLUMNS,
    missing_rows,
    render_markdown,
    summarise_sets,
    summarise_tiles,
)
from mrihisto_kedro.evaluation.tiles import (
    FeatureBackends,
    TileEvaluationParams,
    comparison_names,
    evaluate_split,
    select_tiles,
    tile_metrics,
)
from mrihisto_kedro.metrics.frechet import feature_statistics
from mrihisto_kedro.metrics.mutual_information import mutual_information
from mrihisto_kedro.nn.training import export_generator
from mrihisto_kedro.params import ParameterError, parse_params


@pytest.fixture(scope="module")
def payload() -> dict:
    return export_generator(tiny_pix2pix())


def test_select_tiles_caps_per_slide_deterministically() -> None:
    tiles = tiny_tileset(n_per_slide=5)
    rows = select_tiles(tiles, "train", per_slide=2, seed=1)
    picked = tiles.manifest.iloc[rows]
    assert picked["pair_id"].value_counts().to_dict() == {"slide0": 2, "slide1": 2}
    assert set(picked["split"]) == {"train"}
    np.testing.assert_array_equal(rows, select_tiles(tiles, "train", per_slide=2, seed=1))
    assert select_tiles(tiles, "test", per_slide=None, seed=0).size == 5


def test_tile_metrics_equal_reference_implementations(payload: dict) -> None:
    tiles = tiny_tileset()
    params = TileEvaluationParams(device="cpu", mi_bins=16)
    data = evaluate_split(tiles, payload, "test", params)
    assert data is not None and data.generated.shape == (4, 32, 32, 3)
    assert data.generated.min() >= 0 and data.generated.max() <= 1
    np.testing.assert_allclose(data.b, tiles.b[8:] / 255.0, atol=1e-6)

    calls: list[tuple] = []

    def fake_lpips(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        calls.append((x.shape, y.shape))
        return np.abs(x - y).mean(axis=(1, 2, 3))

    table = tile_metrics(data, params, FeatureBackends(lpips=fake_lpips))
    gen_t, gen_i, t_i = comparison_names(params)
    assert (gen_t, gen_i, t_i) == ("generated_vs_histology", "generated_vs_mri", "histology_vs_mri")
    assert all(s == ((4, 32, 32, 3), (4, 32, 32, 3)) for s in calls)  # grey MRI as RGB
    one = table[(table["tile_id"] == "t09") & (table["comparison"] == gen_t)]
    v = dict(zip(one["metric"], one["value"], strict=True))
    g, b, a = data.generated[1], data.b[1], data.a[1]
    ref_ssim = structural_similarity(
        g,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=2,
    )
    assert v["SSIM"] == pytest.approx(ref_ssim, abs=1e-6)
    assert v["L1"] == pytest.approx(np.abs(g - b).mean(), rel=1e-5)
    mse = float(np.mean((g.astype(float) - b) ** 2))
    assert v["PSNR"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
    grey = lambda x: x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # noqa: E731
    assert v["MI"] == pytest.approx(mutual_information(grey(g), grey(b), bins=16), rel=1e-9)
    vs_mri = table[(table["tile_id"] == "t09") & (table["comparison"] == gen_i)]
    assert set(vs_mri["metric"]) == {"MI", "LPIPS"}  # no L1/SSIM across modalities
    mi = vs_mri.loc[vs_mri["metric"] == "MI", "value"].item()
    assert mi == pytest.approx(mutual_information(grey(g), a[..., 0], bins=16), rel=1e-9)
    assert len(table) == 4 * (3 + 2 + 2 + 1 + 1)  # L1 PSNR SSIM + MI x3 + LPIPS x3 per tile
    no_lpips = tile_metrics(data, params, FeatureBackends())
    assert "LPIPS" not in set(no_lpips["metric"])


def test_summarise_tiles_pools_tiles_and_bootstraps_over_slides() -> None:
    per_tile = pd.DataFrame(
        {
            "pair_id": ["s0"] * 3 + ["s1"] * 1 + ["s2"] * 2,
            "split": "test",
            "comparison": "generated_vs_histology",
            "metric": "SSIM",
            "value": [0.1, 0.2, 0.3, 0.9, 0.5, 0.5],
        }
    )
    table = summarise_tiles(per_tile, "tiles_256", n_boot=300, seed=0)
    assert list(table.columns) == list(TABLE_COLUMNS)
    row = table.iloc[0]
    assert row["value"] == pytest.approx(2.5 / 6)  # mean over tiles
    assert (row["n_tiles"], row["n_slides"]) == (6, 3)
    assert 0.2 <= row["ci_low"] <= row["value"] <= row["ci_high"] <= 0.9
    mi = summarise_tiles(per_tile.assign(metric="MI"), "x", n_boot=5, mi_bins=20)
    assert mi.loc[0, "note"] == "grey-level MI, 20 bins, nats"


def test_summarise_sets_fid_equals_pytorch_fid_and_notes_small_n() -> None:
    rng = np.random.default_rng(2)
    g = rng.normal(size=(30, 64))
    b = rng.normal(size=(30, 64)) + 0.5
    slides = np.repeat(["a", "b", "c"], 10)
    table = summarise_sets(
        {"g": g, "b": b},
        slides,
        [("generated_vs_histology", "g", "b")],
        "exp",
        "test",
        n_boot=20,
        kid_subset_size=20,
        kid_subsets=5,
    )
    fid = table[table["metric"] == "FID"].iloc[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fid_score.calculate_frechet_distance(*feature_statistics(g), *feature_statistics(b))
    assert fid["value"] == pytest.approx(float(ref), rel=1e-5)
    assert "N=30 tiles < 2048" in fid["note"]
    assert fid["ci_low"] <= fid["ci_high"] and (fid["n_tiles"], fid["n_slides"]) == (30, 3)
    kid = table[table["metric"] == "KID"].iloc[0]
    assert kid["value"] > 0


def test_one_slide_has_no_interval_and_says_so() -> None:
    per_tile = pd.DataFrame(
        {
            "pair_id": "only",
            "split": "test",
            "comparison": "generated_vs_histology",
            "metric": "MI",
            "value": [0.2, 0.4, 0.3],
        }
    )
    row = summarise_tiles(per_tile, "msi_unet", n_boot=50).iloc[0]
    assert row["value"] == pytest.approx(0.3) and row["n_slides"] == 1
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
    assert row["note"] == "grey-level MI, 20 bins, nats; 1 slide: no interval over slides"
    rng = np.random.default_rng(3)
    sets = summarise_sets(
        {"g": rng.normal(size=(12, 8)), "b": rng.normal(size=(12, 8))},
        np.repeat("only", 12),
        [("generated_vs_histology", "g", "b")],
        "msi_unet",
        "test",
        n_boot=10,
    )
    assert sets["ci_low"].isna().all() and sets["value"].notna().all()
    assert sets["note"].str.endswith("1 slide: no interval over slides").all()
    assert "0.300 (3/1)" in render_markdown(summarise_tiles(per_tile, "m"), "t")


def test_missing_rows_and_markdown() -> None:
    rows = missing_rows("exp", "test", ["generated_vs_histology"], {"FID": "no weights"}, 4, 2)
    assert rows.loc[0, "note"] == "missing: no weights" and math.isnan(rows.loc[0, "value"])
    present = pd.DataFrame(
        [
            {
                "experiment": "exp",
                "split": "test",
                "comparison": "generated_vs_histology",
                "metric": "SSIM",
                "value": 0.5,
                "ci_low": 0.4,
                "ci_high": 0.6,
                "n_tiles": 4,
                "n_slides": 2,
                "note": "",
            }
        ]
    )
    text = render_markdown(pd.concat([present, rows]), "Table 1")
    assert "| SSIM | generated_vs_histology | 0.500 [0.400, 0.600] (4/2) |" in text
    assert "| FID | generated_vs_histology | missing |" in text
    assert "- missing: no weights" in text


def _two_slide_ssim() -> pd.DataFrame:
    """Per-tile rows of one tile on each of two test slides (SSIM 0.4 and 0.6)."""
    return pd.DataFrame(
        {
            "pair_id": ["s0", "s1"],
            "split": "test",
            "comparison": "generated_vs_histology",
            "metric": "SSIM",
            "value": [0.4, 0.6],
        }
    )


def test_markdown_lists_what_each_model_was_trained_with() -> None:
    per_tile = _two_slide_ssim()
    fp32 = "cpu, fp32, torch 2.14.1, CPU AVX2 without native bf16, 2 threads"
    bf16 = "cpu, bf16, torch 2.14.1, CPU AVX512 with native bf16, 2 threads"
    parts = [
        summarise_tiles(per_tile, name, n_boot=10).assign(trained_with=setting)
        for name, setting in (("a", fp32), ("b", bf16), ("c", fp32))
    ]
    table = pd.concat(parts, ignore_index=True)
    text = render_markdown(table, "t")
    assert f"- Trained with {fp32}: a, c" in text
    assert f"- Trained with {bf16}: b" in text
    # rows without the information (e.g. an untrained method) add no line
    assert "Trained with" not in render_markdown(parts[0].assign(trained_with=np.nan), "t")


def test_views_are_described_in_physical_units_once_per_experiment() -> None:
    """Issue 14: ``tiles_256`` of the miniature demo is 64 px of a 270 µm grid, and says so."""
    from mrihisto_kedro.evaluation.table import view_description

    assert view_description(64, 269.8) == "64 px at 270 µm/px (17.3 mm a side)"
    assert view_description(256, 7.5) == "256 px at 7.5 µm/px (1.92 mm a side)"
    assert view_description(128, 1.996) == "128 px at 2 µm/px (0.255 mm a side)"
    per_tile = _two_slide_ssim()
    table = pd.concat(
        [
            summarise_tiles(per_tile, "tiles_256", n_boot=10).assign(
                views=view_description(64, 269.8)
            ),
            summarise_tiles(per_tile, "old", n_boot=10).assign(views=np.nan),
        ],
        ignore_index=True,
    )
    text = render_markdown(table, "t")
    assert text.count("- Views of tiles_256: 64 px at 270 µm/px (17.3 mm a side)") == 1
    assert "Views of old" not in text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_tiles_per_slide": 0}, "'e.tiles.max_tiles_per_slide' must be >= 1, got 0"),
        ({"mi_bins": 1}, "'e.tiles.mi_bins' must be >= 2, got 1"),
        ({"mi_base": 0.0}, "'e.tiles.mi_base' must be > 0, got 0.0"),
        ({"mi_base": 1}, "'e.tiles.mi_base' must not be 1"),
        ({"batch_size": 0}, "'e.tiles.batch_size' must be >= 1, got 0"),
        ({"seed": -1}, "'e.tiles.seed' must be >= 0, got -1"),
        ({"target_name": "H&E"}, "'e.tiles.target_name' must be a Python identifier"),
        ({"input_name": "t 1"}, "'e.tiles.input_name' must be a Python identifier"),
        ({"splits": "test"}, "'e.tiles.splits' must be a list"),
    ],
)
def test_tile_parameters_name_the_dotted_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError) as error:
        parse_params(TileEvaluationParams, values, "e.tiles")
    assert message in str(error.value)


def test_tile_parameters_coerce_yaml_values() -> None:
    params = parse_params(
        TileEvaluationParams, {"splits": ["test"], "a_range": [0, 255], "mi_base": 2}, "e.tiles"
    )
    assert params.splits == ("test",) and params.a_range == (0.0, 255.0)
    assert isinstance(params.mi_base, float) and params.max_tiles_per_slide is None
