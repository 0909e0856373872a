"""Little Giant criteria by rule regime, the provincial SRDI 100-point score, and shortfalls: numbers
only (sentences: :mod:`lgml.explain.reasons`; labels: :mod:`lgml.vocabulary`).

The application (batch) year picks one of three rule regimes:

* ``"2018"``: batches up to 2021 (工信厅企业函〔2018〕381号);
* ``"2022"``: batches 2022-2025 (工信部企业〔2022〕63号);
* ``"2026"``: batches from 2026 (the revision as reported, effective 2026-04-01).

Every threshold lives in :data:`RULES` (Little Giant criteria) and :data:`SRDI` (the provincial
SRDI SME conditions and 100-point score); the functions only read them.

Flow: a contract panel -> :func:`lgml.inputs.criteria_inputs` (point-in-time quantities per
firm-year) -> :func:`check` (pass flag and shortfall per criterion) and :func:`srdi_score`.
:func:`assess` does it all for one batch, using each firm's fiscal year ``batch_year - 1``. The
same criteria as margins that mean the same under every regime: :mod:`lgml.concepts`.

Conventions:

* Money in yuan; ratios as fractions (0.03 = 3%); a shortfall of 0.009 in a ratio is 0.9 pp.
* A criterion with missing data fails (the applicant cannot demonstrate it) with a NaN shortfall.
* Values within a relative 1e-9 of a threshold count as equal to it, so that ratios computed from
  round numbers (3M / 100M) meet round thresholds (3%) despite floating-point rounding.

Not checked, because the input contract cannot show them: the award shortcuts (national S&T
award, 创客中国 top group) that pass the innovation dimension directly, the 2018 "leading product
top 3 in its province", the 2022 chain / product-field dimension (链·品), and the 2026 "top 3
domestically" alternative to a 10% niche market share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from lgml import schema
from lgml.inputs import criteria_inputs, float_column

# ------------------------------------------------------------------------------------------------
# Thresholds: the one table. Money in yuan, ratios as fractions.
# ------------------------------------------------------------------------------------------------

# 工信部联企业〔2011〕300号: an industrial firm is an SME below either limit.
_SME_SIZE = {"kind": "sme_size", "employees_below": 1000, "revenue_below": 400e6}

# R&D rule by revenue band (latest fiscal year's revenue picks the band; first match wins).
# Unchanged from 2018 to 2025.
_RD_BANDS = (
    {"revenue_min": 100e6, "intensity_min": 0.03},  # R&D / revenue in each of the last 2 years
    {"revenue_min": 50e6, "intensity_min": 0.06},
    # Below 50M yuan revenue, the equity route: all three minimums.
    {"revenue_min": 0.0, "min": {"equity_2y": 80e6, "rd_2y": 30e6, "rd_staff_share": 0.50}},
)

RULES: dict[str, dict[str, Any]] = {
    "2018": {
        "batches": (None, 2021),
        "source": "工信厅企业函〔2018〕381号",
        "criteria": {
            "sme_size": _SME_SIZE,
            "growth": {"kind": "any_min", "columns": ("mb_growth_2y", "profit_growth_2y"), "min": (0.05, 0.05)},
            "debt_ratio": {"kind": "max", "column": "debt_ratio", "max": 0.70},
            "niche_years": {"kind": "min", "column": "niche_years", "min": 3},
            "mb_share": {"kind": "min", "column": "mb_share", "min": 0.70},
            "ip": {"kind": "any_min", "columns": ("invention_patents", "class2_ip"), "min": (2, 5)},
            "rd_band": {"kind": "rd_band", "bands": _RD_BANDS},
        },
    },
    "2022": {
        "batches": (2022, 2025),
        "source": "工信部企业〔2022〕63号",
        "criteria": {
            "sme_size": _SME_SIZE,
            "srdi_provincial": {"kind": "flag", "column": "srdi_provincial"},
            "niche_years": {"kind": "min", "column": "niche_years", "min": 3},
            "mb_share": {"kind": "min", "column": "mb_share", "min": 0.70},
            "mb_growth": {"kind": "min", "column": "mb_growth_2y", "min": 0.05},
            "debt_ratio": {"kind": "max", "column": "debt_ratio", "max": 0.70},
            # "At least one core business on information systems" is not observed; digital
            # level 2 (of 1..5) is the closest observable proxy.
            "info_system": {"kind": "min", "column": "digital_level", "min": 2},
            "certification": {"kind": "flag", "column": "quality_certified"},
            "niche_share": {"kind": "min", "column": "niche_market_share", "min": 0.10},
            "own_brand": {"kind": "flag", "column": "own_brand"},
            "rd_band": {"kind": "rd_band", "bands": _RD_BANDS},
            # Level 1 = municipal (schema.RD_INSTITUTION_LEVELS): any R&D institution.
            "rd_institution": {"kind": "min", "column": "rd_institution_level", "min": 1},
            "class1_ip": {"kind": "min", "column": "class1_ip", "min": 2},
        },
    },
    "2026": {
        "batches": (2026, None),
        "source": "2026 revision as reported, effective 2026-04-01",
        "criteria": {
            "sme_size": _SME_SIZE,
            "srdi_provincial": {"kind": "flag", "column": "srdi_provincial"},
            "niche_years": {"kind": "min", "column": "niche_years", "min": 3},
            "revenue": {"kind": "min", "column": "revenue", "min": 50e6},
            "mb_share": {"kind": "min", "column": "mb_share", "min": 0.90},
            "revenue_cagr": {"kind": "min", "column": "revenue_cagr_2y", "min": 0.05},
            "debt_ratio": {"kind": "max", "column": "debt_ratio", "max": 0.75},
            "rd_amount_2y": {"kind": "min", "column": "rd_2y", "min": 12e6},
            "rd_intensity": {"kind": "all_min", "columns": ("rd_intensity", "rd_intensity_prev"), "min": 0.03},
            "class1_ip": {"kind": "min", "column": "class1_ip", "min": 4},
            # The "or top 3 domestically" alternative is not observed.
            "niche_share": {"kind": "min", "column": "niche_market_share", "min": 0.10},
            # The development score is not published; the provincial 100-point score stands in.
            "development_score": {"kind": "min", "column": "score_total", "min": 60},
        },
    },
}

# Provincial SRDI SME (专精特新中小企业), 2022 rules (standing for earlier years too); a 2026-rules
# batch's pool needs a development score >= 50 (the 100-point score stands in), other conditions
# kept. Bands are (operator, bound, points), first match wins, no match or missing data scores 0.
SRDI: dict[str, Any] = {
    "hard": {"niche_years_min": 2, "rd_min": 1e6, "rd_intensity_min": 0.03,
             "revenue_min": 10e6, "or_equity_2y_min": 20e6},
    "score_min": {"2018": 60, "2022": 60, "2026": 50},
    "shortcut": {"rd_avg_2y_min": 10e6, "equity_2y_min": 60e6},
    "score": {
        # specialization, 25
        "mb_share": ((">=", 0.80, 5), (">=", 0.70, 3), (">=", 0.60, 1)),
        "mb_growth_2y": ((">=", 0.10, 10), (">=", 0.08, 8), (">=", 0.06, 6), (">=", 0.04, 4), (">=", 0.0, 2)),
        "niche_years": {"years_per_point": 2, "max": 5},
        # Official: 5 for 补短板/锻长板/填空白 products, 3 for 工业六基 and similar. Observable
        # proxy: a strategic-industry product in a foundation field 5, either one 3.
        "product_field": {"both": 5, "either": 3},
        # refinement, 25
        "digital_level": ((">=", 3, 5), (">=", 2, 3)),
        # 3 points per quality item; the observable items are a certification and an own brand.
        "quality": {"per_item": 3, "max": 5},
        "net_margin": ((">=", 0.10, 10), (">=", 0.08, 8), (">=", 0.06, 6), (">=", 0.04, 4), (">=", 0.02, 2)),
        "debt_ratio": (("<", 0.50, 5), ("<", 0.60, 3), ("<=", 0.70, 1)),
        # distinctive, 15: set by each province; proxy from national niche share and key customers.
        "niche_market_share": ((">=", 0.10, 9), (">=", 0.05, 6), (">=", 0.01, 3)),
        "key_customers": ((">=", 3, 6), (">=", 1, 3)),
        "distinctive_max": 15,
        # innovation, 35. IP: high-value Class-I 10, own Class-I 8, Class-I 6, Class-II 2; the
        # contract has no "high-value" or "own" flags, so invention patents stand in for both.
        "ip": {"class1_min": 1, "class2_min": 1, "own_inventions_min": 1, "high_value_inventions_min": 5,
               "high_value": 10, "own_class1": 8, "class1": 6, "class2": 2},
        "rd_amount": ((">=", 5e6, 10), (">=", 4e6, 8), (">=", 3e6, 6), (">=", 2e6, 4), (">=", 1e6, 2)),
        "rd_intensity": ((">=", 0.10, 10), (">=", 0.08, 8), (">=", 0.06, 6), (">=", 0.04, 4), (">=", 0.03, 2)),
        "rd_staff_share": ((">=", 0.20, 5), (">=", 0.10, 3), (">=", 0.05, 1)),
        "rd_institution": {"none": 0, "municipal": 4, "provincial": 8, "national": 10},
    },
}

# ------------------------------------------------------------------------------------------------
# Metadata
# ------------------------------------------------------------------------------------------------

def _meta(dimension: str, label_en: str, label_zh: str, unit: str, direction: int, inputs: tuple[str, ...]) -> dict:
    return dict(dimension=dimension, label_en=label_en, label_zh=label_zh, unit=unit, direction=direction, inputs=inputs)


# Units of short_<name>: ratio (fraction; 0.009 = 0.9 pp), yuan, years, items, level, employees,
# flag (1 = not held), points. rd_band is a ratio: the R&D-intensity gap in the 3% / 6% bands and,
# on the equity route (revenue < 50M), the largest fraction of a requirement not met.
CRITERIA: dict[str, dict[str, Any]] = {
    "sme_size": _meta("size", "SME size (employees or revenue)", "中小企业规模标准", "employees", -1,
                      ("employees", "revenue")),
    "revenue": _meta("size", "operating revenue", "营业收入", "yuan", 1, ("revenue",)),
    # Tier status sits with specialization: it is the 专精特新 status itself.
    "srdi_provincial": _meta("specialization", "provincial SRDI SME status", "省级专精特新中小企业", "flag", 1,
                             ("srdi_provincial",)),
    "development_score": _meta("specialization", "development score (provincial 100-point score)",
                               "发展评分（以省级百分制评分代替）", "points", 1, ("score_total",)),
    "niche_years": _meta("specialization", "years in the niche market", "从事细分市场年限", "years", 1,
                         ("niche_years",)),
    "mb_share": _meta("specialization", "main-business share of revenue", "主营业务收入占营业收入比重", "ratio", 1,
                      ("mb_share",)),
    "mb_growth": _meta("specialization", "2-year average main-business revenue growth", "主营业务收入平均增长率",
                       "ratio", 1, ("mb_growth_2y",)),
    "growth": _meta("specialization", "2-year average growth of main-business revenue or net profit",
                    "主营业务收入或净利润平均增长率", "ratio", 1, ("mb_growth_2y", "profit_growth_2y")),
    "revenue_cagr": _meta("specialization", "2-year revenue CAGR", "营业收入复合增长率", "ratio", 1,
                          ("revenue_cagr_2y",)),
    "debt_ratio": _meta("refinement", "debt-to-asset ratio", "资产负债率", "ratio", -1, ("debt_ratio",)),
    "info_system": _meta("refinement", "information systems on core business (digital level)",
                         "核心业务采用信息系统（以数字化水平代替）", "level", 1, ("digital_level",)),
    "certification": _meta("refinement", "management or product certification", "管理体系或产品认证", "flag", 1,
                           ("quality_certified",)),
    "niche_share": _meta("distinctive", "national niche market share", "细分市场占有率", "ratio", 1,
                         ("niche_market_share",)),
    "own_brand": _meta("distinctive", "own brand", "自主品牌", "flag", 1, ("own_brand",)),
    "ip": _meta("innovation", "invention patents or Class-II IP", "发明专利或Ⅱ类知识产权", "items", 1,
                ("invention_patents", "class2_ip")),
    "class1_ip": _meta("innovation", "Class-I IP items", "Ⅰ类知识产权", "items", 1, ("class1_ip",)),
    "rd_band": _meta("innovation", "R&D spending by revenue band", "研发投入（按营业收入分档）", "ratio", 1,
                     ("rd_intensity", "rd_intensity_prev", "revenue", "equity_2y", "rd_2y", "rd_staff_share")),
    "rd_institution": _meta("innovation", "R&D institution", "研发机构", "level", 1, ("rd_institution_level",)),
    "rd_amount_2y": _meta("innovation", "R&D spending over 2 years", "近两年研发费用总额", "yuan", 1, ("rd_2y",)),
    "rd_intensity": _meta("innovation", "R&D intensity in each of the last 2 years", "研发费用占营业收入比重（每年）",
                          "ratio", 1, ("rd_intensity", "rd_intensity_prev")),
}

# ------------------------------------------------------------------------------------------------
# Little Giant criteria
# ------------------------------------------------------------------------------------------------


def regime_for(batch_year: int) -> str:
    """The rule regime of an application (batch) year.

    Args:
        batch_year: Designation batch year, e.g. 2024 (which assesses fiscal year 2023).

    Returns:
        ``"2018"`` (batches <= 2021), ``"2022"`` (2022-2025) or ``"2026"`` (>= 2026).

    Raises:
        TypeError: ``batch_year`` is not an integer.
    """
    if isinstance(batch_year, bool) or not isinstance(batch_year, (int, np.integer)):
        raise TypeError(f"batch_year must be an integer year, got {batch_year!r}")
    for name, rules in RULES.items():
        first, last = rules["batches"]
        if (first is None or batch_year >= first) and (last is None or batch_year <= last):
            return name
    raise ValueError(f"no rule regime covers batch {batch_year}")  # unreachable while RULES is complete


# Regime whose thresholds describe a criterion when no batch year is given.
DEFAULT_REGIME = "2022"


def rule(criterion: str, batch_year: int | None = None) -> dict[str, Any]:
    """The rule (threshold spec of :data:`RULES`) of one criterion.

    Args:
        criterion: A key of :data:`CRITERIA`.
        batch_year: Whose rules; default :data:`DEFAULT_REGIME` (or the first regime that has
            the criterion).

    Raises:
        ValueError: Unknown criterion, or not one of the regime of ``batch_year``.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; known: {', '.join(CRITERIA)}")
    if batch_year is not None:
        regime = regime_for(batch_year)
        if criterion not in RULES[regime]["criteria"]:
            raise ValueError(f"{criterion!r} is not a criterion of the {regime} rules (batch {batch_year})")
        return RULES[regime]["criteria"][criterion]
    return next(RULES[r]["criteria"][criterion] for r in (DEFAULT_REGIME, *RULES) if criterion in RULES[r]["criteria"])


