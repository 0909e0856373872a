"""Bring a firm-year panel and its designation events into the input contract, or say why not.

Three layers, each usable alone:

- :func:`standardize` maps headers (English, Chinese, unit-suffixed such as ``营业收入(万元)``)
  to contract names, parses every value into its canonical dtype and converts 万元 to yuan.
  Values it cannot read are reported as :class:`Problem` records, never raised.
- :func:`check_panel` and :func:`check_events` check the contract's rules on a standardized frame.
- :func:`conform_panel`, :func:`load_panel` and :func:`load_events` do both and raise one
  :class:`ContractError` that lists every problem at once. :func:`read_panel` and
  :func:`read_events` (and :func:`conform_panel_notes`) also return the :class:`lgml.exports.Note`
  records a user should see: rows left out of an export, unrecognised headers, optional columns
  that came out empty, units overridden or implausible.

Everything is vectorised: Python loops run over columns, distinct values or at most five example
rows, never over all rows.

Example:
    >>> panel = load_panel("firms_gbk.csv")  # units from headers such as 营业收入(万元)  # doctest: +SKIP
    >>> print(summary(panel))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_float_dtype, is_numeric_dtype

from lgml import credit_code, exports, io
from lgml.credit_code import normalise as normalise_code
from lgml.exports import Note
from lgml.parsing import (
    CATEGORY_RULES,
    TABLES,
    UNITS,
    _match,
    all_missing,
    map_headers,
    money_factor,
    parse,
    parse_rule,
    unit_overrides,
    unrecognised,
)
from lgml.schema import (
    Problem,
    CATEGORY_LEVELS,
    IDENTITY_COLUMNS,
    MONEY_COLUMNS,
    PANEL_COLUMNS,
    YEAR_MAX,
    YEAR_MIN,
)

log = logging.getLogger(__name__)
KEYS: dict[str, tuple[str, str]] = {"panel": ("firm_id", "year"), "events": ("firm_id", "batch_year")}
BATCH_YEAR_MIN = 2019  # the first Little Giant batch
MAX_EXAMPLES = 5
MBR_TOLERANCE = 1.01  # main-business revenue may exceed revenue by rounding in exports

class ContractError(ValueError):
    """A table breaks the input contract; ``str(err)`` lists every problem for a terminal.

    Attributes:
        problems: Every problem found.
        source: What was checked (a path or a description), named in the report.
    """

    def __init__(self, problems: Sequence[Problem], source: str = "the input"):
        self.problems = list(problems)
        self.source = source
        super().__init__(_report(self.problems, source))


# ---------------------------------------------------------------------------------------------
# Public API


def standardize(
    df: pd.DataFrame, table: str = "panel", units: str | None = None
) -> tuple[pd.DataFrame, list[Problem]]:
    """Map headers to contract names, parse values into canonical dtypes and money into yuan.

    Headers match canonical names case-insensitively, the Chinese aliases of
    :mod:`lgml.schema`, and either with a unit suffix (``营业收入(万元)``, ``营业收入（万元）``);
    whitespace and a BOM are ignored. Columns outside the contract are kept, untouched, after
    the contract columns. Absent contract columns are added as all-missing (and reported when
    required), so the result always holds every contract column.

    Args:
        df: Table as read, shape (n_rows, n_columns), text or typed values. Not modified.
        table: ``"panel"`` (firm-years) or ``"events"`` (designations).
        units: Money units of every money column of ``df``: ``"yuan"`` or ``"wan"`` (万元,
            multiplied by 10,000), overriding the units written in the headers; None (the
            default) reads each column in its header's unit (``营业收入(万元)``, ``(元)``,
            ``(千元)``, ``(百万元)``, ``(亿元)``) and headers without a unit as yuan.

    Returns:
        The frame with every contract column in contract order (then the extra columns), same
        index as ``df``; and the problems found while reading it: missing or duplicated
        columns, money headers in a foreign currency, values that cannot be parsed or are not
        a known category, credit codes with a wrong check character. Unreadable values become missing. A column holding them keeps a
        missing-capable dtype (float64 for integers, ``boolean`` for booleans) instead of
        :func:`lgml.schema.dtype_of`.

    Raises:
        ValueError: ``table`` or ``units`` is not one of the accepted values.
    """
    frame, problems, _, _ = _standardize(df, table, units)
    return frame, problems


def check_panel(df: pd.DataFrame) -> list[Problem]:
    """Check every rule of the panel contract.

    Args:
        df: Standardized panel, shape (n_firm_years, n_columns), money in yuan. Frames not
            passed through :func:`standardize` are checked too; columns of the wrong kind are
            reported and their value rules skipped.

    Returns:
        The problems found; empty if the panel honours the contract.
    """
    return _check_table(df, "panel", {})


def check_events(events: pd.DataFrame, panel: pd.DataFrame | None = None) -> list[Problem]:
    """Check the events contract, and that every event's firm is in ``panel`` when given.

    A firm may hold several batches (a re-review renews the title), so only the key
    ``(firm_id, batch_year)`` must be unique.

    Args:
        events: Standardized designations, shape (n_events, 3+).
        panel: Standardized panel whose ``firm_id`` values events must refer to.

    Returns:
        The problems found; empty if the events honour the contract.
    """
    return _check_events(events, panel, {})


def conform_panel(df: pd.DataFrame, units: str | None = None, *, source: str = "the panel",
                  sort: bool = True) -> pd.DataFrame:
    """Standardize and check a panel already in memory.

    Args:
        df: Panel as held by the caller, shape (n_firm_years, n_columns). Not modified.
        units: Money units overriding the headers' (see :func:`standardize`); None reads them
            from the headers.
        source: Name of the panel in the error report.
        sort: Sort the rows by ``firm_id, year``; False keeps the caller's row order (callers
            that sort later save the time).

    Returns:
        The canonical panel in yuan, sorted by ``firm_id, year`` (unless ``sort`` is False),
        with a fresh RangeIndex.

    Raises:
        ContractError: With every problem found.
        ValueError: ``units`` is not ``"yuan"``, ``"wan"`` or None.
    """
    return _conform(df, "panel", units, None, source, sort=sort)[0]


def conform_panel_notes(df: pd.DataFrame, units: str | None = None, *, source: str = "the panel",
                        sort: bool = True) -> tuple[pd.DataFrame, list[Note]]:
    """:func:`conform_panel`, and the notes on how ``df`` was read (see :func:`read_panel`)."""
    return _conform(df, "panel", units, None, source, sort=sort)


def read_panel(path: str | os.PathLike, units: str | None = None, encoding: str | None = None,
               sheet: str | int | None = None) -> tuple[pd.DataFrame, list[Note]]:
    """Read a panel file into the contract, with the notes a user should see.

    Args:
        path: CSV (UTF-8 or GBK/GB18030), Excel ``.xlsx``, Parquet file or folder of Parquet files.
            Title rows above the header and note rows under the data are left out
            (:func:`lgml.io.read_export`).
        units: Money units overriding the headers' (see :func:`standardize`); None reads each
            column in its header's unit, yuan when the header names none.
        encoding: Force a CSV encoding instead of trying UTF-8 then GB18030.
        sheet: Excel sheet name or 0-based position (default: the first).

    Returns:
        The canonical panel in yuan, sorted by ``firm_id, year``, with a fresh RangeIndex; and
        :class:`lgml.exports.Note` records: rows left out, unrecognised headers, optional
        columns entirely missing, units overridden or implausible.

    Raises:
        ContractError: With every problem found in the file.
        lgml.io.InputError: The file cannot be read as a table.
    """
    raw, layout = io.read_export(path, encoding, sheet)
    frame, notes = _conform(raw, "panel", units, None, str(path))
    return frame, layout + notes


def load_panel(path: str | os.PathLike, units: str | None = None, encoding: str | None = None,
               sheet: str | int | None = None) -> pd.DataFrame:
    """:func:`read_panel`, with its notes logged (warnings as warnings) instead of returned.

    Returns:
        The canonical panel in yuan, sorted by ``firm_id, year``, with a fresh RangeIndex.

    Raises:
        ContractError: With every problem found in the file.
        lgml.io.InputError: The file cannot be read as a table.
    """
    frame, notes = read_panel(path, units, encoding, sheet)
    log_notes(notes, str(path))
    return frame


def log_notes(notes: Sequence[Note], source: str) -> None:
    """Log reading notes: warnings at WARNING, the rest at INFO."""
    for note in notes:
        log.log(logging.WARNING if note.level == "warning" else logging.INFO, "%s: %s", source, note.text)


def read_events(path: str | os.PathLike, panel: pd.DataFrame | None = None, encoding: str | None = None,
                sheet: str | int | None = None) -> tuple[pd.DataFrame, list[Note]]:
    """Read a designation events file (``firm_id, batch_year, revoked_year``) into the contract.

    Args:
        path: CSV, ``.xlsx`` or Parquet file.
        panel: Canonical panel; events of firms not in it are reported.
        encoding: Force a CSV encoding.
        sheet: Excel sheet name or position.

    Returns:
        The canonical events sorted by ``firm_id, batch_year``, with a fresh RangeIndex, and the
        notes (see :func:`read_panel`).

    Raises:
        ContractError: With every problem found in the file.
        lgml.io.InputError: The file cannot be read as a table.
    """
    raw, layout = io.read_export(path, encoding, sheet, table="events")
    frame, notes = _conform(raw, "events", None, panel, str(path))
    return frame, layout + notes


def load_events(
    path: str | os.PathLike, panel: pd.DataFrame | None = None, encoding: str | None = None,
    sheet: str | int | None = None,
) -> pd.DataFrame:
    """:func:`read_events`, with its notes logged instead of returned."""
    frame, notes = read_events(path, panel, encoding, sheet)
    log_notes(notes, str(path))
    return frame


def summary(panel: pd.DataFrame) -> str:
    """A few lines describing a canonical panel: size, years, provinces, SRDI share, gaps.

    Args:
        panel: Canonical panel, shape (n_firm_years, n_columns).

    Returns:
        Multi-line text for a terminal.
    """
    n = len(panel)
    if n == 0:
        return "0 firm-years"
    provinces = panel["province"].value_counts()
    provinces = provinces[provinces > 0]
    largest = ", ".join(f"{name} {count / n:.0%}" for name, count in provinces.head(3).items())
    missing = [f"{c.name} {panel[c.name].isna().mean():.1%}" for c in PANEL_COLUMNS
               if c.nullable and c.name not in IDENTITY_COLUMNS]
    return "\n".join((
        f"{panel['firm_id'].nunique():,} firms, {n:,} firm-years, {panel['year'].min()}-{panel['year'].max()}",
        f"provinces: {len(provinces)} (largest: {largest})",
        f"provincial SRDI: {panel['srdi_provincial'].mean():.1%} of firm-years",
        _wrap_items("missing:", missing),
    ))


def verdict(panel: pd.DataFrame, events: pd.DataFrame | None = None, warnings: int = 0) -> str:
    """The one-line verdict on a canonical panel (and events) that keep the contract, counting
    the ``warnings`` printed above it.

    Example:
        ``"Valid: 2,000 firms, 21,344 firm-years, 93 designation events, no rule broken."``
    """
    counted = f", {len(events):,} designation events" if events is not None else ""
    warned = f"; {warnings} warning{'s' if warnings != 1 else ''} above" if warnings else ""
    return f"Valid: {panel['firm_id'].nunique():,} firms, {len(panel):,} firm-years{counted}, no rule broken{warned}."


def broken_verdict(problems: Sequence[Problem]) -> str:
    """The one-line verdict on a table that breaks the contract (``ContractError.problems``).

    Rows are summed over the broken rules, so with several rules the count is an upper bound on
    the distinct rows; a missing column counts every row.

    Example:
        ``"Invalid: 4 rules broken in up to 7 rows."``
    """
    rows = sum(p.count for p in problems)
    many = len(problems) != 1
    return (f"Invalid: {len(problems)} rule{'s' if many else ''} broken in {'up to ' if many else ''}"
            f"{rows:,} row{'s' if rows != 1 else ''}.")


# ---------------------------------------------------------------------------------------------
# Orchestration


def _conform(
    df: pd.DataFrame, table: str, units: str | None, panel: pd.DataFrame | None, source: str, sort: bool = True
) -> tuple[pd.DataFrame, list[Note]]:
    frame, problems, rejected, notes = _standardize(df, table, units)
    if table == "panel":
        problems += _check_table(frame, table, rejected)
    else:
        problems += _check_events(frame, panel, rejected)
    if problems:
        order = {c.name: i for i, c in enumerate(TABLES[table])}  # group a column's problems
        raise ContractError(sorted(problems, key=lambda p: order.get(p.column, len(order))), source)
    if table == "panel":
        warning = exports.unit_warning(frame, units)
        notes += ([warning] if warning is not None else []) + exports.outlier_warnings(frame)
    if not sort:
        return frame.reset_index(drop=True), notes
    return frame.sort_values(list(KEYS[table]), kind="stable").reset_index(drop=True), notes


def _standardize(
    df: pd.DataFrame, table: str, units: str | None
) -> tuple[pd.DataFrame, list[Problem], dict[str, np.ndarray], list[Note]]:
    """:func:`standardize`, plus per column the rows whose values were rejected, so that the
    checks do not report those rows a second time as missing, and the notes on the headers."""
    if table not in TABLES:
        raise ValueError(f"table must be one of {', '.join(map(repr, TABLES))}, not {table!r}")
    if units is not None and units not in UNITS:
        raise ValueError(f"units must be 'yuan' or 'wan' (万元) or None (from the headers), not {units!r}")
    columns = TABLES[table]
    found, header_units, problems = map_headers(df.columns, columns, table, units, len(df))
    from_code = "firm_id" in found and (_match(df.columns[found["firm_id"][0]], columns) or ("",))[0] != "firm_id"
    # Positions, not labels: headers and index labels may repeat in a user's frame.
    work = df.set_axis(pd.RangeIndex(len(df)), axis=0)
    raws = {name: work.iloc[:, where[0]] for name, where in found.items()}

    parsed: dict[str, pd.Series] = {}
    rejected: dict[str, np.ndarray] = {}
    for col in columns:
        if col.name not in raws:
            parsed[col.name] = all_missing(col, work.index)
            rejected[col.name] = np.ones(len(df), dtype=bool)  # already reported as a missing column
            continue
        values, bad = parse(raws[col.name], col, percent_header=header_units[col.name] == "%")
        if col.name == "firm_id" and from_code:
            values = values.map(normalise_code, na_action="ignore").astype("str")
        factor = money_factor(header_units[col.name], units) if col.money else 1.0
        parsed[col.name] = values * factor if factor != 1.0 else values
        rejected[col.name] = bad

    keys = tuple(parsed[k] for k in KEYS[table])
    for col in columns:
        if col.name in raws and rejected[col.name].any():
            problems += _problem(table, col.name, parse_rule(col), rejected[col.name], keys, raws[col.name])

    matched = {i for where in found.values() for i in where}
    extras = work.iloc[:, [i for i in range(df.shape[1]) if i not in matched]]
    frame = pd.concat([pd.DataFrame(parsed), extras], axis=1).set_axis(df.index, axis=0)
    notes = [exports.Note("info", text) for text in unit_overrides(df.columns, found, header_units, units)]
    given = {name: str(df.columns[where[0]]) for name, where in found.items()}
    notes += exports.header_notes(unrecognised(df.columns, found), given, frame, table, from_code)
    return frame, problems, rejected, notes


# Rules


@dataclass(frozen=True)
class _Rule:
    """A value rule: ``bad(frame)`` marks breaking rows; NaN compares False, so missing values
    only break the separate "must not be missing" rule. A rule between two columns names the
    ``other`` and is only applied where the other column's value is itself valid."""

    column: str
    text: str
    bad: Callable[[pd.DataFrame], pd.Series]
    other: str | None = None


