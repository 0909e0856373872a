"""Fixtures of the scoring tests: the session's designation and growth models (tests/conftest.py)
score the shared simulated panel (3,000 firms), read as Parquet and CSV."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from lgml import io
from lgml.score import score_file

@pytest.fixture(scope="session")
def models(bundle_dir, growth_dir) -> dict[str, Path]:
    """The session's designation and growth bundles (tests/conftest.py)."""
    return {"designation": bundle_dir, "growth": growth_dir}


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
    ``edit(meta)`` changed in place, its manifest written again."""
    from lgml.modeling.integrity import write_manifest

    def copy(src: Path, dst: Path, edit) -> Path:
        shutil.copytree(src, dst)
        meta = json.loads((dst / "metadata.json").read_text(encoding="utf-8"))
        edit(meta)
        (dst / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
        write_manifest(dst)  # as a save would
        return dst
    return copy



@pytest.fixture(scope="session")
def review_dir(small_sim, tmp_path_factory) -> Path:
    """The session's tiny review bundle (tests/score/review_training.py; shared with tests/explain)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("review_training", Path(__file__).with_name("review_training.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.review_model(small_sim, tmp_path_factory)


@pytest.fixture(scope="session")
def horizon3_dir(models, tmp_path_factory) -> Path:
    """The session's designation model as a horizon-3 model whose calibration is flattened
    (log-odds halved, then lowered by 1.5): higher than the horizon-1 model for unlikely firms,
    lower for likely ones, so that the two horizons disagree in order for some firms."""
    from lgml.modeling.integrity import write_manifest

    dst = tmp_path_factory.mktemp("h3") / "bundle"
    shutil.copytree(models["designation"], dst)
    meta = json.loads((dst / "metadata.json").read_text(encoding="utf-8"))
    meta.update(horizon=3, name="test-designation-h3")
    (dst / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    calibration = json.loads((dst / "calibration.json").read_text(encoding="utf-8"))
    calibration["y"] = [0.5 * y - 1.5 for y in calibration["y"]]
    calibration["slope"] = 0.5 * calibration["slope"]
    (dst / "calibration.json").write_text(json.dumps(calibration), encoding="utf-8")
    write_manifest(dst)
    return dst