RTOL = 1e-9  # values within this relative distance of a threshold count as equal to it (rounding)
Getter = Callable[[str], np.ndarray]
Result = tuple[np.ndarray, np.ndarray]  # (passed: bool, shortfall: float)


def compare(x: np.ndarray, op: str, bound: float | np.ndarray) -> np.ndarray:
    """Elementwise ``x op bound`` treating values within a relative 1e-9 as equal; NaN -> False."""
    tol = RTOL * np.maximum(1.0, np.abs(bound))
    if op == ">=":
        return x >= bound - tol
    if op == ">":
        return x > bound + tol
    if op == "<=":
        return x <= bound + tol
    if op == "<":
        return x < bound - tol
    raise ValueError(f"unknown operator {op!r}")


def _at_least(x: np.ndarray, minimum: float) -> Result:
    passed = compare(x, ">=", minimum)
    return passed, np.where(passed, 0.0, minimum - x)


def _at_most(x: np.ndarray, maximum: float) -> Result:
    passed = compare(x, "<=", maximum)
    return passed, np.where(passed, 0.0, x - maximum)


def _eval_min(spec: Mapping, get: Getter) -> Result:
    return _at_least(get(spec["column"]), spec["min"])


def _eval_max(spec: Mapping, get: Getter) -> Result:
    return _at_most(get(spec["column"]), spec["max"])


