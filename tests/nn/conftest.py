"""Fixtures of the nn tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test here on one torch thread (the root conftest's ``one_torch_thread``)."""
