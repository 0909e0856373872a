"""Tests of lgml.criteria: thresholds by regime, point-in-time inputs, the 100-point score,
provincial eligibility, the batch assessment and the ``lgml check`` command (the shortfall
sentences are tested with their engine, tests/explain/test_reasons.py)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from lgml import concepts
from lgml import criteria as c
from lgml import schema
from lgml.inputs import criteria_inputs
from lgml.vocabulary import DIMENSIONS

YEARS = (2021, 2022, 2023)


# ------------------------------------------------------------------------------------------------
# Builders
# ------------------------------------------------------------------------------------------------


def firm_year(**overrides) -> dict:
    """One valid contract row that meets every criterion of every regime; overrides win."""
    row = dict(
        firm_id="F1", year=2023, province="Jiangsu", sector="34", founded_year=2005, in_hightech_zone=True,
        ownership="private", employees=300, rd_staff=60.0, revenue=200e6, main_business_revenue=190e6,
        net_profit=24e6, total_assets=250e6, total_liabilities=100e6, rd_expense=10e6, equity_financing=np.nan,
        invention_patents=6, class1_ip=6, class2_ip=8, niche_years=6, niche_market_share=0.15, own_brand=True,
        quality_certified=True, digital_level=3.0, rd_institution="provincial", key_customers=4,
        foundation_field=True, strategic_industry=True, srdi_provincial=True,
    )
    row.update(overrides)
    return row


def to_panel(rows: list[dict]) -> pd.DataFrame:
    """Contract frame with canonical dtypes (schema.dtype_of) and column order."""
    frame = pd.DataFrame(rows).reindex(columns=list(schema.PANEL_NAMES))  # firm_name, credit_code: empty
    return frame.astype({col.name: schema.dtype_of(col) for col in schema.PANEL_COLUMNS})


def history(firm_id: str = "F1", years=YEARS, per_year: dict | None = None, **overrides) -> list[dict]:
    """Rows of one firm whose money grows 10% a year up to the last year; ``overrides`` apply to
    every year, ``per_year[year]`` to one year."""
    rows = []
    for year in years:
        scale = 1.1 ** (year - years[-1])
        money = {k: firm_year()[k] * scale for k in ("revenue", "main_business_revenue", "net_profit",
                                                     "total_assets", "total_liabilities", "rd_expense")}
        rows.append(firm_year(firm_id=firm_id, year=year, **{**money, **overrides, **(per_year or {}).get(year, {})}))
    return rows


def inputs_of(**overrides) -> pd.DataFrame:
    """One-row criteria_inputs of the default firm's last year, with derived columns overridden."""
    inputs = criteria_inputs(to_panel(history()))
    row = inputs[inputs["year"] == YEARS[-1]].reset_index(drop=True)
    for key, value in overrides.items():
        row[key] = pd.Series([value], dtype=float if isinstance(value, float) else None)
    return row


def one(checked: pd.DataFrame, criterion: str) -> tuple[bool, float]:
    return bool(checked[f"pass_{criterion}"].iloc[0]), float(checked[f"short_{criterion}"].iloc[0])


# ------------------------------------------------------------------------------------------------
# Regimes and metadata
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch, regime", [(2015, "2018"), (2019, "2018"), (2021, "2018"), (2022, "2022"),
                                           (2025, "2022"), (2026, "2026"), (2035, "2026"), (np.int64(2024), "2022")])
def test_regime_for(batch, regime):
    assert c.regime_for(batch) == regime


@pytest.mark.parametrize("bad", ["2024", 2024.0, True, None])
def test_regime_for_rejects_non_integers(bad):
    with pytest.raises(TypeError):
        c.regime_for(bad)


def test_every_criterion_has_metadata_and_every_metadata_a_criterion():
    used = {name for rules in c.RULES.values() for name in rules["criteria"]}
    assert used == set(c.CRITERIA)
    for name, meta in c.CRITERIA.items():
        assert meta["dimension"] in DIMENSIONS, name
        assert meta["direction"] in (1, -1), name
        assert meta["label_en"] and meta["label_zh"], name
        assert meta["unit"] in ("ratio", "yuan", "years", "items", "level", "employees", "flag", "points"), name


@pytest.mark.parametrize("batch", [2020, 2024, 2026])
def test_check_reads_only_declared_inputs(batch):
    rules = c.RULES[c.regime_for(batch)]["criteria"]
    declared = list(dict.fromkeys(col for name in rules for col in c.CRITERIA[name]["inputs"]))
    inputs = inputs_of().assign(score_total=96)[declared]
    assert c.check(inputs, batch)["eligible"].iloc[0]


@pytest.mark.parametrize("batch, n", [(2020, 7), (2024, 13), (2026, 12)])
def test_default_firm_meets_every_criterion(batch, n):
    checked = c.check(inputs_of(), batch)
    assert checked["eligible"].iloc[0]
    assert checked["n_met"].iloc[0] == checked["n_criteria"].iloc[0] == n
    shorts = checked.filter(like="short_")
    assert (shorts == 0).all(axis=None)


def test_check_output_columns_and_dtypes():
    checked = c.check(inputs_of(), 2024)
    names = list(c.RULES["2022"]["criteria"])
    assert list(checked.columns) == ([f"pass_{n}" for n in names] + [f"short_{n}" for n in names]
                                     + ["n_met", "n_criteria", "eligible"])
    assert all(checked[f"pass_{n}"].dtype == bool for n in names)
    assert all(checked[f"short_{n}"].dtype == np.float64 for n in names)
    assert checked["eligible"].dtype == bool and checked["n_met"].dtype == np.int64


def test_check_names_missing_columns():
    with pytest.raises(KeyError, match="debt_ratio"):
        c.check(inputs_of().drop(columns="debt_ratio"), 2024)


