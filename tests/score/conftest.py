"""Fixtures of the scoring tests: one small designation model and one growth model (with
quantiles) trained once per session through the training API (1,500 simulated firms, few
rounds); they score the shared simulated panel (3,000 firms)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from lgml import io
from lgml.score import score_file

TRAIN_CONFIG = """
task: {task}
name: score-test-{task}
seed: 3
data: {{simulate: {{firms: 1500, seed: 4}}}}
split: {{train_until: 2022, valid: [2023], test: [2024, 2025]}}
lightgbm: {{num_threads: 1, num_boost_round: 40, learning_rate: 0.1, num_leaves: 15, min_child_samples: 40,
            early_stopping_rounds: 10}}
gates: {{beat_rules: false}}
mlflow: {{enabled: false}}
models_dir: '{models}'
"""


def _train(folder: Path, task: str) -> Path:
    """A small bundle trained through the training API (few rounds, no tracking)."""
    from lgml.config import TrainConfig
    from lgml.modeling.train import train_from_config

    text = TRAIN_CONFIG.format(task=task, models=folder.as_posix())
    return Path(train_from_config(TrainConfig.from_yaml(text)).bundle_path)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("score-models")
    return {task: _train(folder, task) for task in ("designation", "growth")}


@pytest.fixture(scope="session")
def data(small_sim, tmp_path_factory) -> dict[str, Path]:
    """The panel as Parquet (firms' years shuffled across small row groups), CSV and events."""
    folder = tmp_path_factory.mktemp("score-data")
    shuffled = small_sim.panel.sample(frac=1.0, random_state=1).reset_index(drop=True)
    shuffled.to_parquet(folder / "panel.parquet", index=False, row_group_size=700)
    shuffled.to_csv(folder / "panel.csv", index=False)
    io.write_table(small_sim.events, folder / "events.parquet")
    return {"parquet": folder / "panel.parquet", "csv": folder / "panel.csv", "events": folder / "events.parquet"}


@pytest.fixture(scope="session")
def score(models, data):
    """``score(out, **kwargs)``: :func:`score_file` of the shared panel with events and both
    models, the scores read back."""
    def run(out: Path, **kwargs) -> pd.DataFrame:
        score_file(models["designation"], kwargs.pop("input", data["parquet"]), out, events=data["events"],
                   growth_model=models["growth"], overwrite=True, **kwargs)
        return io.read_table(out) if out.suffix == ".csv" else pd.read_parquet(out)
    return run


@pytest.fixture(scope="session")
def reference(score, tmp_path_factory) -> pd.DataFrame:
    """Scores of the whole panel read in one chunk."""
    return score(tmp_path_factory.mktemp("ref") / "scores.parquet", chunk_rows=10**6)


@pytest.fixture(scope="session")
def edit_bundle():
    """``edit_bundle(src, dst, edit)``: a copy of bundle ``src`` at ``dst`` whose metadata
    ``edit(meta)`` changed in place."""
    def copy(src: Path, dst: Path, edit) -> Path:
        shutil.copytree(src, dst)
        meta = json.loads((dst / "metadata.json").read_text(encoding="utf-8"))
        edit(meta)
        (dst / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
        return dst
    return copy
