"""The parameter files state what differs from the dataclass defaults, never a copy of one.

A default copied into YAML drifts when the code's default changes (issue 17 found
``n_figure_tiles`` at 3 in YAML and 4 in the dataclass); every parameter group that a registered
pipeline's node reads is compared, leaf by leaf, with its dataclass, in every environment.

The one exception is an experiment's design, its ``tiling`` and ``training`` blocks: they write
down the experiment as run (tile size, model type, U-Net-256, the paper's lr and lambda_L1), so
that changing a library default never changes a registered experiment's result unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pytest
from kedro.config import OmegaConfigLoader

from mrihisto_kedro.experiments import EXPERIMENTS
from mrihisto_kedro.params import Params, Range, default_copies
from mrihisto_kedro.pipeline_registry import register_pipelines
from mrihisto_kedro.pipelines.parameter_checks import ParsedAs, parameter_inputs, subtree

REPO_ROOT = Path(__file__).resolve().parents[1]


_DESIGN = {f"{e.name}.{block}" for e in EXPERIMENTS for block in ("tiling", "training")}


def _copies(key: str, check: Any, values: Any) -> list[str]:
    if key in _DESIGN or not isinstance(check, ParsedAs):
        return []
    return default_copies(check.params_class, values, key)


@pytest.mark.parametrize("env", ["local", "paper", "full_scale"])
def test_no_parameter_file_copies_a_default(env: str) -> None:
    loader = OmegaConfigLoader(
        conf_source=str(REPO_ROOT / "conf"), base_env="base", default_run_env=env
    )
    params = loader["parameters"]
    seen: set[str] = set()
    copies: list[str] = []
    for pipeline in register_pipelines().values():
        for _, _, dataset, check in parameter_inputs(pipeline):
            key = dataset.removeprefix("params:")
            if key not in seen:
                seen.add(key)
                copies += _copies(key, check, subtree(params, key))
    assert len(seen - _DESIGN) > 15  # every experiment's evaluation and the pipelines'
    assert copies == [], f"{env}: these keys repeat their dataclass default: {copies}"


@dataclass(frozen=True)
class _Inner(Params):
    side: Annotated[int, Range(ge=16)] = 256


@dataclass(frozen=True)
class _Group(Params):
    levels: tuple[int, ...] = (4, 2, 1)
    rate: float = 0.5
    inner: _Inner = field(default_factory=_Inner)


def test_default_copies_finds_copies_after_coercion_and_in_nested_groups() -> None:
    values = {"levels": [4, 2, 1], "rate": 0.25, "inner": {"side": 256}, "unknown": 1}
    assert default_copies(_Group, values, "g") == ["g.levels", "g.inner.side"]
    assert default_copies(_Group, {"rate": 1, "inner": {"side": 64}}) == []
