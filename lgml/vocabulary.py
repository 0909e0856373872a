"""The words of lgml: the 专精特新 dimensions, each feature's dimension, label and unit, and
number formatting. The one place every report, reason and table reads.

Imports only :mod:`lgml.criteria`, :mod:`lgml.concepts` and :mod:`lgml.schema` (numbers), so
every other module may import it without a cycle.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from lgml import concepts, criteria
from lgml.schema import RD_INSTITUTION_LEVELS

# ------------------------------------------------------------------------------------------------
# Dimensions and the feature -> dimension map
# ------------------------------------------------------------------------------------------------

# Dimension -> (Chinese, English) label. The four 专精特新 dimensions, the chain / product field
# (链·品) and the context dimensions; criteria.CRITERIA names its dimensions from these keys.
DIMENSIONS: dict[str, tuple[str, str]] = {
    "specialization": ("专", "specialization"),
    "refinement": ("精", "refinement"),
    "distinctive": ("特", "distinctive"),
    "innovation": ("新", "innovation"),
    "chain": ("链·品", "chain / product"),
    "region": ("区域", "region"),
    "sector": ("行业", "sector"),
    "size": ("规模", "size"),
}

# Model feature -> dimension, in the order of the feature table's columns: also the feature set
# (lgml.features builds these columns). Criteria pass/shortfall features follow from CRITERIA.
_COMPUTED_DIMENSIONS: dict[str, str] = {
    "mb_share": "specialization", "mb_growth_2y": "specialization", "niche_years": "specialization",
    "revenue_growth_1y": "specialization", "revenue_growth_mean": "specialization",
    "revenue_growth_sd": "specialization", "history_years": "size",
    "debt_ratio": "refinement", "net_margin": "refinement", "asset_turnover": "refinement",
    "digital_level": "refinement", "quality_certified": "refinement", "score_refinement": "refinement",
    "niche_market_share": "distinctive", "own_brand": "distinctive", "score_distinctive": "distinctive",
    "rd_intensity": "innovation", "rd_intensity_prev": "innovation", "rd_intensity_2y": "innovation",
    "rd_intensity_long": "innovation",
    "rd_expense": "innovation", "rd_2y": "innovation", "rd_staff_share": "innovation",
    "class1_ip": "innovation", "class2_ip": "innovation", "class1_growth_1y": "innovation",
    "class1_growth_2y": "innovation", "class2_growth_1y": "innovation", "patents_per_100_employees": "innovation",
    "rd_institution_level": "innovation", "score_innovation": "innovation", "equity_2y": "innovation",
    "score_specialization": "specialization",
    "foundation_field": "chain", "strategic_industry": "chain", "key_customers": "chain",
    "province": "region", "in_hightech_zone": "region", "province_designated_share": "region",
    "province_pool_share": "region",
    "sector": "sector", "sector_designated_share": "sector",
    "revenue": "size", "employees": "size", "total_assets": "size", "firm_age": "size", "size_band": "size",
    "ownership": "size",
    "srdi_provincial": "specialization", "srdi_eligible": "specialization", "score_total": "specialization",
    "eligible": "specialization", "n_met": "specialization", "n_failed": "specialization",
    "share_met": "specialization", "ever_revoked": "refinement",
}
FEATURE_DIMENSIONS: dict[str, str] = {
    **_COMPUTED_DIMENSIONS,
    **{f"{kind}_{name}": criteria.CRITERIA[meta["criterion"]]["dimension"] for name, meta in concepts.CONCEPTS.items()
       for kind in ("margin", "met") if kind == "met" or meta["scale"] != "flag"},
    **{f"{kind}_{name}": meta["dimension"] for name, meta in criteria.CRITERIA.items() for kind in ("pass", "short")},
}


def group_label(group: str) -> str:
    """Bilingual label of a dimension, e.g. ``"新 innovation"``; the name itself if unknown."""
    if group in DIMENSIONS:
        zh, en = DIMENSIONS[group]
        return f"{zh} {en}"
    return group


# ------------------------------------------------------------------------------------------------
# Feature labels and units
# ------------------------------------------------------------------------------------------------

# feature -> (English label, unit). Units: pct (fraction shown as %), yuan, count, years, level,
# flag, points, category, log (log ratio shown as % change), per100, number.
FEATURE_LABELS: dict[str, tuple[str, str]] = {
    "mb_share": ("main-business share", "pct"), "mb_growth_2y": ("main-business revenue growth (2-yr avg)", "pct"),
    "niche_years": ("years in the niche", "years"), "revenue_growth_1y": ("revenue growth", "log"),
    "revenue_growth_mean": ("mean revenue growth over up to 5 years", "log"),
    "revenue_growth_sd": ("variability of revenue growth over up to 5 years", "log"),
    "history_years": ("earlier years on record (up to 5)", "years"),
    "rd_intensity_long": ("R&D intensity over up to 5 years", "pct"),
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
    "n_failed": ("Little Giant criteria failed", "count"),
    "ever_revoked": ("lost a title before", "flag"),
    "title_years": ("years since the title's batch", "years"), "review_round": ("re-review round", "number"),
    # criteria inputs that are not model features, for criterion sentences
    "revenue_cagr_2y": ("revenue CAGR (2 yrs)", "pct"), "profit_growth_2y": ("net-profit growth (2-yr avg)", "pct"),
    "invention_patents": ("invention patents", "count"),
}
for _name, _meta in criteria.CRITERIA.items():
    FEATURE_LABELS.setdefault(f"pass_{_name}", (f"{_meta['label_en']} rule", "pass"))
    FEATURE_LABELS.setdefault(f"short_{_name}", (f"shortfall on {_meta['label_en']}", f"short:{_meta['unit']}"))

for _name, _meta in concepts.CONCEPTS.items():
    FEATURE_LABELS[f"met_{_name}"] = (f"{_meta['label']} criterion met (or not required)", "pass")
    if _meta["scale"] != "flag":
        FEATURE_LABELS[f"margin_{_name}"] = (f"margin on {_meta['label']} to the rule in force", f"margin:{_meta['unit']}")

INSTITUTION_LEVELS = RD_INSTITUTION_LEVELS


def feature_label(feature: str) -> str:
    """English label of a feature, e.g. ``"R&D intensity"``."""
    return FEATURE_LABELS.get(feature, (feature.replace("_", " "), "number"))[0]


def missing(x: Any) -> bool:
    """Whether a scalar is missing (None, NaN, NA)."""
    if isinstance(x, float):  # the usual case, checked without pd.isna
        return math.isnan(x)
    return x is None or (not isinstance(x, str) and bool(pd.isna(x)))


def pct(x: float, digits: int = 1) -> str:
    """A fraction as a percentage, ``0.021 -> "2.1%"``; ``"n/a"`` when missing."""
    return "n/a" if missing(x) else f"{100 * float(x):.{digits}f}%"


def pct_threshold(x: float) -> str:
    """A threshold fraction as a percentage without trailing zeros, ``0.03 -> "3%"``."""
    return f"{100 * x:g}%"


def money(x: float) -> str:
    """Yuan, in millions from 100,000 up: ``1.8M yuan``, ``95,000 yuan``."""
    if abs(x) >= 1e5:
        return f"{x / 1e6:,.1f}".removesuffix(".0") + "M yuan"
    return f"{x:,.0f} yuan"


def number(x: float) -> str:
    """A count or plain number: whole numbers without decimals, others with two."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.2f}"


