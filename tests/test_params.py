"""Parameter parsing names the bad key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import pytest

from mrihisto_kedro.nn.configs import LRPolicy
from mrihisto_kedro.params import ParameterError, Params, Range, fail, parse_params
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
        (
            {"downsample_factr": 15},
            "parameter 'data_engineering' has unknown key(s) 'downsample_factr'",
        ),
        ({"downsample_factor": "15x"}, "'data_engineering.downsample_factor' must be a number"),
        ({"downsample_factor": 0.5}, "'data_engineering.downsample_factor' must be >= 1, got 0.5"),
        (
            {"splits": {"train": 0.9}},
            "'data_engineering.splits' fractions train, val, test must sum",
        ),
        ({"slide_mask": {"max_size": 1.5}}, "'data_engineering.slide_mask.max_size' must be an"),
        ({"mri_mask": {"extra": 1}}, "'data_engineering.mri_mask'"),
    ],
)
def test_errors_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(ParameterError) as err:
        parse_params(DataEngineeringParams, values, "data_engineering")
    assert message in str(err.value)


def test_fixed_length_tuples_keep_their_values() -> None:
    @dataclass(frozen=True)
    class Fractions:
        values: tuple[float, float, float] = (0.7, 0.1, 0.2)

    assert parse_params(Fractions, {"values": [0.5, 0.25, 0.25]}).values == (0.5, 0.25, 0.25)
    with pytest.raises(ParameterError, match=r"'values\[1\]' must be a number"):
        parse_params(Fractions, {"values": [0.5, "x", 0.25]})
    with pytest.raises(ParameterError, match="must have 3 items"):
        parse_params(Fractions, {"values": [0.5, 0.5]})


@dataclass(frozen=True)
class _Inner(Params):
    side: Annotated[int, Range(ge=16)] = 256


@dataclass(frozen=True)
class _Outer(Params):
    """A parameter group with every kind of field the mechanism handles."""

    kind: LRPolicy = LRPolicy.LINEAR
    fraction: Annotated[float, Range(gt=0.0, le=1.0)] = 0.5
    limit: Annotated[int, Range(ge=1)] | None = None
    levels: tuple[int, ...] = (4, 2, 1)
    sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)
    inner: _Inner = field(default_factory=_Inner)

    def validate(self) -> None:
        if len(self.sigmas) != len(self.levels):
            fail("sigmas", f"must have one value per level ({len(self.levels)})")


def test_params_coerce_once_however_built() -> None:
    """YAML values (strings, lists, mappings, numpy scalars) become the declared types, whether
    parsed from a mapping or passed to the constructor."""
    import numpy as np

    parsed = parse_params(
        _Outer,
        {"kind": "CONSTANT", "levels": [8, 4], "sigmas": [1, 0], "inner": {"side": 64}},
    )
    built = _Outer(kind="constant", levels=[np.int64(8), 4], sigmas=[1, 0], inner={"side": 64})
    assert parsed == built
    assert parsed.kind is LRPolicy.CONSTANT and parsed.levels == (8, 4)
    assert parsed.sigmas == (1.0, 0.0) and isinstance(parsed.sigmas[0], float)
    assert isinstance(parsed.inner, _Inner) and parsed.inner.side == 64
    assert type(built.levels[0]) is int


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fraction": 0.0}, r"'g\.fraction' must be in \(0, 1\], got 0\.0"),
        ({"fraction": float("nan")}, r"'g\.fraction' must be in \(0, 1\], got nan"),
        ({"limit": 0}, r"'g\.limit' must be >= 1, got 0"),
        ({"limit": True}, r"'g\.limit' must be an integer, got True"),
        ({"kind": "cosine"}, r"'g\.kind' = 'cosine' is not one of: linear, constant"),
        ({"inner": {"side": 8}}, r"'g\.inner\.side' must be >= 16, got 8"),
        ({"inner": {"sid": 8}}, r"'g\.inner' has unknown key\(s\) 'sid'"),
        ({"sigmas": [1.0]}, r"'g\.sigmas' must have one value per level \(3\)"),
        ({"levels": [4, "2"]}, r"'g\.levels\[1\]' must be an integer"),
    ],
)
def test_every_error_names_the_dotted_key(values: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_params(_Outer, values, "g")


def test_construction_in_code_checks_the_same_rules() -> None:
    """The same declared ranges and rules apply without parse_params (keys are then the field's)."""
    with pytest.raises(ParameterError, match=r"parameter 'fraction' must be in \(0, 1\]"):
        _Outer(fraction=1.5)
    with pytest.raises(ParameterError, match=r"parameter 'inner\.side' must be >= 16"):
        _Outer(inner={"side": 1})
    with pytest.raises(ParameterError, match=r"parameter 'sigmas' must have one value per"):
        _Outer(sigmas=(1.0,))


def test_range_describes_its_bounds() -> None:
    assert Range(ge=1).describe() == ">= 1"
    assert Range(gt=0.0, le=1.0).describe() == "in (0, 1]"
    assert Range(ge=0.0, lt=1.0).describe() == "in [0, 1)"
    assert Range(le=5).describe() == "<= 5"
    assert not Range(ge=0.0).contains(float("inf"))
    assert Range(ge=0.0, finite=False).contains(float("inf"))
    assert not Range(ge=0.0, finite=False).contains(float("nan"))


def test_model_configs_round_trip_through_their_dict() -> None:
    """What checkpoints store (to_dict) builds the same config back (from_dict)."""
    import math

    from mrihisto_kedro.nn.models import CycleGANConfig, Pix2PixConfig

    config = CycleGANConfig(norm="batch", generator="resnet_6blocks", upsampling="resize_conv")
    assert CycleGANConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["upsampling"] == "resize_conv"
    with pytest.raises(ValueError, match=r"parameter 'lr' must be >= 1e-30, got inf"):
        Pix2PixConfig.from_dict({"lr": math.inf})
    with pytest.raises(ParameterError, match=r"'beta1' must be in \[0, 1\), got 1\.0"):
        Pix2PixConfig(beta1=1.0)