def _outside(s: pd.Series, lo: float, hi: float) -> pd.Series:
    return (s < lo) | (s > hi)


_NON_NEGATIVE = (
    "employees", "rd_staff", "revenue", "main_business_revenue", "total_liabilities", "rd_expense",
    "equity_financing", "invention_patents", "class2_ip", "niche_years", "key_customers",
)
PANEL_RULES: tuple[_Rule, ...] = (
    _Rule("year", f"must be in {YEAR_MIN}..{YEAR_MAX}", lambda d: _outside(d["year"], YEAR_MIN, YEAR_MAX)),
    *(_Rule(name, "must be >= 0", lambda d, name=name: d[name] < 0) for name in _NON_NEGATIVE),
    _Rule("total_assets", "must be > 0", lambda d: d["total_assets"] <= 0),
    _Rule("niche_market_share", "must be in 0..1 (a share; '12%' reads as 0.12)",
          lambda d: _outside(d["niche_market_share"], 0, 1)),
    _Rule("digital_level", "must be in 1..5", lambda d: _outside(d["digital_level"], 1, 5)),
    _Rule("founded_year", "must be <= year",
          lambda d: (d["founded_year"] > d["year"]) & ~_outside(d["year"], YEAR_MIN, YEAR_MAX), "year"),
    _Rule("rd_staff", "must be <= employees",
          lambda d: (d["rd_staff"] > d["employees"]) & (d["employees"] >= 0), "employees"),
    _Rule("main_business_revenue", "must be <= revenue (1% tolerance)",
          lambda d: (d["main_business_revenue"] > d["revenue"] * MBR_TOLERANCE) & (d["revenue"] >= 0), "revenue"),
    _Rule("class1_ip", "must be >= invention_patents",
          lambda d: (d["class1_ip"] < d["invention_patents"]) & (d["invention_patents"] >= 0), "invention_patents"),
)
EVENT_RULES: tuple[_Rule, ...] = (
    _Rule("batch_year", f"must be in {BATCH_YEAR_MIN}..{YEAR_MAX}",
          lambda d: _outside(d["batch_year"], BATCH_YEAR_MIN, YEAR_MAX)),
    _Rule("revoked_year", "must be > batch_year",
          lambda d: (d["revoked_year"] <= d["batch_year"]) & ~_outside(d["batch_year"], BATCH_YEAR_MIN, YEAR_MAX),
          "batch_year"),
)
RULES = {"panel": PANEL_RULES, "events": EVENT_RULES}


