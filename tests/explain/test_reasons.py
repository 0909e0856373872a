"""Tests of lgml.explain.reasons, the one sentence engine: criterion phrases (checklist,
reasons, the ``failed`` text of ``lgml check``), summary reasons and top reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lgml import criteria
from lgml.explain import reasons as ex
from lgml.explain.contributions import contributions
from lgml.features import feature_rows
from lgml.vocabulary import format_value

def test_top_reasons_name_values_thresholds_and_units(bundle, candidates):
    contrib, _ = contributions(bundle, candidates)
    reasons = ex.top_reasons(contrib, candidates, k=3)
    assert reasons.index.equals(candidates.index)
    assert reasons.str.contains("log-odds").all()
    assert (reasons.str.count(" [|] ") <= 2).all()


def test_top_reasons_join_the_reasons_of_reason_matrix(bundle, table):
    """Rows of every rule regime, some with fewer non-zero units than k (or none), joined as
    each row's reasons one by one would be."""
    rows = table.sample(n=600, random_state=3)
    contrib, _ = contributions(bundle, rows)
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
    detail = ex.criterion_phrases(failed[0], row, batch_year)[0]
    return f"misses {len(failed)} of {len(names)} Little Giant criteria: {detail}{more}"


@pytest.mark.parametrize("batch_year", [2020, 2024, 2026])
def test_summary_reason_of_rows_grouped_by_the_criteria_they_meet(table, batch_year):
    rows = table[table["batch_year"] == batch_year].sample(n=400, random_state=batch_year).reset_index(drop=True)
    rows.loc[::7, "pass_sme_size"] = np.nan  # missing: not met
    values = np.where(np.arange(len(rows)) % 3 == 0, 0.2, -0.2)
    phrases = ex.aggregate_phrases(rows, batch_year, values)
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
SME_LIMITS = "exceed both SME limits (fewer than 1,000 employees or revenue under 400M yuan)"
HAND_PHRASES = {
    ("rd_band", 2024): [
        "R&D intensity 2.1% is below the 3% required at revenue >= 100M yuan (short by 0.9 pp = 1.3M yuan)",
        "R&D intensity 4.0% (weaker of the last 2 years) meets the 3% required at revenue >= 100M yuan",
        "R&D intensity 6.5% (weaker of the last 2 years) meets the 6% required at revenue 50-100M yuan",
        "R&D intensity of the last 2 years not known; 6% required at revenue 50-100M yuan",
        "revenue 30M yuan: the equity route of the R&D rule is met",
        "revenue 30M yuan is under 50M yuan: the equity route needs new equity over 2 years >= 80M yuan (has "
        "missing), R&D spending over 2 years >= 30M yuan (has 1.2M yuan, short by 28.8M yuan), R&D staff share "
        ">= 50.0% (has missing)",
        "R&D intensity 2.0%; revenue missing, so the R&D band is unknown",
        "R&D intensity of the last 2 years not known; 3% required at revenue >= 100M yuan",
    ],
    ("sme_size", 2024): [
        "SME size rule met", f"1,200 employees and 150M yuan revenue {SME_LIMITS}", "SME size rule met",
        "SME size rule met", "SME size rule met", "SME size rule met",
        f"2,000 employees and revenue missing {SME_LIMITS}", "SME size rule met",
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
        "debt ratio missing; at most 75% allowed", "debt ratio 70.0% is within the 75% allowed",
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
        "R&D intensity 2.1% and 2.5% (last 2 years) fall short of the 3% required each year (short by 0.9 pp = "
        "1.4M yuan)",
        "R&D intensity 5.0% and 4.0% (last 2 years) meet the 3% required each year",
        "R&D intensity 7.0% and 6.5% (last 2 years) meet the 3% required each year",
        "R&D intensity 5.0% and missing (last 2 years) cannot show the 3% required each year (data missing)",
        "R&D intensity 1.0% and 1.0% (last 2 years) fall short of the 3% required each year (short by 2.0 pp = "
        "0.6M yuan)",
        "R&D intensity 20.0% and 10.0% (last 2 years) meet the 3% required each year",
        "R&D intensity 2.0% and 2.0% (last 2 years) fall short of the 3% required each year (short by 1.0 pp)",
        "R&D intensity missing and missing (last 2 years) cannot show the 3% required each year (data missing)",
    ],
    ("own_brand", 2024): ["own brand: held (required)", "no own brand (required)"] * 4,
}


@pytest.mark.parametrize("name,batch_year", list(HAND_PHRASES))
def test_criterion_phrases_of_hand_built_rows(name, batch_year):
    assert list(ex.criterion_phrases(name, HAND_ROWS, batch_year)) == HAND_PHRASES[name, batch_year]
    half = ex.criterion_phrases(name, HAND_ROWS.iloc[1::2], batch_year)
    assert list(half) == HAND_PHRASES[name, batch_year][1::2]


