"""Shared fixtures: simulated panels, and one tiny designation and growth model trained on the
simulated default, are built once per test session."""

import os
from pathlib import Path

import pandas as pd
import pytest

from lgml import io
from lgml.simulate import simulate

DESIGNATION_CONFIG = """
task: designation
name: test-designation
seed: 5
data: {{simulate: {{firms: 3000, seed: 11}}}}
split: {{train_until: 2022, valid: [2023], test: [2024, 2025]}}
lightgbm: {{num_threads: 2, num_boost_round: 60, learning_rate: 0.1, num_leaves: 15, min_child_samples: 40,
            early_stopping_rounds: 20}}
monotone: {{rd_intensity: 1, class1_ip: 1, debt_ratio: -1}}
calibration: spline
mlflow: {{enabled: false}}
models_dir: '{models}'
"""
GROWTH_CONFIG = """
task: growth
name: test-growth
seed: 5
data: {{simulate: {{firms: 3000, seed: 11}}}}
split: {{train_until: 2022, valid: [2023], test: [2024]}}
lightgbm: {{num_threads: 2, num_boost_round: 10, learning_rate: 0.3, num_leaves: 7, early_stopping_rounds: 5}}
mlflow: {{enabled: false}}
models_dir: '{models}'
"""


def train_tiny(sim, config_text: str, folder: Path) -> Path:
    """Train a bundle with the training verb on an already simulated panel; returns its folder."""
    from lgml.config import TrainConfig
    from lgml.modeling.train import train_from_config
    from lgml.modeling.dataset import Source

    config = TrainConfig.from_yaml(config_text.format(models=folder.as_posix()))
    return train_from_config(config, source=Source(sim.panel, sim.events, sim.truth)).bundle_path


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


@pytest.fixture(scope="session")
def data_dir(small_sim, tmp_path_factory) -> Path:
    """``panel.parquet`` and ``events.parquet`` of :func:`small_sim`."""
    folder = tmp_path_factory.mktemp("data")
    io.write_table(small_sim.panel, folder / "panel.parquet")
    io.write_table(small_sim.events, folder / "events.parquet")
    return folder


@pytest.fixture(scope="session")
def bundle_dir(small_sim, tmp_path_factory) -> Path:
    """A designation bundle (60 trees, isotonic calibration) trained on :func:`small_sim`."""
    return train_tiny(small_sim, DESIGNATION_CONFIG, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def growth_dir(small_sim, tmp_path_factory) -> Path:
    """A growth bundle (with p10/p90 quantile models) trained on :func:`small_sim`."""
    return train_tiny(small_sim, GROWTH_CONFIG, tmp_path_factory.mktemp("growth-models"))


@pytest.fixture(scope="session")
def bundle(bundle_dir):
    from lgml.modeling.bundle import load_bundle

    return load_bundle(bundle_dir)


@pytest.fixture(scope="session")
def context(bundle) -> pd.DataFrame:
    context = bundle.context
    assert context is not None, "the bundle should carry the province/sector records it was trained with"
    return context


@pytest.fixture(scope="session")
def table(small_sim, context) -> pd.DataFrame:
    """Feature rows of every firm-year of :func:`small_sim`, with the bundle's context."""
    from lgml.features import build_features

    return build_features(small_sim.panel, small_sim.events, context)


@pytest.fixture(scope="session")
def candidates(table) -> pd.DataFrame:
    """3,000 candidate rows of batches 2023-2025."""
    rows = table[(table["batch_year"].between(2023, 2025)) & ~table["holds_title"]]
    return rows.sample(n=min(3000, len(rows)), random_state=0)
