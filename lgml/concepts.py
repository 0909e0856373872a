"""Criterion concepts: the same question under every rule regime, as a margin to the threshold
of the regime in force (numbers only; thresholds: :data:`lgml.criteria.RULES`).

The rules changed in 2022 and 2026: criteria were added, dropped, renamed and re-thresholded. A
model that learns from batches of one regime and forecasts batches of the next needs inputs that
mean the same under both. Each concept of :data:`CONCEPTS` (R&D intensity, R&D amount, IP items,
main-business share, debt ratio, revenue, years in the niche, niche share, development score,
...) names, per regime, the criterion of :data:`lgml.criteria.RULES` that asks it; :func:`margins`
measures every firm against the threshold of the regime in force for its batch.

Example:
    >>> from lgml import criteria
    >>> rows = criteria.judged_rows(panel, 2026)  # doctest: +SKIP
    >>> margins(rows, 2026)["margin_rd_intensity"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lgml.criteria import RTOL, RULES, Getter, column_getter, compare, regime_for, srdi_score

# Each concept names, per regime, the criterion of RULES that asks it (a (criterion, part) pair
# for one requirement of the R&D band rule); a regime without an entry does not require it.
# Units: "log" margins are log(value / threshold) (money, head counts); "flag" concepts are met or
# not (no margin); the others are value minus threshold in that unit (ratio as a fraction, years,
# items, level, points).


def _concept(label: str, unit: str, regimes: dict[str, str | tuple[str, str]]) -> dict[str, Any]:
    first = next(iter(regimes.values()))
    return {"label": label, "unit": unit, "scale": unit if unit in ("log", "flag") else "diff", "regimes": regimes,
            "criterion": first[0] if isinstance(first, tuple) else first}


def _every(criterion: str) -> dict[str, str]:
    return dict.fromkeys(RULES, criterion)


_RD_INTENSITY, _RD_2Y = ("rd_band", "intensity"), ("rd_band", "rd_2y")
_RD_EQUITY, _RD_STAFF = ("rd_band", "equity_2y"), ("rd_band", "rd_staff_share")
CONCEPTS: dict[str, dict[str, Any]] = {
    "sme_size": _concept("SME size", "log", _every("sme_size")),
    "srdi_provincial": _concept("provincial SRDI SME status", "flag",
                                {"2022": "srdi_provincial", "2026": "srdi_provincial"}),
    "niche_years": _concept("years in the niche", "years", _every("niche_years")),
    "revenue": _concept("revenue", "log", {"2026": "revenue"}),
    "mb_share": _concept("main-business share", "ratio", _every("mb_share")),
    "growth": _concept("growth", "ratio", {"2018": "growth", "2022": "mb_growth", "2026": "revenue_cagr"}),
    "debt_ratio": _concept("debt ratio", "ratio", _every("debt_ratio")),
    "info_system": _concept("information systems (digital level)", "level", {"2022": "info_system"}),
    "certification": _concept("certification", "flag", {"2022": "certification"}),
    "niche_share": _concept("niche market share", "ratio", {"2022": "niche_share", "2026": "niche_share"}),
    "own_brand": _concept("own brand", "flag", {"2022": "own_brand"}),
    "rd_intensity": _concept("R&D intensity", "ratio",
                             {"2018": _RD_INTENSITY, "2022": _RD_INTENSITY, "2026": "rd_intensity"}),
    "rd_amount": _concept("R&D spending over 2 years", "log", {"2018": _RD_2Y, "2022": _RD_2Y, "2026": "rd_amount_2y"}),
    "rd_equity": _concept("new equity over 2 years (R&D equity route)", "log",
                          {"2018": _RD_EQUITY, "2022": _RD_EQUITY}),
    "rd_staff": _concept("R&D staff share (R&D equity route)", "ratio", {"2018": _RD_STAFF, "2022": _RD_STAFF}),
    "rd_institution": _concept("R&D institution", "level", {"2022": "rd_institution"}),
    "ip": _concept("IP items", "items", {"2018": "ip", "2022": "class1_ip", "2026": "class1_ip"}),
    "development_score": _concept("development score", "points", {"2026": "development_score"}),
}

# The margin of a concept the regime in force does not require: it cannot fail, so it sits
# beyond any margin a firm reaches (a defined value, never a missing one).
NOT_REQUIRED = 1e6
_LOG_FLOOR = 1e-4  # a log margin reads values below 1/10,000 of the threshold as that much


def _margin(x: np.ndarray, op: str, bound: float | np.ndarray, scale: str) -> np.ndarray:
    """Signed distance of ``x`` from ``bound``, positive on the passing side; NaN when missing.
    Values within the comparison tolerance of the bound give exactly 0."""
    bound = np.asarray(bound, dtype=float)
    if scale == "log":
        floor = _LOG_FLOOR * bound
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.log(np.where(np.isnan(x), np.nan, np.maximum(x, floor)) / bound)
        raw = ratio if op in (">=", ">") else -ratio
    else:
        raw = x - bound if op in (">=", ">") else bound - x
    tol = RTOL * np.maximum(1.0, np.abs(bound))
    near = np.abs(x - bound) <= tol
    return np.where(near, 0.0, raw)


def _requirements(name: str, part: str | None, regime: str, get: Getter) -> list[tuple]:
    """The alternatives (any one suffices) of one requirement, each ``(value, op, bound, required)``
    with ``required`` the rows it applies to (None: every row)."""
    spec = RULES[regime]["criteria"][name]
    kind = spec["kind"]
    if kind == "min":
        return [(get(spec["column"]), ">=", spec["min"], None)]
    if kind == "max":
        return [(get(spec["column"]), "<=", spec["max"], None)]
    if kind == "flag":
        return [(get(spec["column"]), ">=", 1.0, None)]
    if kind == "any_min":
        return [(get(c), ">=", m, None) for c, m in zip(spec["columns"], spec["min"])]
    if kind == "all_min":  # every year must pass: the weaker one decides
        return [(np.minimum.reduce([get(c) for c in spec["columns"]]), ">=", spec["min"], None)]
    if kind == "sme_size":
        return [(get("employees"), "<", spec["employees_below"], None),
                (get("revenue"), "<", spec["revenue_below"], None)]
    if kind == "rd_band":
        revenue = get("revenue")
        bands = spec["bands"]
        route = bands[-1]  # the equity route, below the last revenue bound with an intensity rule
        in_route = ~compare(revenue, ">=", bands[-2]["revenue_min"])  # missing revenue: required
        if part == "intensity":
            bound = np.full(len(revenue), np.nan)
            for band in reversed(bands[:-1]):  # the first matching band wins
                bound = np.where(compare(revenue, ">=", band["revenue_min"]), band["intensity_min"], bound)
            weaker = np.minimum(get("rd_intensity"), get("rd_intensity_prev"))
            return [(weaker, ">=", bound, ~in_route | np.isnan(revenue))]
        return [(get(part), ">=", route["min"][part], in_route)]
    raise ValueError(f"no margin for criterion kind {kind!r}")  # unreachable while RULES is complete


def margins(inputs: pd.DataFrame, batch_year: int) -> pd.DataFrame:
    """Each criterion concept of :data:`CONCEPTS` against the threshold of the regime in force
    for ``batch_year``: the same columns, with the same meaning, under every regime.

    Args:
        inputs: DataFrame from :func:`criteria_inputs` (with ``score_total`` for the 2026
            development score, else it is computed), the rows of fiscal year ``batch_year - 1``.
        batch_year: Application (batch) year; picks the regime.

    Returns:
        DataFrame with the index of ``inputs``: ``margin_<concept>`` (float, every concept but
        the flags: positive = passing by that much, 0 = exactly at the threshold, negative =
        short by that much; in the concept's unit for "diff" concepts (ratios as fractions,
        years, items, levels, points) and as log(value / threshold) for money and head counts;
        NaN when the data are missing; :data:`NOT_REQUIRED` when the regime does not require it)
        and ``met_<concept>`` (1.0 met or not required, 0.0 failed or data missing).
    """
    regime = regime_for(batch_year)
    extra = {}
    if "score_total" not in inputs.columns and "development_score" in RULES[regime]["criteria"]:
        extra["score_total"] = srdi_score(inputs)["score_total"].to_numpy(dtype=float)
    get = column_getter(inputs, extra)
    n = len(inputs)
    out: dict[str, np.ndarray] = {}
    for concept, meta in CONCEPTS.items():
        entry = meta["regimes"].get(regime)
        margin, met = np.full(n, NOT_REQUIRED), np.ones(n, bool)
        if entry is not None:
            name, part = entry if isinstance(entry, tuple) else (entry, None)
            alternatives = _requirements(name, part, regime, get)
            met = np.logical_or.reduce([compare(x, op, b) for x, op, b, _ in alternatives])
            margin = np.fmax.reduce([_margin(x, op, b, meta["scale"]) for x, op, b, _ in alternatives])
            required = alternatives[0][3]
            if required is not None:
                margin = np.where(required, margin, NOT_REQUIRED)
                met = np.where(required, met, True)
        if meta["scale"] != "flag":
            out[f"margin_{concept}"] = margin.astype(float)
        out[f"met_{concept}"] = met.astype(float)
    return pd.DataFrame(out, index=inputs.index)
