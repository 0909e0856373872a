"""Plain sentences, the one engine: each criterion's result (for the per-firm checklist, the
reasons and the ``failed`` column of ``lgml check``), which criterion a feature speaks to, and
the top reasons of each firm."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lgml import concepts, criteria
from lgml.criteria import DEFAULT_REGIME
from lgml.vocabulary import (FEATURE_LABELS, INSTITUTION_LEVELS, feature_label, format_value, gap_text, money, number, pct,
                             pct_threshold, threshold_text)


# ------------------------------------------------------------------------------------------------
# Which criterion a feature speaks to
# ------------------------------------------------------------------------------------------------


def _criterion_map(regime: str) -> dict[str, str]:
    """Feature -> criterion of ``regime`` whose headline input it is (plus pass_/short_, and the
    margin_/met_ of the concepts the regime requires)."""
    rules = criteria.RULES[regime]["criteria"]
    out: dict[str, str] = {}
    for concept, meta in concepts.CONCEPTS.items():
        entry = meta["regimes"].get(regime)
        if entry is not None:
            out[f"margin_{concept}"] = out[f"met_{concept}"] = entry[0] if isinstance(entry, tuple) else entry
    for name, spec in rules.items():
        out[f"pass_{name}"] = out[f"short_{name}"] = name
        headline = criteria.CRITERIA[name]["inputs"][0]
        out.setdefault(headline, name)
        if spec["kind"] in ("all_min", "rd_band"):  # every R&D measure speaks to the R&D rule
            for feature in ("rd_intensity_prev", "rd_intensity_2y", "rd_expense", "rd_2y"):
                out.setdefault(feature, name)
    return out


CRITERION_OF: dict[str, dict[str, str]] = {regime: _criterion_map(regime) for regime in criteria.RULES}


def _col(frame: pd.DataFrame | _Rows, name: str) -> np.ndarray:
    if isinstance(frame, _Rows):
        return frame.col(name)
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


class _Rows:
    """Some rows of a feature table, by position. A column is converted to floats (as
    :func:`_col` does) once for the whole table; subsets of the rows share the conversion."""

    def __init__(self, table: pd.DataFrame, positions: np.ndarray | None = None,
                 converted: dict[str, np.ndarray] | None = None):
        self.table = table
        self.columns = table.columns
        self.positions = np.arange(len(table)) if positions is None else positions
        self._converted = {} if converted is None else converted

    @classmethod
    def of(cls, rows: pd.DataFrame | _Rows) -> _Rows:
        return rows if isinstance(rows, cls) else cls(rows)

    def __len__(self) -> int:
        return len(self.positions)

    def take(self, positions: np.ndarray) -> _Rows:
        """The rows at ``positions`` of these rows."""
        return _Rows(self.table, self.positions[positions], self._converted)

    def col(self, name: str) -> np.ndarray:
        if name not in self._converted:
            self._converted[name] = _col(self.table, name)
        return self._converted[name][self.positions]


def each(values: Any, text: Callable[[Any], str]) -> np.ndarray:
    """``text(v)`` for each of ``values`` (shape (n,)), as an object array of str, shape (n,). Numbers and string
    categories are formatted once per distinct value (floats by bit pattern, so that e.g. -0.0
    keeps its sign); a missing category is given as NaN, as ``Categorical.to_numpy`` gives it."""
    if isinstance(values, pd.Categorical) and pd.api.types.is_string_dtype(values.categories):
        texts = [text(v) for v in values.categories.tolist()] + [text(np.nan)]
        return np.array(texts, dtype=object)[values.codes]  # code -1 (missing) takes the last
    values = np.asarray(values)
    if values.dtype == np.float64:
        codes, distinct = pd.factorize(np.ascontiguousarray(values).view(np.int64))
        distinct = distinct.view(np.float64)
    elif values.dtype.kind in "biu":
        codes, distinct = pd.factorize(values)
    else:
        return np.array([text(v) for v in values], dtype=object)
    return np.array([text(v) for v in distinct.tolist()], dtype=object)[codes]


def shown(values: np.ndarray, unit: str) -> np.ndarray:
    """``values`` rounded to the precision they are shown in (``money``: 0.1M yuan from 100,000
    up, else whole yuan; ``pct``: 0.1 percentage point), so that :func:`each` formats each
    shown value once instead of once per distinct raw value. Shape kept."""
    values = np.asarray(values, dtype=float)
    if unit == "pct":
        return np.round(values, 3)
    return np.where(np.abs(values) >= 1e5, np.round(values, -5), np.round(values))


def _band_where(bands: Sequence[Mapping], i: int) -> str:
    low = bands[i]["revenue_min"]
    if i == 0:
        return f">= {money(low)}"
    high = bands[i - 1]["revenue_min"]
    return f"under {money(high)}" if low <= 0 else f"{low / 1e6:g}-{high / 1e6:g}M yuan"


def _requirement(label: str, need: float, show: Callable[[float], str], gap: Callable[[float], str]
                 ) -> Callable[[float], str]:
    """``have -> "label >= need (has have, short by gap)"``: one minimum of the equity route."""
    def text(have: float) -> str:
        if math.isnan(have):
            return f"{label} >= {show(need)} (has missing)"
        met = have >= need - 1e-9 * max(1.0, abs(need))
        return f"{label} >= {show(need)} (has {show(have)}, {'met' if met else f'short by {gap(need - have)}'})"
    return text


def _equity_route_phrases(band: Mapping, rows: _Rows, passed: np.ndarray) -> np.ndarray:
    """The R&D rule's equity route (revenue under 50M yuan): every minimum, what the firm has."""
    revenue = shown(_col(rows, "revenue"), "money")
    out = np.empty(len(rows), dtype=object)
    out[passed] = each(revenue[passed], lambda r: f"revenue {money(r)}: the equity route of the R&D rule is met")
    failed = ~passed
    parts = [each(revenue[failed], lambda r: f"revenue {money(r)} is under 50M yuan: the equity route needs ")]
    for i, (col, need) in enumerate(band["min"].items()):
        ratio = col == "rd_staff_share"
        text = _requirement(feature_label(col), need, pct if ratio else money,
                            (lambda g: gap_text(g, "ratio")) if ratio else money)
        have = shown(_col(rows, col)[failed], "pct" if ratio else "money")
        parts.append(each(have, (lambda v, text=text: ", " + text(v)) if i else text))
    out[failed] = list(map("".join, zip(*parts)))
    return out


