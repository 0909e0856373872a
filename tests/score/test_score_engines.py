"""Scoring engines and model sources: a model from an MLflow URI, the Dask engine equal to the
local one."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml.cli import app

runner = CliRunner()


def test_scores_a_model_from_an_mlflow_uri(models, data, reference, tmp_path, monkeypatch):
    tracking = pytest.importorskip("lgml.tracking")
    from lgml.config import TrainConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    config = TrainConfig.from_file(models["designation"] / "config.yaml")
    config = config.model_copy(update={"mlflow": config.mlflow.model_copy(update={"enabled": True})})
    logged = tracking.log_training(models["designation"], config)
    result = runner.invoke(app, ["score", "--model", f"models:/{logged.model_name}@candidate", "--input",
                                 str(data["parquet"]), "--output", str(tmp_path / "s.parquet"),
                                 "--events", str(data["events"]), "--growth-model", str(models["growth"])])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s.parquet"), reference)


@pytest.mark.slow
def test_dask_local_cluster_equals_local(score, reference, tmp_path):
    """About 10-20 s: two worker processes start and import lightgbm."""
    scores = score(tmp_path / "dask.parquet", engine="dask", chunk_rows=5000)
    pd.testing.assert_frame_equal(scores, reference)
