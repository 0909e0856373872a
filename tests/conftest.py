"""Shared fixtures: simulated panels are built once per test session."""

import pytest

from lgml.simulate import simulate


@pytest.fixture(scope="session")
def small_sim():
    """A small simulated panel (3,000 firms): fast, for shape and contract tests."""
    return simulate(3_000, seed=11)


@pytest.fixture(scope="session")
def calib_sim():
    """A panel large enough for the calibration targets' tolerances (60,000 firms, ~3 s)."""
    return simulate(60_000, seed=2024)
