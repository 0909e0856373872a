"""Scoring errors: clear messages without tracebacks (model input, contract, duplicates, wrong
task, no firm), atomic output and the overwrite guard, through the API and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml import io
from lgml.cli import app
from lgml.modeling.bundle import BundleInputError
from lgml.score import score_file
from lgml.validate import ContractError

runner = CliRunner()


@pytest.mark.filterwarnings("ignore:Constructing a Categorical with a dtype and values")
def test_unseen_category_level_is_reported_with_counts(models, data, edit_bundle, tmp_path):
    def drop_beijing(meta):
        meta["categorical_levels"]["province"].remove("Beijing")

    bundle = edit_bundle(models["designation"], tmp_path / "bundle", drop_beijing)
    with pytest.raises(BundleInputError, match=r"province: \d+ row\(s\) with unseen level\(s\) 'Beijing' x\d+"):
        score_file(bundle, data["parquet"], tmp_path / "out.parquet")
    result = runner.invoke(app, ["score", "--model", str(bundle), "--input", str(data["parquet"]),
                                 "--output", str(tmp_path / "out.parquet")])
    assert result.exit_code == 1, result.output
    assert "unseen level(s) 'Beijing'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_metadata_naming_a_feature_the_model_lacks_is_reported(models, data, edit_bundle, tmp_path):
    """A feature list that disagrees with model.txt is refused on load, before any scoring (the
    input's missing columns are reported by bundle.prepare, see tests/modeling/test_bundle.py)."""
    bundle = edit_bundle(models["designation"], tmp_path / "bundle",
                         lambda meta: meta["features"].append("patent_citations"))
    result = runner.invoke(app, ["score", "--model", str(bundle), "--input", str(data["parquet"]),
                                 "--output", str(tmp_path / "out.parquet")])
    assert result.exit_code == 1
    assert "metadata.json lists" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_contract_errors_name_column_rule_and_examples_across_chunks(models, small_sim, tmp_path):
    panel = small_sim.panel.copy()
    latest = panel.groupby("firm_id")["year"].transform("max") == panel["year"]
    bad = panel.index[latest][[5, 2000]]
    panel.loc[bad, "employees"] = -3
    panel.to_parquet(tmp_path / "bad.parquet", row_group_size=1000)
    with pytest.raises(ContractError) as err:
        score_file(models["designation"], tmp_path / "bad.parquet", tmp_path / "out.parquet", chunk_rows=1000)
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
        score_file(models["designation"], tmp_path / "dup.parquet", tmp_path / "out.parquet", chunk_rows=500)


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

    monkeypatch.setattr(io, "WRITE_ROWS", 500)
    if suffix == ".parquet":
        monkeypatch.setattr(pq.ParquetWriter, "write_table", fail_second_block(pq.ParquetWriter.write_table))
    else:
        monkeypatch.setattr(pd.DataFrame, "to_csv", fail_second_block(pd.DataFrame.to_csv))
    with pytest.raises(KeyboardInterrupt):
        score_file(models["designation"], data["parquet"], out)
    assert calls["n"] == 2 and not out.exists() and _leftovers(tmp_path) == []

    out.write_text("previous scores")  # a failed --overwrite run keeps the previous file
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        score_file(models["designation"], data["parquet"], out, overwrite=True)
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


def test_wrong_task_and_missing_year_exit_1(models, data, tmp_path):
    out = str(tmp_path / "s.parquet")
    wrong = runner.invoke(app, ["score", "--model", str(models["growth"]), "--input", str(data["parquet"]),
                                "--output", out])
    assert wrong.exit_code == 1 and "--model needs a designation model" in wrong.output
    no_year = runner.invoke(app, ["score", "--model", str(models["designation"]), "--input", str(data["parquet"]),
                                  "--output", out, "--year", "2031"])
    assert no_year.exit_code == 1 and "has a row for fiscal year 2031" in no_year.output
    assert not Path(out).exists() and _leftovers(tmp_path) == []


def test_macro_growth_on_the_command_line(models, data, tmp_path):
    args = ["score", "--model", str(models["designation"]), "--input", str(data["parquet"])]
    alone = runner.invoke(app, [*args, "--output", str(tmp_path / "a.parquet"), "--macro-growth", "0.04"])
    assert alone.exit_code == 1 and "macro_growth needs a growth model" in alone.output
    assert "Traceback" not in alone.output and not (tmp_path / "a.parquet").exists()
    given = runner.invoke(app, [*args, "--output", str(tmp_path / "b.parquet"), "--growth-model",
                                str(models["growth"]), "--macro-growth", "0.04"])
    assert given.exit_code == 0, given.output
    assert "Growth level: given: macro_growth 0.04" in given.output
    assert pd.read_parquet(tmp_path / "b.parquet")["growth_level_source"].str.startswith("given").all()


def test_the_rules_a_forecast_applies_are_printed(models, data, tmp_path):
    args = ["score", "--model", str(models["designation"]), "--input", str(data["parquet"])]
    latest = runner.invoke(app, [*args, "--output", str(tmp_path / "a.parquet")])
    assert latest.exit_code == 0, latest.output
    text = " ".join(latest.output.split())
    assert "Rules: batch 2027 under the 2026 rules (2026 revision as reported" in text
    assert "the model learned from batches" in text and "per-regime" not in text
    old = runner.invoke(app, [*args, "--output", str(tmp_path / "b.parquet"), "--year", "2023"])
    assert "Rules: batch 2024 under the 2022 rules (工信部企业〔2022〕63号)" in " ".join(old.output.split())


def test_rules_notice_flags_a_per_regime_model_that_never_saw_the_rules(models):
    from types import SimpleNamespace

    from lgml.score import rules_notice

    meta = {"features": ["pass_rd_band", "revenue"], "batches": {"train": [2019, 2020, 2021, 2022], "valid": [2023]}}
    line = rules_notice(SimpleNamespace(metadata=meta), [2026, 2027])
    assert line.startswith("batch 2026-2027 under the 2026 rules")
    assert "learned from batches 2019-2023 (2018 and 2022 rules)" in line
    assert "per-regime criteria features, empty under the 2026 rules" in line
    assert "per-regime" not in rules_notice(SimpleNamespace(metadata=meta), [2024])
    assert rules_notice(SimpleNamespace(metadata={}), [2025]).startswith("batch 2025 under the 2022 rules")


def test_expected_designations_refit_the_intercept_and_keep_the_ranks(score, reference, tmp_path):
    refit = score(tmp_path / "refit.parquet", expected_designations=25.0)
    assert refit["probability"].sum() == pytest.approx(25.0, rel=1e-6)
    assert reference["probability"].sum() != pytest.approx(25.0, rel=0.05)
    pd.testing.assert_series_equal(refit["rank_national"], reference["rank_national"])
    assert refit["probability"].isna().equals(reference["probability"].isna())
    # One shift in log-odds for every candidate.
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    shift = (logit(refit["probability"]) - logit(reference["probability"])).dropna()
    assert shift.max() - shift.min() < 1e-6 and abs(shift.iloc[0]) > 0.01


@pytest.mark.parametrize("value, message", [("0", "must be a positive number"), ("nan", "must be a positive number"),
                                            ("1e9", "below the")])
def test_expected_designations_out_of_range_exit_1(models, data, tmp_path, value, message):
    out = tmp_path / "s.parquet"
    result = runner.invoke(app, ["score", "--model", str(models["designation"]), "--input", str(data["parquet"]),
                                 "--output", str(out), "--expected-designations", value])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not out.exists()
