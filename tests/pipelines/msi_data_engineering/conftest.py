"""Shared fixtures of the msi_data_engineering tests (builders in ``msi_test_inputs``)."""

from __future__ import annotations

import pytest
from msi_test_inputs import MsiInputs, make_msi_inputs


@pytest.fixture(scope="session")
def msi_inputs(tmp_path_factory: pytest.TempPathFactory) -> MsiInputs:
    """A 3-specimen simulated demo and the first nodes' outputs (see ``msi_test_inputs``)."""
    return make_msi_inputs(tmp_path_factory.mktemp("msi_inputs"))
