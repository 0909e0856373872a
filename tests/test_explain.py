"""Explanations: exact contributions, groups, probability points, reasons, counterfactuals, and
the ``explain`` / ``report`` commands.

One small designation model is trained per session on the simulated default (3,000 firms).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml import criteria, explain as ex, io
from lgml.cli import app
from lgml.features import FEATURE_GROUPS, GROUPS, build_features, context_tables
from lgml.modeling.bundle import load_bundle
from lgml.modeling.matrix import lightgbm_matrix
from lgml.modeling.drift import psi_table, reference_profile
from lgml.report.model import global_importance

XSS = "<script>alert(1)</script>"


# ---------------------------------------------------------------------------------------------
# Contributions, groups, probability points
# ---------------------------------------------------------------------------------------------


def test_grouped_importance_ranks_innovation_and_specialization_above_region_and_sector(bundle, candidates):
    contrib, _ = ex.contributions(bundle, candidates)
    _, by_group = global_importance(contrib)
    for strong in ("innovation", "specialization"):
        for weak in ("region", "sector"):
            assert by_group[strong] > by_group[weak], by_group.to_dict()


def test_top_reasons_name_values_thresholds_and_units(bundle, candidates):
    contrib, _ = ex.contributions(bundle, candidates)
    reasons = ex.top_reasons(contrib, candidates, k=3)
    assert reasons.index.equals(candidates.index)
    assert reasons.str.contains("log-odds").all()
    assert (reasons.str.count(" [|] ") <= 2).all()


def test_top_reasons_join_the_reasons_of_reason_matrix(bundle, table):
    """Rows of every rule regime, some with fewer non-zero units than k (or none), joined as
    each row's reasons one by one would be."""
    rows = table.sample(n=600, random_state=3)
    contrib, _ = ex.contributions(bundle, rows)
    contrib.iloc[:20] = 0.0
    contrib.iloc[20:60, 2:] = 0.0
    for k in (1, 3, 5):
        names, phrases, values = ex.reason_matrix(contrib, rows, k)
        expected = [" | ".join(f"{p} ({v:+.2f} log-odds)" for u, p, v in zip(nr, pr, vr) if u)
                    for nr, pr, vr in zip(names, phrases, values)]
        reasons = ex.top_reasons(contrib, rows, k)
        assert reasons.index.equals(rows.index)
        assert reasons.tolist() == expected
        assert (reasons.iloc[:20] == "").all()


def _summary_reason_one_by_one(row: pd.DataFrame, batch_year: int, value: float) -> str:
    names = [n for n in criteria.RULES[criteria.regime_for(batch_year)]["criteria"] if f"pass_{n}" in row.columns]
    failed = [n for n in names if not row[f"pass_{n}"].iloc[0] >= 0.5]
    labels = [criteria.CRITERIA[n]["label_en"] for n in failed]
    if not failed:
        return f"meets all {len(names)} Little Giant criteria of batch {batch_year}"
    if value > 0:
        return f"meets {len(names) - len(failed)} of {len(names)} Little Giant criteria (misses {', '.join(labels)})"
    more = f" (and {', '.join(labels[1:])})" if len(failed) > 1 else ""
    detail = ex._criterion_phrases(failed[0], row, batch_year)[0]
    return f"misses {len(failed)} of {len(names)} Little Giant criteria: {detail}{more}"


@pytest.mark.parametrize("batch_year", [2020, 2024, 2026])
def test_summary_reason_of_rows_grouped_by_the_criteria_they_meet(table, batch_year):
    rows = table[table["batch_year"] == batch_year].sample(n=400, random_state=batch_year).reset_index(drop=True)
    rows.loc[::7, "pass_sme_size"] = np.nan  # missing: not met
    values = np.where(np.arange(len(rows)) % 3 == 0, 0.2, -0.2)
    phrases = ex._aggregate_phrases(rows, batch_year, values)
    names = [n for n in criteria.RULES[criteria.regime_for(batch_year)]["criteria"]]
    patterns = {tuple(p) for p in (rows[[f"pass_{n}" for n in names]].to_numpy() >= 0.5)}
    assert len(patterns) >= 5
    expected = [_summary_reason_one_by_one(rows.iloc[[i]], batch_year, values[i]) for i in range(len(rows))]
    assert list(phrases) == expected