def _eval_flag(spec: Mapping, get: Getter) -> Result:
    return _at_least(get(spec["column"]), 1.0)


def _eval_any_min(spec: Mapping, get: Getter) -> Result:
    """Either route suffices; the shortfall is that of the nearer known route."""
    parts = [_at_least(get(c), m) for c, m in zip(spec["columns"], spec["min"])]
    passed = np.logical_or.reduce([p for p, _ in parts])
    short = np.fmin.reduce([s for _, s in parts])  # fmin skips a missing route
    return passed, np.where(passed, 0.0, short)


def _eval_all_min(spec: Mapping, get: Getter) -> Result:
    """Every column must reach the minimum; the shortfall is the largest gap (NaN if any is missing)."""
    parts = [_at_least(get(c), spec["min"]) for c in spec["columns"]]
    passed = np.logical_and.reduce([p for p, _ in parts])
    short = np.maximum.reduce([s for _, s in parts])
    return passed, np.where(passed, 0.0, short)


def _eval_sme_size(spec: Mapping, get: Getter) -> Result:
    employees = get("employees")
    passed = compare(employees, "<", spec["employees_below"]) | compare(get("revenue"), "<", spec["revenue_below"])
    # Head count is whole people: the excess is how many must go to fall below the limit.
    return passed, np.where(passed, 0.0, employees - spec["employees_below"] + 1)


