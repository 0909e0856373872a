"""``lgml check`` under the 2026 rules (batches 2026 and 2027) on hand-made firms at, just short
of and without data for each threshold of RULES["2026"], from raw contract rows of fiscal years
t-2, t-1 and t (t = batch - 1) through the point-in-time inputs to the ``failed`` sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml import criteria, validate
from lgml.cli import app

BATCHES = (2026, 2027)
NAMES = list(criteria.RULES["2026"]["criteria"])

# Every year of the firm.
COMMON = dict(
    province="Zhejiang", sector="34", founded_year=2010, in_hightech_zone=True, ownership="private",
    employees=300, rd_staff=15, total_assets=100e6, total_liabilities=75e6, equity_financing=np.nan,
    invention_patents=2, class1_ip=4, class2_ip=5, niche_market_share=0.10, own_brand=False,
    quality_certified=False, digital_level=3, rd_institution="national", key_customers=0,
    foundation_field=True, strategic_industry=True, srdi_provincial=True,
)
# By years back from the judged fiscal year t. Every 2026 criterion sits exactly at its threshold:
# revenue 50M; main business 45M / 50M = 90%; debt 75M / 100M = 75%; R&D 1.5M + 10.5M = 12M over
# 2 years at 1.5M / 50M = 3% and 10.5M / 350M = 3% (3% in both years and 12M in all needs 400M
# of revenue over the 2 years); revenue CAGR sqrt(50M / (50M / 1.05^2)) - 1 = 5%; 4 Class-I
# items; niche share 10%; 3 niche years; and the 100-point score exactly 60:
#   specialization 21: main business 90% -> 5, growth (45/40, 40/36) ~11.8% -> 10, 3 niche years -> 1,
#     strategic industry in a foundation field -> 5
#   refinement 9: digital level 3 -> 5, no certification or own brand -> 0, net margin 5% -> 4, debt 75% -> 0
#   distinctive 9: niche share 10% -> 9, no key customers -> 0
#   innovation 21: Class-I with 2 invention patents -> 8, R&D 1.5M (-> 2) at 3% (-> 2) -> 2,
#     R&D staff 15/300 = 5% -> 1, national institution -> 10
YEARLY = {
    2: dict(revenue=50e6 / 1.05**2, main_business_revenue=36e6, rd_expense=1.2e6, net_profit=2e6, niche_years=1),
    1: dict(revenue=350e6, main_business_revenue=40e6, rd_expense=10.5e6, net_profit=2e6, niche_years=2),
    0: dict(revenue=50e6, main_business_revenue=45e6, rd_expense=1.5e6, net_profit=2.5e6, niche_years=3),
}

# criterion -> (changes by years back, shortfall in the criterion's natural unit). Each copy
# misses one criterion just barely and keeps every other one (and the score of 60) met.
BELOW = {
    # revenue 49.9M (the t-2 revenue scaled with it to keep the 5% CAGR): 0.1M yuan short
    "revenue": ({0: dict(revenue=49.9e6), 2: dict(revenue=49.9e6 / 1.05**2)}, 1e5),
    "mb_share": ({0: dict(main_business_revenue=44.95e6)}, 0.001),          # 89.9%
    "debt_ratio": ({0: dict(total_liabilities=75.1e6)}, 0.001),             # 75.1%, over by 0.1 pp
    # 1.5M + 10.4M = 11.9M, t-1 revenue lowered with it to keep 3%: 0.1M yuan short
    "rd_amount_2y": ({1: dict(rd_expense=10.4e6, revenue=10.4e6 / 0.03)}, 1e5),
    "rd_intensity": ({0: dict(rd_expense=1.45e6), 1: dict(rd_expense=10.55e6)}, 0.001),  # 2.9% in t, 12M kept
    "revenue_cagr": ({2: dict(revenue=50e6 / 1.049**2)}, 0.001),             # 4.9%
    "class1_ip": ({0: dict(class1_ip=3)}, 1.0),                             # 1 item
    # 9.9% scores 6 instead of 9 points; one key customer adds the 3 back
    "niche_share": ({0: dict(niche_market_share=0.099, key_customers=1)}, 0.001),
    "niche_years": ({0: dict(niche_years=2)}, 1.0),                         # 1 year (still 1 score point)
    "srdi_provincial": ({0: dict(srdi_provincial=False)}, 1.0),             # flag: 1 = not held
    "development_score": ({0: dict(rd_staff=14)}, 1.0),                     # R&D staff 4.7% -> 0: 59 points
}


def firm_rows(firm_id: str, batch: int, changes: dict | None = None) -> list[dict]:
    """Contract rows of fiscal years batch-3 .. batch-1 of the at-threshold firm, ``changes``
    (years back -> columns) applied."""
    changes = changes or {}
    return [{**COMMON, "firm_id": firm_id, "year": batch - 1 - back, **YEARLY[back], **changes.get(back, {})}
            for back in (2, 1, 0)]


def panel_of(rows: list[dict]) -> pd.DataFrame:
    return validate.conform_panel(pd.DataFrame(rows))  # raises if a hand-made row breaks the contract


def judge(batch: int, changes: dict | None = None) -> pd.Series:
    """assess() of one firm, with its judged point-in-time inputs, as one Series."""
    panel = panel_of(firm_rows("F", batch, changes))
    rows = criteria.judged_rows(panel, batch)
    assessed = criteria.assess(panel, batch, rows=rows)
    assert len(assessed) == 1
    return pd.concat([rows.iloc[0], assessed.iloc[0].drop(rows.columns, errors="ignore")])


def failing(result: pd.Series) -> list[str]:
    return [n for n in NAMES if not result[f"pass_{n}"]]


def test_rule_set_under_test():
    # The thresholds this file builds its firms around (a change to RULES["2026"] must be
    # matched by a change to the firms).
    rules = criteria.RULES["2026"]["criteria"]
    assert NAMES == ["sme_size", "srdi_provincial", "niche_years", "revenue", "mb_share", "revenue_cagr",
                     "debt_ratio", "rd_amount_2y", "rd_intensity", "class1_ip", "niche_share", "development_score"]
    bounds = {n: s.get("min", s.get("max")) for n, s in rules.items() if "column" in s or "columns" in s}
    assert bounds == {"niche_years": 3, "revenue": 50e6, "mb_share": 0.90, "revenue_cagr": 0.05,
                      "debt_ratio": 0.75, "rd_amount_2y": 12e6, "rd_intensity": 0.03, "class1_ip": 4,
                      "niche_share": 0.10, "development_score": 60, "srdi_provincial": None}
    assert criteria.regime_for(2026) == criteria.regime_for(2027) == "2026"


@pytest.mark.parametrize("batch", BATCHES)
def test_firm_exactly_at_every_threshold_is_eligible(batch):
    got = judge(batch)
    assert got["year"] == batch - 1                         # batch Y judges fiscal Y-1
    # the point-in-time inputs sit on the thresholds
    assert got["revenue"] == 50e6 and got["rd_2y"] == 12e6 and got["class1_ip"] == 4 and got["niche_years"] == 3
    for col, value in [("mb_share", 0.90), ("debt_ratio", 0.75), ("rd_intensity", 0.03),
                       ("rd_intensity_prev", 0.03), ("revenue_cagr_2y", 0.05), ("niche_market_share", 0.10)]:
        assert got[col] == pytest.approx(value, rel=1e-12), col
    assert (got["score_specialization"], got["score_refinement"], got["score_distinctive"],
            got["score_innovation"], got["score_total"]) == (21, 9, 9, 21, 60)
    assert bool(got["eligible"]) and got["n_met"] == got["n_criteria"] == 12
    assert failing(got) == []
    assert all(got[f"short_{n}"] == 0.0 for n in NAMES)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("criterion", list(BELOW))
def test_just_short_of_one_threshold(batch, criterion):
    changes, gap = BELOW[criterion]
    got = judge(batch, changes)
    assert failing(got) == [criterion]                       # that one fails, every other passes
    assert got[f"short_{criterion}"] == pytest.approx(gap, rel=1e-6)
    assert not got["eligible"] and got["n_met"] == 11
    assert all(got[f"short_{n}"] == 0.0 for n in NAMES if n != criterion)
    if criterion != "development_score":
        assert got["score_total"] == 60


@pytest.mark.parametrize("batch", BATCHES)
def test_rd_intensity_of_the_earlier_year_counts_too(batch):
    # 2.9% in t-1 (10.15M / 350M), 3.7% in t (1.85M / 50M): still 12M over 2 years
    got = judge(batch, {0: dict(rd_expense=1.85e6), 1: dict(rd_expense=10.15e6)})
    assert failing(got) == ["rd_intensity"]
    assert got["short_rd_intensity"] == pytest.approx(0.001, rel=1e-6)


# Missing data, from the contract (only rd_expense and niche_market_share may be blank; a year
# may be absent): (changes or None for "no t-2 row", {criterion: shortfall (NaN = unknown)}).
MISSING_PANEL = {
    "rd_expense of t-1 blank": ({1: dict(rd_expense=np.nan)}, {"rd_amount_2y": np.nan, "rd_intensity": np.nan}),
    # the score reads only year t's R&D: the 2 points for R&D are lost too
    "rd_expense of t blank": ({0: dict(rd_expense=np.nan)},
                              {"rd_amount_2y": np.nan, "rd_intensity": np.nan, "development_score": 2.0}),
    # a missing share scores 0 of 9 points
    "niche share blank": ({0: dict(niche_market_share=np.nan)}, {"niche_share": np.nan, "development_score": 9.0}),
    # no t-2 year: no CAGR, and no main-business growth for the score (10 points)
    "no year t-2": (None, {"revenue_cagr": np.nan, "development_score": 10.0}),
}


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", list(MISSING_PANEL))
def test_missing_panel_data_fails_with_nan_shortfall(batch, case):
    changes, expected = MISSING_PANEL[case]
    if changes is None:
        panel = panel_of(firm_rows("F", batch)[1:])
        got = criteria.assess(panel, batch).iloc[0]
    else:
        got = judge(batch, changes)
    assert failing(got) == list(expected)
    for name, short in expected.items():
        assert got[f"short_{name}"] == pytest.approx(short, nan_ok=True), name
    assert not got["eligible"]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("criterion", [n for n in NAMES if n != "sme_size"])
def test_missing_input_fails_only_its_criterion_with_nan_shortfall(batch, criterion):
    # Every input of the criterion blanked in the judged rows (score_total included).
    rows = criteria.judged_rows(panel_of(firm_rows("F", batch)), batch)
    rows = rows.assign(**{col: np.nan for col in criteria.CRITERIA[criterion]["inputs"]})
    checked = criteria.check(rows, batch).iloc[0]
    assert [n for n in NAMES if not checked[f"pass_{n}"]] == [criterion]
    assert np.isnan(checked[f"short_{criterion}"])


# ------------------------------------------------------------------------------------------------
# lgml check
# ------------------------------------------------------------------------------------------------


def panel_csv(path, batch: int) -> list[str]:
    """The at-threshold firm, each just-short copy and a copy 3M yuan short of R&D and 10 points
    short of the score; written to ``path``, returns the firm ids in file order."""
    rows = firm_rows("A-AT", batch)
    # a later year (the batch year itself) that fails everything must be ignored
    rows.append(dict(rows[-1], year=batch, revenue=1e6, main_business_revenue=0.5e6, srdi_provincial=False))
    ids = ["A-AT"]
    for criterion, (changes, _) in BELOW.items():
        ids.append(f"B-{criterion}")
        rows += firm_rows(ids[-1], batch, changes)
    ids.append("C-far")
    rows += firm_rows("C-far", batch, {1: dict(rd_expense=7.5e6, revenue=250e6), 0: dict(digital_level=1)})
    pd.DataFrame(rows).to_csv(path, index=False)
    return ids


@pytest.mark.parametrize("batch", BATCHES)
def test_cli_check(batch, tmp_path):
    ids = panel_csv(tmp_path / "panel.csv", batch)
    out = tmp_path / "assessed.csv"
    result = CliRunner().invoke(app, ["check", str(tmp_path / "panel.csv"), "--year", str(batch), "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())  # rich wraps lines at the terminal width
    assert f"Batch {batch} (2026 revision as reported, effective 2026-04-01), fiscal year <= {batch - 1}: " \
           f"{len(ids)} firms assessed" in printed
    assert "meet every Little Giant criterion: 1 (7.7%)" in printed

    written = pd.read_csv(out, encoding="utf-8-sig").set_index("firm_id")
    assert sorted(written.index) == sorted(ids) and (written["year"] == batch - 1).all()
    head = ["year", "eligible", "n_met", "n_criteria"]
    assert list(written.columns) == [*head, *(f"pass_{n}" for n in NAMES), *(f"short_{n}" for n in NAMES),
                                     "score_specialization", "score_refinement", "score_distinctive",
                                     "score_innovation", "score_total", "srdi_eligible", "failed"]
    failed = written["failed"].fillna("")
    assert written.loc["A-AT", "eligible"] and failed["A-AT"] == "" and written.loc["A-AT", "score_total"] == 60
    for criterion, (_, gap) in BELOW.items():
        firm = f"B-{criterion}"
        assert written.loc[firm, "n_met"] == 11 and not written.loc[firm, "eligible"]
        assert written.loc[firm, f"short_{criterion}"] == pytest.approx(gap, rel=1e-6)
        assert failed[firm].startswith(f"{criterion}: ") and " | " not in failed[firm]
    # the gaps in words, in natural units
    assert failed["B-development_score"] == ("development_score: SRDI 100-point score 59 points is below "
                                             "the 60 points required (short by 1 point)")
    assert failed["B-rd_amount_2y"] == ("rd_amount_2y: R&D spending over 2 years 11.9M yuan is below "
                                        "the 12M yuan required (short by 0.1M yuan)")
    assert failed["B-revenue"] == "revenue: revenue 49.9M yuan is below the 50M yuan required (short by 0.1M yuan)"
    assert failed["B-debt_ratio"] == "debt_ratio: debt ratio 75.1% is above the 75% allowed (over by 0.1 pp)"
    assert failed["C-far"] == ("rd_amount_2y: R&D spending over 2 years 9M yuan is below the 12M yuan required "
                               "(short by 3M yuan) | development_score: SRDI 100-point score 55 points is below "
                               "the 60 points required (short by 5 points)")
    assert written.loc["C-far", "short_rd_amount_2y"] == pytest.approx(3e6)
    assert written.loc["C-far", "short_development_score"] == pytest.approx(5.0)