NAN = np.nan
HAND_ROWS = pd.DataFrame({
    "revenue": [150e6, 150e6, 80e6, 80e6, 30e6, 30e6, NAN, 150e6],
    "rd_intensity": [0.021, 0.05, 0.07, 0.05, 0.01, 0.2, 0.02, NAN],
    "rd_intensity_prev": [0.025, 0.04, 0.065, NAN, 0.01, 0.1, 0.02, NAN],
    "equity_2y": [0, 0, 0, 0, 90e6, NAN, 0, 0],
    "rd_2y": [3e6, 7e6, 10e6, 4e6, 31e6, 1.2e6, 1e6, NAN],
    "rd_staff_share": [0.1, 0.2, 0.3, 0.4, 0.55, NAN, 0.1, 0.1],
    "pass_rd_band": [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0],
    "employees": [300, 1200, 50, 1000, NAN, 10, 2000, 999],
    "pass_sme_size": [1, 0, 1, 1, 1, 1, 0, 1],
    "mb_share": [0.65, 0.95, NAN, 0.7, 0.3, 1.0, 0.8, 0.899],
    "pass_mb_share": [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0],
    "short_mb_share": [0.05, 0.0, NAN, 0.0, 0.4, 0.0, 0.0, 0.001],
    "debt_ratio": [0.75, 0.0, NAN, 0.7, 0.9, -0.0, 0.71, 0.2],
    "pass_debt_ratio": [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0],
    "short_debt_ratio": [0.05, 0.0, NAN, 0.0, 0.2, 0.0, 0.01, 0.0],
    "rd_institution_level": [0, 1, 2, 3, NAN, 7, 1, 0],
    "pass_rd_institution": [0, 1, 1, 1, 0, 1, 1, 0],
    "pass_growth": [1, 0, 0, 1, 0, 1, 0, 1],
    "short_growth": [0, 0.02, NAN, 0, 0.5, 0, 0.001, 0],
    "pass_rd_intensity": [0, 1, 1, 0, 0, 1, 0, 0],
    "short_rd_intensity": [0.009, 0, 0, NAN, 0.02, 0, 0.01, NAN],
    "pass_own_brand": [1, 0, 1, 0, 1, 0, 1, NAN],
})
GROWTH = "2-year average growth of main-business revenue or net profit"
MUNICIPAL = "at least a municipal-level one"
HAND_PHRASES = {
    ("rd_band", 2024): [
        "R&D intensity 2.1% is below the 3% required at revenue >= 100M yuan",
        "R&D intensity 4.0% (weaker of the last 2 years) meets the 3% required at revenue >= 100M yuan",
        "R&D intensity 6.5% (weaker of the last 2 years) meets the 6% required at revenue 50-100M yuan",
        "R&D intensity 5.0% is below the 6% required at revenue 50-100M yuan",
        "revenue 30M yuan: the equity route of the R&D rule is met",
        "revenue 30M yuan is under 50M yuan: the equity route needs new equity over 2 years >= 80M yuan (has "
        "missing), R&D over 2 years >= 30M yuan (has 1.2M yuan), R&D staff share >= 50.0% (has missing)",
        "R&D intensity 2.0%; revenue missing, so the R&D band is unknown",
        "R&D intensity of the last 2 years not known; 3% required at revenue >= 100M yuan",
    ],
    ("sme_size", 2024): [
        "SME size rule met", "1,200 employees and 150M yuan revenue exceed both SME limits", "SME size rule met",
        "SME size rule met", "SME size rule met", "SME size rule met",
        "2,000 employees and nan yuan revenue exceed both SME limits", "SME size rule met",
    ],
    ("mb_share", 2024): [
        "main-business share 65.0% is below the 70% required (short by 5.0 pp)",
        "main-business share 95.0% meets the 70% required", "main-business share missing; at least 70% required",
        "main-business share 70.0% meets the 70% required",
        "main-business share 30.0% is below the 70% required (short by 40.0 pp)",
        "main-business share 100.0% meets the 70% required", "main-business share 80.0% meets the 70% required",
        "main-business share 89.9% is below the 70% required (short by 0.1 pp)",
    ],
    ("debt_ratio", 2026): [
        "debt ratio 75.0% is above the 75% allowed (over by 5.0 pp)", "debt ratio 0.0% is within the 75% allowed",
        "debt ratio missing; at most 75% required", "debt ratio 70.0% is within the 75% allowed",
        "debt ratio 90.0% is above the 75% allowed (over by 20.0 pp)", "debt ratio -0.0% is within the 75% allowed",
        "debt ratio 71.0% is above the 75% allowed (over by 1.0 pp)", "debt ratio 20.0% is within the 75% allowed",
    ],
    ("rd_institution", 2024): [
        f"R&D institution: none; required: {MUNICIPAL}",
        f"R&D institution: municipal; meets the requirement of {MUNICIPAL}",
        f"R&D institution: provincial; meets the requirement of {MUNICIPAL}",
        f"R&D institution: national; meets the requirement of {MUNICIPAL}",
        f"R&D institution: missing; required: {MUNICIPAL}",
        f"R&D institution: 7; meets the requirement of {MUNICIPAL}",
        f"R&D institution: municipal; meets the requirement of {MUNICIPAL}",
        f"R&D institution: none; required: {MUNICIPAL}",
    ],
    ("growth", 2020): [
        f"{GROWTH}: met", f"{GROWTH}: not met, short by 2.0 pp on the nearer route",
        f"{GROWTH}: not shown (data missing)", f"{GROWTH}: met",
        f"{GROWTH}: not met, short by 50.0 pp on the nearer route", f"{GROWTH}: met",
        f"{GROWTH}: not met, short by 0.1 pp on the nearer route", f"{GROWTH}: met",
    ],
    ("rd_intensity", 2026): [
        "R&D intensity 2.1% and 2.5% (last 2 years) fall short of the 3% required each year by 0.9 pp",
        "R&D intensity 5.0% and 4.0% (last 2 years) meet the 3% required each year",
        "R&D intensity 7.0% and 6.5% (last 2 years) meet the 3% required each year",
        "R&D intensity 5.0% and missing (last 2 years) fall short of the 3% required each year by nan pp",
        "R&D intensity 1.0% and 1.0% (last 2 years) fall short of the 3% required each year by 2.0 pp",
        "R&D intensity 20.0% and 10.0% (last 2 years) meet the 3% required each year",
        "R&D intensity 2.0% and 2.0% (last 2 years) fall short of the 3% required each year by 1.0 pp",
        "R&D intensity missing and missing (last 2 years) fall short of the 3% required each year by nan pp",
    ],
    ("own_brand", 2024): ["own brand: held (required)", "no own brand (required)"] * 4,
}