def _equity_route(band: Mapping, get: Getter) -> Result:
    """All minimums of the equity route; shortfall = the largest fraction of a requirement not met."""
    parts = [_at_least(get(col) / need, 1.0) for col, need in band["min"].items()]
    passed = np.logical_and.reduce([p for p, _ in parts])
    return passed, np.where(passed, 0.0, np.maximum.reduce([s for _, s in parts]))


def _eval_rd_band(spec: Mapping, get: Getter) -> Result:
    revenue = get("revenue")
    # The weaker of the two years decides "in each of the last 2 years"; NaN if either is missing.
    weaker = np.minimum(get("rd_intensity"), get("rd_intensity_prev"))
    passed = np.zeros(len(revenue), bool)
    short = np.full(len(revenue), np.nan)
    placed = np.zeros(len(revenue), bool)
    for band in spec["bands"]:
        in_band = ~placed & compare(revenue, ">=", band["revenue_min"])
        placed |= in_band
        p, s = _at_least(weaker, band["intensity_min"]) if "intensity_min" in band else _equity_route(band, get)
        passed = np.where(in_band, p, passed)
        short = np.where(in_band, s, short)
    return passed, short


_EVALUATORS: dict[str, Callable[[Mapping, Getter], Result]] = {
    "min": _eval_min, "max": _eval_max, "flag": _eval_flag, "any_min": _eval_any_min,
    "all_min": _eval_all_min, "sme_size": _eval_sme_size, "rd_band": _eval_rd_band,
}


