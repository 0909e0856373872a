"""Shared fixtures: simulated panels are built once per test session."""

import os

import pytest

from lgml.simulate import simulate


@pytest.fixture(scope="session", autouse=True)
def lgml_cache_dir(tmp_path_factory):
    """Caches (the TreeSHAP tables) go to a folder of this session, never to the user's home."""
    before = os.environ.get("LGML_CACHE_DIR")
    folder = tmp_path_factory.mktemp("lgml-cache")
    os.environ["LGML_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("LGML_CACHE_DIR", None)
    else:
        os.environ["LGML_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def small_sim():
    """A small simulated panel (3,000 firms): fast, for shape and contract tests."""
    return simulate(3_000, seed=11)


@pytest.fixture(scope="session")
def calib_sim():
    """A panel large enough for the calibration targets' tolerances (60,000 firms, ~3 s)."""
    return simulate(60_000, seed=2024)
