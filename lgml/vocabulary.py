"""Feature labels, units and value formatting."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from lgml import criteria
from lgml.schema import RD_INSTITUTION_LEVELS


# ------------------------------------------------------------------------------------------------
# Labels and values in words
# ------------------------------------------------------------------------------------------------

# feature -> (English label, unit). Units: pct (fraction shown as %), yuan, count, years, level,
# flag, points, category, log (log ratio shown as % change), per100, number.
FEATURE_LABELS: dict[str, tuple[str, str]] = {
    "mb_share": ("main-business share", "pct"), "mb_growth_2y": ("main-business growth (2-yr avg)", "pct"),
    "niche_years": ("years in the niche", "years"), "revenue_growth_1y": ("revenue growth", "log"),
    "debt_ratio": ("debt ratio", "pct"), "net_margin": ("net margin", "pct"),
    "asset_turnover": ("asset turnover", "number"), "digital_level": ("digital level", "level"),
    "quality_certified": ("certification", "flag"), "score_refinement": ("refinement score", "points"),
    "niche_market_share": ("niche market share", "pct"), "own_brand": ("own brand", "flag"),
    "score_distinctive": ("distinctive score", "points"), "rd_intensity": ("R&D intensity", "pct"),
    "rd_intensity_prev": ("R&D intensity of the previous year", "pct"),
    "rd_intensity_2y": ("R&D intensity over 2 years", "pct"), "rd_expense": ("R&D spending", "yuan"),
    "rd_2y": ("R&D spending over 2 years", "yuan"), "rd_staff_share": ("R&D staff share", "pct"),
    "class1_ip": ("Class-I IP items", "count"), "class2_ip": ("Class-II IP items", "count"),
    "class1_growth_1y": ("new Class-I IP items (1 yr)", "count"),
    "class1_growth_2y": ("new Class-I IP items (2 yrs)", "count"),
    "class2_growth_1y": ("new Class-II IP items (1 yr)", "count"),
    "patents_per_100_employees": ("invention patents per 100 employees", "number"),
    "rd_institution_level": ("R&D institution", "institution"), "score_innovation": ("innovation score", "points"),
    "equity_2y": ("new equity over 2 years", "yuan"), "score_specialization": ("specialization score", "points"),
    "foundation_field": ("product in a foundation field (工业六基)", "flag"),
    "strategic_industry": ("strategic emerging industry", "flag"), "key_customers": ("key large customers", "count"),
    "province": ("province", "category"), "in_hightech_zone": ("in a national high-tech zone", "flag"),
    "province_designated_share": ("province's designations per firm", "pct"),
    "province_pool_share": ("province's SRDI pool share", "pct"), "sector": ("sector", "category"),
    "sector_designated_share": ("sector's designations per firm", "pct"), "revenue": ("revenue", "yuan"),
    "employees": ("employees", "count"), "total_assets": ("total assets", "yuan"), "firm_age": ("firm age", "years"),
    "size_band": ("size band", "category"), "ownership": ("ownership", "category"),
    "srdi_provincial": ("provincial SRDI SME status", "flag"),
    "srdi_eligible": ("qualifies as a provincial SRDI SME", "flag"),
    "score_total": ("SRDI 100-point score", "points"), "eligible": ("meets every Little Giant criterion", "flag"),
    "n_met": ("Little Giant criteria met", "count"), "share_met": ("share of criteria met", "pct"),
    "ever_revoked": ("lost a title before", "flag"),
    # criteria inputs that are not model features, for criterion sentences
    "revenue_cagr_2y": ("revenue CAGR (2 yrs)", "pct"), "profit_growth_2y": ("net-profit growth (2-yr avg)", "pct"),
    "invention_patents": ("invention patents", "count"),
}
for _name, _meta in criteria.CRITERIA.items():
    FEATURE_LABELS.setdefault(f"pass_{_name}", (f"{_meta['label_en']} rule", "pass"))
    FEATURE_LABELS.setdefault(f"short_{_name}", (f"shortfall on {_meta['label_en']}", f"short:{_meta['unit']}"))

INSTITUTION_LEVELS = RD_INSTITUTION_LEVELS


def feature_label(feature: str) -> str:
    """English label of a feature, e.g. ``"R&D intensity"``."""
    return FEATURE_LABELS.get(feature, (feature.replace("_", " "), "number"))[0]


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def pct_threshold(x: float) -> str:
    return f"{100 * x:g}%"


def money(x: float) -> str:
    if abs(x) >= 1e5:
        return f"{x / 1e6:,.1f}".removesuffix(".0") + "M yuan"
    return f"{x:,.0f} yuan"


def number(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.2f}"


def format_value(value: Any, unit: str) -> str:
    """A feature value in words and natural units (``"2.1%"``, ``"12.5M yuan"``, ``"yes"``)."""
    if isinstance(value, float):  # the usual case, checked without pd.isna
        if math.isnan(value):
            return "missing"
    elif value is None or (not isinstance(value, str) and pd.isna(value)):
        return "missing"
    if unit in ("category",):
        return str(value)
    x = float(value)
    if unit == "pct":
        return pct(x)
    if unit == "log":
        return f"{100 * math.expm1(x):+.1f}%"
    if unit == "yuan":
        return money(x)
    if unit in ("flag", "pass"):
        return "yes" if x >= 0.5 else "no"
    if unit == "institution":
        return INSTITUTION_LEVELS[int(x)] if 0 <= x < len(INSTITUTION_LEVELS) else number(x)
    if unit == "years":
        return f"{number(x)} year" + ("" if x == 1 else "s")
    if unit == "level":
        return f"level {number(x)}"
    if unit == "points":
        return f"{number(x)} points"
    if unit.startswith("short:"):
        return gap_text(x, unit.removeprefix("short:"))
    return number(x)


def gap_text(x: float, unit: str) -> str:
    """A shortfall in the unit of a criterion (criteria.CRITERIA units)."""
    if unit == "ratio":
        return f"{100 * x:.1f} pp"
    if unit == "yuan":
        return money(x)
    if unit == "flag":
        return "not held" if x > 0 else "held"
    words = {"years": "year", "items": "item", "points": "point", "employees": "employee", "level": "level"}
    if unit in words:
        return f"{number(x)} {words[unit]}" + ("" if x == 1 else "s")
    return number(x)


def threshold_text(x: float, unit: str) -> str:
    if unit == "ratio":
        return pct_threshold(x)
    if unit == "yuan":
        return money(x)
    return number(x)