def column_getter(frame: pd.DataFrame, extra: Mapping[str, np.ndarray]) -> Getter:
    """Column reader returning float arrays (bool -> 0/1, missing -> NaN), each read once."""
    cache = dict(extra)

    def get(col: str) -> np.ndarray:
        if col not in cache:
            cache[col] = float_column(frame, col)
        return cache[col]

    return get


def check(inputs: pd.DataFrame, batch_year: int) -> pd.DataFrame:
    """Check every Little Giant criterion of the regime in force for ``batch_year``.

    Args:
        inputs: DataFrame of shape (n_rows, ...) from :func:`criteria_inputs` (extra columns are
            ignored). Each row is judged as it stands: pass the rows of fiscal year
            ``batch_year - 1``. For the 2026 regime a ``score_total`` column is used if present,
            else computed with :func:`srdi_score`.
        batch_year: Application (batch) year; picks the regime (see :func:`regime_for`).

    Returns:
        DataFrame with the index of ``inputs``: ``pass_<criterion>`` (bool; missing data fails)
        for every criterion of the regime in :data:`RULES` order, ``short_<criterion>``
        (float shortfall in the unit of :data:`CRITERIA`: 0 when passed, NaN when data are
        missing), ``n_met``, ``n_criteria`` and ``eligible`` (every criterion met, the SME size
        rule included).

    Raises:
        KeyError: ``inputs`` lacks a column the regime needs.

    Example:
        >>> checked = check(criteria_inputs(panel).query("year == 2023"), 2024)
        >>> checked["eligible"].mean()
    """
    rules = RULES[regime_for(batch_year)]["criteria"]
    needed = dict.fromkeys(c for name in rules for c in CRITERIA[name]["inputs"])
    extra = {}
    if "score_total" in needed and "score_total" not in inputs.columns:
        extra["score_total"] = srdi_score(inputs)["score_total"].to_numpy(dtype=float)
    missing = [c for c in needed if c not in inputs.columns and c not in extra]
    if missing:
        raise KeyError(f"check needs the criteria_inputs columns {missing}")
    get = column_getter(inputs, extra)
    passes, shorts = {}, {}
    for name, spec in rules.items():
        passes[f"pass_{name}"], shorts[f"short_{name}"] = _EVALUATORS[spec["kind"]](spec, get)
    n_met = np.sum(list(passes.values()), axis=0, dtype=np.int64).reshape(len(inputs))
    return pd.DataFrame(
        {**passes, **shorts, "n_met": n_met, "n_criteria": np.full(len(inputs), len(rules), np.int64),
         "eligible": n_met == len(rules)},
        index=inputs.index,
    )