def _phrase_rd_band(spec: Mapping, rows: pd.DataFrame | _Rows) -> np.ndarray:
    rows = _Rows.of(rows)
    bands = spec["bands"]
    revenue = _col(rows, "revenue")
    now, prev = _col(rows, "rd_intensity"), _col(rows, "rd_intensity_prev")
    weaker = np.minimum(now, prev)  # as the check: missing if either year is (then the rule fails)
    weaker_named = prev < now
    passed = _col(rows, "pass_rd_band") >= 0.5
    band = np.full(len(rows), -1)
    for i in reversed(range(len(bands))):  # the first band whose revenue minimum is reached
        band[revenue >= bands[i]["revenue_min"] * (1 - 1e-9)] = i
    out = np.empty(len(rows), dtype=object)
    unknown = band < 0
    out[unknown] = each(now[unknown], lambda v: f"R&D intensity {format_value(v, 'pct')}; "
                                                 "revenue missing, so the R&D band is unknown")
    for i, spec_i in enumerate(bands):
        at = band == i
        if not at.any():
            continue
        if "intensity_min" not in spec_i:
            at = np.flatnonzero(at)
            out[at] = _equity_route_phrases(spec_i, rows.take(at), passed[at])
            continue
        need, where = pct_threshold(spec_i["intensity_min"]), _band_where(bands, i)
        out[at & np.isnan(weaker)] = f"R&D intensity of the last 2 years not known; {need} required at revenue {where}"
        for named in (True, False):
            for met in (True, False):
                tail = (f"{' (weaker of the last 2 years)' if named else ''} {'meets' if met else 'is below'} "
                        f"the {need} required at revenue {where}")
                here = at & ~np.isnan(weaker) & (weaker_named == named) & (passed == met)
                out[here] = each(weaker[here], lambda w, tail=tail: f"R&D intensity {pct(w)}{tail}")
                if not met:  # the gap, and what it costs at this year's revenue
                    gap = spec_i["intensity_min"] - weaker[here]
                    out[here] += _gap_texts(gap, revenue[here])
    return out


