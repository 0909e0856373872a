"""The year's growth level, kept apart from a firm's growth relative to its year.

A firm's next-year growth is the level of its year (how fast the whole cross-section grows:
the business cycle, a policy shock) plus its own distance from that level. The panel tells
the second well and the first hardly at all: a year's level is only known once the year is
over. So the growth model learns the relative part (``growth_next`` minus its year's mean) and
the level is added when predicting, from one of two sources:

- ``recent`` (default): the mean of the levels of the last ``recent_years`` fiscal years whose
  next-year growth was already realised when the predicted year began (years ``t-k .. t-1``
  for fiscal year ``t``), from the levels stored with the model. The realised level of year
  ``t`` itself is never used for year ``t`` (except for years before every stored level, which
  take the earliest ones, and say so).
- ``given``: a level the user supplies (``macro_growth`` in the config, ``--macro-growth`` on
  ``lgml score``), for example a published forecast of industrial value added, as a growth
  rate (0.05 = 5%); it is added as ``log(1 + macro_growth)``.

Example:
    >>> levels = {2020: 0.10, 2021: 0.06, 2022: 0.08, 2023: 0.04}
    >>> level, source = growth_level(np.array([2024]), levels, recent_years=3)
    >>> round(float(level[0]), 4), source
    (0.06, 'recent: mean growth of fiscal years 2021-2023')
    >>> growth_level(np.array([2024]), levels, macro_growth=0.05)[1]
    'given: macro_growth 0.05 (log growth 0.0488)'
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


class LevelError(ValueError):
    """No growth level can be formed for a year (no earlier year known and none given)."""


def year_levels(years: np.ndarray, growth: np.ndarray) -> dict[int, float]:
    """Mean log growth of each fiscal year's cross-section (rows with a known growth only).

    Args:
        years: Fiscal year of each row, shape (n,).
        growth: Realised log growth ``log(revenue[t+1] / revenue[t])`` of each row, shape (n,).

    Returns:
        ``{year: mean growth}``, by year.
    """
    frame = pd.DataFrame({"year": np.asarray(years, dtype="int64"), "g": np.asarray(growth, dtype=float)})
    means = frame.dropna().groupby("year")["g"].mean()
    return {int(y): float(v) for y, v in means.items()}


def relative_growth(years: np.ndarray, growth: np.ndarray, levels: dict[int, float]) -> np.ndarray:
    """``growth`` minus the mean of its own year (the training target of the growth model).

    Raises:
        LevelError: A row's year has no level.
    """
    years = np.asarray(years, dtype="int64")
    missing = sorted(set(np.unique(years).tolist()) - set(levels))
    if missing:
        raise LevelError(f"no growth level for fiscal year(s) {missing}")
    return np.asarray(growth, dtype=float) - pd.Series(years).map(levels).to_numpy(dtype=float)


def growth_level(years: np.ndarray, levels: dict[int, float], *, recent_years: int = 3,
                 macro_growth: float | None = None) -> tuple[np.ndarray, str]:
    """The level added to each row's relative growth, and where it came from.

    Args:
        years: Fiscal year ``t`` of each row (the growth predicted is from ``t`` to ``t+1``).
        levels: Known year levels (:func:`year_levels`), keyed by fiscal year.
        recent_years: How many of the latest known years before ``t`` are averaged.
        macro_growth: A given growth rate for every row instead (0.05 = 5%).

    Returns:
        (levels of shape (n,) in log growth, a one-line description of the source).

    Raises:
        LevelError: ``macro_growth`` <= -1, or no level is known at all. (A year before every
            known level gets the earliest known ones, and the source says so.)
    """
    years = np.asarray(years, dtype="int64")
    if macro_growth is not None:
        if not macro_growth > -1 or not math.isfinite(macro_growth):
            raise LevelError(f"macro_growth must be a growth rate above -1 (0.05 = 5%), not {macro_growth}")
        value = math.log1p(macro_growth)
        return np.full(len(years), value), f"given: macro_growth {macro_growth:g} (log growth {value:.4f})"
    known = np.array(sorted(levels), dtype="int64")
    out = np.empty(len(years))
    spans = []
    if len(years) and not len(known):
        raise LevelError("no growth level is known; give macro_growth")
    for year in np.unique(years):
        window = known[known < year][-recent_years:]
        if len(window):
            spans.append(_span(window))
        else:  # a year before every known level (a look back at history): the earliest known
            window = known[:recent_years]
            spans.append(f"{_span(window)} (the earliest known, for fiscal {int(year)})")
        out[years == year] = np.mean([levels[int(y)] for y in window])
    source = "recent: mean growth of fiscal years " + "; ".join(dict.fromkeys(spans))
    return out, source


def _span(years: np.ndarray) -> str:
    first, last = int(years[0]), int(years[-1])
    return str(first) if first == last else f"{first}-{last}"