def _kind_ok(s: pd.Series, kind: str) -> bool:
    if kind in ("int", "float"):
        return is_numeric_dtype(s) and not is_bool_dtype(s)
    if kind == "bool":
        return is_bool_dtype(s)
    return True  # strings and categories are checked by value


def _check_table(df: pd.DataFrame, table: str, rejected: Mapping[str, np.ndarray]) -> list[Problem]:
    """Columns, missing values, value rules and key uniqueness of one contract table."""
    columns = TABLES[table]
    keys = tuple(df[k] if k in df.columns else None for k in KEYS[table])
    problems: list[Problem] = []
    usable: set[str] = set()
    for col in columns:
        if col.name not in df.columns:
            if not col.nullable:
                problems.append(Problem(table, col.name, "required column is missing", len(df)))
            continue
        s = df[col.name]
        if not _kind_ok(s, col.kind):
            problems.append(Problem(table, col.name, f"must hold {col.kind} values, not dtype {s.dtype} "
                                    "(pass the frame through standardize)", len(df)))
            continue
        usable.add(col.name)
        if not col.nullable:
            missing = s.isna().to_numpy() & ~rejected.get(col.name, np.zeros(len(df), dtype=bool))
            problems += _problem(table, col.name, "must not be missing", missing, keys, s)
        if col.kind == "int" and is_float_dtype(s):
            problems += _problem(table, col.name, "must be a whole number", (s % 1 != 0) & s.notna(), keys, s)
        if col.kind == "category":
            unknown = s.notna() & ~s.isin(CATEGORY_LEVELS[col.name])
            problems += _problem(table, col.name, CATEGORY_RULES[col.name], unknown, keys, s)
        if col.name == "credit_code":
            problems += _problem(table, col.name, credit_code.RULE, ~credit_code.valid_mask(s), keys, s)
    for rule in RULES[table]:
        if rule.column in usable and (rule.other is None or rule.other in usable):
            values = df[rule.column] if rule.other is None else (df[rule.column], df[rule.other])
            problems += _problem(table, rule.column, rule.text, rule.bad(df), keys, values)
    if usable.issuperset(KEYS[table]):
        problems += _duplicate_keys(df, table, keys)
    if table == "panel" and len(df) == 0:
        problems.append(Problem(table, "firm_id, year", "the panel has no rows (only a header, or only note rows)", 0))
    return problems