@pytest.mark.parametrize("name,batch_year", list(HAND_PHRASES))
def test_criterion_phrases_of_hand_built_rows(name, batch_year):
    assert list(ex._criterion_phrases(name, HAND_ROWS, batch_year)) == HAND_PHRASES[name, batch_year]
    half = ex._criterion_phrases(name, HAND_ROWS.iloc[1::2], batch_year)
    assert list(half) == HAND_PHRASES[name, batch_year][1::2]


def test_log_odds_texts_match_python_formatting():
    rng = np.random.default_rng(0)
    halves = np.arange(-2000, 2001) / 200  # k/200: as close to a half-hundredth as floats get
    values = np.concatenate([
        rng.normal(0, 1, 2000), rng.normal(0, 1e-3, 200), halves, np.nextafter(halves, np.inf),
        np.nextafter(halves, -np.inf), [0.0, -0.0, 1e-300, -1e-300, 0.005, -0.005, 0.015, 2.675, 1e7, -3e9],
        [np.nan, np.inf, -np.inf],
    ])
    assert list(ex._log_odds_texts(values)) == [f" ({v:+.2f} log-odds)" for v in values]


def test_each_formats_each_value_as_one_by_one():
    def text(v):
        return f"<{ex.format_value(v, 'category')}>"

    floats = np.array([1.0, -0.0, 0.0, np.nan, 2.5, 1.0, np.nan, -0.0, 1e-20])
    cases = [floats, floats.astype(np.float32), np.array([3, 1, 3, -2]), np.array([True, False, True]),
             np.array(["a", None, 1, 1.0, True], dtype=object), np.array([], dtype=float)]
    for values in cases:
        assert list(ex._each(values, text)) == [text(v) for v in values]
    category = pd.Categorical(["b", None, "a", "b", None], categories=["a", "b", "c"])
    assert list(ex._each(category, repr)) == [repr(v) for v in category.to_numpy()]