def _gap_texts(gap: np.ndarray, revenue: np.ndarray) -> np.ndarray:
    """``" (short by 0.9 pp = 1.8M yuan)"``: an R&D-intensity gap and its yuan amount at the
    given revenue (the amount left out where revenue is missing)."""
    amount = each(shown(gap * revenue, "money"), lambda a: "" if math.isnan(a) else f" = {money(a)}")
    return each(gap, lambda g: f" (short by {gap_text(g, 'ratio')}") + amount + ")"


# Units in which a criterion's headline value is shown (vocabulary units), by criterion unit.
_VALUE_UNITS = {"ratio": "pct", "yuan": "yuan", "years": "years", "points": "points"}


def criterion_phrases(name: str, rows: pd.DataFrame | _Rows, batch_year: int | None = None) -> np.ndarray:
    """One phrase per row on criterion ``name``: the firm's value, the threshold and whether it
    is met, with the shortfall when not. The one sentence engine of lgml.

    Args:
        name: A criterion, a key of :data:`lgml.criteria.CRITERIA`.
        rows: Feature rows or :func:`lgml.inputs.criteria_inputs` rows, shape (n_rows, ...),
            with the ``pass_<name>`` and ``short_<name>`` columns of :func:`lgml.criteria.check`
            and the criterion's inputs (a missing column reads as missing data).
        batch_year: Whose thresholds; default the 2022 rules (or the first regime that has
            the criterion).

    Returns:
        Object array of str, shape (n_rows,), e.g. ``"R&D intensity 2.1% is below the 3%
        required at revenue >= 100M yuan (short by 0.9 pp = 1.4M yuan)"``.

    Raises:
        ValueError: Unknown criterion, or not one of the regime of ``batch_year``.
    """
    rows = _Rows.of(rows)
    spec = criteria.rule(name, batch_year)
    meta = criteria.CRITERIA[name]
    kind, unit = spec["kind"], meta["unit"]
    if kind == "rd_band":
        return _phrase_rd_band(spec, rows)
    passed = _col(rows, f"pass_{name}") >= 0.5
    failed = ~passed
    short = _col(rows, f"short_{name}")
    out = np.empty(len(rows), dtype=object)
    if kind in ("min", "max"):
        column = spec["column"]
        value = _col(rows, column)
        label = feature_label(column)
        vunit = _VALUE_UNITS.get(unit, "number")
        if column == "rd_institution_level":
            need = f"at least a {INSTITUTION_LEVELS[int(spec['min'])]}-level one"
            have = each(value, lambda v: f"R&D institution: {format_value(v, 'institution')}; ")
            out[passed] = have[passed] + f"meets the requirement of {need}"
            out[failed] = have[failed] + f"required: {need}"
            return out
        bound = spec["min"] if kind == "min" else spec["max"]
        need = threshold_text(bound, unit)
        known = ~np.isnan(value)
        met, unmet = known & passed, known & failed
        if kind == "min":
            verdict, verdict_unmet, gap = f"meets the {need} required", f"is below the {need} required", "short by"
        else:
            verdict, verdict_unmet, gap = f"is within the {need} allowed", f"is above the {need} allowed", "over by"
        out[~known] = f"{label} missing; at least {need} required" if kind == "min" else \
            f"{label} missing; at most {need} allowed"
        out[met] = each(value[met], lambda v: f"{label} {format_value(v, vunit)} {verdict}")
        out[unmet] = (each(value[unmet], lambda v: f"{label} {format_value(v, vunit)} {verdict_unmet} ({gap} ")
                      + each(short[unmet], lambda s: f"{gap_text(s, unit)})"))
        return out
    if kind == "flag":
        label = meta["label_en"]
        out[passed] = f"{label}: held (required)"
        out[failed] = f"no {label} (required)"
        return out
    if kind == "all_min":
        now, prev = _col(rows, spec["columns"][0]), _col(rows, spec["columns"][1])
        need = pct_threshold(spec["min"])
        years = (each(now, lambda v: f"R&D intensity {format_value(v, 'pct')} and ")
                 + each(prev, lambda v: f"{format_value(v, 'pct')} (last 2 years) "))
        out[passed] = years[passed] + f"meet the {need} required each year"
        unknown = failed & np.isnan(short)
        out[unknown] = years[unknown] + f"cannot show the {need} required each year (data missing)"
        short_by = failed & ~unknown
        out[short_by] = (years[short_by] + f"fall short of the {need} required each year"
                         + _gap_texts(short[short_by], _col(rows, "revenue")[short_by]))
        return out
    if kind == "sme_size":
        out[passed] = "SME size rule met"
        limits = (f" exceed both SME limits (fewer than {number(spec['employees_below'])} employees or revenue "
                  f"under {money(spec['revenue_below'])})")
        out[failed] = (each(_col(rows, "employees")[failed],
                            lambda e: "employees missing and " if math.isnan(e) else f"{number(e)} employees and ")
                       + each(_col(rows, "revenue")[failed],
                              lambda r: "revenue missing" if math.isnan(r) else f"{money(r)} revenue") + limits)
        return out
    return _any_min_phrases(spec, meta, rows, passed, short)