# ------------------------------------------------------------------------------------------------
# Thresholds: at, just below and just above
# ------------------------------------------------------------------------------------------------

# (batch, criterion, column, threshold, "min" or "max", step, other overrides)
THRESHOLDS = [
    # 2018 rules
    (2020, "growth", "mb_growth_2y", 0.05, "min", 0.001, {"profit_growth_2y": -1.0}),
    (2020, "growth", "profit_growth_2y", 0.05, "min", 0.001, {"mb_growth_2y": -1.0}),
    (2020, "debt_ratio", "debt_ratio", 0.70, "max", 0.001, {}),
    (2020, "niche_years", "niche_years", 3, "min", 1, {}),
    (2020, "mb_share", "mb_share", 0.70, "min", 0.001, {}),
    (2020, "ip", "invention_patents", 2, "min", 1, {"class2_ip": 0}),
    (2020, "ip", "class2_ip", 5, "min", 1, {"invention_patents": 0}),
    (2020, "rd_band", "rd_intensity", 0.03, "min", 0.001, {}),
    (2020, "rd_band", "rd_intensity_prev", 0.03, "min", 0.001, {}),
    (2020, "rd_band", "rd_intensity", 0.06, "min", 0.001, {"revenue": 80e6, "rd_intensity_prev": 0.07}),
    # 2022 rules
    (2024, "niche_years", "niche_years", 3, "min", 1, {}),
    (2024, "mb_share", "mb_share", 0.70, "min", 0.001, {}),
    (2024, "mb_growth", "mb_growth_2y", 0.05, "min", 0.001, {}),
    (2024, "debt_ratio", "debt_ratio", 0.70, "max", 0.001, {}),
    (2024, "info_system", "digital_level", 2, "min", 1, {}),
    (2024, "niche_share", "niche_market_share", 0.10, "min", 0.001, {}),
    (2024, "rd_band", "rd_intensity", 0.03, "min", 0.001, {}),
    (2024, "rd_band", "rd_intensity_prev", 0.06, "min", 0.001, {"revenue": 50e6, "rd_intensity": 0.07}),
    (2024, "rd_institution", "rd_institution_level", 1, "min", 1, {}),
    (2024, "class1_ip", "class1_ip", 2, "min", 1, {}),
    # 2026 rules
    (2026, "niche_years", "niche_years", 3, "min", 1, {}),
    (2026, "revenue", "revenue", 50e6, "min", 1e5, {}),
    (2026, "mb_share", "mb_share", 0.90, "min", 0.001, {}),
    (2026, "revenue_cagr", "revenue_cagr_2y", 0.05, "min", 0.001, {}),
    (2026, "debt_ratio", "debt_ratio", 0.75, "max", 0.001, {}),
    (2026, "rd_amount_2y", "rd_2y", 12e6, "min", 1e5, {}),
    (2026, "rd_intensity", "rd_intensity", 0.03, "min", 0.001, {}),
    (2026, "rd_intensity", "rd_intensity_prev", 0.03, "min", 0.001, {}),
    (2026, "class1_ip", "class1_ip", 4, "min", 1, {}),
    (2026, "niche_share", "niche_market_share", 0.10, "min", 0.001, {}),
    (2026, "development_score", "score_total", 60, "min", 1, {}),
]


@pytest.mark.parametrize("where", ["at", "below", "above"])
@pytest.mark.parametrize("batch, criterion, column, threshold, op, step, others", THRESHOLDS,
                         ids=[f"{t[0]}-{t[1]}-{t[2]}-{t[3]:g}" for t in THRESHOLDS])
def test_threshold(batch, criterion, column, threshold, op, step, others, where):
    value = {"at": threshold, "below": threshold - step, "above": threshold + step}[where]
    checked = c.check(inputs_of(**others, **{column: float(value)}), batch)
    passed, short = one(checked, criterion)
    fails = (where == "below") if op == "min" else (where == "above")
    assert passed is not fails
    assert short == (pytest.approx(step) if fails else 0.0)
    assert bool(checked["eligible"].iloc[0]) is not fails
    assert checked["n_met"].iloc[0] == checked["n_criteria"].iloc[0] - fails


@pytest.mark.parametrize("column, value, passed", [
    ("mb_share", 0.7 * 0.1 / 0.1, True),      # 0.6999999999999998: 70% after floating-point rounding
    ("mb_share", 0.69999, False),
    ("debt_ratio", 0.7000000000000001, True),
    ("debt_ratio", 0.70001, False),
])
def test_threshold_tolerates_rounding_only(column, value, passed):
    assert one(c.check(inputs_of(**{column: value}), 2024), column)[0] is passed  # criterion named as column


@pytest.mark.parametrize("batch, criterion, column", [
    (2024, "srdi_provincial", "srdi_provincial"), (2024, "certification", "quality_certified"),
    (2024, "own_brand", "own_brand"), (2026, "srdi_provincial", "srdi_provincial"),
])
@pytest.mark.parametrize("held", [True, False])
def test_flag_criteria(batch, criterion, column, held):
    passed, short = one(c.check(inputs_of(**{column: held}), batch), criterion)
    assert passed is held
    assert short == (0.0 if held else 1.0)


@pytest.mark.parametrize("batch", [2020, 2024, 2026])
@pytest.mark.parametrize("employees, revenue, passed, short", [
    (999, 500e6, True, 0.0),        # few enough employees
    (1000, 500e6, False, 1.0),      # at both limits: not an SME; one employee too many
    (1001, 500e6, False, 2.0),
    (1500, 399_999_999.0, True, 0.0),  # small enough revenue
    (1500, 400e6, False, 501.0),
    (1500, 400_000_001.0, False, 501.0),
])
def test_sme_size_rule(batch, employees, revenue, passed, short):
    checked = c.check(inputs_of(employees=employees, revenue=revenue), batch)
    assert one(checked, "sme_size") == (passed, short)