# ---------------------------------------------------------------------------------------------
# A firm failing only the R&D rule
# ---------------------------------------------------------------------------------------------


HAND_BUILT = {
    "firm_id": "HAND-RD", "year": [2021, 2022, 2023], "province": "Jiangsu", "sector": "35", "founded_year": 2005,
    "in_hightech_zone": True, "ownership": "private", "employees": 300, "rd_staff": 60.0,
    "revenue": [150e6, 170e6, 200e6], "main_business_revenue": [135e6, 153e6, 180e6],
    "net_profit": [18e6, 20.4e6, 24e6], "total_assets": 320e6, "total_liabilities": 120e6,
    "rd_expense": [3e6, 3.4e6, 4e6],  # 2% of revenue: the R&D rule needs 3% at revenue >= 100M
    "equity_financing": 0.0, "invention_patents": 15, "class1_ip": [14, 17, 20], "class2_ip": 30,
    "niche_years": [8, 9, 10], "niche_market_share": 0.15, "own_brand": True, "quality_certified": True,
    "digital_level": 4.0, "rd_institution": "provincial", "key_customers": 5, "foundation_field": True,
    "strategic_industry": True, "srdi_provincial": True,
}


@pytest.fixture(scope="session")
def rd_only_firm(small_sim) -> tuple[pd.DataFrame, str]:
    """A hand-built firm, strong on everything but R&D (2% of revenue in 2021-2023), in the
    contract's dtypes; for batch 2024 it fails the R&D rule and nothing else."""
    template = small_sim.panel.iloc[:3].reset_index(drop=True)
    columns = {}
    for name, dtype in template.dtypes.items():
        value = HAND_BUILT[name]
        values = value if isinstance(value, list) else [value] * 3
        columns[name] = pd.Series(values, dtype=dtype)
    panel = pd.DataFrame(columns)[list(template.columns)]
    inputs = criteria.criteria_inputs(panel)
    checked = criteria.check(inputs[inputs["year"] == 2023], 2024)
    failed = [c.removeprefix("pass_") for c in checked.columns if c.startswith("pass_") and not checked[c].iloc[0]]
    assert failed == ["rd_band"]
    return panel, "HAND-RD"


def test_a_firm_failing_only_the_rd_rule_gets_it_as_top_negative_reason(bundle, rd_only_firm, context):
    panel, firm_id = rd_only_firm
    table = ex.year_table(panel, 2023, None, context)
    contrib, _ = ex.contributions(bundle, table)
    units, phrases, values = ex.reason_matrix(contrib, table, k=len(bundle.features))
    negative = [(u, p) for u, p, v in zip(units[0], phrases[0], values[0]) if u and v < 0]
    unit, text = negative[0]
    assert unit == "rd_band", negative[:3]
    assert text == "R&D intensity 2.0% is below the 3% required at revenue >= 100M yuan"
    assert "R&D intensity 2.0% is below the 3%" in ex.top_reasons(contrib, table, k=len(bundle.features)).iloc[0]


