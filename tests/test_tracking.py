"""Experiment tracking: runs, the registry's aliases and models loaded back from MLflow.

Every test works in its own SQLite store under tmp_path (a copy of one store created per
session, since creating MLflow's tables takes seconds) and runs in tmp_path, so nothing lands
in the working directory. SQLite skips fsync here: durability is not under test, and MLflow's
hundreds of small transactions would otherwise make the module's time depend on the disk.
"""

import pickle
import json
import shutil
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from sqlalchemy import event
from sqlalchemy.engine import Engine

from lgml import tracking
from lgml.cli import app
from typer.testing import CliRunner
from lgml.config import TrainConfig
from lgml.modeling.integrity import write_manifest
from lgml.features import CATEGORICAL, build_features
from lgml.modeling.bundle import Bundle, load_bundle
from lgml.modeling.train import train_from_config

# Small and quick: 1,500 simulated firms, at most 20 boosting rounds.
CONFIG = """
task: {task}
name: {name}
seed: 7
data: {{simulate: {{firms: 1500, seed: 11}}}}
split: {{train_until: 2022, valid: [2023], test: [2024, 2025]}}
lightgbm: {{num_threads: 1, num_boost_round: 20, early_stopping_rounds: 5}}
gates: {{beat_rules: false}}
mlflow: {{tracking_uri: '{uri}', experiment: lgml-test}}
models_dir: {models}
"""


def make_config(task: str, name: str, uri: str = "sqlite:///unused.db", models: str = "models",
                **mlflow_settings) -> TrainConfig:
    config = TrainConfig.from_yaml(CONFIG.format(task=task, name=name, uri=uri, models=models))
    if task == "growth":  # as configs/growth.yaml: designation lifts later growth
        config = config.model_copy(update={"extra_features": ["holds_title"]})
    if mlflow_settings:
        config = config.model_copy(update={"mlflow": config.mlflow.model_copy(update=mlflow_settings)})
    return config


def evaluation(passed: bool) -> dict:
    """The shape of lgml.modeling.evaluate.evaluate's report."""
    return {"task": "designation", "n_rows": 5000, "test_batches": [2024, 2025],
            "populations": {"all": {"model": {"auc": 0.81, "ece": None}, "oracle": {"auc": 0.84}},
                            "pool": {"model": {"auc": 0.7}, "oracle": {"auc": 0.74}}},
            "by_province": {"Jiangsu": {"n": 300, "model": {"auc": 0.8}}},
            "calibration_curve": {"model": {"p_mean": [0.1, 0.2]}},
            "gates": {"passed": passed, "checks": [{"name": "auc_all >= auc_min", "value": 0.81, "passed": passed}]}}


@pytest.fixture(scope="module")
def features(small_sim) -> pd.DataFrame:
    """Feature rows to score (a larger panel than the one the bundles are trained on)."""
    return build_features(small_sim.panel, small_sim.events)