# ------------------------------------------------------------------------------------------------
# Provincial SRDI SME: 100-point score and eligibility
# ------------------------------------------------------------------------------------------------


def _points(x: np.ndarray, bands: tuple[tuple[str, float, int], ...]) -> np.ndarray:
    """Points of the first matching band; 0 when none matches or ``x`` is missing."""
    return np.select([compare(x, op, bound) for op, bound, _ in bands], [pts for _, _, pts in bands], default=0)


def srdi_score(inputs: pd.DataFrame) -> pd.DataFrame:
    """The provincial SRDI SME 100-point score; a missing input scores 0 for its item.

    Items (bands in :data:`SRDI`): specialization 25 = main-business share 5 + 2-year
    main-business growth 10 + niche years 5 (1 point per full 2 years) + product field 5 (proxy:
    strategic industry and foundation field 5, either 3); refinement 25 = digital level 5 + quality
    management 5 (3 per item: certification, own brand) + net margin 10 + debt ratio 5;
    distinctive 15 (set by each province; proxy: national niche share 9 + key customers 6);
    innovation 35 = IP 10 (Class-I with >= 5 invention patents 10, Class-I with an invention
    patent 8, other Class-I 6, Class-II 2) + prior-year R&D 10 (the better of the amount and the
    intensity band) + R&D staff share 5 + R&D institution 10. "Prior year" is the row's fiscal
    year t, the last full year before the application.

    Args:
        inputs: DataFrame of shape (n_rows, ...) from :func:`criteria_inputs`.

    Returns:
        DataFrame (int64 points) with the index of ``inputs``: ``score_specialization`` (0-25),
        ``score_refinement`` (0-25), ``score_distinctive`` (0-15), ``score_innovation`` (0-35),
        ``score_total`` (0-100).
    """
    s = SRDI["score"]
    get = column_getter(inputs, {})
    niche = np.floor(np.nan_to_num(get("niche_years")) / s["niche_years"]["years_per_point"])
    foundation, strategic = get("foundation_field") == 1, get("strategic_industry") == 1
    field = np.select([foundation & strategic, foundation | strategic],
                      [s["product_field"]["both"], s["product_field"]["either"]], default=0)
    specialization = (_points(get("mb_share"), s["mb_share"]) + _points(get("mb_growth_2y"), s["mb_growth_2y"])
                      + np.minimum(niche, s["niche_years"]["max"]) + field)
    n_quality = (get("quality_certified") == 1).astype(int) + (get("own_brand") == 1)
    refinement = (_points(get("digital_level"), s["digital_level"])
                  + np.minimum(s["quality"]["per_item"] * n_quality, s["quality"]["max"])
                  + _points(get("net_margin"), s["net_margin"]) + _points(get("debt_ratio"), s["debt_ratio"]))
    distinctive = np.minimum(_points(get("niche_market_share"), s["niche_market_share"])
                             + _points(get("key_customers"), s["key_customers"]), s["distinctive_max"])
    ip = s["ip"]
    class1, inventions = get("class1_ip") >= ip["class1_min"], get("invention_patents")
    ip_points = np.select(
        [class1 & (inventions >= ip["high_value_inventions_min"]), class1 & (inventions >= ip["own_inventions_min"]),
         class1, get("class2_ip") >= ip["class2_min"]],
        [ip["high_value"], ip["own_class1"], ip["class1"], ip["class2"]], default=0)
    rd_points = np.maximum(_points(get("rd_expense"), s["rd_amount"]), _points(get("rd_intensity"), s["rd_intensity"]))
    by_level = np.array([s["rd_institution"][lvl] for lvl in schema.RD_INSTITUTION_LEVELS])
    level = get("rd_institution_level")
    institution = np.where(np.isnan(level), 0, by_level[np.nan_to_num(level).astype(int)])
    innovation = ip_points + rd_points + _points(get("rd_staff_share"), s["rd_staff_share"]) + institution
    parts = {"score_specialization": specialization, "score_refinement": refinement,
             "score_distinctive": distinctive, "score_innovation": innovation}
    out = {k: np.asarray(v).astype(np.int64) for k, v in parts.items()}
    out["score_total"] = sum(out.values(), np.zeros(len(inputs), np.int64))
    return pd.DataFrame(out, index=inputs.index)