def test_counterfactual_for_the_rd_firm_raises_rd(bundle, rd_only_firm, context):
    panel, firm_id = rd_only_firm
    result = ex.counterfactual(bundle, panel, firm_id, 2023, context=context, target=0.99)
    assert result.reached, result.message
    assert [c.action for c in result.changes] == ["rd_intensity"], result.message
    assert result.changes[0].after == pytest.approx(0.03)
    assert result.eligible_after and not result.eligible_before
    assert result.probability_after > result.probability_before


def test_counterfactual_rebuilds_dependent_features(bundle, rd_only_firm):
    panel, firm_id = rd_only_firm
    rows = ex._window(panel, firm_id, 2023)
    change, edit = ex.PROPOSERS["rd_intensity"](rows)[0]
    edited = build_features(edit(rows), None)
    last = edited[edited["year"] == 2023].iloc[0]
    assert last["rd_intensity"] == pytest.approx(0.03)
    assert last["rd_intensity_prev"] == pytest.approx(0.03)
    assert last["pass_rd_band"] == 1.0 and last["short_rd_band"] == 0.0


def test_counterfactual_says_plainly_when_nothing_is_feasible(bundle, small_sim, table, context):
    row = table[(table["year"] == 2023) & ~table["holds_title"]].sort_values("score_total").iloc[0]
    result = ex.counterfactual(bundle, small_sim.panel, row["firm_id"], 2023, events=small_sim.events,
                               context=context, target=0.999, goal="probability", max_changes=1)
    assert not result.reached
    assert result.message.startswith("No feasible change")


def test_counterfactual_never_touches_immutable_inputs():
    names = {a.feature for a in ex.ACTIONS}
    assert not names & {"province", "sector", "firm_age", "in_hightech_zone", "ownership", "size_band"}
    assert [a.name for a in ex.allowed_actions({"debt_ratio": 1})] == [a.name for a in ex.ACTIONS
                                                                       if a.name != "debt_ratio"]


# ---------------------------------------------------------------------------------------------
# Drift
# ---------------------------------------------------------------------------------------------


def test_psi_is_zero_against_itself_and_grows_with_a_shift(bundle, candidates):
    ref = reference_profile(candidates, bundle.features)
    same = psi_table(ref, candidates)
    assert same["psi"].max() < 1e-9
    shifted = candidates.assign(rd_intensity=candidates["rd_intensity"] * 3)
    assert psi_table(ref, shifted).set_index("feature").loc["rd_intensity", "psi"] > 0.25


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

runner = CliRunner()


def _some_firm(table) -> str:
    rows = table[(table["year"] == 2025) & ~table["holds_title"]]
    return str(rows.sort_values("score_total").iloc[-1]["firm_id"])