def _any_min_phrases(spec: Mapping, meta: Mapping, rows: _Rows, passed: np.ndarray, short: np.ndarray) -> np.ndarray:
    """Either route suffices; the shortfall is that of the nearer one. Each route's value is
    named where the rows hold it."""
    label, unit = meta["label_en"], meta["unit"]
    vunit = _VALUE_UNITS.get(unit, "number")
    out = np.empty(len(rows), dtype=object)
    out[passed] = f"{label}: met"
    unknown = ~passed & np.isnan(short)
    out[unknown] = f"{label}: not shown (data missing)"
    at = ~passed & ~unknown
    tail = each(short[at], lambda s: f"short by {gap_text(s, unit)} on the nearer route")
    if not all(c in rows.columns for c in spec["columns"]):
        out[at] = f"{label}: not met, " + tail
        return out
    need = " or ".join(f"{threshold_text(m, unit, with_unit=False)} {feature_label(c)}"
                       for c, m in zip(spec["columns"], spec["min"]))
    parts = [f"{label}: not met ("]
    for i, c in enumerate(spec["columns"]):
        head = f"{', ' if i else ''}{feature_label(c)} "
        parts.append(each(_col(rows, c)[at], lambda v, head=head: head + format_value(v, vunit)))
    out[at] = list(map("".join, zip(*np.broadcast_arrays(*parts, f"; at least {need} required), ", tail))))
    return out


def failed_text(rows: pd.DataFrame, batch_year: int) -> pd.Series:
    """The criteria each row fails, in words: ``"criterion: phrase | criterion: phrase"``.

    Args:
        rows: :func:`lgml.criteria.judged_rows` joined with their :func:`lgml.criteria.check`
            columns, shape (n_rows, ...).
        batch_year: The batch judged.

    Returns:
        Series of str ``failed`` with the index of ``rows``; empty where every criterion is met.
    """
    names = list(criteria.RULES[criteria.regime_for(batch_year)]["criteria"])
    texts = np.full(len(rows), "", dtype=object)
    table = _Rows(rows)
    for name in names:
        at = np.flatnonzero(_col(table, f"pass_{name}") < 0.5)
        if len(at):
            phrases = criterion_phrases(name, table.take(at), batch_year)
            texts[at] = [t + (" | " if t else "") + f"{name}: " + p for t, p in zip(texts[at], phrases)]
    return pd.Series(texts, index=rows.index, name="failed", dtype="str")


