"""Scoring: streamed == in memory, batch-independent, clear errors, atomic output, both formats,
MLflow URIs and the Dask engine.

One small designation model and one growth model (with quantiles) are trained once per session
through the training API (1,500 simulated firms, few rounds); they score the shared simulated
panel (3,000 firms).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml import io, score as sc
from lgml.cli import app
from lgml.modeling.bundle import BundleInputError, load_bundle
from lgml.validate import ContractError

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
PREDICTIONS = ["probability", "growth", "growth_p10", "growth_p90"]
runner = CliRunner()


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


def _score(models, data, out: Path, **kwargs) -> pd.DataFrame:
    sc.score_file(models["designation"], kwargs.pop("input", data["parquet"]), out, events=data["events"],
                  growth_model=models["growth"], overwrite=True, **kwargs)
    return io.read_table(out) if out.suffix == ".csv" else pd.read_parquet(out)


@pytest.fixture(scope="session")
def reference(models, data, tmp_path_factory) -> pd.DataFrame:
    """Scores of the whole panel read in one chunk."""
    return _score(models, data, tmp_path_factory.mktemp("ref") / "scores.parquet", chunk_rows=10**6)


def _by_firm(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("firm_id").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Streaming and batch independence


@pytest.mark.parametrize("spill", [False, True], ids=["in-memory", "bucket-files"])
def test_chunked_equals_unchunked(models, data, reference, tmp_path, monkeypatch, spill):
    monkeypatch.setattr(sc, "MIN_BUCKET_ROWS", 2000)  # several buckets, a firm's years in different chunks
    if spill:  # the path of windows too large for memory
        monkeypatch.setattr(sc, "IN_MEMORY_ROWS", 0)
    stages: dict[str, tuple[int, int | None]] = {}
    chunked = _score(models, data, tmp_path / "chunked.parquet", chunk_rows=997,
                     progress=lambda stage, done, total: stages.__setitem__(stage, (done, total)))
    pd.testing.assert_frame_equal(chunked, reference)
    assert stages["score"] == ((5, 5) if spill else (1, 1))  # 9,000 window rows in buckets of about 2,000
    assert stages["read"][0] == len(pd.read_parquet(data["parquet"], columns=["year"]))
    assert reference["firm_id"].is_unique and len(reference) == 3000
    assert reference["year"].eq(2025).all() and reference["batch_year"].eq(2026).all()


def test_streamed_equals_in_memory(models, data, reference, small_sim):
    bundle, growth = load_bundle(models["designation"]), load_bundle(models["growth"])
    memory = sc.score_panel(small_sim.panel, bundle, growth=growth, events=small_sim.events,
                            context=bundle.context)
    cols = ["firm_id", "year", *PREDICTIONS, "rank_national", "rank_province", "percentile_province"]
    pd.testing.assert_frame_equal(_by_firm(memory[cols]), _by_firm(reference[cols]))


def test_one_firm_alone_equals_the_same_firm_in_a_batch(models, small_sim, reference):
    bundle, growth = load_bundle(models["designation"]), load_bundle(models["growth"])
    firm = reference.loc[reference["probability"].notna(), "firm_id"].iloc[10]
    alone = sc.score_panel(small_sim.panel[small_sim.panel["firm_id"] == firm], bundle, growth=growth,
                           events=small_sim.events, explain=True)
    batch = sc.score_panel(small_sim.panel, bundle, growth=growth, events=small_sim.events, explain=True)
    cols = [c for c in alone.columns if c == "reasons" or c.startswith("shap_") or c in PREDICTIONS]
    pd.testing.assert_frame_equal(alone[cols].reset_index(drop=True),
                                  batch.loc[batch["firm_id"] == firm, cols].reset_index(drop=True))
    assert alone["rank_national"].iloc[0] == 1


def test_ranks_percentiles_and_title_holders(reference):
    holders = reference["holds_title"].astype(bool)
    assert holders.any() and reference.loc[holders, ["probability", "rank_national"]].isna().all().all()
    candidates = reference[~holders]
    assert candidates["probability"].between(0, 1).all()
    top = candidates.loc[candidates["probability"].idxmax()]
    assert top["rank_national"] == 1 and top["percentile_national"] == 100
    for _, group in candidates.groupby("province"):
        best = group["probability"].max()
        assert (group.loc[group["probability"] == best, "rank_province"] == 1).all()
        assert (group["rank_province"] <= len(group)).all()
    assert reference["model"].eq("score-test-designation").all()
    assert reference["model_version"].str.len().gt(0).all()
    assert (reference["growth_p10"] <= reference["growth_p90"]).all()
    assert reference["designation_history"].str.startswith("events events.parquet").all()


def test_year_option_scores_that_year_and_counts_firms_without_it(models, data, tmp_path):
    result = sc.score_file(models["designation"], data["parquet"], tmp_path / "y.parquet", year=2021)
    scores = pd.read_parquet(tmp_path / "y.parquet")
    assert scores["year"].eq(2021).all() and result.scored == len(scores)
    assert result.skipped == result.firms - len(scores) > 0


def test_folder_of_yearly_files_skips_years_outside_the_window(models, data, small_sim, tmp_path):
    folder = tmp_path / "by_year"
    folder.mkdir()
    for year, rows in small_sim.panel.groupby("year"):
        rows.to_parquet(folder / f"firms_{year}.parquet", index=False)
    yearly = sc.score_file(models["designation"], folder, tmp_path / "a.parquet", year=2021)
    mixed = sc.score_file(models["designation"], data["parquet"], tmp_path / "b.parquet", year=2021)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))
    in_window = small_sim.panel["year"].between(2019, 2021).sum()
    assert yearly.rows_read == in_window < mixed.rows_read == len(small_sim.panel)
    # Without a year, the small folder is read into memory once, files joined into one table.
    latest = sc.score_file(models["designation"], folder, tmp_path / "c.parquet")
    sc.score_file(models["designation"], data["parquet"], tmp_path / "d.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "c.parquet"), pd.read_parquet(tmp_path / "d.parquet"))
    assert latest.rows_read == len(small_sim.panel) and latest.scored == small_sim.panel["firm_id"].nunique()


def test_bundle_without_context_falls_back_to_the_whole_input(models, data, tmp_path, monkeypatch, caplog):
    def drop_context(meta):
        del meta["sha256"]["context.parquet"]

    bundle = _edit_bundle(models["designation"], tmp_path / "old-bundle", drop_context)
    (bundle / "context.parquet").unlink()
    monkeypatch.setattr(sc, "MIN_BUCKET_ROWS", 2000)
    with caplog.at_level("WARNING", logger="lgml.score"):
        sc.score_file(bundle, data["parquet"], tmp_path / "a.parquet", chunk_rows=997)
    assert "no province/sector context" in caplog.text
    sc.score_file(bundle, data["csv"], tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))


def test_without_events_the_output_says_which_history_the_model_saw(models, data, tmp_path):
    result = sc.score_file(models["designation"], data["parquet"], tmp_path / "s.parquet")
    scores = pd.read_parquet(tmp_path / "s.parquet")
    assert scores["holds_title"].isna().all() and scores["probability"].notna().all()
    meta = load_bundle(models["designation"]).metadata
    assert "none given" in result.history and f"data sha256 {meta['data_hash'][:12]}" in result.history
    assert "labels of batches up to 2025" in result.history
    assert scores["designation_history"].eq(result.history).all()


# ---------------------------------------------------------------------------------------------
# Formats


def test_csv_in_and_out_equal_parquet(models, data, reference, tmp_path):
    from_csv = _score(models, data, tmp_path / "scores.csv", input=data["csv"], chunk_rows=5000)
    cols = ["firm_id", "year", "rank_national", *PREDICTIONS]
    expected = reference[cols].astype({"year": "str", "rank_national": "str"})
    got = from_csv[cols]
    assert got["firm_id"].tolist() == expected["firm_id"].tolist()
    np.testing.assert_allclose(got[PREDICTIONS].astype(float), expected[PREDICTIONS].astype(float), rtol=1e-12)
    assert (tmp_path / "scores.csv").read_bytes().startswith(b"\xef\xbb\xbf")  # BOM for Excel


def test_gbk_csv_with_chinese_headers_in_wan(models, small_sim, tmp_path):
    firms = small_sim.panel["firm_id"].drop_duplicates().head(50)
    panel = small_sim.panel[small_sim.panel["firm_id"].isin(firms)]
    money = ["revenue", "main_business_revenue", "net_profit", "total_assets", "total_liabilities", "rd_expense",
             "equity_financing"]
    headers = {"firm_id": "企业代码", "year": "年度", "province": "省份", "revenue": "营业收入(万元)"}
    wan = panel.assign(**{c: panel[c] / 1e4 for c in money}).rename(columns=headers)
    wan.to_csv(tmp_path / "firms.csv", index=False, encoding="gbk")
    result = sc.score_file(models["designation"], tmp_path / "firms.csv", tmp_path / "out.parquet", units="wan")
    assert result.scored == 50
    scores = pd.read_parquet(tmp_path / "out.parquet")
    assert scores["probability"].between(0, 1).all()


# ---------------------------------------------------------------------------------------------
# Errors


def _edit_bundle(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "metadata.json").read_text(encoding="utf-8"))
    edit(meta)
    (dst / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return dst


@pytest.mark.filterwarnings("ignore:Constructing a Categorical with a dtype and values")
def test_unseen_category_level_is_reported_with_counts(models, data, tmp_path):
    def drop_beijing(meta):
        meta["categorical_levels"]["province"].remove("Beijing")

    bundle = _edit_bundle(models["designation"], tmp_path / "bundle", drop_beijing)
    with pytest.raises(BundleInputError, match=r"province: \d+ row\(s\) with unseen level\(s\) 'Beijing' x\d+"):
        sc.score_file(bundle, data["parquet"], tmp_path / "out.parquet")
    result = runner.invoke(app, ["score", "--model", str(bundle), "--input", str(data["parquet"]),
                                 "--output", str(tmp_path / "out.parquet")])
    assert result.exit_code == 1, result.output
    assert "unseen level(s) 'Beijing'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_missing_model_column_is_reported(models, data, tmp_path):
    bundle = _edit_bundle(models["designation"], tmp_path / "bundle",
                          lambda meta: meta["features"].append("patent_citations"))
    result = runner.invoke(app, ["score", "--model", str(bundle), "--input", str(data["parquet"]),
                                 "--output", str(tmp_path / "out.parquet")])
    assert result.exit_code == 1
    assert "missing column(s) (1): patent_citations" in result.output and "Traceback" not in result.output


def test_contract_errors_name_column_rule_and_examples_across_chunks(models, small_sim, tmp_path):
    panel = small_sim.panel.copy()
    latest = panel.groupby("firm_id")["year"].transform("max") == panel["year"]
    bad = panel.index[latest][[5, 2000]]
    panel.loc[bad, "employees"] = -3
    panel.to_parquet(tmp_path / "bad.parquet", row_group_size=1000)
    with pytest.raises(ContractError) as err:
        sc.score_file(models["designation"], tmp_path / "bad.parquet", tmp_path / "out.parquet", chunk_rows=1000)
    text = str(err.value)
    assert "employees (2 rows): must be >= 0" in text
    for firm in panel.loc[bad, "firm_id"]:
        assert firm in text
    result = runner.invoke(app, ["score", "--model", str(models["designation"]), "--input",
                                 str(tmp_path / "bad.parquet"), "--output", str(tmp_path / "out.parquet")])
    assert result.exit_code == 1 and "must be >= 0" in result.output and "Traceback" not in result.output

    panel.drop(columns=["revenue"]).to_parquet(tmp_path / "norev.parquet")
    result = runner.invoke(app, ["score", "--model", str(models["designation"]), "--input",
                                 str(tmp_path / "norev.parquet"), "--output", str(tmp_path / "out.parquet")])
    assert result.exit_code == 1 and "revenue: required column is missing" in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_duplicate_firm_years_in_different_chunks_are_reported(models, small_sim, tmp_path):
    panel = small_sim.panel
    dup = panel[panel["year"] == panel["year"].max()].head(1)
    pd.concat([dup, panel, dup]).to_parquet(tmp_path / "dup.parquet", row_group_size=500)
    with pytest.raises(ContractError, match=r"firm_id, year \(3 rows\): must be unique"):
        sc.score_file(models["designation"], tmp_path / "dup.parquet", tmp_path / "out.parquet", chunk_rows=500)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_interrupted_write_leaves_no_partial_file(models, data, tmp_path, monkeypatch, suffix):
    import pyarrow.parquet as pq

    out = tmp_path / f"scores{suffix}"
    calls = {"n": 0}

    def fail_second_block(original):
        def wrapper(self, *args, **kwargs):
            target = str(getattr(self, "where", self))
            if out.name in target or suffix == ".csv":
                calls["n"] += 1
                if calls["n"] == 2:
                    raise KeyboardInterrupt("interrupted")
            return original(self, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(sc, "WRITE_ROWS", 500)
    if suffix == ".parquet":
        monkeypatch.setattr(pq.ParquetWriter, "write_table", fail_second_block(pq.ParquetWriter.write_table))
    else:
        monkeypatch.setattr(pd.DataFrame, "to_csv", fail_second_block(pd.DataFrame.to_csv))
    with pytest.raises(KeyboardInterrupt):
        sc.score_file(models["designation"], data["parquet"], out)
    assert calls["n"] == 2 and not out.exists() and _leftovers(tmp_path) == []

    out.write_text("previous scores")  # a failed --overwrite run keeps the previous file
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        sc.score_file(models["designation"], data["parquet"], out, overwrite=True)
    assert out.read_text() == "previous scores" and _leftovers(tmp_path) == []


def test_overwrite_guard(models, data, tmp_path):
    out, summary = tmp_path / "scores.parquet", tmp_path / "summary.csv"
    args = ["score", "--model", str(models["designation"]), "--input", str(data["parquet"]),
            "--output", str(out), "--events", str(data["events"]), "--summary", str(summary)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "Expected designations" in first.output and "All" in first.output
    assert pd.read_csv(summary)["province"].iloc[-1] == "All"
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_province_summary_sums_probabilities(reference):
    summary = sc.province_summary(reference)
    total = summary.iloc[-1]
    assert total["province"] == "All" and total["firms"] == len(reference)
    assert total["expected_designations"] == pytest.approx(reference["probability"].sum())
    assert total["candidates"] + total["title_holders"] == total["firms"]
    assert summary.iloc[:-1]["p>=0.1"].sum() == (reference["probability"] >= 0.1).sum()


# ---------------------------------------------------------------------------------------------
# MLflow and Dask


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
def test_dask_local_cluster_equals_local(models, data, reference, tmp_path):
    """About 10-20 s: two worker processes start and import lightgbm."""
    scores = _score(models, data, tmp_path / "dask.parquet", engine="dask", chunk_rows=5000)
    pd.testing.assert_frame_equal(scores, reference)


def test_wrong_task_and_missing_year_exit_1(models, data, tmp_path):
    out = str(tmp_path / "s.parquet")
    wrong = runner.invoke(app, ["score", "--model", str(models["growth"]), "--input", str(data["parquet"]),
                                "--output", out])
    assert wrong.exit_code == 1 and "--model needs a designation model" in wrong.output
    no_year = runner.invoke(app, ["score", "--model", str(models["designation"]), "--input", str(data["parquet"]),
                                  "--output", out, "--year", "2031"])
    assert no_year.exit_code == 1 and "has a row for fiscal year 2031" in no_year.output
    assert not Path(out).exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("headers, expected", [
    (["\ufeff 企业代码 ", "Year", "营业收入（万元）"], ("\ufeff 企业代码 ", "Year")),
    (["年度", "x", "firm_id", "年份"], ("firm_id", "年度")),  # the first of two year headers
    (["x", "营业收入"], (None, None)),
])
def test_key_headers_match_headers_as_the_contract_does(headers, expected):
    assert sc.key_headers(headers) == expected