@pytest.mark.parametrize("fmt", ["html", "md", "json"])
def test_cli_explain_writes_each_format(bundle_dir, data_dir, table, tmp_path, fmt):
    firm = _some_firm(table)
    out = tmp_path / f"firm.{fmt}"
    result = runner.invoke(app, ["explain", "--model", str(bundle_dir), "--input", str(data_dir / "panel.parquet"),
                                 "--events", str(data_dir / "events.parquet"), "--firm", firm, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        data = json.loads(text)
        for key in ("probability", "raw_score", "base_value", "contributions", "groups", "reasons", "counterfactual"):
            assert key in data
        assert sum(data["contributions"].values()) + data["base_value"] == pytest.approx(data["raw_score"], abs=1e-6)
        assert set(data["groups"]) == set(GROUPS)
    elif fmt == "html":
        assert text.count("data:image/png;base64,") >= 2
        assert "http://" not in text and "https://" not in text
    else:
        assert f"## Firm {firm}" in text


def test_cli_explain_errors(bundle_dir, data_dir, tmp_path):
    base = ["explain", "--model", str(bundle_dir), "--input", str(data_dir / "panel.parquet")]
    out = tmp_path / "x.html"
    assert runner.invoke(app, [*base, "--firm", "NO-SUCH-FIRM", "--out", str(out)]).exit_code == 1
    assert not out.exists()
    out.write_text("keep")
    assert runner.invoke(app, [*base, "--top", "1", "--out", str(out)]).exit_code == 1
    assert out.read_text() == "keep"
    assert runner.invoke(app, [*base, "--top", "1", "--out", str(tmp_path / "x.pdf")]).exit_code == 1
    assert runner.invoke(app, ["explain", "--model", str(tmp_path), "--input", str(data_dir / "panel.parquet"),
                               "--top", "1", "--out", str(tmp_path / "y.html")]).exit_code == 1


def test_cli_explain_escapes_firm_ids(bundle_dir, small_sim, table, tmp_path):
    firm = _some_firm(table)
    panel = small_sim.panel.copy()
    panel["firm_id"] = panel["firm_id"].replace({firm: XSS})
    io.write_table(panel, tmp_path / "panel.parquet")
    out = tmp_path / "xss.html"
    result = runner.invoke(app, ["explain", "--model", str(bundle_dir), "--input", str(tmp_path / "panel.parquet"),
                                 "--firm", XSS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    md = tmp_path / "xss.md"
    result = runner.invoke(app, ["explain", "--model", str(bundle_dir), "--input", str(tmp_path / "panel.parquet"),
                                 "--firm", XSS, "--out", str(md), "--format", "md"])
    assert result.exit_code == 0, result.output
    assert "<script" not in md.read_text(encoding="utf-8")


def test_cli_explain_top_per_province(bundle_dir, data_dir, tmp_path):
    out = tmp_path / "top.json"
    result = runner.invoke(app, ["explain", "--model", str(bundle_dir), "--input", str(data_dir / "panel.parquet"),
                                 "--events", str(data_dir / "events.parquet"), "--top", "1", "--per-province",
                                 "--year", "2024", "--target", "0.05", "--out", str(out)])
    assert result.exit_code == 0, result.output
    firms = json.loads(out.read_text(encoding="utf-8"))["firms"]
    provinces = [f["province"] for f in firms]
    assert len(provinces) == len(set(provinces)) > 5
    assert all(f["year"] == 2024 for f in firms)


def test_cli_report(bundle_dir, data_dir, tmp_path):
    out = tmp_path / "model.html"
    args = ["report", "--model", str(bundle_dir), "--data", str(data_dir / "panel.parquet"),
            "--events", str(data_dir / "events.parquet"), "--sample", "800", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 4
    assert "Metrics by province" in html and "model &gt; rules" in html
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    js = tmp_path / "model.json"
    result = runner.invoke(app, ["report", "--model", str(bundle_dir), "--sample", "500", "--out", str(js)])
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text(encoding="utf-8"))
    assert data["group_importance"] and data["drift"] is None


def test_cli_explain_with_a_growth_model(bundle_dir, growth_dir, data_dir, table, tmp_path):
    out = tmp_path / "growth.json"
    result = runner.invoke(app, ["explain", "--model", str(bundle_dir), "--growth-model", str(growth_dir),
                                 "--input", str(data_dir / "panel.parquet"), "--firm", _some_firm(table),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    growth = json.loads(out.read_text(encoding="utf-8"))["growth"]
    assert growth["p10_pct"] <= growth["p90_pct"]
    assert -100 < growth["growth_pct"] < 1000
    swapped = runner.invoke(app, ["explain", "--model", str(growth_dir), "--input", str(data_dir / "panel.parquet"),
                                  "--firm", _some_firm(table), "--out", str(tmp_path / "g.json")])
    assert swapped.exit_code == 1