# Features that summarise all criteria form one reason, which names the criteria missed.
AGGREGATES = ("eligible", "n_met", "n_failed", "share_met")
AGGREGATE_UNIT = "criteria_met"


def aggregate_phrases(rows: pd.DataFrame | _Rows, batch_year: int, values: np.ndarray | None = None) -> np.ndarray:
    """The reason of the summary features: where they lower the score, ``"misses 1 of 13 Little
    Giant criteria: R&D intensity 2.1% is below ..."`` (the first criterion missed with its
    shortfall); where they raise it, ``"meets 11 of 13 Little Giant criteria (misses ...)"``."""
    rows = _Rows.of(rows)
    names = [n for n in criteria.RULES[criteria.regime_for(batch_year)]["criteria"] if f"pass_{n}" in rows.columns]
    if not names:
        return _plain_phrases("n_met", _col(rows, "n_met"))
    passed = np.column_stack([_col(rows, f"pass_{n}") >= 0.5 for n in names])
    raises = np.zeros(len(rows), dtype=bool) if values is None else np.asarray(values) > 0
    total = len(names)
    # Rows meeting the same criteria share their sentence, but for the detail of the first
    # criterion missed: the sentence parts are built once per set of criteria met.
    pattern, keys = pd.factorize(passed @ (1 << np.arange(total, dtype=np.int64)))
    missed = [[j for j in range(total) if not (key >> j) & 1] for key in keys.tolist()]
    labels = [[criteria.CRITERIA[names[j]]["label_en"] for j in failed] for failed in missed]
    summary = np.array([f"meets {total - len(m)} of {total} Little Giant criteria (misses {', '.join(words)})" if m
                        else f"meets all {total} Little Giant criteria of batch {batch_year}"
                        for m, words in zip(missed, labels)], dtype=object)
    head = np.array([f"misses {len(m)} of {total} Little Giant criteria: " for m in missed], dtype=object)
    tail = np.array([f" (and {', '.join(words[1:])})" if len(words) > 1 else "" for words in labels], dtype=object)
    first = np.array([m[0] if m else -1 for m in missed])[pattern]
    first[raises] = -1  # where the summary raises the score, the criteria missed are only named
    out = summary[pattern]
    for j in np.unique(first[first >= 0]):
        at = np.flatnonzero(first == j)
        detail = criterion_phrases(names[j], rows.take(at), batch_year)
        out[at] = list(map("".join, zip(head[pattern[at]], detail, tail[pattern[at]])))
    return out


def _plain_phrases(feature: str, values: np.ndarray | pd.Series) -> np.ndarray:
    label, unit = FEATURE_LABELS.get(feature, (feature.replace("_", " "), "number"))
    if unit == "pass":
        return each(values, lambda v: f"{label}: {'met' if v >= 0.5 else 'not met'}" if not pd.isna(v)
                     else f"{label}: not in force")
    if unit == "flag":
        return each(values, lambda v: f"{label}: {format_value(v, unit)}")
    return each(values, lambda v: f"{label} {format_value(v, unit)}")


def _values_at(table: pd.DataFrame, name: str, positions: np.ndarray) -> np.ndarray | pd.Categorical:
    """Column ``name`` at ``positions`` (a categorical column as a Categorical); NaN if absent."""
    if name not in table.columns:
        return np.full(len(positions), np.nan)
    column = table[name]
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.array.take(positions)
    return column.to_numpy()[positions]


