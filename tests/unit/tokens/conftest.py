"""Fixtures for the token client's unit tests."""

from __future__ import annotations

import pytest
from tokens_testkit import PKI, make_pki


@pytest.fixture(scope="session")
def pki() -> PKI:
    return make_pki()
