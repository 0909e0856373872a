"""Training end to end on small simulated panels: split, calibration, bundle, determinism, CLI."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml.cli import app
from lgml.config import TrainConfig
from lgml.modeling import bundle as bundle_mod
from lgml.modeling.bundle import BundleError, BundleInputError, load_bundle
from lgml.modeling.data import Source, model_data, model_frame
from lgml.modeling.pipeline import train_from_config

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
def cli_run(tmp_path_factory):
    """``lgml train --no-track`` once, in its own working folder."""
    work = tmp_path_factory.mktemp("cli")
    (work / "designation.yaml").write_text(DESIGNATION, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        result = CliRunner().invoke(app, ["train", "--config", "designation.yaml", "--no-track"])
    return work, result


@pytest.fixture(scope="module")
def designation_bundle(cli_run):
    work, result = cli_run
    assert result.exit_code == 0, result.output
    with warnings.catch_warnings():
        warnings.simplefilter("error", bundle_mod.BundleVersionWarning)
        return load_bundle(work / "models" / "t-designation")


@pytest.fixture(scope="module")
def growth_run(tmp_path_factory):
    cfg = TrainConfig.from_yaml(GROWTH.replace("mlflow:", f"models_dir: {tmp_path_factory.mktemp('g')}\nmlflow:"))
    return cfg, train_from_config(cfg)


@pytest.fixture(scope="module")
def designation_data(small_sim):
    cfg = TrainConfig.from_yaml(DESIGNATION)
    return cfg, model_data(Source(small_sim.panel, small_sim.events, small_sim.truth), cfg)


def test_split_has_no_leakage(designation_data):
    cfg, data = designation_data
    sets = data.sets
    years = {name: set(frame["batch_year"]) for name, frame in sets.items()}
    assert max(years["train"]) <= cfg.split.train_until
    assert years["valid"] == set(cfg.split.valid) and years["test"] == set(cfg.split.test)
    assert not (years["train"] & years["valid"] or years["train"] & years["test"] or years["valid"] & years["test"])
    keys = pd.concat([f[["firm_id", "year"]] for f in sets.values()])
    assert not keys.duplicated().any()
    for frame in sets.values():
        assert frame["target"].notna().all() and set(frame["target"].unique()) == {0.0, 1.0}
        assert not frame["holds_title"].any()  # title holders are never candidates
        assert frame["oracle"].notna().all()
    assert "target" not in data.features and "designated_next" not in data.features


def test_cli_writes_the_bundle(cli_run):
    work, result = cli_run
    assert result.exit_code == 0, result.output
    folder = work / "models" / "t-designation"
    for name in ("model.txt", "calibration.json", "metadata.json", "evaluation.json", "config.yaml",
                 "context.parquet", "plots/calibration.png", "plots/roc.png", "plots/pr.png"):
        assert (folder / name).is_file(), name
    assert not [p for p in (work / "models").iterdir() if p.name.startswith(".")]  # no temp folders left
    for scorer in ("model", "rules", "logistic", "oracle"):
        assert scorer in result.output
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert set(evaluation["populations"]) == {"all", "pool"}
    assert set(evaluation["populations"]["pool"]) == {"model", "rules", "logistic", "oracle"}
    assert {"auc", "pr_auc", "brier", "log_loss", "ece", "topk_precision"} <= set(evaluation["populations"]["all"]["model"])
    assert evaluation["gates"]["passed"] is True


def test_cli_refuses_to_overwrite_and_reports_config_errors(cli_run, tmp_path):
    work, _ = cli_run
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        again = runner.invoke(app, ["train", "--config", "designation.yaml", "--no-track"])
    assert again.exit_code == 1 and "--overwrite" in again.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(DESIGNATION.replace("calibration: isotonic", "calibration: sigmoid"), encoding="utf-8")
    result = runner.invoke(app, ["train", "--config", str(bad), "--no-track"])
    assert result.exit_code == 2
    assert "calibration: Input should be 'isotonic', 'platt' or 'none'" in result.output
    assert "Traceback" not in result.output


def test_cli_exits_1_when_a_gate_fails(tmp_path):
    text = (DESIGNATION.replace("gates: {beat_rules: false}", "gates: {auc_min: 0.9999, beat_rules: false}")
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


def test_bundle_round_trip_gives_identical_predictions(designation_bundle, small_sim):
    from lgml.features import build_features

    table = build_features(small_sim.panel, small_sim.events)
    table = table[table["batch_year"] == 2025]
    b = designation_bundle
    raw = b.booster.predict(model_frame(table, b.features, b.categorical_levels), raw_score=True)
    np.testing.assert_array_equal(b.predict_raw(table), raw)
    p = b.predict(table)
    np.testing.assert_array_equal(p, b.calibrator.transform(raw))
    assert ((p >= 0) & (p <= 1)).all()
    # Column order and category order in the input do not matter.
    shuffled = table[table.columns[::-1]].assign(province=table["province"].astype(object))
    np.testing.assert_array_equal(b.predict(shuffled), p)
    again = load_bundle(b.path)
    np.testing.assert_array_equal(again.predict(table), p)
    assert b.metadata["model_sha256"] == bundle_mod.sha256_file(b.path / "model.txt")
    assert b.features == b.metadata["features"] and b.task == "designation"


def test_level_rounds_split_only_on_province(designation_bundle):
    from lgml.modeling.train import split_features

    b = designation_bundle
    meta = b.metadata
    assert meta["best_iteration"] < meta["n_trees"] <= meta["best_iteration"] + 3
    assert split_features(b.booster, b.features, first_tree=meta["best_iteration"]) == {"province"}
    assert isinstance(b.context, pd.DataFrame) and set(b.context["kind"]) == {"province", "sector"}


def test_same_config_twice_gives_identical_model(cli_run, tmp_path):
    work, _ = cli_run
    (tmp_path / "designation.yaml").write_text(DESIGNATION, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        train_from_config(TrainConfig.from_file("designation.yaml"))
    first = (work / "models" / "t-designation" / "model.txt").read_bytes()
    second = (tmp_path / "models" / "t-designation" / "model.txt").read_bytes()
    assert first == second


def test_bundle_rejects_missing_columns_and_unseen_levels(designation_bundle, small_sim):
    from lgml.features import build_features

    table = build_features(small_sim.panel, small_sim.events).head(40).copy()
    table["province"] = table["province"].astype(object)
    table.loc[table.index[:3], "province"] = "Atlantis"
    table["sector"] = table["sector"].astype(object)
    table.loc[table.index[:5], "sector"] = "6"  # unpadded code: not a level
    with pytest.raises(BundleInputError) as err:
        designation_bundle.prepare(table.drop(columns=["rd_intensity", "score_total"]))
    message = str(err.value)
    assert "missing column(s) (2): rd_intensity, score_total" in message
    assert "province: 3 row(s) with unseen level(s) 'Atlantis' x3" in message
    assert "sector: 5 row(s) with unseen level(s) '6' x5" in message
    with pytest.raises(BundleInputError, match=r"revenue: 1 row\(s\) not numeric"):
        designation_bundle.prepare(table.assign(revenue=["n/a"] + [1.0] * 39, province="Beijing", sector="34"))


def test_altered_bundle_is_refused(designation_bundle, tmp_path):
    import shutil

    copy = shutil.copytree(designation_bundle.path, tmp_path / "copy")
    with open(copy / "model.txt", "a") as fh:
        fh.write("\n")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(copy)


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


@pytest.mark.parametrize("method", ["isotonic", "platt", "none"])
def test_calibrators_round_trip_through_json(method):
    from lgml.modeling.calibrate import calibrator_from_dict, make_calibrator

    rng = np.random.default_rng(0)
    raw = rng.normal(-3, 1.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(0.5 * raw - 1)))).astype(int)
    cal = make_calibrator(method).fit(raw, y)
    again = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_array_equal(again.transform(raw), cal.transform(raw))
    p = cal.transform(raw)
    assert ((p >= 0) & (p <= 1)).all()
    if method != "none":  # fitted calibrators match the observed rate
        assert abs(p.mean() - y.mean()) < 0.01


def test_metrics_on_known_cases():
    from lgml.modeling.evaluate import expected_calibration_error, topk_precision

    y = np.array([0, 0, 1, 1, 0, 1])
    groups = pd.DataFrame({"province": ["A", "A", "A", "B", "B", "B"], "batch_year": 2025})
    # A has 1 positive: its top-1 is the positive; B has 2: its top-2 hold one of them.
    score = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.7])
    assert topk_precision(y, score, groups) == pytest.approx(2 / 3)
    # Bins {0.1, 0.2}, {0.3, 0.4}, {0.5, 0.6}: |0 - 0.15|, |1 - 0.35|, |0.5 - 0.55|.
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert expected_calibration_error(y, p, n_bins=3) == pytest.approx((0.15 + 0.65 + 0.05) / 3)
    assert expected_calibration_error(y.astype(float), y.astype(float), n_bins=2) == 0


def test_optuna_tuning_runs_and_is_recorded(designation_data):
    from lgml.modeling.pipeline import _levels
    from lgml.modeling.train import fit_model

    cfg, data = designation_data
    cfg = cfg.model_copy(update={"tuning": cfg.tuning.model_copy(update={"n_trials": 2})})
    fit = fit_model(data, cfg, _levels(data.features))
    assert fit.tuning["n_trials"] == 2 and set(fit.tuning["best_params"]) >= {"num_leaves", "min_child_samples"}
    assert fit.params["num_leaves"] == fit.tuning["best_params"]["num_leaves"]


def test_bundle_predicts_from_a_row_major_matrix_like_lightgbm_from_the_frame(designation_bundle, small_sim):
    """bundle.predict_raw feeds LightGBM a C-ordered float matrix; the values equal LightGBM's
    own pandas route (categories mapped to the model's levels, unknown ones missing)."""
    from lgml.features import build_features
    from lgml.modeling.data import lightgbm_matrix

    table = build_features(small_sim.panel, small_sim.events).sample(n=2000, random_state=0)
    table.loc[table.index[:50], "ownership"] = np.nan
    X = designation_bundle.prepare(table)
    matrix = lightgbm_matrix(X, designation_bundle.booster.pandas_categorical)
    assert matrix.flags["C_CONTIGUOUS"] and matrix.shape == X.shape
    assert np.isnan(matrix[:50, X.columns.get_loc("ownership")]).all()
    expected = designation_bundle.booster.predict(X, raw_score=True)
    np.testing.assert_array_equal(designation_bundle.predict_raw(table), expected)


def test_bundle_predictions_come_from_the_compiled_kernel_and_equal_lightgbm(designation_bundle, small_sim,
                                                                             monkeypatch):
    """Large tables are predicted by lgml.modeling.forest; the values are LightGBM's, bit for bit."""
    from lgml.features import build_features
    from lgml.kernels import forest

    table = build_features(small_sim.panel, small_sim.events).sample(n=3000, random_state=1)
    calls = []
    kernel = forest.predict_forest
    monkeypatch.setattr(forest, "predict_forest", lambda f, m: calls.append(len(m)) or kernel(f, m))
    matrix = designation_bundle.model_matrix(table)
    raw = designation_bundle.raw_from_matrix(matrix)
    assert calls == [3000]
    np.testing.assert_array_equal(raw, designation_bundle.booster.predict(matrix, raw_score=True))
    np.testing.assert_array_equal(designation_bundle.predict_raw(table), raw)