def _batch_years(table: pd.DataFrame) -> np.ndarray:
    if "batch_year" in table.columns:
        return table["batch_year"].to_numpy(dtype=np.int64)
    if "year" in table.columns:
        return table["year"].to_numpy(dtype=np.int64) + 1
    first = criteria.RULES[DEFAULT_REGIME]["batches"][0]
    return np.full(len(table), first, dtype=np.int64)


def reason_units(features: Sequence[str], batch_year: int | None = None) -> dict[str, list[str]]:
    """Features grouped into reasons: all features measuring one Little Giant criterion of the
    batch's regime form one unit named after the criterion (e.g. ``rd_band`` gathers
    ``rd_intensity``, ``rd_intensity_prev``, ``rd_expense``, ``pass_rd_band`` ...), so that credit
    split among redundant features is summed again; every other feature is its own unit."""
    regime = DEFAULT_REGIME if batch_year is None else criteria.regime_for(int(batch_year))
    cmap = CRITERION_OF[regime]
    units: dict[str, list[str]] = {}
    for f in features:
        name = AGGREGATE_UNIT if f in AGGREGATES else cmap.get(f, f)
        units.setdefault(name, []).append(f)
    return units


_RANK_BLOCK_ROWS = 8192  # rows ranked at a time, so that the temporary arrays stay small


