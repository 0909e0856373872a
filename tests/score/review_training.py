"""The tiny review model of the scoring and explanation tests, trained once per session (the
bundle is kept in the session's base temporary folder, shared by tests/score and tests/explain)."""

from __future__ import annotations

from pathlib import Path

REVIEW_CONFIG = """
task: review
name: test-review
seed: 5
data: {{simulate: {{firms: 3000, seed: 11}}}}
split: {{train_until: 2025, valid: [2026], test: [2027]}}
lightgbm: {{num_threads: 1, num_boost_round: 30, learning_rate: 0.3, num_leaves: 4, min_child_samples: 3,
            min_sum_hessian_in_leaf: 0, early_stopping_rounds: 30}}
calibration: platt
gates: {{beat_rules: false}}
mlflow: {{enabled: false}}
models_dir: '{models}'
"""


def review_model(sim, tmp_path_factory) -> Path:
    """A review bundle (about 10 s; few review rows, so small leaves) trained on ``sim``."""
    folder = tmp_path_factory.getbasetemp() / "review-models"
    if not (folder / "test-review" / "manifest.json").exists():
        from lgml.config import TrainConfig
        from lgml.modeling.dataset import Source
        from lgml.modeling.train import train_from_config

        config = TrainConfig.from_yaml(REVIEW_CONFIG.format(models=folder.as_posix()))
        train_from_config(config, source=Source(sim.panel, sim.events, None))
    return folder / "test-review"