# ------------------------------------------------------------------------------------------------
# R&D rule by revenue band
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [2020, 2024])
@pytest.mark.parametrize("revenue, intensity, passed, short", [
    (100e6, 0.03, True, 0.0),       # >= 100M: 3%
    (99.9e6, 0.05, False, 0.01),    # 50-100M: 6%
    (50e6, 0.06, True, 0.0),
    (50e6, 0.059, False, 0.001),
])
def test_rd_band_by_revenue(batch, revenue, intensity, passed, short):
    checked = c.check(inputs_of(revenue=revenue, rd_intensity=intensity, rd_intensity_prev=intensity), batch)
    got_pass, got_short = one(checked, "rd_band")
    assert got_pass is passed and got_short == pytest.approx(short)


EQUITY_ROUTE = dict(revenue=40e6, rd_intensity=0.9, rd_intensity_prev=0.9, equity_2y=80e6, rd_2y=30e6,
                    rd_staff_share=0.5)


@pytest.mark.parametrize("batch", [2020, 2024])
@pytest.mark.parametrize("changes, passed, short", [
    ({}, True, 0.0),                                           # exactly at all three minimums
    ({"equity_2y": 79.9e6}, False, 0.1e6 / 80e6),
    ({"equity_2y": 60e6}, False, 0.25),                         # a quarter of the equity missing
    ({"rd_2y": 27e6}, False, 0.1),
    ({"rd_staff_share": 0.4}, False, 0.2),
    ({"equity_2y": 60e6, "rd_staff_share": 0.1}, False, 0.8),   # the largest gap counts
    ({"equity_2y": 200e6, "rd_2y": 90e6, "rd_staff_share": 0.9}, True, 0.0),
    ({"equity_2y": np.nan}, False, np.nan),
    ({"revenue": 49.9e6, "rd_intensity": 0.2, "rd_intensity_prev": 0.2, "equity_2y": 0.0}, False, 1.0),
])
def test_rd_band_equity_route(batch, changes, passed, short):
    checked = c.check(inputs_of(**{**EQUITY_ROUTE, **changes}), batch)
    got_pass, got_short = one(checked, "rd_band")
    assert got_pass is passed
    assert got_short == pytest.approx(short, nan_ok=True)


def test_rd_band_from_raw_round_numbers():
    # 3M of R&D on 100M revenue in both years is exactly 3%, despite floating point.
    rows = history(per_year={y: dict(revenue=100e6, main_business_revenue=95e6, rd_expense=3e6) for y in YEARS})
    checked = c.check(criteria_inputs(to_panel(rows)).tail(1), 2024)
    assert one(checked, "rd_band") == (True, 0.0)


# ------------------------------------------------------------------------------------------------
# Missing data
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch, criterion, overrides", [
    (2020, "growth", {"mb_growth_2y": np.nan, "profit_growth_2y": np.nan}),
    (2020, "rd_band", {"rd_intensity_prev": np.nan}),
    (2024, "mb_growth", {"mb_growth_2y": np.nan}),
    (2024, "niche_share", {"niche_market_share": np.nan}),
    (2024, "info_system", {"digital_level": np.nan}),
    (2024, "rd_band", {"rd_intensity": np.nan}),
    (2024, "debt_ratio", {"debt_ratio": np.nan}),
    (2026, "rd_amount_2y", {"rd_2y": np.nan}),
    (2026, "rd_intensity", {"rd_intensity_prev": np.nan}),
    (2026, "revenue_cagr", {"revenue_cagr_2y": np.nan}),
])
def test_missing_data_fails_with_nan_shortfall(batch, criterion, overrides):
    checked = c.check(inputs_of(**overrides), batch)
    passed, short = one(checked, criterion)
    assert not passed and np.isnan(short)
    assert not checked["eligible"].iloc[0]


def test_either_or_rule_uses_the_known_route():
    passed, short = one(c.check(inputs_of(mb_growth_2y=np.nan, profit_growth_2y=0.08), 2020), "growth")
    assert (passed, short) == (True, 0.0)
    passed, short = one(c.check(inputs_of(mb_growth_2y=np.nan, profit_growth_2y=0.02), 2020), "growth")
    assert not passed and short == pytest.approx(0.03)


def test_single_year_firm_cannot_show_two_year_rules():
    inputs = criteria_inputs(to_panel([firm_year()]))
    checked = c.check(inputs, 2024)
    for criterion in ("mb_growth", "rd_band"):
        passed, short = one(checked, criterion)
        assert not passed and np.isnan(short)
    assert one(checked, "debt_ratio") == (True, 0.0)


# ------------------------------------------------------------------------------------------------
# criteria_inputs
# ------------------------------------------------------------------------------------------------


def test_inputs_values():
    rows = history(per_year={2021: dict(main_business_revenue=100e6, net_profit=10e6, revenue=100e6),
                             2022: dict(main_business_revenue=110e6, net_profit=12e6, revenue=120e6,
                                        rd_expense=6e6, equity_financing=30e6),
                             2023: dict(main_business_revenue=132e6, net_profit=9e6, revenue=144e6,
                                        rd_expense=7.2e6, equity_financing=np.nan)})
    got = criteria_inputs(to_panel(rows)).iloc[-1]
    assert got["rd_intensity"] == pytest.approx(0.05)
    assert got["rd_intensity_prev"] == pytest.approx(0.05)
    assert got["rd_2y"] == pytest.approx(13.2e6)
    assert got["equity_2y"] == pytest.approx(30e6)            # blank this year counts as 0
    assert got["mb_share"] == pytest.approx(132 / 144)
    assert got["mb_growth_2y"] == pytest.approx((0.10 + 0.20) / 2)
    assert got["profit_growth_2y"] == pytest.approx((0.20 - 0.25) / 2)
    assert got["revenue_cagr_2y"] == pytest.approx(np.sqrt(1.44) - 1)
    assert got["debt_ratio"] == pytest.approx(0.4)
    assert got["net_margin"] == pytest.approx(9 / 144)
    assert got["rd_staff_share"] == pytest.approx(0.2)
    assert got["rd_institution_level"] == 2