def _duplicate_keys(df: pd.DataFrame, table: str, keys: tuple[pd.Series, pd.Series]) -> list[Problem]:
    complete = keys[0].notna() & keys[1].notna()
    key_frame = pd.DataFrame({"id": keys[0], "year": keys[1]})
    repeated = key_frame.duplicated(keep=False).to_numpy() & complete.to_numpy()
    if not repeated.any():
        return []
    first = repeated & ~key_frame.duplicated(keep="first").to_numpy()
    rows = np.flatnonzero(first)[:MAX_EXAMPLES]
    examples = tuple(
        (_scalar(keys[0].iloc[r]), _scalar(keys[1].iloc[r]),
         f"{int(((keys[0] == keys[0].iloc[r]) & (keys[1] == keys[1].iloc[r])).sum())} rows")
        for r in rows
    )
    return [Problem(table, ", ".join(KEYS[table]), "must be unique", int(repeated.sum()), examples)]


def _check_events(
    events: pd.DataFrame, panel: pd.DataFrame | None, rejected: Mapping[str, np.ndarray]
) -> list[Problem]:
    problems = _check_table(events, "events", rejected)
    if panel is not None and "firm_id" in events.columns:
        ids = events["firm_id"]
        unknown = ids.notna() & ~ids.isin(panel["firm_id"])
        keys = (ids, events["batch_year"] if "batch_year" in events.columns else None)
        problems += _problem("events", "firm_id", "must be a firm in the panel", unknown, keys, ids)
        if "batch_year" in events.columns and "founded_year" in panel.columns:
            founded = events["firm_id"].map(panel.groupby("firm_id", observed=True)["founded_year"].min())
            early = (events["batch_year"] < founded).fillna(False).to_numpy(dtype=bool)
            problems += _problem("events", "batch_year", "must not be before the firm was founded (founded_year)",
                                 early, keys, (events["batch_year"], founded))
    return problems


