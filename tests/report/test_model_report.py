"""The model report of a bundle trained by ``lgml train``: its drift section compares the data
with the training reference stored in the bundle."""

import json

import pytest
from typer.testing import CliRunner

from lgml.cli import app
from lgml.features import build_features
from lgml.report.model import build_model_report, model_report

@pytest.fixture(scope="module")
def trained(bundle):
    """The session's designation bundle (tests/conftest.py), trained on 3,000 simulated firms."""
    return bundle


def test_model_report_on_data_has_a_drift_table(trained, small_sim):
    table = build_features(small_sim.panel, small_sim.events, trained.context)
    report = model_report(trained, table, sample=300, seed=0)
    drift = report["drift"]
    assert drift and {d["feature"] for d in drift} == set(trained.features)
    assert all(d["level"] in ("stable", "moderate", "major") and d["psi"] >= 0 for d in drift)
    assert "drift_note" not in report and report["images"]["psi"].startswith("data:image/png;base64,")
    assert report["by_province"] and {"roc_pr", "calibration"} <= set(report["images"])


def test_report_of_a_simulated_model_without_data_uses_a_fresh_sample(trained):
    steps = []
    report = build_model_report(trained, sample=300, on_step=steps.append)
    assert steps == ["Building features", "Computing contributions and metrics"]
    assert "fresh simulated sample of 3,000 firms" in report["data_note"]
    assert report["drift"] and report["n_sample"] == 300


def test_cli_report_writes_the_drift_table(trained, tmp_path):
    out = tmp_path / "model.json"
    args = ["report", "--model", str(trained.path), "--sample", "300", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["drift"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_grouped_importance_ranks_innovation_and_specialization_above_region_and_sector(bundle, candidates):
    from lgml.explain.contributions import contributions
    from lgml.report.model import global_importance

    contrib, _ = contributions(bundle, candidates)
    _, by_group = global_importance(contrib)
    for strong in ("innovation", "specialization"):
        for weak in ("region", "sector"):
            assert by_group[strong] > by_group[weak], by_group.to_dict()


def test_cli_report(bundle_dir, data_dir, tmp_path):
    out = tmp_path / "model.html"
    args = ["report", "--model", str(bundle_dir), "--data", str(data_dir / "panel.parquet"),
            "--events", str(data_dir / "events.parquet"), "--sample", "800", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 4
    assert "Metrics by province" in html and "model &gt; rules" in html
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1
    js = tmp_path / "model.json"
    result = CliRunner().invoke(app, ["report", "--model", str(bundle_dir), "--sample", "500", "--out", str(js)])
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text(encoding="utf-8"))
    assert data["group_importance"]
    assert data["drift"], "the bundle's training reference gives a drift table even without --data"
    assert {"feature", "psi", "level"} <= set(data["drift"][0])
