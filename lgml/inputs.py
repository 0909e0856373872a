"""Point-in-time inputs of the Little Giant criteria: per firm-year, the quantities the rules and
the SRDI score read (R&D intensity of two years, 2-year growth rates, ratios), from the firm's
own fiscal years t, t-1 and t-2 only. Read through :mod:`lgml.criteria`, which re-exports
:func:`criteria_inputs` and :func:`year_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lgml import schema


# Contract columns passed through unchanged.
_RAW = ("revenue", "rd_expense", "employees", "class1_ip", "invention_patents", "class2_ip", "niche_years",
        "niche_market_share", "own_brand", "quality_certified", "digital_level", "rd_institution",
        "srdi_provincial", "foundation_field", "strategic_industry", "key_customers")
_PANEL_NEEDS = ("firm_id", "year", "main_business_revenue", "net_profit", "total_assets", "total_liabilities",
                "equity_financing", "rd_staff", *_RAW)


def float_column(frame: pd.DataFrame, col: str) -> np.ndarray:
    """Column ``col`` as a float array of shape (n_rows,): bool as 0/1, missing as NaN."""
    return frame[col].to_numpy(dtype=float, na_value=np.nan)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN (never inf) where den is 0 or either side is missing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where(np.isfinite(out), out, np.nan)


def _growth(cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Yearly growth rate; NaN unless the base year is positive (a rate from a zero or negative
    base, e.g. a loss, has no meaningful sign)."""
    with np.errstate(invalid="ignore"):
        return np.where(prev > 0, _ratio(cur, prev) - 1.0, np.nan)


def year_rows(panel: pd.DataFrame, offsets: Sequence[int] = (1, 2)) -> list[np.ndarray]:
    """Row positions of the same firm's year ``t - k`` for each ``k`` of ``offsets`` (-1 where
    that year is absent; a negative ``k`` looks ahead).

    Raises:
        ValueError: (firm_id, year) is not unique.
    """
    codes = pd.factorize(panel["firm_id"])[0].astype(np.int64)
    year = panel["year"].to_numpy(dtype=np.int64)
    if len(year) == 0:
        return [np.empty(0, np.int64) for _ in offsets]
    # One integer key per (firm, year); each firm's block has room for the years before its first
    # and after its last so that t - k never reaches into another firm's block.
    reach = max(abs(k) for k in offsets) if offsets else 0
    lo = year.min()
    span = year.max() - lo + 2 * reach + 1
    key = codes * span + (year - lo + reach)
    index = pd.Index(key)
    if not index.is_unique:
        dup = panel.iloc[np.flatnonzero(index.duplicated())[:3]]
        pairs = ", ".join(f"({f}, {y})" for f, y in zip(dup["firm_id"], dup["year"]))
        raise ValueError(f"(firm_id, year) must be unique; duplicated: {pairs}")
    return [index.get_indexer(key - k) for k in offsets]


def _take(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return np.where(pos >= 0, values[pos], np.nan)


def criteria_inputs(panel: pd.DataFrame, prior: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """Point-in-time quantities the criteria need, one row per firm-year.

    Row t uses only the same firm's fiscal years t, t-1 and t-2, matched by exact
    (firm_id, year - 1) and (firm_id, year - 2); a missing year gives NaN.

    Args:
        panel: DataFrame of shape (n_firm_years, ...) in the input contract
            (:data:`lgml.schema.PANEL_NAMES`), many firms and years in any row order; money in yuan.
        prior: The positions of years t-1 and t-2 (:func:`year_rows`), when already known.

    Returns:
        DataFrame with the index and row order of ``panel``: ``firm_id``, ``year``, then

        * ``rd_intensity``, ``rd_intensity_prev``: R&D / revenue in t and t-1 (fraction).
        * ``rd_2y``: R&D of t + t-1 (yuan); NaN unless both years report it.
        * ``equity_2y``: new paid-in equity of t + t-1 (yuan). A blank counts as 0 when the other
          year reports a value, NaN when neither does. Equity is never negative, so the sum is a
          lower bound of the true figure: a pass is never overstated.
        * ``mb_share``: main-business revenue / revenue.
        * ``mb_growth_2y``, ``profit_growth_2y``: mean of the growth rates t-2 -> t-1 and
          t-1 -> t of main-business revenue and of net profit (a rate is NaN from a base <= 0).
        * ``revenue_cagr_2y``: sqrt(revenue t / revenue t-2) - 1.
        * ``debt_ratio`` (liabilities / assets), ``net_margin`` (net profit / revenue),
          ``rd_staff_share`` (R&D staff / employees).
        * ``rd_institution_level``: 0 none, 1 municipal, 2 provincial, 3 national.
        * the raw contract columns ``revenue``, ``rd_expense``, ``employees``, ``class1_ip``,
          ``invention_patents``, ``class2_ip``, ``niche_years``, ``niche_market_share``, ``own_brand``,
          ``quality_certified``, ``digital_level``, ``rd_institution``, ``srdi_provincial``,
          ``foundation_field``, ``strategic_industry``, ``key_customers``.

        Any division by zero gives NaN, never inf.

    Raises:
        KeyError: A needed contract column is missing.
        ValueError: (firm_id, year) is not unique.

    Example:
        >>> inputs = criteria_inputs(panel)
        >>> inputs.loc[panel["year"] == 2023, ["firm_id", "rd_intensity", "mb_growth_2y"]]
    """
    missing = [c for c in _PANEL_NEEDS if c not in panel.columns]
    if missing:
        raise KeyError(f"criteria_inputs needs the contract columns {missing}")
    pos1, pos2 = year_rows(panel, (1, 2)) if prior is None else prior
    rev, rd, mb, profit, equity = (float_column(panel, c) for c in
                                   ("revenue", "rd_expense", "main_business_revenue", "net_profit", "equity_financing"))
    rd_int = _ratio(rd, rev)
    mb1, mb2 = _take(mb, pos1), _take(mb, pos2)
    profit1, profit2 = _take(profit, pos1), _take(profit, pos2)
    equity1 = _take(equity, pos1)
    rev2 = _take(rev, pos2)
    with np.errstate(invalid="ignore"):
        cagr = np.where(rev2 > 0, np.sqrt(np.maximum(_ratio(rev, rev2), 0.0)) - 1.0, np.nan)
    level = pd.Categorical(panel["rd_institution"], categories=schema.RD_INSTITUTION_LEVELS).codes
    derived = {
        "rd_intensity": rd_int,
        "rd_intensity_prev": _take(rd_int, pos1),
        "rd_2y": rd + _take(rd, pos1),
        "equity_2y": np.where(np.isnan(equity) & np.isnan(equity1), np.nan,
                              np.nan_to_num(equity) + np.nan_to_num(equity1)),
        "mb_share": _ratio(mb, rev),
        "mb_growth_2y": (_growth(mb, mb1) + _growth(mb1, mb2)) / 2,
        "profit_growth_2y": (_growth(profit, profit1) + _growth(profit1, profit2)) / 2,
        "revenue_cagr_2y": cagr,
        "debt_ratio": _ratio(float_column(panel, "total_liabilities"), float_column(panel, "total_assets")),
        "net_margin": _ratio(profit, rev),
        "rd_staff_share": _ratio(float_column(panel, "rd_staff"), float_column(panel, "employees")),
        "rd_institution_level": np.where(level >= 0, level, np.nan),
    }
    columns = {"firm_id": panel["firm_id"].array, "year": panel["year"].array, **derived,
               **{c: panel[c].array for c in _RAW}}
    return pd.DataFrame(columns, index=panel.index)
