"""The ``msi_data_engineering`` parameter blocks: ranges, cross-field rules, dotted keys."""

from __future__ import annotations

from typing import Any

import pytest

from mrihisto_kedro.imaging.registration import TissueChannel
from mrihisto_kedro.msi.params import (
    MSI_OPTIMISER,
    MsiRegistrationParams,
    MsiTilingParams,
    ReductionParams,
    RegistrationMode,
    SpectraParams,
)
from mrihisto_kedro.msi.reduction import ReductionMethod
from mrihisto_kedro.msi.spectra import BinUnit, DistanceUnit
from mrihisto_kedro.params import ParameterError, parse_params

ROOT = "msi_data_engineering"


@pytest.mark.parametrize(
    ("cls", "block", "values", "key", "reason"),
    [
        (SpectraParams, "spectra", {"bin_width": 0.0}, "bin_width", "must be > 0, got 0.0"),
        (SpectraParams, "spectra", {"n_peaks": 0}, "n_peaks", "must be >= 1, got 0"),
        (SpectraParams, "spectra", {"half_window_bins": -1}, "half_window_bins", "must be >= 0"),
        (SpectraParams, "spectra", {"min_distance": -1.0}, "min_distance", "must be >= 0"),
        (
            SpectraParams,
            "spectra",
            {"mz_range": [900.0, 100.0]},
            "mz_range",
            "must satisfy 0 <= min < max, got (900.0, 100.0)",
        ),
        (SpectraParams, "spectra", {"mz_range": [100.0]}, "mz_range", "must have 2 items"),
        (
            SpectraParams,
            "spectra",
            {"bin_unit": "ppm", "mz_range": [0.0, 900.0]},
            "mz_range",
            "must start above 0 for a ppm axis",
        ),
        (
            SpectraParams,
            "spectra",
            {"distance_unit": "bins", "min_distance": 0.5},
            "min_distance",
            "must be >= 1 with distance_unit bins, got 0.5",
        ),
        (SpectraParams, "spectra", {"bin_unit": "mz"}, "bin_unit", "= 'mz' is not one of"),
        (
            ReductionParams,
            "reduction",
            {"percentiles": [99.0, 1.0]},
            "percentiles",
            "must satisfy 0 <= lo < hi <= 100, got (99.0, 1.0)",
        ),
        (ReductionParams, "reduction", {"method": "ica"}, "method", "= 'ica' is not one of"),
        (ReductionParams, "reduction", {"standardise": "yes"}, "standardise", "true or false"),
        (
            MsiRegistrationParams,
            "registration",
            {"mode": "landmarks"},
            "mode",
            "= 'landmarks' is not one of: control_points, intensity",
        ),
        (MsiRegistrationParams, "registration", {"downsample": 0}, "downsample", "must be >= 1"),
        (
            MsiRegistrationParams,
            "registration",
            {"canvas_margin_px": -1},
            "canvas_margin_px",
            "must be >= 0",
        ),
        (
            MsiRegistrationParams,
            "registration",
            {"moving_channel": 3},
            "moving_channel",
            "must be in [0, 2], got 3",
        ),
        (
            MsiRegistrationParams,
            "registration",
            {"tre_grid_step_um": 0.0},
            "tre_grid_step_um",
            "must be > 0, got 0.0",
        ),
        (
            MsiRegistrationParams,
            "registration",
            {"fixed_channel": "blue"},
            "fixed_channel",
            "= 'blue' is not one of",
        ),
        (MsiTilingParams, "tiling", {"tile_size": 7}, "tile_size", "must be >= 8, got 7"),
        (MsiTilingParams, "tiling", {"stride": 0}, "stride", "must be >= 1, got 0"),
        (
            MsiTilingParams,
            "tiling",
            {"min_msi_fraction": 1.5},
            "min_msi_fraction",
            "must be in [0, 1], got 1.5",
        ),
    ],
)
def test_bad_values_name_their_dotted_key(
    cls: type, block: str, values: dict[str, Any], key: str, reason: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_params(cls, values, f"{ROOT}.{block}")
    assert caught.value.key == f"{ROOT}.{block}.{key}"
    assert reason in caught.value.reason
    with pytest.raises(ParameterError, match=f"parameter '{key}' "):
        cls(**values)  # constructed in code: the same checks


def test_yaml_values_are_coerced_once() -> None:
    spectra = parse_params(
        SpectraParams,
        {"bin_unit": "PPM", "mz_range": [100, 900], "distance_unit": "bins", "min_distance": 2},
        f"{ROOT}.spectra",
    )
    assert spectra.bin_unit is BinUnit.PPM and spectra.distance_unit is DistanceUnit.BINS
    assert spectra.mz_range == (100.0, 900.0) and isinstance(spectra.min_distance, float)
    reduction = ReductionParams(method="tsne", percentiles=[0, 100])  # type: ignore[arg-type]
    assert reduction.method is ReductionMethod.TSNE and reduction.percentiles == (0.0, 100.0)
    registration = MsiRegistrationParams(
        mode="intensity",  # type: ignore[arg-type]
        fixed_channel="optical_density",  # type: ignore[arg-type]
        moving_channel=None,
    )
    assert registration.mode is RegistrationMode.INTENSITY
    assert registration.fixed_channel is TissueChannel.OPTICAL_DENSITY
    assert MsiTilingParams(stride=None).stride is None


def test_optimiser_defaults_and_nested_keys() -> None:
    assert MsiRegistrationParams().optimiser is MSI_OPTIMISER
    parsed = parse_params(
        MsiRegistrationParams, {"optimiser": {"metric_bins": 32}}, f"{ROOT}.registration"
    )
    assert parsed.optimiser.metric_bins == 32
    with pytest.raises(ParameterError) as caught:
        parse_params(
            MsiRegistrationParams, {"optimiser": {"metric_binz": 32}}, f"{ROOT}.registration"
        )
    assert caught.value.key == f"{ROOT}.registration.optimiser"
    assert "unknown key(s) 'metric_binz'" in caught.value.reason