def srdi_eligible(inputs: pd.DataFrame, batch_year: int | None = None) -> pd.Series:
    """Whether each row qualifies as a provincial SRDI SME (专精特新中小企业), the candidate
    pool of batch ``batch_year``.

    All hard conditions: niche >= 2 years; prior-year R&D >= 1M yuan and >= 3% of revenue;
    revenue >= 10M yuan or new equity >= 20M yuan over 2 years. And a 100-point score >= 60 (>= 50
    for a 2026-rules batch; :func:`srdi_score`) or a shortcut: average R&D over 2 years >= 10M yuan
    or new equity >= 60M yuan over 2 years (award shortcuts are not observed). See :data:`SRDI`.

    Args:
        inputs: DataFrame of shape (n_rows, ...) from :func:`criteria_inputs`; a ``score_total``
            column, when present, is used instead of computing :func:`srdi_score` again.
        batch_year: The batch whose pool is judged (picks the provincial rules); default 2022.

    Returns:
        Boolean Series ``srdi_eligible`` with the index of ``inputs``; missing data fail.
    """
    hard, shortcut = SRDI["hard"], SRDI["shortcut"]
    get = column_getter(inputs, {})
    equity = get("equity_2y")
    meets_hard = (compare(get("niche_years"), ">=", hard["niche_years_min"])
                  & compare(get("rd_expense"), ">=", hard["rd_min"])
                  & compare(get("rd_intensity"), ">=", hard["rd_intensity_min"])
                  & (compare(get("revenue"), ">=", hard["revenue_min"])
                     | compare(equity, ">=", hard["or_equity_2y_min"])))
    score = (inputs["score_total"] if "score_total" in inputs.columns
             else srdi_score(inputs)["score_total"]).to_numpy(dtype=float)
    regime = DEFAULT_REGIME if batch_year is None else regime_for(batch_year)
    qualifies = (compare(score, ">=", SRDI["score_min"][regime])
                 | compare(get("rd_2y") / 2, ">=", shortcut["rd_avg_2y_min"])
                 | compare(equity, ">=", shortcut["equity_2y_min"]))
    return pd.Series(meets_hard & qualifies, index=inputs.index, name="srdi_eligible")


# ------------------------------------------------------------------------------------------------
# Assessment of one batch
# ------------------------------------------------------------------------------------------------


def _latest_rows(inputs: pd.DataFrame, fiscal_year: int) -> pd.DataFrame:
    """Each firm's latest row with year <= fiscal_year, sorted by firm_id."""
    rows = inputs[inputs["year"] <= fiscal_year].sort_values(["firm_id", "year"], kind="stable")
    return rows.drop_duplicates("firm_id", keep="last").reset_index(drop=True)


