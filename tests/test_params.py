"""Parameter parsing names the bad key."""

from __future__ import annotations

import pytest

from mrihisto_kedro.params import ParameterError, parse_params
from mrihisto_kedro.pipelines.data_engineering.nodes import DataEngineeringParams


def test_defaults_and_nested() -> None:
    p = parse_params(
        DataEngineeringParams, {"downsample_factor": 10, "splits": {"seed": 3}}, "data_engineering"
    )
    assert p.downsample_factor == 10.0
    assert p.splits.seed == 3 and p.splits.train == 0.625


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"downsample_factr": 15}, "unknown parameter(s) 'downsample_factr' in 'data_engineering'"),
        ({"downsample_factor": "15x"}, "'data_engineering.downsample_factor' must be a number"),
        ({"downsample_factor": 0.5}, "downsample_factor must be >= 1"),
        ({"splits": {"train": 0.9}}, "sum to 1"),
        ({"slide_mask": {"max_size": 1.5}}, "'data_engineering.slide_mask.max_size' must be an"),
        ({"mri_mask": {"extra": 1}}, "'data_engineering.mri_mask'"),
    ],
)
def test_errors_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(ParameterError) as err:
        parse_params(DataEngineeringParams, values, "data_engineering")
    assert message in str(err.value)


def test_fixed_length_tuples_keep_their_values() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Fractions:
        values: tuple[float, float, float] = (0.7, 0.1, 0.2)

    assert parse_params(Fractions, {"values": [0.5, 0.25, 0.25]}).values == (0.5, 0.25, 0.25)
    with pytest.raises(ParameterError, match=r"'values\[1\]' must be a number"):
        parse_params(Fractions, {"values": [0.5, "x", 0.25]})
    with pytest.raises(ParameterError, match="must have 3 items"):
        parse_params(Fractions, {"values": [0.5, 0.5]})


def test_check_int_and_check_number_are_the_one_scalar_check() -> None:
    """One implementation for the model and DCGAN configs (they had drifted: the model configs
    accepted an infinite learning rate, the DCGAN's did not)."""
    import math

    import numpy as np

    from mrihisto_kedro.nn.models import Pix2PixConfig
    from mrihisto_kedro.params import check_int, check_number

    check_int("ngf", 64, 1)
    check_int("ngf", np.int64(64), 1)
    for bad in (0, True, 1.0, "64"):
        with pytest.raises(ValueError, match=r"ngf must be an integer >= 1, got"):
            check_int("ngf", bad, 1)
    check_number("lr", 2e-4, 0.0)
    check_number("beta1", 0.5, 0.0, 1.0)
    for bad, high in ((math.inf, None), (math.nan, None), (True, None), (1.0, 1.0), (-1e-9, None)):
        with pytest.raises(ValueError, match=r"lr must be a number "):
            check_number("lr", bad, 0.0, high)
    with pytest.raises(ValueError, match=r"lr must be a number >= 1e-30, got inf"):
        Pix2PixConfig.from_dict({"lr": math.inf})