def format_value(value: Any, unit: str) -> str:
    """A feature value in words and natural units (``"2.1%"``, ``"12.5M yuan"``, ``"yes"``)."""
    if missing(value):
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
    if unit.startswith("margin:"):
        return margin_text(x, unit.removeprefix("margin:"))
    return number(x)


def gap_text(x: float, unit: str) -> str:
    """A shortfall in the unit of a criterion (criteria.CRITERIA units)."""
    if unit == "ratio":  # a gap under 0.05 pp keeps two significant digits, never "0.0 pp"
        return f"{100 * x:.1f} pp" if abs(x) >= 0.0005 or x == 0 else f"{100 * x:.2g} pp"
    if unit == "yuan":
        return money(x)
    if unit == "flag":
        return "not held" if x > 0 else "held"
    words = {"years": "year", "items": "item", "points": "point", "employees": "employee", "level": "level"}
    if unit in words:
        return f"{number(x)} {words[unit]}" + ("" if x == 1 else "s")
    return number(x)


def margin_text(x: float, unit: str) -> str:
    """A margin to a threshold (:func:`lgml.concepts.margins`: positive on the passing side, for
    floors and ceilings alike), e.g. ``"passes by 1.2 pp"``, ``"fails by 35.0%"`` (log margins),
    ``"not required"``.

    >>> margin_text(-0.006, "ratio")  # a debt ratio 0.6 pp over its ceiling
    'fails by 0.6 pp'
    """
    if x >= concepts.NOT_REQUIRED:
        return "not required"
    if x == 0:
        return "at the threshold"
    side = "passes by" if x > 0 else "fails by"
    if unit == "log":
        return f"{side} {100 * abs(math.expm1(x)):.1f}%"
    return f"{side} {gap_text(abs(x), unit)}"


def threshold_text(x: float, unit: str, with_unit: bool = True) -> str:
    """A threshold in the unit of a criterion (criteria.CRITERIA units), e.g. ``"3%"``,
    ``"60 points"``, ``"2 years"``; ``with_unit=False`` leaves counts bare (for a phrase that
    names what is counted next).

    >>> threshold_text(60, "points"), threshold_text(1, "years"), threshold_text(2, "items", with_unit=False)
    ('60 points', '1 year', '2')
    """
    if unit == "ratio":
        return pct_threshold(x)
    if unit == "yuan":
        return money(x)
    if with_unit and unit in ("years", "items", "points", "employees", "level"):
        return gap_text(x, unit) if unit != "level" else f"level {number(x)}"
    return number(x)


# ------------------------------------------------------------------------------------------------
# Report tables: fixed decimals, signed changes; "n/a" when missing
# ------------------------------------------------------------------------------------------------


def fixed(x: Any, digits: int = 1) -> str:
    """A number with ``digits`` decimals and thousands separators, ``1234.5 -> "1,234.5"``."""
    return "n/a" if missing(x) else f"{float(x):,.{digits}f}"


def signed_pp(x: Any) -> str:
    """A change in percentage points of probability, ``1.23 -> "+1.2 pp"``."""
    return "n/a" if missing(x) else f"{float(x):+.1f} pp"


def signed_log_odds(x: Any) -> str:
    """A contribution in log-odds, ``-0.4213 -> "-0.42"``."""
    return "n/a" if missing(x) else f"{float(x):+.2f}"