def _top_units(U: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of each row's k largest ``|U|`` (k <= n_columns), largest first, and whether each
    is non-zero; both of shape (n_rows, k)."""
    top = np.empty((len(U), k), dtype=np.intp)
    used = np.empty((len(U), k), dtype=bool)
    for start in range(0, len(U), _RANK_BLOCK_ROWS):
        block = slice(start, start + _RANK_BLOCK_ROWS)
        absU = np.abs(U[block])
        best = (np.argpartition(-absU, k - 1, axis=1)[:, :k] if k < absU.shape[1]
                else np.tile(np.arange(absU.shape[1]), (len(absU), 1)))
        order = np.argsort(-np.take_along_axis(absU, best, axis=1), axis=1, kind="stable")
        top[block] = np.take_along_axis(best, order, axis=1)
        used[block] = np.take_along_axis(absU, top[block], axis=1) > 0
    return top, used


def reason_matrix(contrib: pd.DataFrame, table: pd.DataFrame, k: int = 3
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's top-k reasons by |contribution|, as phrases.

    Contributions of features measuring the same criterion are summed first
    (:func:`reason_units`).

    Args:
        contrib: Contributions of shape (n_rows, n_features) (log-odds), rows matching
            ``table``'s rows by position.
        table: Feature table of the same rows (values, pass/short flags, ``batch_year``).
        k: Reasons per row.

    Returns:
        ``(units, phrases, values)``: arrays of shape (n_rows, k): the unit names (a criterion
        or a feature), their phrases (without the contribution) and summed contributions
        (log-odds); a row with fewer than k non-zero units has empty names in its last slots.
    """
    C = contrib.to_numpy(dtype=float)
    n = len(C)
    features = list(contrib.columns)
    batch = _batch_years(table)
    names = np.full((n, k), "", dtype=object)
    phrases = np.full((n, k), "", dtype=object)
    values = np.zeros((n, k))
    if n == 0 or k == 0:
        return names, phrases, values
    year_of_row, years = pd.factorize(batch)
    regime_of_year = np.array([criteria.regime_for(int(y)) for y in years], dtype=object)
    every_row = _Rows(table)
    for regime in sorted(set(regime_of_year)):
        rows = np.flatnonzero((regime_of_year == regime)[year_of_row])
        year = int(batch[rows[0]])
        units = reason_units(features, year)
        unit_names = np.asarray(list(units), dtype=object)
        members = np.zeros((len(features), len(units)))
        col = {f: i for i, f in enumerate(features)}
        for j, fs in enumerate(units.values()):
            members[[col[f] for f in fs], j] = 1.0
        U = C[rows] @ members
        kk = min(k, U.shape[1])
        top, used = _top_units(U, kk)
        names[rows, :kk] = np.where(used, unit_names[top], "")
        values[rows, :kk] = np.where(used, np.take_along_axis(U, top, axis=1), 0.0)
        r_local, slots = np.nonzero(used)
        chosen = top[r_local, slots]
        by_unit = np.argsort(chosen.astype(np.uint16), kind="stable")  # units fit 16 bits: a radix sort
        for at in np.split(by_unit, np.flatnonzero(np.diff(chosen[by_unit])) + 1):
            if not len(at):
                continue
            r, slots_at = rows[r_local[at]], slots[at]
            unit = unit_names[chosen[at[0]]]
            if unit == AGGREGATE_UNIT:
                phrases[r, slots_at] = aggregate_phrases(every_row.take(r), year, values[r, slots_at])
            elif unit in criteria.RULES[regime]["criteria"]:
                phrases[r, slots_at] = criterion_phrases(unit, every_row.take(r), year)
            else:
                phrases[r, slots_at] = _plain_phrases(unit, _values_at(table, unit, r))
    return names, phrases, values


def top_reasons(contrib: pd.DataFrame, table: pd.DataFrame, k: int = 3) -> pd.Series:
    """Short text of each row's top-k drivers, largest |contribution| first.

    Each reason names the firm's own value and, where a Little Giant criterion of the row's
    batch applies, its threshold and shortfall, followed by the contribution in log-odds, e.g.
    ``"R&D intensity 2.1% is below the 3% required at revenue >= 100M yuan (-0.42 log-odds)"``.
    Features measuring the same criterion count as one driver (:func:`reason_units`).
    Reasons are joined by ``" | "``.

    Args:
        contrib: Contributions of shape (n_rows, n_features) in log-odds (from
            :func:`lgml.explain.contributions.contributions`).
        table: The feature table the contributions were computed on (same rows, same order).
        k: Drivers per row.

    Returns:
        Series of str with ``contrib``'s index.
    """
    names, phrases, values = reason_matrix(contrib, table, k)
    count = (names != "").sum(axis=1)  # a row's empty slots are its last ones
    texts = np.full(len(names), "", dtype=object)
    for c in range(1, names.shape[1] + 1):
        rows = np.flatnonzero(count == c)
        if not len(rows):
            continue
        parts = [phrases[rows, 0], log_odds_texts(values[rows, 0])]
        for j in range(1, c):
            parts += [[" | "] * len(rows), phrases[rows, j], log_odds_texts(values[rows, j])]
        texts[rows] = list(map("".join, zip(*parts)))
    return pd.Series(texts, index=contrib.index, name="reasons", dtype="str")


def log_odds_texts(values: np.ndarray) -> np.ndarray:
    """``f" ({v:+.2f} log-odds)"`` of each value, as an object array of str.

    Values are rounded to hundredths with numpy and each distinct result is written once.
    ``100 * |v|`` carries a rounding error of at most 2e-8 (for |v| < 1e6), so it rounds as the
    exact value does unless it lies within 1e-6 of a half; those values, and values that are
    not finite, are formatted one by one."""
    v = np.asarray(values, dtype=float)
    hundredths = np.abs(v) * 100
    safe = (np.abs(np.modf(hundredths)[0] - 0.5) > 1e-6) & (hundredths < 1e8)
    rounded = np.rint(hundredths[safe])
    # a negative value, even one shown as "-0.00", gets key -1 - n
    codes, keys = pd.factorize(np.where(np.signbit(v[safe]), -1 - rounded, rounded))

    def text(key: float) -> str:
        sign, n = ("-", int(-1 - key)) if key < 0 else ("+", int(key))
        return f" ({sign}{n // 100}.{n % 100:02d} log-odds)"

    out = np.empty(len(v), dtype=object)
    out[safe] = np.array([text(key) for key in keys.tolist()], dtype=object)[codes]
    out[~safe] = [f" ({x:+.2f} log-odds)" for x in v[~safe].tolist()]
    return out