@pytest.fixture(scope="module")
def designation_bundle(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("models")
    return train_from_config(make_config("designation", "lgml-designation", models=str(models))).bundle_path


@pytest.fixture(scope="module")
def growth_bundle(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("models")
    return train_from_config(make_config("growth", "lgml-growth", models=str(models))).bundle_path


def _no_fsync(dbapi_connection, connection_record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


@pytest.fixture(scope="module", autouse=True)
def sqlite_without_fsync():
    event.listen(Engine, "connect", _no_fsync)
    yield
    event.remove(Engine, "connect", _no_fsync)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()  # creates the tables once
    return db


@pytest.fixture
def store(empty_store, tmp_path, monkeypatch) -> str:
    """A fresh tracking store in tmp_path, which is also the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def as_strings(table: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as strings, the type MLflow's pyfunc signature takes them in."""
    return table.astype({c: "str" for c in CATEGORICAL})


# --- Where runs go ------------------------------------------------------------------------------

def test_tracking_uri_precedence_config_env_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    configured = make_config("designation", "x", uri="sqlite:////srv/mlflow/runs.db").mlflow
    unset = make_config("designation", "x", tracking_uri=None).mlflow

    assert tracking.resolve_tracking_uri(unset) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.resolve_tracking_uri(unset) == "http://tracking.example:5000"
    assert tracking.resolve_tracking_uri(configured) == "sqlite:////srv/mlflow/runs.db"


def test_stale_file_store_is_bypassed_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlruns" / "0").mkdir(parents=True)
    (tmp_path / "mlruns" / "0" / "meta.yaml").write_text("name: Default\n")

    with caplog.at_level("WARNING", logger="lgml.tracking"):
        uri = tracking.resolve_tracking_uri()
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert "migrate-filestore" in caplog.text

    caplog.clear()
    (tmp_path / "mlflow.db").touch()
    with caplog.at_level("WARNING", logger="lgml.tracking"):
        tracking.resolve_tracking_uri()
    assert caplog.text == ""


def test_artifacts_go_beside_a_sqlite_database():
    assert tracking.artifact_location("sqlite:////data/ml/mlflow.db", "lgml") == "file:///data/ml/mlruns/lgml"
    assert tracking.artifact_location("sqlite:////data/ml/mlflow.db", "a b/c") == "file:///data/ml/mlruns/a_b_c"
    assert tracking.artifact_location("http://tracking.example:5000", "lgml") is None


def test_flattened_names_are_valid_mlflow_keys():
    assert tracking.evaluation_metrics(evaluation(False)) == {
        "n_rows": 5000.0, "all.model.auc": 0.81, "all.oracle.auc": 0.84, "pool.model.auc": 0.7,
        "pool.oracle.auc": 0.74, "gates.passed": 0.0}
    assert tracking.evaluation_metrics({"populations": {"all": {"model": {"r²": 0.1}}}, "by year": {"2024": 5}}) == {
        "all.model.r_": 0.1, "by year.2024": 5.0}
    params = tracking.run_params(make_config("designation", "x"), {"lightgbm_params": {"objective": "binary"}})
    assert params["lightgbm.num_leaves"] == "31" and params["seed"] == "7" and params["split.test"] == "[2024, 2025]"
    assert params["lightgbm_params.objective"] == "binary"
    assert "data.panel" not in params and "best_iteration" not in params  # unset: left out, not "None"


# --- Logging a run ----------------------------------------------------------------------------

def test_log_training_records_run_and_registers_champion(designation_bundle, store, tmp_path):
    config = make_config("designation", "lgml-designation", uri=store)
    result = tracking.log_training(designation_bundle, config)
    bundle = load_bundle(designation_bundle)

    client = mlflow.MlflowClient(store)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "lgml-designation"
    assert run.data.params["lightgbm.learning_rate"] == "0.05" and run.data.params["seed"] == "7"
    populations = bundle.evaluation["populations"]
    assert run.data.metrics["all.model.auc"] == populations["all"]["model"]["auc"]
    assert run.data.metrics["pool.oracle.auc"] == populations["pool"]["oracle"]["auc"]
    assert run.data.metrics["gates.passed"] == 1.0
    assert run.data.params["best_iteration"] == str(bundle.metadata["best_iteration"])
    assert run.data.tags["task"] == "designation" and run.data.tags["data_hash"] == bundle.metadata["data_hash"]
    files = {f.path for f in client.list_artifacts(result.run_id, "bundle")}
    assert {"bundle/model.txt", "bundle/metadata.json", "bundle/evaluation.json", "bundle/plots"} <= files
    plots = {f.path for f in client.list_artifacts(result.run_id, "bundle/plots")}
    assert plots == {"bundle/plots/roc.png", "bundle/plots/pr.png", "bundle/plots/calibration.png"}

    assert (result.model_name, result.model_version) == ("lgml-designation", 1)
    assert result.aliases == ["candidate", "champion"]
    for alias in ("candidate", "champion"):
        assert client.get_model_version_by_alias("lgml-designation", alias).version == 1
    # Artifacts stay beside the database; nothing is pickled.
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns" / "lgml-test").as_uri())
    assert not list((tmp_path / "mlruns").rglob("*.pkl"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlruns"]
    assert not mlflow.is_tracking_uri_set()  # the process-wide MLflow setting is left as it was


def retrained(bundle: Path, folder: Path, config_hash: str) -> Path:
    """A copy of ``bundle`` as if trained from another config (its ``config_hash`` changed)."""
    copy = folder / f"bundle-{config_hash}"
    shutil.copytree(bundle, copy)
    meta = json.loads((copy / "metadata.json").read_text(encoding="utf-8"))
    meta["config_hash"] = config_hash
    (copy / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    write_manifest(copy)  # as a save would
    return copy


def test_failed_gates_leave_the_champion_alias_alone(designation_bundle, store, tmp_path):
    config = make_config("designation", "lgml-designation", uri=store)
    client = mlflow.MlflowClient(store)

    failed = tracking.log_training(designation_bundle, config, evaluation(False))
    assert failed.aliases == ["candidate"]
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("lgml-designation", "champion")

    tracking.log_training(retrained(designation_bundle, tmp_path, "b"), config, evaluation(True))  # v2 champion
    tracking.log_training(retrained(designation_bundle, tmp_path, "c"), config, evaluation(False))  # v3 candidate
    assert client.get_model_version_by_alias("lgml-designation", "champion").version == 2
    assert client.get_model_version_by_alias("lgml-designation", "candidate").version == 3


def test_process_wide_mlflow_settings_are_put_back(designation_bundle, store, tmp_path, monkeypatch):
    config = make_config("designation", "lgml-designation", uri=store)
    # From the environment: afterwards MLflow follows the variable again, not a pinned copy.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    tracking.log_training(designation_bundle, make_config("designation", "lgml-designation", tracking_uri=None))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert not mlflow.is_tracking_uri_set()
    # Set explicitly elsewhere: the run still goes (and registers) where the config says.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    mlflow.set_tracking_uri(other)
    try:
        result = tracking.log_training(designation_bundle, config)
        assert mlflow.get_tracking_uri() == other
    finally:
        mlflow.set_tracking_uri(None)
    assert result.model_version == 1 and result.unchanged and not (tmp_path / "other.db").exists()


def test_the_same_model_again_registers_no_new_version(designation_bundle, store, tmp_path):
    config = make_config("designation", "lgml-designation", uri=store)
    client = mlflow.MlflowClient(store)
    first = tracking.log_training(designation_bundle, config)
    other = tracking.log_training(retrained(designation_bundle, tmp_path, "other-config"), config, evaluation(False))
    assert (first.model_version, other.model_version, other.unchanged) == (1, 2, False)
    again = tracking.log_training(designation_bundle, config)  # same model, config and data as version 1
    assert again.unchanged and again.model_version == 1 and again.aliases == []
    assert again.run_id not in (first.run_id, other.run_id)  # the run is still logged
    assert len(client.search_model_versions("name='lgml-designation'")) == 2
    assert client.get_model_version_by_alias("lgml-designation", "champion").version == 1
    assert client.get_model_version_by_alias("lgml-designation", "candidate").version == 2


def test_register_false_logs_without_registry(designation_bundle, store, tmp_path):
    config = make_config("designation", "lgml-designation", uri=store, register=False)
    result = tracking.log_training(designation_bundle, config)
    assert (result.model_name, result.model_version, result.aliases) == (None, None, [])
    assert mlflow.MlflowClient(store).search_registered_models() == []
    assert tracking.load_model(result.model_uri, tracking_uri=store, dst=tmp_path / "dl").task == "designation"


# --- Loading back ---------------------------------------------------------------------------------

def test_pyfunc_champion_predicts_like_the_bundle(designation_bundle, store, features, monkeypatch):
    tracking.log_training(designation_bundle, make_config("designation", "lgml-designation", uri=store))
    table = features.sample(300, random_state=0)
    expected = load_bundle(designation_bundle).predict(table)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    out = mlflow.pyfunc.load_model("models:/lgml-designation@champion").predict(as_strings(table))
    assert list(out.columns) == ["p_designation"] and out.index.equals(table.index)
    np.testing.assert_array_equal(out["p_designation"].to_numpy(), expected)


def test_pyfunc_growth_returns_point_and_interval(growth_bundle, store, features, monkeypatch):
    result = tracking.log_training(growth_bundle, make_config("growth", "lgml-growth", uri=store))
    table = features.head(200)
    bundle = load_bundle(growth_bundle)

    assert "holds_title" in bundle.features and table["holds_title"].dtype == bool

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    # The README's recipe: categoricals cast to strings, the flag left as the feature table holds it.
    out = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model").predict(as_strings(table))
    assert list(out.columns) == ["growth", "growth_p10", "growth_p90"]
    np.testing.assert_array_equal(out["growth"].to_numpy(), bundle.predict(table))
    np.testing.assert_array_equal(out[["growth_p10", "growth_p90"]].to_numpy(), bundle.predict_interval(table))


def test_load_model_from_every_kind_of_uri(designation_bundle, store, features, monkeypatch, tmp_path):
    result = tracking.log_training(designation_bundle, make_config("designation", "lgml-designation", uri=store))
    table = features.sample(300, random_state=1)  # pandas categoricals: the Bundle takes them as they are
    expected = load_bundle(designation_bundle).predict(table)

    # Loading reads model.txt, JSON and YAML only: any unpickling would fail here.
    def refuse(*args, **kwargs):
        raise AssertionError("load_model unpickled something")
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)

    uris = ["models:/lgml-designation@champion", "models:/lgml-designation@candidate", "models:/lgml-designation/1",
            f"runs:/{result.run_id}/model", f"runs:/{result.run_id}/bundle", result.model_uri]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the given store is used, not one in the working directory
    for i, uri in enumerate(uris):
        bundle = tracking.load_model(uri, tracking_uri=store, dst=tmp_path / "downloads" / str(i))
        assert isinstance(bundle, Bundle) and bundle.path.is_relative_to(tmp_path / "downloads"), uri
        np.testing.assert_array_equal(bundle.predict(table), expected)
    assert list(elsewhere.iterdir()) == [] and not mlflow.is_tracking_uri_set()
    # With no tracking URI given, the same precedence as for logging applies (here: ./mlflow.db).
    monkeypatch.chdir(tmp_path)
    bundle = tracking.load_model("models:/lgml-designation@champion", dst=tmp_path / "downloads" / "default")
    np.testing.assert_array_equal(bundle.predict(table), expected)
    # A plain bundle folder is loaded in place.
    assert tracking.load_model(designation_bundle).path == designation_bundle


def test_load_model_errors_name_the_location(store, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        tracking.load_model(tmp_path / "absent")
    with pytest.raises(ValueError, match="neither an lgml bundle"):
        tracking.load_model(elsewhere)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    (tmp_path / "temp").mkdir()
    with pytest.raises(tracking.TrackingError, match=f"no-such-model.*{store}"):
        tracking.load_model("models:/no-such-model@champion", tracking_uri=store)
    # No stray store in the working directory, no empty download folder left behind.
    assert list(elsewhere.iterdir()) == [] and list((tmp_path / "temp").iterdir()) == []
    # With no store configured, the default one is not created just to find it empty.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["report", "--model", "models:/nope@champion", "--out", "r.html"])
    assert result.exit_code == 1 and "no tracking store at" in result.output, result.output
    assert "Traceback" not in result.output
    assert list(elsewhere.iterdir()) == [] and list((tmp_path / "temp").iterdir()) == []


def test_models_serve_as_the_readme_says(growth_bundle, store, features, tmp_path):
    """``. .venv/bin/activate; mlflow models serve -m models:/… --env-manager local``: the server
    starts (its uvicorn found on the activated PATH) and answers JSON requests like the bundle."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    tracking.log_training(growth_bundle, make_config("growth", "lgml-growth", uri=store))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = str(Path(sys.executable).parent)  # what activating the environment puts first on PATH
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "MLFLOW_TRACKING_URI": store,
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen(["mlflow", "models", "serve", "-m", "models:/lgml-growth@champion", "--env-manager",
                               "local", "--port", str(port)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).status == 200:
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(server.stdout.read().decode(errors="replace")[-2000:]) from None
                time.sleep(0.5)
        bundle = load_bundle(growth_bundle)
        rows = features.head(5)
        sent = as_strings(rows[[*bundle.features, "year"]])  # the year picks the growth level, as in predict
        body = {"dataframe_split": json.loads(sent.to_json(orient="split", index=False))}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())["predictions"]
        np.testing.assert_allclose([a["growth"] for a in answer], bundle.predict(rows), rtol=1e-9)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
