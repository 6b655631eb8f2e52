"""Shared fixtures: where the real sample data lives (``../shared/data`` beside the clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with the reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (only present beside CI clones)")
    return SHARED_DATA


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The numerics of this machine as torch sees them, at the top of every test log (issue 13:
    trajectories and ``precision: auto`` depend on them)."""
    import torch

    from mrihisto_kedro.nn.device import describe_numerics, numerics_report

    report = numerics_report(torch.device("cpu"), "auto", False)
    return [
        f"numerics: {describe_numerics(report)} (precision auto resolves to "
        f"{report['precision']} here; the demo pins fp32)",
        f"cuda: {torch.cuda.is_available()}, mkldnn: {torch.backends.mkldnn.is_available()}",
    ]