# ---------------------------------------------------------------------------------------------
# Problems and their report


def _scalar(value: object) -> object:
    """A plain Python value for an example: numpy scalars unwrapped, missing as None."""
    if isinstance(value, tuple):
        return tuple(_scalar(v) for v in value)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    value = value.item() if isinstance(value, np.generic) else value
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 1e15 else value


def _problem(
    table: str,
    column: str,
    rule: str,
    bad: pd.Series | np.ndarray,
    keys: tuple[pd.Series | None, pd.Series | None],
    values: pd.Series | tuple[pd.Series, pd.Series],
) -> list[Problem]:
    """A one-item list with the problem if any row is ``bad``, else an empty list."""
    bad = np.asarray(bad, dtype=bool)
    count = int(bad.sum())
    if not count:
        return []
    pair = isinstance(values, tuple)

    def value_at(r: int) -> object:
        return tuple(v.iloc[r] for v in values) if pair else values.iloc[r]

    def key_at(key: pd.Series | None, r: int) -> object:
        return None if key is None else key.iloc[r]

    examples = tuple(
        _scalar((key_at(keys[0], r), key_at(keys[1], r), value_at(r)))
        for r in np.flatnonzero(bad)[:MAX_EXAMPLES]
    )
    return [Problem(table, column, rule, count, examples)]


def _show(value: object, money: bool) -> str:
    if value is None:
        return "missing"
    if isinstance(value, tuple):
        return " vs ".join(_show(v, money) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if money:
        return f"{value:,.2f}".removesuffix(".00") + " yuan"
    return f"{value:.10g}"


def _wrap_items(head: str, items: Sequence[str], width: int = 80) -> str:
    """``head`` and comma-separated ``items`` in lines of at most ``width`` characters (unless an
    item alone is longer), never splitting an item; continuation lines are indented."""
    lines, line = [], head
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if len(line) + 1 + len(piece) > width and line.strip():
            lines.append(line)
            line = "  " + piece
        else:
            line += " " + piece
    return "\n".join([*lines, line])


def _report(problems: Sequence[Problem], source: str) -> str:
    lines = [f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {source}:"]
    for p in problems:
        if not p.examples:
            lines.append(f"- {p.column}: {p.rule}")
            continue
        lines.append(f"- {p.column} ({p.count:,} row{'s' if p.count != 1 else ''}): {p.rule}")
        shown = "; ".join(f"{fid} {year}: {_show(value, p.column in MONEY_COLUMNS)}" for fid, year, value in p.examples)
        lines.append(f"    e.g. {shown}")
    return "\n".join(lines)
