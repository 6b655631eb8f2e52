"""Shared fixtures of the registration pipeline's tests (builders in ``registration_inputs``)."""

from __future__ import annotations

import pytest
from registration_inputs import RegistrationInputs, make_registration_inputs


@pytest.fixture(scope="session")
def registration_inputs(tmp_path_factory: pytest.TempPathFactory) -> RegistrationInputs:
    """Two pairs of real anatomy with known affines (see ``registration_inputs``)."""
    return make_registration_inputs(tmp_path_factory.mktemp("registration_inputs"))