def test_log_odds_texts_match_python_formatting():
    rng = np.random.default_rng(0)
    halves = np.arange(-2000, 2001) / 200  # k/200: as close to a half-hundredth as floats get
    values = np.concatenate([
        rng.normal(0, 1, 2000), rng.normal(0, 1e-3, 200), halves, np.nextafter(halves, np.inf),
        np.nextafter(halves, -np.inf), [0.0, -0.0, 1e-300, -1e-300, 0.005, -0.005, 0.015, 2.675, 1e7, -3e9],
        [np.nan, np.inf, -np.inf],
    ])
    assert list(ex.log_odds_texts(values)) == [f" ({v:+.2f} log-odds)" for v in values]


def test_each_formats_each_value_as_one_by_one():
    def text(v):
        return f"<{format_value(v, 'category')}>"

    floats = np.array([1.0, -0.0, 0.0, np.nan, 2.5, 1.0, np.nan, -0.0, 1e-20])
    cases = [floats, floats.astype(np.float32), np.array([3, 1, 3, -2]), np.array([True, False, True]),
             np.array(["a", None, 1, 1.0, True], dtype=object), np.array([], dtype=float)]
    for values in cases:
        assert list(ex.each(values, text)) == [text(v) for v in values]
    category = pd.Categorical(["b", None, "a", "b", None], categories=["a", "b", "c"])
    assert list(ex.each(category, repr)) == [repr(v) for v in category.to_numpy()]


def test_a_firm_failing_only_the_rd_rule_gets_it_as_top_negative_reason(bundle, rd_only_firm, context):
    panel, firm_id = rd_only_firm
    table = feature_rows(panel, context=context, year=2023)
    contrib, _ = contributions(bundle, table)
    units, phrases, values = ex.reason_matrix(contrib, table, k=len(bundle.features))
    negative = [(u, p) for u, p, v in zip(units[0], phrases[0], values[0]) if u and v < 0]
    unit, text = negative[0]
    assert unit == "rd_band", negative[:3]
    assert text == "R&D intensity 2.0% is below the 3% required at revenue >= 100M yuan (short by 1.0 pp = 2M yuan)"
    assert "R&D intensity 2.0% is below the 3%" in ex.top_reasons(contrib, table, k=len(bundle.features)).iloc[0]


# ---------------------------------------------------------------------------------------------
# Criterion sentences on criteria_inputs rows (the checklist and ``lgml check``'s failed text)
# ---------------------------------------------------------------------------------------------

# criteria_inputs of a firm meeting every criterion of every regime.
MEETS_ALL = dict(
    employees=300.0, revenue=200e6, srdi_provincial=1.0, niche_years=6.0, mb_share=0.95, mb_growth_2y=0.10,
    profit_growth_2y=0.10, revenue_cagr_2y=0.10, debt_ratio=0.40, digital_level=3.0, quality_certified=1.0,
    niche_market_share=0.15, own_brand=1.0, rd_intensity=0.05, rd_intensity_prev=0.05, equity_2y=np.nan,
    rd_2y=19e6, rd_staff_share=0.20, rd_institution_level=2.0, class1_ip=6.0, invention_patents=6.0,
    class2_ip=8.0, score_total=80.0,
)
EQUITY_ROUTE = dict(revenue=40e6, rd_intensity=0.9, rd_intensity_prev=0.9, equity_2y=80e6, rd_2y=30e6,
                    rd_staff_share=0.5)


def explain(criterion: str, batch: int, **overrides) -> str:
    """The sentence on one criterion of the default firm with ``overrides``, for batch ``batch``."""
    inputs = pd.DataFrame([{**MEETS_ALL, **overrides}])
    rows = pd.concat([inputs, criteria.check(inputs, batch)], axis=1)
    return ex.criterion_phrases(criterion, rows, batch)[0]


def test_text_rd_band_intensity():
    text = explain("rd_band", 2024, revenue=200e6, rd_intensity=0.021, rd_intensity_prev=0.05)
    assert text == ("R&D intensity 2.1% is below the 3% required at revenue >= 100M yuan "
                    "(short by 0.9 pp = 1.8M yuan)")


def test_text_rd_band_middle_band():
    text = explain("rd_band", 2020, revenue=80e6, rd_intensity=0.05, rd_intensity_prev=0.07)
    assert "6% required" in text and "50-100M yuan" in text and "short by 1.0 pp = 0.8M yuan" in text