@pytest.mark.parametrize("this_year, last_year, expected", [
    (np.nan, np.nan, np.nan), (5e6, np.nan, 5e6), (np.nan, 7e6, 7e6), (5e6, 7e6, 12e6), (0.0, np.nan, 0.0),
])
def test_equity_2y(this_year, last_year, expected):
    rows = history(years=(2022, 2023), per_year={2022: dict(equity_financing=last_year),
                                                 2023: dict(equity_financing=this_year)})
    got = criteria_inputs(to_panel(rows))["equity_2y"].iloc[-1]
    assert got == pytest.approx(expected, nan_ok=True)


def test_year_gap_gives_nan():
    rows = history(years=(2020, 2022, 2023), equity_financing=5e6)
    got = criteria_inputs(to_panel(rows)).set_index("year")
    assert np.isnan(got.loc[2022, "rd_intensity_prev"]) and np.isnan(got.loc[2022, "rd_2y"])
    assert got.loc[2022, "equity_2y"] == 5e6                  # the absent year counts as no equity
    assert not np.isnan(got.loc[2023, "rd_intensity_prev"])
    assert np.isnan(got.loc[2023, "mb_growth_2y"]) and np.isnan(got.loc[2023, "revenue_cagr_2y"])


def test_division_by_zero_gives_nan_not_inf():
    rows = history(years=(2021, 2022, 2023), per_year={
        2022: dict(main_business_revenue=0.0, revenue=0.0, rd_expense=0.0, net_profit=0.0),
        2023: dict(employees=0, rd_staff=0.0)})
    got = criteria_inputs(to_panel(rows))
    numeric = got.select_dtypes("number")
    assert np.isfinite(numeric.to_numpy(dtype=float)[~np.isnan(numeric.to_numpy(dtype=float))]).all()
    row22, row23 = got.iloc[1], got.iloc[2]
    assert np.isnan(row22["rd_intensity"]) and np.isnan(row22["mb_share"]) and np.isnan(row22["net_margin"])
    assert np.isnan(row23["mb_growth_2y"]) and np.isnan(row23["rd_staff_share"])


