"""Fixtures of the modeling tests: one small designation bundle trained by ``lgml train`` and the
split rows of its config, each built once per session."""

import warnings

import pytest
from typer.testing import CliRunner

from lgml.cli import app
from lgml.config import TrainConfig
from lgml.modeling.bundle import BundleVersionWarning, load_bundle
from lgml.modeling.dataset import Source, model_data

FIRMS = 3_000
DESIGNATION = f"""
task: designation
name: t-designation
seed: 7
data: {{simulate: {{firms: {FIRMS}, seed: 5}}}}
split: {{train_until: 2023, valid: [2024], test: [2025]}}
lightgbm: {{num_leaves: 7, min_child_samples: 20, num_boost_round: 60, early_stopping_rounds: 20,
            imbalance: is_unbalance, negative_rate: 0.5, num_threads: 1}}
monotone: {{rd_intensity: 1}}
level_adjust: {{by: province, rounds: 3, min_child_samples: 20}}
calibration: isotonic
gates: {{beat_rules: false}}
mlflow: {{enabled: false}}
"""


@pytest.fixture(scope="session")
def designation_yaml() -> str:
    """The designation config's text (3,000 simulated firms, 60 rounds at most)."""
    return DESIGNATION


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory):
    """``lgml train --no-track`` once, in its own working folder."""
    work = tmp_path_factory.mktemp("cli")
    (work / "designation.yaml").write_text(DESIGNATION, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        result = CliRunner().invoke(app, ["train", "--config", "designation.yaml", "--no-track"])
    return work, result


@pytest.fixture(scope="session")
def designation_bundle(cli_run):
    work, result = cli_run
    assert result.exit_code == 0, result.output
    with warnings.catch_warnings():
        warnings.simplefilter("error", BundleVersionWarning)
        return load_bundle(work / "models" / "t-designation")


@pytest.fixture(scope="session")
def designation_data(small_sim):
    cfg = TrainConfig.from_yaml(DESIGNATION)
    return cfg, model_data(Source(small_sim.panel, small_sim.events, small_sim.truth), cfg)