def judged_rows(panel: pd.DataFrame, batch_year: int) -> pd.DataFrame:
    """The rows an application to ``batch_year`` is judged on: each firm's latest fiscal year
    <= ``batch_year - 1`` (with t-1 and t-2 for the two-year rules).

    Args:
        panel: DataFrame in the input contract, money in yuan.
        batch_year: Application (batch) year.

    Returns:
        DataFrame of shape (n_firms, ...), one row per firm sorted by firm_id, index reset: the
        :func:`criteria_inputs` columns and the ``score_*`` columns of :func:`srdi_score`. Firms
        with no year <= Y-1 are left out.
    """
    regime_for(batch_year)  # reject a bad year before any work
    rows = _latest_rows(criteria_inputs(panel), batch_year - 1)
    return pd.concat([rows, srdi_score(rows)], axis=1)


def assess(panel: pd.DataFrame, batch_year: int, *, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Assess every firm of a panel for one designation batch.

    An applicant for batch Y shows fiscal year Y-1 accounts, so each firm is judged on its latest
    fiscal year <= Y-1 (with t-1 and t-2 for the two-year rules). Numbers only: the sentences
    come from :func:`lgml.explain.reasons.failed_text`.

    Args:
        panel: DataFrame in the input contract, money in yuan.
        batch_year: Application (batch) year.
        rows: :func:`judged_rows` of ``panel``, when already computed.

    Returns:
        DataFrame of shape (n_firms, ...), one row per firm sorted by firm_id: ``firm_id``,
        ``year`` (fiscal year used), ``eligible``, ``n_met``, ``n_criteria``, every ``pass_*``
        and ``short_*`` column of :func:`check`, the ``score_*`` columns of :func:`srdi_score`
        and ``srdi_eligible``. Firms with no year <= Y-1 are left out.

    Example:
        >>> assessed = assess(panel, 2024)
        >>> failure_summary(assessed).head()
    """
    rows = judged_rows(panel, batch_year) if rows is None else rows
    checked = check(rows, batch_year)
    flags = [c for c in checked.columns if c.startswith(("pass_", "short_"))]
    scores = [c for c in rows.columns if c.startswith("score_")]
    return pd.concat(
        [rows[["firm_id", "year"]], checked[["eligible", "n_met", "n_criteria", *flags]], rows[scores],
         srdi_eligible(rows, batch_year)],
        axis=1,
    )


def failure_summary(assessed: pd.DataFrame) -> pd.DataFrame:
    """How often each criterion fails, most failed first.

    Args:
        assessed: Output of :func:`assess` or :func:`check` (any frame with ``pass_*`` columns).

    Returns:
        DataFrame with columns ``criterion``, ``dimension``, ``label_en``, ``label_zh``,
        ``n_failed`` and ``share_failed`` (of all rows; NaN for an empty frame).
    """
    names = [c.removeprefix("pass_") for c in assessed.columns if c.startswith("pass_")]
    n_failed = [int((~assessed[f"pass_{n}"].astype(bool)).sum()) for n in names]
    out = pd.DataFrame({
        "criterion": pd.Series(names, dtype="str"),
        "dimension": [CRITERIA[n]["dimension"] for n in names],
        "label_en": [CRITERIA[n]["label_en"] for n in names],
        "label_zh": [CRITERIA[n]["label_zh"] for n in names],
        "n_failed": np.array(n_failed, dtype=np.int64),
        "share_failed": np.array(n_failed, dtype=float) / len(assessed) if len(assessed) else np.nan,
    })
    return out.sort_values("n_failed", ascending=False, kind="stable").reset_index(drop=True)


def rule_rank_score(assessed_or_checked: pd.DataFrame) -> pd.Series:
    """The rule check as a baseline ranking: ``n_met + score_total / 1000``.

    Rows order by criteria met, then by the 100-point score (at most 0.1, so it never outweighs
    one criterion). Without a ``score_total`` column the score is ``n_met`` alone.

    Args:
        assessed_or_checked: Output of :func:`assess` or :func:`check`.

    Returns:
        Float Series ``rule_score`` with the index of the input.
    """
    frame = assessed_or_checked
    score = frame["n_met"].astype(float)
    if "score_total" in frame.columns:
        score = score + frame["score_total"].astype(float).fillna(0.0) / 1000
    return score.rename("rule_score")
