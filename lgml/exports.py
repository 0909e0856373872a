"""What real exports (Wind, CSMAR, 企查查, provincial databases) need besides parsing cells: the
header row below title rows, note rows under the data, headers nobody reads, and amounts whose
unit looks wrong. Pure functions on frames; :mod:`lgml.io` and :mod:`lgml.validate` call them and
pass the resulting :class:`Note` records to the user.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lgml.parsing import MISSING_TOKENS, SECTION_OF, TABLES, _match, candidate_headers
from lgml.schema import IDENTITY_COLUMNS, PROVINCES, WAN

HEADER_SEARCH_ROWS = 20  # rows searched for the header row of an export with title rows
MIN_HEADER_HITS = 2  # recognised headers a row needs to be taken as the header row
# Plausible medians for SMEs, in yuan (money read in the wrong unit is off by 10,000).
PLAUSIBLE = {"revenue": (1e5, 1e10), "total_assets": (1e5, 1e10), "revenue_per_employee": (1e3, 1e8)}
MIN_ROWS_FOR_UNITS = 5
# Values no SME has (money in yuan): far past the SME limits (revenue under 400 million yuan,
# fewer than 1,000 employees), so most likely a typo, a unit slip or a filler such as 9.99e307.
OUTLIER_LIMITS = {"revenue": 1e11, "main_business_revenue": 1e11, "total_assets": 1e11,
                  "total_liabilities": 1e11, "rd_expense": 1e11, "equity_financing": 1e11, "net_profit": 1e11,
                  "employees": 100_000, "rd_staff": 100_000}


@dataclass(frozen=True)
class Note:
    """Something the user should know about how a file was read.

    Attributes:
        level: ``"info"`` (what was done: rows skipped, a column derived) or ``"warning"``
            (something is probably wrong although the contract holds).
        text: One or more lines for a terminal.
    """

    level: str
    text: str

    def __str__(self) -> str:
        return f"{'Warning' if self.level == 'warning' else 'Note'}: {self.text}"


# ---------------------------------------------------------------------------------------------
# Layout: title rows above the header, note rows below the data


def _is_blank(cells: pd.DataFrame) -> pd.DataFrame:
    text = cells.astype("str").apply(lambda c: c.str.strip())
    return cells.isna() | text.isin(MISSING_TOKENS)


def header_row(top: pd.DataFrame, table: str = "panel") -> int:
    """Position of the header row among the first rows of a sheet read without a header: the
    first row holding the most recognised headers (at least :data:`MIN_HEADER_HITS`), or 0.

    Args:
        top: The first :data:`HEADER_SEARCH_ROWS` rows as read, header row included, as text.
        table: ``"panel"`` or ``"events"``.
    """
    hits = [sum(_match(v, TABLES[table]) is not None for v in row if isinstance(v, str) and v.strip())
            for row in top.itertuples(index=False)]
    best = max(hits, default=0)
    return hits.index(best) if best >= MIN_HEADER_HITS else 0


def note_rows(df: pd.DataFrame, table: str = "panel") -> np.ndarray:
    """Rows that hold no data: blank, or a single filled cell of text that is not a number
    (``数据来源：Wind``, in whichever column). Rows with two cells or more, or a lone number (a year
    whose firm ID is missing), are kept, so that real rows with gaps still reach the contract
    checks.

    Returns:
        Boolean mask of shape (n_rows,).
    """
    from lgml.parsing import header_positions

    out = np.zeros(len(df), dtype=bool)
    if df.empty:
        return out
    found = header_positions(list(df.columns), table)
    keys = [found[k][0] for k in ("firm_id", "year", "batch_year") if k in found]
    # Only rows without keys are looked at cell by cell: cheap on a large chunk of real rows.
    maybe = _is_blank(df.iloc[:, keys]).to_numpy().any(axis=1) if keys else np.ones(len(df), dtype=bool)
    if maybe.any():
        rows = df[maybe]
        given = ~_is_blank(rows).to_numpy()
        # The text of a row's one filled cell: a number there (a year, an ID) is data, not a note.
        lone = rows.where(given).bfill(axis=1).iloc[:, 0].astype("str").str.replace(",", "")
        numeric = pd.to_numeric(lone, errors="coerce").notna().to_numpy()
        out[maybe] = (given.sum(axis=1) == 0) | ((given.sum(axis=1) == 1) & ~numeric)
    return out


def layout_text(skipped_above: Sequence[str], dropped: pd.DataFrame) -> list[Note]:
    """Notes on the rows left out: the title rows above the header and the note rows below."""
    notes = []
    if skipped_above:
        shown = "; ".join(repr(t[:60]) for t in skipped_above[:3])
        notes.append(Note("info", f"skipped {len(skipped_above)} row{'s' if len(skipped_above) != 1 else ''} above "
                                  f"the header row: {shown}"))
    if len(dropped):
        texts = [str(v) for v in dropped.stack().dropna() if str(v).strip()]
        shown = "; ".join(repr(t[:60]) for t in texts[:3]) or "blank rows"
        notes.append(Note("info", f"dropped {len(dropped)} row{'s' if len(dropped) != 1 else ''} without data "
                                  f"(blank, or one cell of text): {shown}"))
    return notes


# ---------------------------------------------------------------------------------------------
# Headers nobody reads, optional columns that came out empty


def header_notes(extras: Sequence[str], given: dict[str, str], frame: pd.DataFrame, table: str,
                 from_credit_code: bool) -> list[Note]:
    """Notes on the headers: those not recognised (kept but never read), optional columns that
    ended up entirely missing (with the unrecognised headers that might have held them), and
    ``firm_id`` taken from the credit code.

    Args:
        extras: The unrecognised headers.
        given: Contract column -> the header it was read from.
        frame: The standardized table.
        table: ``"panel"`` or ``"events"``.
        from_credit_code: Whether ``firm_id`` was read from a credit code header.
    """
    notes = []
    if from_credit_code:
        notes.append(Note("info", "no firm ID column: the unified social credit code (统一社会信用代码) is "
                                  "used as firm_id"))
    if extras:
        notes.append(Note("info", f"{len(extras)} header{'s' if len(extras) != 1 else ''} not recognised "
                                  f"(kept, not read): {', '.join(map(repr, extras))}"))
    if len(frame):
        for col in TABLES[table]:
            if not col.nullable or col.name not in frame.columns or frame[col.name].notna().any():
                continue
            maybe = candidate_headers(col, extras)
            if (col.name in IDENTITY_COLUMNS or table == "events") and not maybe:
                continue  # names, codes and revocations may well be absent
            if col.name in given:
                where = f"header {given[col.name]!r} holds no value"
            else:
                where = f"no header names it (e.g. {', '.join(col.aliases[:3])})"
            hint = f"; unrecognised headers that might hold it: {', '.join(map(repr, maybe))}" if maybe else ""
            notes.append(Note("warning", f"optional column {col.name} is entirely missing: {where}{hint}"))
    return notes


# ---------------------------------------------------------------------------------------------
# Units


def _median(values: pd.Series) -> float | None:
    v = values.to_numpy(dtype="float64", na_value=np.nan)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.median(v)) if len(v) >= MIN_ROWS_FOR_UNITS else None


def _yuan(value: float) -> str:
    return f"{value:,.0f} yuan" if value < 1e6 else f"{value / 1e6:,.1f} million yuan"


def unit_warning(frame: pd.DataFrame, units: str | None) -> Note | None:
    """A warning when amounts in yuan look like 万元 read as yuan (medians far too small for
    SMEs), or the reverse, naming the evidence: each column's median, what it would be in the
    other unit, and revenue per employee (which does not depend on the unit of the headers).

    Args:
        frame: Standardized panel, money in yuan.
        units: The ``units`` override, or None.
    """
    low, high = [], []
    for name in ("revenue", "total_assets"):
        median = _median(frame[name]) if name in frame.columns else None
        if median is None:
            continue
        lo, hi = PLAUSIBLE[name]
        if median < lo:
            low.append(f"median {name} {_yuan(median)} (as 万元: {_yuan(median * WAN)})")
        elif median > hi:
            high.append(f"median {name} {_yuan(median)} (as yuan instead of 万元: {_yuan(median / WAN)})")
    if "revenue" in frame.columns and "employees" in frame.columns:
        per = frame["revenue"] / frame["employees"].where(frame["employees"] > 0)
        median = _median(per)
        if median is not None:
            (low if median < PLAUSIBLE["revenue_per_employee"][0] else high if
             median > PLAUSIBLE["revenue_per_employee"][1] else []).append(
                f"median revenue per employee {_yuan(median)} (SMEs: about 100,000 to 5 million yuan)")
    if not (low or high):
        return None
    if low:
        fix = "pass --units wan" if units != "wan" else "check the headers and values"
        return Note("warning", f"amounts look like 万元 read as yuan: {'; '.join(low)}; {fix} "
                               "(or write the unit in the header, e.g. 营业收入(万元))")
    fix = "pass --units yuan" if units != "yuan" else "check the headers and values"
    return Note("warning", f"amounts look like yuan read as 万元: {'; '.join(high)}; {fix} "
                           "(or write the unit in the header, e.g. 营业收入(元))")


def outlier_warnings(frame: pd.DataFrame, examples: int = 3) -> list[Note]:
    """Warnings for values far outside any SME (:data:`OUTLIER_LIMITS`, in absolute value): one
    per column, with the number of rows and a few of them (firm, year, value). Warnings, not
    errors: the contract holds, but such a value decides a firm's features.

    Args:
        frame: Standardized panel, money in yuan.
        examples: Rows named per column.
    """
    out = []
    for name, limit in OUTLIER_LIMITS.items():
        if name not in frame.columns:
            continue
        values = frame[name].to_numpy(dtype="float64", na_value=np.nan)
        far = np.abs(values) > limit
        if not far.any():
            continue
        shown = ", ".join(f"{frame['firm_id'].iloc[r]} {int(frame['year'].iloc[r])}: {values[r]:,.4g}"
                          for r in np.flatnonzero(far)[:examples])
        unit = "people" if name in ("employees", "rd_staff") else "yuan"
        out.append(Note("warning", f"{name}: {int(far.sum()):,} row(s) beyond {limit:,.0f} {unit}, far outside "
                                   f"any SME ({shown}); check these values"))
    return out


# ---------------------------------------------------------------------------------------------
# Writing a panel the way exports look (examples, tests, the notebook)


_EXPORT_WORDS = {
    "province": lambda p: PROVINCES[p][0],
    "sector": lambda d: SECTION_OF[d] + d,
    "ownership": {"private": "民营", "state": "国有", "foreign": "外资", "other": "其他"}.get,
    "rd_institution": {"none": "无", "municipal": "市级", "provincial": "省级", "national": "国家级"}.get,
}


def as_export(panel: pd.DataFrame, year_suffix: str = "年") -> pd.DataFrame:
    """A canonical panel as a Chinese export holds it: the first Chinese alias of each column
    as header, money in 万元 with the unit in the header (``营业收入(万元)``) written as text with
    thousands separators, ``--`` for missing, 是/否, years as ``2023年``, provinces, ownership and
    research institutions in Chinese, industry codes with their section letter (``C34``).

    Args:
        panel: Canonical panel, shape (n_firm_years, n_columns). Not modified.
        year_suffix: Written after each fiscal year ("" for plain years).

    Returns:
        A frame of text, same rows, one column per contract column of ``panel``.
    """
    out = {}
    for col in TABLES["panel"]:
        if col.name not in panel.columns:
            continue
        s, header = panel[col.name], col.aliases[0]
        if col.money:
            text = (s / WAN).map(lambda x: f"{x:,.2f}", na_action="ignore")
            header += "(万元)"
        elif col.kind == "bool":
            text = s.astype("boolean").map({True: "是", False: "否"})
        elif col.name == "year":
            text = s.astype("int64").astype(str) + year_suffix
        elif col.name in _EXPORT_WORDS:
            text = s.astype(object).map(_EXPORT_WORDS[col.name], na_action="ignore")
        elif col.kind == "int":
            text = s.map(lambda x: f"{x:.0f}", na_action="ignore")
        else:
            text = s.astype(object).map(str, na_action="ignore")
        out[header] = text.astype(object).where(text.notna(), "--")
    return pd.DataFrame(out, index=panel.index)