def _random_panel(seed: int = 0, firms: int = 3, years=range(2018, 2025)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(firms):
        for year in years:
            revenue = float(rng.uniform(20e6, 300e6))
            rows.append(firm_year(
                firm_id=f"F{f}", year=year, revenue=revenue, main_business_revenue=revenue * rng.uniform(0.5, 1),
                net_profit=revenue * rng.normal(0.05, 0.05), total_liabilities=float(rng.uniform(50e6, 240e6)),
                rd_expense=revenue * rng.uniform(0, 0.1), equity_financing=float(rng.choice([np.nan, 0, 3e7])),
                niche_years=int(rng.integers(0, 8)), own_brand=bool(rng.random() < 0.5)))
    return to_panel(rows)


def _by_key(inputs: pd.DataFrame, last_year: int) -> pd.DataFrame:
    kept = inputs[inputs["year"] <= last_year]
    return kept.set_index(["firm_id", "year"]).sort_index()


@pytest.mark.parametrize("cutoff", [2019, 2021, 2023])
def test_point_in_time(cutoff):
    panel = _random_panel()
    base = _by_key(criteria_inputs(panel), cutoff)
    later = panel["year"] > cutoff
    altered = panel.copy()
    for col in ("revenue", "main_business_revenue", "net_profit", "rd_expense", "total_liabilities"):
        altered.loc[later, col] = altered.loc[later, col] * 3 + 1e6
    altered.loc[later, "equity_financing"] = 9e7
    altered.loc[later, "own_brand"] = ~altered.loc[later, "own_brand"]
    deleted = panel[~later]
    for changed in (altered, deleted):
        pd.testing.assert_frame_equal(_by_key(criteria_inputs(changed), cutoff), base)


def test_any_row_order_and_index_kept():
    panel = _random_panel()
    shuffled = panel.sample(frac=1, random_state=3)
    shuffled.index = [f"r{i}" for i in range(len(shuffled))]
    got = criteria_inputs(shuffled)
    assert got.index.equals(shuffled.index)
    assert (got["firm_id"].to_numpy() == shuffled["firm_id"].to_numpy()).all()
    pd.testing.assert_frame_equal(_by_key(got, 2030), _by_key(criteria_inputs(panel), 2030))


def test_inputs_are_not_mutated():
    panel = _random_panel()
    before = panel.copy(deep=True)
    inputs = criteria_inputs(panel)
    inputs_before = inputs.copy(deep=True)
    c.check(inputs, 2024), c.check(inputs, 2026), c.srdi_score(inputs), c.srdi_eligible(inputs)
    c.assess(panel, 2024)
    pd.testing.assert_frame_equal(panel, before)
    pd.testing.assert_frame_equal(inputs, inputs_before)


def test_duplicate_firm_years_are_rejected():
    with pytest.raises(ValueError, match=r"\(F1, 2023\)"):
        criteria_inputs(to_panel([firm_year(), firm_year()]))


def test_missing_contract_column_is_named():
    with pytest.raises(KeyError, match="rd_staff"):
        criteria_inputs(to_panel([firm_year()]).drop(columns="rd_staff"))


def test_empty_panel():
    inputs = criteria_inputs(to_panel([firm_year()]).iloc[:0])
    assert inputs.empty and "rd_intensity" in inputs
    assert c.check(inputs, 2024).empty and c.srdi_score(inputs).empty and c.srdi_eligible(inputs).empty
    assert c.assess(to_panel([firm_year()]), 2020).empty


# ------------------------------------------------------------------------------------------------
# Provincial 100-point score
# ------------------------------------------------------------------------------------------------


def score_of(rows: list[dict]) -> dict:
    return c.srdi_score(criteria_inputs(to_panel(rows))).iloc[-1].to_dict()


def test_score_worked_example_strong_firm():
    # The default firm, fiscal 2023 (3 years of 10% growth):
    # specialization: main business 95% -> 5; growth 10% -> 10; 6 niche years -> 3; strategic
    #   industry in a foundation field -> 5                                       = 23
    # refinement: digital level 3 -> 5; certified + own brand 3+3 capped -> 5; net margin 12% -> 10;
    #   debt 40% -> 5                                                             = 25
    # distinctive: niche share 15% -> 9; 4 key customers -> 6                    = 15
    # innovation: Class-I with 6 invention patents -> 10; R&D 10M -> 10; R&D staff 20% -> 5;
    #   provincial institution -> 8                                               = 33
    # total 23 + 25 + 15 + 33                                                     = 96
    assert score_of(history()) == dict(score_specialization=23, score_refinement=25, score_distinctive=15,
                                       score_innovation=33, score_total=96)


def test_score_worked_example_middling_firm():
    # Fiscal 2023: revenue 50M, main business 37.5M growing 7% a year.
    # specialization: share 75% -> 3; growth 7% -> 6; 5 niche years -> 2; foundation field only -> 3 = 14
    # refinement: digital level 2 -> 3; certified, no own brand -> 3; net margin 2.5M/50M = 5% -> 4;
    #   debt 55M/100M = 55% -> 3                                                  = 13
    # distinctive: niche share 3% -> 3; 2 key customers -> 3                      = 6
    # innovation: 1 Class-I item, no invention patent -> 6; R&D 2.5M (-> 4) = 5% (-> 4) -> 4;
    #   R&D staff 12/100 -> 3; municipal institution -> 4                         = 17
    # total 14 + 13 + 6 + 17                                                      = 50
    common = dict(revenue=50e6, net_profit=2.5e6, total_assets=100e6, total_liabilities=55e6, rd_expense=2.5e6,
                  niche_years=5, strategic_industry=False, digital_level=2.0, own_brand=False,
                  niche_market_share=0.03, key_customers=2, class1_ip=1, invention_patents=0, employees=100,
                  rd_staff=12.0, rd_institution="municipal")
    rows = history(**common, per_year={2021: dict(main_business_revenue=37.5e6 / 1.07 ** 2),
                                       2022: dict(main_business_revenue=37.5e6 / 1.07),
                                       2023: dict(main_business_revenue=37.5e6)})
    assert score_of(rows) == dict(score_specialization=14, score_refinement=13, score_distinctive=6,
                                  score_innovation=17, score_total=50)


def test_score_worked_example_weak_firm_with_gaps():
    # A single fiscal year, so no growth can be shown.
    # specialization: share 13M/20M = 65% -> 1; growth missing -> 0; 1 niche year -> 0; no field -> 0 = 1
    # refinement: digital level missing -> 0; no certification or brand -> 0; loss -> 0;
    #   debt 75% -> 0                                                             = 0
    # distinctive: niche share missing -> 0; no key customer -> 0                 = 0
    # innovation: no Class-I, 3 Class-II -> 2; R&D 0.5M = 2.5% -> 0; R&D staff missing -> 0;
    #   no institution -> 0                                                       = 2
    # total 1 + 0 + 0 + 2                                                         = 3
    row = firm_year(revenue=20e6, main_business_revenue=13e6, niche_years=1, foundation_field=False,
                    strategic_industry=False, digital_level=np.nan, quality_certified=False, own_brand=False,
                    net_profit=-1e6, total_assets=100e6, total_liabilities=75e6, niche_market_share=np.nan,
                    key_customers=0, class1_ip=0, invention_patents=0, class2_ip=3, rd_expense=0.5e6,
                    rd_staff=np.nan, rd_institution="none")
    assert score_of([row]) == dict(score_specialization=1, score_refinement=0, score_distinctive=0,
                                   score_innovation=2, score_total=3)


@pytest.mark.parametrize("overrides, change", [
    ({"debt_ratio": 0.4999}, 0), ({"debt_ratio": 0.50}, -2), ({"debt_ratio": 0.60}, -4),
    ({"debt_ratio": 0.70}, -4), ({"debt_ratio": 0.7001}, -5), ({"debt_ratio": np.nan}, -5),
    ({"mb_share": 0.80}, 0), ({"mb_share": 0.7999}, -2), ({"mb_share": 0.60}, -4), ({"mb_share": 0.59}, -5),
    ({"mb_growth_2y": 0.08}, -2), ({"mb_growth_2y": 0.0}, -8), ({"mb_growth_2y": -0.001}, -10),
    ({"niche_years": 9}, 1), ({"niche_years": 10}, 2), ({"niche_years": 20}, 2), ({"niche_years": 1}, -3),
    ({"strategic_industry": False}, -2), ({"foundation_field": False, "strategic_industry": False}, -5),
    ({"digital_level": 2.0}, -2), ({"digital_level": 1.0}, -5), ({"own_brand": False}, -2),
    ({"net_margin": 0.0999}, -2), ({"net_margin": 0.02}, -8), ({"net_margin": 0.0199}, -10),
    ({"niche_market_share": 0.0999}, -3), ({"niche_market_share": 0.01}, -6), ({"key_customers": 1}, -3),
    ({"invention_patents": 4}, -2), ({"invention_patents": 0}, -4), ({"class1_ip": 0}, -8),
    ({"class1_ip": 0, "class2_ip": 0}, -10),
    ({"rd_expense": 1.5e6, "rd_intensity": 0.12}, 0),          # the better of amount and intensity
    ({"rd_expense": 4.5e6, "rd_intensity": 0.035}, -2), ({"rd_expense": 1e6, "rd_intensity": 0.03}, -8),
    ({"rd_expense": 0.9e6, "rd_intensity": 0.029}, -10),
    ({"rd_staff_share": 0.10}, -2), ({"rd_staff_share": 0.05}, -4), ({"rd_staff_share": 0.0499}, -5),
    ({"rd_institution_level": 3.0}, 2), ({"rd_institution_level": 1.0}, -4), ({"rd_institution_level": 0.0}, -8),
])
def test_score_bands(overrides, change):
    # The default firm scores 96; each case moves one item.
    assert c.srdi_score(inputs_of(**overrides))["score_total"].iloc[0] == 96 + change


LOW_SCORE = dict(mb_share=0.5, mb_growth_2y=-0.1, niche_years=2, foundation_field=False, strategic_industry=False,
                 digital_level=1.0, quality_certified=False, own_brand=False, net_margin=0.0, debt_ratio=0.8,
                 niche_market_share=0.0, key_customers=0, class1_ip=0, invention_patents=0, class2_ip=0,
                 rd_expense=1.2e6, rd_intensity=0.035, rd_2y=2.4e6, rd_staff_share=0.0, rd_institution_level=0.0,
                 revenue=34e6, equity_2y=np.nan)


def test_low_score_firm_scores_3():
    # niche 2 years -> 1; R&D 1.2M / 3.5% -> 2; everything else 0.
    assert c.srdi_score(inputs_of(**LOW_SCORE))["score_total"].iloc[0] == 3


@pytest.mark.parametrize("overrides, eligible", [
    ({}, True),
    ({"niche_years": 2}, True), ({"niche_years": 1}, False),
    ({"rd_expense": 1e6}, True), ({"rd_expense": 0.99e6}, False), ({"rd_expense": np.nan}, False),
    ({"rd_intensity": 0.03}, True), ({"rd_intensity": 0.029}, False),
    ({"revenue": 10e6}, True), ({"revenue": 9.9e6}, False),
    ({"revenue": 9.9e6, "equity_2y": 20e6}, True), ({"revenue": 9.9e6, "equity_2y": 19.9e6}, False),
    # score below 60: only a shortcut qualifies
    (LOW_SCORE, False),
    ({**LOW_SCORE, "equity_2y": 60e6}, True), ({**LOW_SCORE, "equity_2y": 59.9e6}, False),
    ({**LOW_SCORE, "rd_2y": 20e6}, True), ({**LOW_SCORE, "rd_2y": 19.9e6}, False),
    # a shortcut does not waive a hard condition
    ({**LOW_SCORE, "equity_2y": 60e6, "niche_years": 1}, False),
])
def test_srdi_eligible(overrides, eligible):
    got = c.srdi_eligible(inputs_of(**overrides))
    assert got.name == "srdi_eligible" and got.dtype == bool
    assert bool(got.iloc[0]) is eligible


# ------------------------------------------------------------------------------------------------
# Assessment, failure summary, rule ranking
# ------------------------------------------------------------------------------------------------


def assess_panel() -> pd.DataFrame:
    rows = (history("F1", years=(2021, 2022, 2023, 2024))
            + history("F2", total_liabilities=220e6)                    # debt 88% in 2023
            + history("F3", years=(2024,))                              # nothing before batch 2025
            + history("F0", own_brand=False, class1_ip=1, invention_patents=1))
    return to_panel(rows)


def test_assess_batch_2024():
    assessed = c.assess(assess_panel(), 2024)
    assert list(assessed["firm_id"]) == ["F0", "F1", "F2"]       # F3 has no fiscal year <= 2023
    assert (assessed["year"] == 2023).all()
    head = ["firm_id", "year", "eligible", "n_met", "n_criteria"]
    assert list(assessed.columns[:5]) == head
    names = list(c.RULES["2022"]["criteria"])
    for col in [f"pass_{n}" for n in names] + [f"short_{n}" for n in names] + [
            "score_specialization", "score_refinement", "score_distinctive", "score_innovation", "score_total",
            "srdi_eligible"]:
        assert col in assessed.columns, col
    by_firm = assessed.set_index("firm_id")
    assert by_firm.loc["F1", "eligible"] and not by_firm.loc["F2", "eligible"]
    assert by_firm.loc["F2", "short_debt_ratio"] == pytest.approx(0.18)
    assert by_firm.loc["F0", "n_met"] == 11 and by_firm.loc["F0", "n_criteria"] == 13


def test_assess_uses_fiscal_year_before_the_batch():
    assessed = c.assess(assess_panel(), 2023)
    assert (assessed["year"] == 2022).all() and len(assessed) == 3
    assessed = c.assess(assess_panel(), 2026)
    assert assessed.set_index("firm_id").loc["F1", "year"] == 2024
    assert "pass_development_score" in assessed.columns


def test_failure_summary():
    summary = c.failure_summary(c.assess(assess_panel(), 2024))
    assert list(summary.columns) == ["criterion", "dimension", "label_en", "label_zh", "n_failed", "share_failed"]
    assert summary["n_failed"].is_monotonic_decreasing
    top = summary.set_index("criterion")
    assert top.loc["debt_ratio", "n_failed"] == 1 and top.loc["debt_ratio", "share_failed"] == pytest.approx(1 / 3)
    assert top.loc["own_brand", "label_zh"] == "自主品牌" and top.loc["sme_size", "n_failed"] == 0
    assert len(summary) == 13


def test_rule_rank_score_orders_by_criteria_then_score():
    frame = pd.DataFrame({"n_met": [5, 5, 6, 4], "score_total": [90, 10, 0, 100]})
    score = c.rule_rank_score(frame)
    assert list(score.sort_values(ascending=False).index) == [2, 0, 1, 3]
    assert score.iloc[0] == pytest.approx(5.09)
    checked = c.check(criteria_inputs(assess_panel()), 2024)
    assert c.rule_rank_score(checked).equals(checked["n_met"].astype(float).rename("rule_score"))


def test_speed_100k_rows():
    base = _random_panel(firms=1)
    copies = 100_000 // len(base) + 1
    big = base.loc[np.tile(base.index, copies)].reset_index(drop=True)
    big["firm_id"] = pd.array(np.repeat([f"G{i}" for i in range(copies)], len(base)), dtype=base["firm_id"].dtype)
    big = big.iloc[:100_000]
    start = time.perf_counter()
    inputs = criteria_inputs(big)
    c.check(inputs, 2024), c.srdi_score(inputs)
    assert time.perf_counter() - start < 2.0  # typically ~0.1 s


# ------------------------------------------------------------------------------------------------
# lgml check
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def panel_file(tmp_path):
    path = tmp_path / "panel.parquet"
    assess_panel().to_parquet(path)
    return path


def test_cli_check(panel_file, tmp_path):
    from typer.testing import CliRunner

    from lgml.cli import app

    runner = CliRunner()
    out = tmp_path / "assessed.csv"
    result = runner.invoke(app, ["check", str(panel_file), "--year", "2024", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 firms assessed" in result.output and "debt_ratio" in result.output
    written = pd.read_csv(out, encoding="utf-8-sig", keep_default_na=False)
    assert list(written["firm_id"]) == ["F0", "F1", "F2"]
    assert list(written.columns) == [*c.assess(assess_panel(), 2024).columns, "failed"]
    assert written["failed"].tolist() == [
        "own_brand: no own brand (required) | class1_ip: Class-I IP items 1 is below the 2 items required (short by 1 item)",
        "", "debt_ratio: debt ratio 88.0% is above the 70% allowed (over by 18.0 pp)"]

    again = runner.invoke(app, ["check", str(panel_file), "--year", "2024", "--out", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output

    parquet = tmp_path / "assessed.parquet"
    result = runner.invoke(app, ["check", str(panel_file), "--year", "2026", "--out", str(parquet), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "pass_development_score" in pd.read_parquet(parquet).columns


def test_cli_check_reports_bad_input_without_traceback(tmp_path):
    from typer.testing import CliRunner

    from lgml.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["check", str(tmp_path / "missing.csv"), "--year", "2024"])
    assert result.exit_code == 1 and "no such file" in result.output and "Traceback" not in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("firm_id,year\nF1,2023\n", encoding="utf-8")
    result = runner.invoke(app, ["check", str(bad), "--year", "2024"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


# ------------------------------------------------------------------------------------------------
# Margins: one meaning under every regime
# ------------------------------------------------------------------------------------------------

_ROUTE = dict(revenue=40e6)  # below 50M yuan: the R&D equity route of the 2018 and 2022 rules
# (batch, concept, inputs exactly at the threshold, met there?)
AT_THRESHOLD = [
    *[(b, "sme_size", dict(employees=1000.0, revenue=400e6), False) for b in (2019, 2024, 2026)],
    *[(b, "niche_years", dict(niche_years=3.0), True) for b in (2019, 2024, 2026)],
    (2019, "mb_share", dict(mb_share=0.70), True), (2024, "mb_share", dict(mb_share=0.70), True),
    (2026, "mb_share", dict(mb_share=0.90), True),
    (2019, "growth", dict(mb_growth_2y=0.05, profit_growth_2y=-0.5), True),
    (2024, "growth", dict(mb_growth_2y=0.05), True), (2026, "growth", dict(revenue_cagr_2y=0.05), True),
    (2019, "debt_ratio", dict(debt_ratio=0.70), True), (2024, "debt_ratio", dict(debt_ratio=0.70), True),
    (2026, "debt_ratio", dict(debt_ratio=0.75), True),
    (2026, "revenue", dict(revenue=50e6), True),
    (2024, "info_system", dict(digital_level=2.0), True),
    (2024, "niche_share", dict(niche_market_share=0.10), True),
    (2026, "niche_share", dict(niche_market_share=0.10), True),
    *[(b, "rd_intensity", dict(revenue=200e6, rd_intensity=0.03, rd_intensity_prev=0.05), True) for b in (2019, 2024)],
    (2024, "rd_intensity", dict(revenue=60e6, rd_intensity=0.07, rd_intensity_prev=0.06), True),
    (2026, "rd_intensity", dict(rd_intensity=0.04, rd_intensity_prev=0.03), True),
    *[(b, "rd_amount", dict(_ROUTE, rd_2y=30e6), True) for b in (2019, 2024)],
    (2026, "rd_amount", dict(rd_2y=12e6), True),
    *[(b, "rd_equity", dict(_ROUTE, equity_2y=80e6), True) for b in (2019, 2024)],
    *[(b, "rd_staff", dict(_ROUTE, rd_staff_share=0.50), True) for b in (2019, 2024)],
    (2024, "rd_institution", dict(rd_institution_level=1.0), True),
    (2019, "ip", dict(invention_patents=2.0, class2_ip=0.0), True), (2024, "ip", dict(class1_ip=2.0), True),
    (2026, "ip", dict(class1_ip=4.0), True),
    (2026, "development_score", dict(score_total=60.0), True),
]


@pytest.mark.parametrize("batch, concept, at, met", AT_THRESHOLD)
def test_margin_is_zero_exactly_at_each_threshold(batch, concept, at, met):
    got = concepts.margins(inputs_of(**at), batch)
    assert got[f"margin_{concept}"].item() == 0.0
    assert got[f"met_{concept}"].item() == float(met)


def test_every_required_concept_has_a_threshold_case():
    covered = {(c.regime_for(b), concept) for b, concept, _, _ in AT_THRESHOLD}
    required = {(r, k) for k, meta in concepts.CONCEPTS.items() for r in meta["regimes"] if meta["scale"] != "flag"}
    assert required == covered


@pytest.mark.parametrize("batch, concept, at, sign_above", [
    (2026, "revenue", dict(revenue=60e6), np.log(60 / 50)), (2026, "revenue", dict(revenue=25e6), np.log(0.5)),
    (2026, "mb_share", dict(mb_share=0.85), -0.05), (2024, "mb_share", dict(mb_share=0.85), 0.15),
    (2026, "debt_ratio", dict(debt_ratio=0.80), -0.05), (2024, "debt_ratio", dict(debt_ratio=0.60), 0.10),
    (2026, "development_score", dict(score_total=52.0), -8.0), (2024, "ip", dict(class1_ip=1.0), -1.0),
    (2026, "rd_amount", dict(rd_2y=6e6), np.log(0.5)), (2024, "rd_intensity",
                                                         dict(revenue=60e6, rd_intensity=0.05, rd_intensity_prev=0.09), -0.01),
])
def test_margins_are_signed_in_the_concepts_unit(batch, concept, at, sign_above):
    got = concepts.margins(inputs_of(**at), batch)
    assert got[f"margin_{concept}"].item() == pytest.approx(sign_above)
    assert got[f"met_{concept}"].item() == float(sign_above >= 0)


@pytest.mark.parametrize("batch, concept, at", [
    (2024, "development_score", {}), (2024, "revenue", dict(revenue=1e6)), (2019, "niche_share", {}),
    (2026, "info_system", dict(digital_level=1.0)), (2026, "rd_equity", dict(revenue=10e6)),
    (2024, "rd_intensity", dict(_ROUTE, rd_intensity=0.0, rd_intensity_prev=0.0)),
    (2024, "rd_amount", dict(revenue=200e6, rd_2y=0.0)),
])
def test_a_criterion_the_regime_does_not_ask_is_not_required(batch, concept, at):
    got = concepts.margins(inputs_of(**at), batch)
    assert got[f"margin_{concept}"].item() == concepts.NOT_REQUIRED
    assert got[f"met_{concept}"].item() == 1.0


def test_missing_data_gives_a_missing_margin_and_a_failed_criterion():
    got = concepts.margins(inputs_of(mb_share=np.nan, debt_ratio=np.nan), 2026)
    assert np.isnan(got["margin_mb_share"].item()) and got["met_mb_share"].item() == 0.0
    assert np.isnan(got["margin_debt_ratio"].item()) and got["met_debt_ratio"].item() == 0.0


@pytest.mark.parametrize("batch", [2019, 2024, 2026, 2027])
def test_met_flags_agree_with_the_check(batch):
    inputs = criteria_inputs(_random_panel(seed=3, firms=40, years=range(2018, 2027)))
    inputs = inputs[inputs["year"] == batch - 1].reset_index(drop=True)
    inputs = pd.concat([inputs, c.srdi_score(inputs)], axis=1)
    got, checked = concepts.margins(inputs, batch), c.check(inputs, batch)
    regime = c.regime_for(batch)
    for concept, meta in concepts.CONCEPTS.items():
        entry = meta["regimes"].get(regime)
        if entry is None:
            assert (got[f"met_{concept}"] == 1.0).all()
        elif isinstance(entry, str):
            np.testing.assert_array_equal(got[f"met_{concept}"].to_numpy() == 1.0, checked[f"pass_{entry}"].to_numpy())
    if regime != "2026":
        parts = [f"met_{k}" for k in ("rd_intensity", "rd_amount", "rd_equity", "rd_staff")]
        np.testing.assert_array_equal(got[parts].eq(1.0).all(axis=1).to_numpy(), checked["pass_rd_band"].to_numpy())
    assert (checked["pass_mb_share"] == False).any() and checked["pass_mb_share"].any()  # noqa: E712


def test_every_criterion_of_every_regime_is_a_concept():
    for regime, rules in c.RULES.items():
        named = {e if isinstance(e, str) else e[0] for m in concepts.CONCEPTS.values()
                 for r, e in m["regimes"].items() if r == regime}
        assert named == set(rules["criteria"]), regime


@pytest.mark.parametrize("score, pool_2025, pool_2026", [(49, False, False), (50, False, True),
                                                         (59, False, True), (60, True, True)])
def test_the_2026_provincial_pool_needs_a_development_score_of_50(score, pool_2025, pool_2026):
    # The default firm meets every hard condition; no shortcut (R&D under 10M a year, no equity).
    inputs = inputs_of(score_total=float(score), rd_2y=15e6, equity_2y=0.0)
    assert c.srdi_eligible(inputs, 2025).item() is pool_2025
    assert c.srdi_eligible(inputs, 2026).item() is pool_2026
    assert c.srdi_eligible(inputs, 2027).item() is pool_2026
    assert c.srdi_eligible(inputs).item() is pool_2025  # default: the 2022 provincial rules