def test_text_rd_band_equity_route():
    text = explain("rd_band", 2024, **{**EQUITY_ROUTE, "equity_2y": 60e6, "rd_staff_share": 0.4})
    assert "equity route" in text and "under 50M yuan" in text
    assert "new equity over 2 years >= 80M yuan (has 60M yuan, short by 20M yuan)" in text
    assert "R&D spending over 2 years >= 30M yuan (has 30M yuan, met)" in text
    assert "R&D staff share >= 50.0% (has 40.0%, short by 10.0 pp)" in text


def test_text_debt_ratio_by_regime():
    assert explain("debt_ratio", 2024, debt_ratio=0.72) == "debt ratio 72.0% is above the 70% allowed (over by 2.0 pp)"
    assert "above the 75% allowed (over by 5.0 pp)" in explain("debt_ratio", 2026, debt_ratio=0.80)


def test_text_simple_minimums():
    assert explain("niche_years", 2024, niche_years=1.0) == \
        "years in the niche 1 year is below the 3 years required (short by 2 years)"
    assert explain("class1_ip", 2026, class1_ip=3.0) == "Class-I IP items 3 is below the 4 items required (short by 1 item)"
    assert "short by 2.5M yuan" in explain("rd_amount_2y", 2026, rd_2y=9.5e6)
    assert explain("rd_institution", 2024, rd_institution_level=0.0) == \
        "R&D institution: none; required: at least a municipal-level one"
    assert explain("info_system", 2024, digital_level=1.0) == "digital level 1 is below the level 2 required (short by 1 level)"


def test_text_either_or_and_each_year():
    text = explain("growth", 2020, mb_growth_2y=0.03, profit_growth_2y=np.nan)
    assert "main-business revenue growth (2-yr avg) 3.0%" in text and "net-profit growth (2-yr avg) missing" in text
    assert "short by 2.0 pp on the nearer route" in text
    text = explain("rd_intensity", 2026, revenue=200e6, rd_intensity=0.025, rd_intensity_prev=0.032)
    assert "fall short of the 3% required each year (short by 0.5 pp = 1M yuan)" in text


def test_text_flag_size_met_and_missing():
    assert explain("own_brand", 2024, own_brand=0.0) == "no own brand (required)"
    text = explain("sme_size", 2024, employees=1200.0, revenue=500e6)
    assert text.startswith("1,200 employees and 500M yuan revenue exceed both SME limits")
    assert "fewer than 1,000 employees or revenue under 400M yuan" in text
    assert explain("mb_share", 2024) == "main-business share 95.0% meets the 70% required"
    text = explain("rd_band", 2024, rd_intensity_prev=np.nan)
    assert text == "R&D intensity of the last 2 years not known; 3% required at revenue >= 100M yuan"


def test_text_without_a_year_uses_the_2022_rules():
    rows = pd.DataFrame({"debt_ratio": [0.72], "pass_debt_ratio": [False], "short_debt_ratio": [0.02]})
    assert ex.criterion_phrases("debt_ratio", rows)[0] == "debt ratio 72.0% is above the 70% allowed (over by 2.0 pp)"
    rows = pd.DataFrame({"mb_share": [np.nan], "pass_mb_share": [False], "short_mb_share": [np.nan]})
    assert ex.criterion_phrases("mb_share", rows)[0] == "main-business share missing; at least 70% required"


def test_text_rejects_unknown_or_foreign_criteria():
    rows = pd.DataFrame({"own_brand": [0.0]})
    with pytest.raises(ValueError, match="unknown criterion"):
        ex.criterion_phrases("charisma", rows)
    with pytest.raises(ValueError, match="2018"):
        ex.criterion_phrases("own_brand", rows, 2020)


def test_failed_text_joins_the_criteria_missed():
    inputs = pd.DataFrame([MEETS_ALL, {**MEETS_ALL, "debt_ratio": 0.88},
                           {**MEETS_ALL, "own_brand": 0.0, "class1_ip": 1.0}])
    rows = pd.concat([inputs, criteria.check(inputs, 2024)], axis=1)
    assert ex.failed_text(rows, 2024).tolist() == [
        "", "debt_ratio: debt ratio 88.0% is above the 70% allowed (over by 18.0 pp)",
        "own_brand: no own brand (required) | class1_ip: Class-I IP items 1 is below the 2 items required (short by 1 item)"]


def test_values_rounded_as_shown_read_the_same():
    from lgml.explain.reasons import shown
    from lgml.vocabulary import money, pct

    rng = np.random.default_rng(0)
    amounts = np.concatenate([rng.lognormal(13, 3, 5_000), -rng.lognormal(10, 2, 500), [0.0, 99_999.4, 1e5]])
    assert [money(v) for v in shown(amounts, "money")] == [money(v) for v in amounts]
    shares = rng.random(5_000) * 0.4
    assert [pct(v) for v in shown(shares, "pct")] == [pct(v) for v in shares]
