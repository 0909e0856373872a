"""``lgml train`` and :func:`lgml.modeling.train.train_from_config` end to end on small simulated
panels: the bundle written, refusals, gates, calibration, determinism, growth intervals and the
drift reference."""

import json

import pytest
from typer.testing import CliRunner

from lgml.cli import app
from lgml.config import TrainConfig
from lgml.modeling.bundle import load_bundle
from lgml.modeling.train import train_from_config

FIRMS = 3_000
GROWTH = f"""
task: growth
name: t-growth
seed: 7
data: {{simulate: {{firms: {FIRMS}, seed: 5}}}}
split: {{train_until: 2022, valid: [2023], test: [2024, 2025]}}
lightgbm: {{num_leaves: 7, min_child_samples: 50, num_boost_round: 40, early_stopping_rounds: 10, num_threads: 1}}
extra_features: [holds_title]
intervals: {{row_rate: 0.5}}
gates: {{beat_rules: false}}
mlflow: {{enabled: false}}
"""


@pytest.fixture(scope="module")
def growth_run(tmp_path_factory):
    cfg = TrainConfig.from_yaml(GROWTH.replace("mlflow:", f"models_dir: {tmp_path_factory.mktemp('g')}\nmlflow:"))
    return cfg, train_from_config(cfg)


def test_cli_writes_the_bundle(cli_run):
    work, result = cli_run
    assert result.exit_code == 0, result.output
    folder = work / "models" / "t-designation"
    for name in ("model.txt", "calibration.json", "metadata.json", "evaluation.json", "config.yaml",
                 "context.parquet", "reference.json", "plots/calibration.png", "plots/roc.png", "plots/pr.png",
                 "manifest.json"):
        assert (folder / name).is_file(), name
    assert not [p for p in (work / "models").iterdir() if p.name.startswith(".")]  # no temp folders left
    for scorer in ("model", "rules", "logistic", "oracle"):
        assert scorer in result.output
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert set(evaluation["populations"]) == {"all", "pool"}
    assert set(evaluation["populations"]["pool"]) == {"model", "rules", "logistic", "oracle"}
    assert {"auc", "pr_auc", "brier", "log_loss", "ece", "topk_precision"} <= set(evaluation["populations"]["all"]["model"])
    assert evaluation["gates"]["passed"] is True


def test_cli_refuses_to_overwrite_and_reports_config_errors(cli_run, designation_yaml, tmp_path):
    work, _ = cli_run
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        again = runner.invoke(app, ["train", "--config", "designation.yaml", "--no-track"])
    assert again.exit_code == 1 and "--overwrite" in again.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(designation_yaml.replace("calibration: isotonic", "calibration: sigmoid"), encoding="utf-8")
    result = runner.invoke(app, ["train", "--config", str(bad), "--no-track"])
    assert result.exit_code == 2
    assert "calibration: Input should be 'spline', 'isotonic', 'platt' or 'none'" in result.output
    assert "Traceback" not in result.output


def test_cli_exits_1_when_a_gate_fails(designation_yaml, tmp_path):
    text = (designation_yaml.replace("gates: {beat_rules: false}", "gates: {auc_min: 0.9999, beat_rules: false}")
            .replace("num_boost_round: 60", "num_boost_round: 5"))
    (tmp_path / "gated.yaml").write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        result = CliRunner().invoke(app, ["train", "--config", "gated.yaml", "--no-track"])
    assert result.exit_code == 1
    assert "Quality gates failed: auc_all >= auc_min" in result.output
    assert (tmp_path / "models" / "t-designation" / "model.txt").is_file()  # kept for inspection


def test_calibration_lowers_ece_on_held_out_batches(designation_bundle):
    # is_unbalance inflates the raw probabilities; isotonic fitted on 2024 fixes them for 2025.
    cal = designation_bundle.evaluation["calibration"]
    assert cal["test_ece_calibrated"] < 0.5 * cal["test_ece_uncalibrated"]


def test_same_config_twice_gives_identical_model(cli_run, designation_yaml, tmp_path):
    work, _ = cli_run
    (tmp_path / "designation.yaml").write_text(designation_yaml, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        train_from_config(TrainConfig.from_file("designation.yaml"))
    first = (work / "models" / "t-designation" / "model.txt").read_bytes()
    second = (tmp_path / "models" / "t-designation" / "model.txt").read_bytes()
    assert first == second


def test_growth_bundle_with_intervals(growth_run):
    cfg, result = growth_run
    b = load_bundle(result.bundle_path)
    assert b.task == "growth" and b.calibrator is None
    assert b.features[-1] == "holds_title" and b.metadata["feature_groups"]["holds_title"] == "specialization"
    assert set(b.metadata["feature_groups"]) == set(b.features)
    assert (b.path / "model_p10.txt").is_file() and (b.path / "model_p90.txt").is_file()
    ev = result.evaluation
    assert set(ev["populations"]["all"]) == {"model", "linear", "oracle"}
    assert {"r2", "rmse", "mae", "spearman"} <= set(ev["populations"]["all"]["model"])
    assert ev["populations"]["all"]["model"]["r2"] > 0
    from lgml.simulate import simulate
    from lgml.features import build_features

    sim = simulate(FIRMS, seed=5)
    table = build_features(sim.panel, sim.events).query("year == 2024")
    point, interval = b.predict(table), b.predict_interval(table)
    assert interval.shape == (len(table), 2) and (interval[:, 0] <= interval[:, 1]).all()
    inside = ((point >= interval[:, 0]) & (point <= interval[:, 1])).mean()
    assert inside > 0.8
