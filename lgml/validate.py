"""Bring a firm-year panel and its designation events into the input contract, or say why not.

Three layers, each usable alone:

- :func:`standardize` maps headers (English, Chinese, unit-suffixed such as ``营业收入(万元)``)
  to contract names, parses every value into its canonical dtype and converts 万元 to yuan.
  Values it cannot read are reported as :class:`Problem` records, never raised.
- :func:`check_panel` and :func:`check_events` check the contract's rules on a standardized frame.
- :func:`conform_panel`, :func:`load_panel` and :func:`load_events` do both and raise one
  :class:`ContractError` that lists every problem at once.

Everything is vectorised: Python loops run over columns, distinct values or at most five example
rows, never over all rows.

Example:
    >>> panel = load_panel("firms_gbk.csv", units="wan")  # doctest: +SKIP
    >>> print(summary(panel))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import is_bool_dtype, is_float_dtype, is_numeric_dtype

from lgml import io
from lgml.schema import (
    CATEGORY_LEVELS,
    EVENT_COLUMNS,
    MONEY_COLUMNS,
    OWNERSHIP_LEVELS,
    PANEL_COLUMNS,
    PROVINCE_ALIASES,
    RD_INSTITUTION_LEVELS,
    SECTOR_LEVELS,
    WAN,
    YEAR_MAX,
    YEAR_MIN,
    Column,
    dtype_of,
)

TABLES: dict[str, tuple[Column, ...]] = {"panel": PANEL_COLUMNS, "events": EVENT_COLUMNS}
KEYS: dict[str, tuple[str, str]] = {"panel": ("firm_id", "year"), "events": ("firm_id", "batch_year")}
UNITS = ("yuan", "wan")
BATCH_YEAR_MIN = 2019  # the first Little Giant batch
MAX_EXAMPLES = 5
MBR_TOLERANCE = 1.01  # main-business revenue may exceed revenue by rounding in exports
PERCENT_COLUMNS = ("niche_market_share",)  # shares: "12%" or a "(%)" header reads as 0.12

# Spellings of "no value" in exports; pandas already reads some of them, Wind writes "--".
MISSING_TOKENS = ("", "-", "--", "—", "——", "NA", "N/A", "n/a", "null", "NULL", "None", "nan", "NaN", "#N/A")

BOOL_WORDS: dict[str, bool] = {
    **dict.fromkeys(("true", "t", "1", "1.0", "yes", "y", "是", "有"), True),
    **dict.fromkeys(("false", "f", "0", "0.0", "no", "n", "否", "无"), False),
}
OWNERSHIP_WORDS: dict[str, str] = {
    **{level: level for level in OWNERSHIP_LEVELS},
    **dict.fromkeys(("民营", "私营", "民营企业", "私营企业", "民企"), "private"),
    **dict.fromkeys(("国有", "国企", "国有企业", "国有控股", "地方国有企业", "中央国有企业", "央企"), "state"),
    **dict.fromkeys(("外资", "外商", "外资企业", "外商投资企业", "外商独资", "中外合资"), "foreign"),
    **dict.fromkeys(("其他", "其它", "其他企业", "集体企业", "公众企业"), "other"),
}
RD_INSTITUTION_WORDS: dict[str, str] = {
    **{level: level for level in RD_INSTITUTION_LEVELS},
    **dict.fromkeys(("无", "没有"), "none"),
    "市级": "municipal",
    "省级": "provincial",
    "国家级": "national",
}

# GB/T 4754-2017 sections and their divisions, to reject codes such as "C65" whose letter and
# number disagree.
_SECTION_RANGES = {
    "A": (1, 5), "B": (6, 12), "C": (13, 43), "D": (44, 46), "E": (47, 50), "F": (51, 52),
    "G": (53, 60), "H": (61, 62), "I": (63, 65), "J": (66, 69), "K": (70, 70), "L": (71, 72),
    "M": (73, 75), "N": (76, 79), "O": (80, 82), "P": (83, 83), "Q": (84, 85), "R": (86, 90),
    "S": (91, 96), "T": (97, 97),
}
SECTION_OF: dict[str, str] = {
    f"{d:02d}": letter for letter, (lo, hi) in _SECTION_RANGES.items() for d in range(lo, hi + 1)
}
_SECTOR_CODE = re.compile(r"([A-T])?(\d{1,4})(?:\.0+)?")
_UNIT_SUFFIX = re.compile(r"\s*[(\[【]([^()\[\]【】]*)[)\]】]\s*$")
_PANDAS_DUPLICATE = re.compile(r"\.\d+$")  # read_csv renames a repeated header "x" to "x.1"


@dataclass(frozen=True)
class Problem:
    """One broken rule of the contract.

    Attributes:
        table: ``"panel"`` or ``"events"``.
        column: Contract column name, or ``"firm_id, year"`` for a key rule.
        rule: The rule as shown to users, e.g. ``"must be >= 0"``.
        count: Number of rows breaking it (all rows for a column-level problem).
        examples: Up to five ``(firm_id, year, value)`` tuples (``batch_year`` for events);
            empty for column-level problems such as a missing column. A value is the input
            text for unreadable values, the parsed value otherwise, and a pair for rules
            between two columns.
    """

    table: str
    column: str
    rule: str
    count: int
    examples: tuple = ()


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
    df: pd.DataFrame, table: str = "panel", units: str = "yuan"
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
        units: Money units of ``df``: ``"yuan"`` or ``"wan"`` (万元, multiplied by 10,000).

    Returns:
        The frame with every contract column in contract order (then the extra columns), same
        index as ``df``; and the problems found while reading it: missing or duplicated
        columns, header units contradicting ``units``, values that cannot be parsed or are not
        a known category. Unreadable values become missing. A column holding them keeps a
        missing-capable dtype (float64 for integers, ``boolean`` for booleans) instead of
        :func:`lgml.schema.dtype_of`.

    Raises:
        ValueError: ``table`` or ``units`` is not one of the accepted values.
    """
    frame, problems, _ = _standardize(df, table, units)
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


def conform_panel(df: pd.DataFrame, units: str = "yuan", *, source: str = "the panel",
                  sort: bool = True) -> pd.DataFrame:
    """Standardize and check a panel already in memory.

    Args:
        df: Panel as held by the caller, shape (n_firm_years, n_columns). Not modified.
        units: Money units of ``df``: ``"yuan"`` or ``"wan"`` (万元).
        source: Name of the panel in the error report.
        sort: Sort the rows by ``firm_id, year``; False keeps the caller's row order (callers
            that sort later save the time).

    Returns:
        The canonical panel in yuan, sorted by ``firm_id, year`` (unless ``sort`` is False),
        with a fresh RangeIndex.

    Raises:
        ContractError: With every problem found.
        ValueError: ``units`` is not ``"yuan"`` or ``"wan"``.
    """
    return _conform(df, "panel", units, None, source, sort=sort)


def load_panel(path: str | os.PathLike, units: str = "yuan", encoding: str | None = None) -> pd.DataFrame:
    """Read a panel file (CSV in UTF-8/GBK/GB18030, or Parquet) into the contract.

    Args:
        path: CSV or Parquet file, or a folder of Parquet files.
        units: Money units of the file: ``"yuan"`` or ``"wan"`` (万元).
        encoding: Force a CSV encoding instead of trying UTF-8 then GB18030.

    Returns:
        The canonical panel in yuan, sorted by ``firm_id, year``, with a fresh RangeIndex.

    Raises:
        ContractError: With every problem found in the file.
        lgml.io.InputError: The file cannot be read as a table.
    """
    return _conform(io.read_table(path, encoding), "panel", units, None, str(path))


def load_events(
    path: str | os.PathLike, panel: pd.DataFrame | None = None, encoding: str | None = None
) -> pd.DataFrame:
    """Read a designation events file (``firm_id, batch_year, revoked_year``) into the contract.

    Args:
        path: CSV or Parquet file.
        panel: Canonical panel; events of firms not in it are reported.
        encoding: Force a CSV encoding.

    Returns:
        The canonical events sorted by ``firm_id, batch_year``, with a fresh RangeIndex.

    Raises:
        ContractError: With every problem found in the file.
        lgml.io.InputError: The file cannot be read as a table.
    """
    return _conform(io.read_table(path, encoding), "events", "yuan", panel, str(path))


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
    missing = ", ".join(f"{c.name} {panel[c.name].isna().mean():.1%}" for c in PANEL_COLUMNS if c.nullable)
    return "\n".join((
        f"{panel['firm_id'].nunique():,} firms, {n:,} firm-years, {panel['year'].min()}-{panel['year'].max()}",
        f"provinces: {len(provinces)} (largest: {largest})",
        f"provincial SRDI: {panel['srdi_provincial'].mean():.1%} of firm-years",
        f"missing: {missing}",
    ))


# ---------------------------------------------------------------------------------------------
# Orchestration


def _conform(
    df: pd.DataFrame, table: str, units: str, panel: pd.DataFrame | None, source: str, sort: bool = True
) -> pd.DataFrame:
    frame, problems, rejected = _standardize(df, table, units)
    if table == "panel":
        problems += _check_table(frame, table, rejected)
    else:
        problems += _check_events(frame, panel, rejected)
    if problems:
        order = {c.name: i for i, c in enumerate(TABLES[table])}  # group a column's problems
        raise ContractError(sorted(problems, key=lambda p: order.get(p.column, len(order))), source)
    if not sort:
        return frame.reset_index(drop=True)
    return frame.sort_values(list(KEYS[table]), kind="stable").reset_index(drop=True)


def _standardize(
    df: pd.DataFrame, table: str, units: str
) -> tuple[pd.DataFrame, list[Problem], dict[str, np.ndarray]]:
    """:func:`standardize`, plus per column the rows whose values were rejected, so that the
    checks do not report those rows a second time as missing."""
    if table not in TABLES:
        raise ValueError(f"table must be one of {', '.join(map(repr, TABLES))}, not {table!r}")
    if units not in UNITS:
        raise ValueError(f"units must be 'yuan' or 'wan' (万元), not {units!r}")
    columns = TABLES[table]
    found, header_units, problems = _map_headers(df.columns, columns, table, units, len(df))
    # Positions, not labels: headers and index labels may repeat in a user's frame.
    work = df.set_axis(pd.RangeIndex(len(df)), axis=0)
    raws = {name: work.iloc[:, where[0]] for name, where in found.items()}

    parsed: dict[str, pd.Series] = {}
    rejected: dict[str, np.ndarray] = {}
    for col in columns:
        if col.name not in raws:
            parsed[col.name] = _all_missing(col, work.index)
            rejected[col.name] = np.ones(len(df), dtype=bool)  # already reported as a missing column
            continue
        values, bad = _parse(raws[col.name], col, percent_header=header_units[col.name] == "%")
        parsed[col.name] = values * WAN if col.money and units == "wan" else values
        rejected[col.name] = bad

    keys = tuple(parsed[k] for k in KEYS[table])
    for col in columns:
        if col.name in raws and rejected[col.name].any():
            problems += _problem(table, col.name, _parse_rule(col), rejected[col.name], keys, raws[col.name])

    matched = {i for where in found.values() for i in where}
    extras = work.iloc[:, [i for i in range(df.shape[1]) if i not in matched]]
    frame = pd.concat([pd.DataFrame(parsed), extras], axis=1).set_axis(df.index, axis=0)
    return frame, problems, rejected


# ---------------------------------------------------------------------------------------------
# Headers


def _split_header(header: Hashable) -> tuple[str, str]:
    """Lookup key and unit text of a header: ``" 营业收入（万元）"`` -> ``("营业收入", "万元")``.

    NFKC turns full-width brackets and Roman numerals (``Ⅰ类``) into ASCII; the key is lower
    case with inner whitespace as ``_`` so that ``"Firm ID"`` finds ``firm_id``.
    """
    text = unicodedata.normalize("NFKC", str(header)).replace("\ufeff", "").strip()
    match = _UNIT_SUFFIX.search(text)
    name, unit = (text[: match.start()], match.group(1).strip()) if match else (text, "")
    return re.sub(r"\s+", "_", name.strip()).lower(), unit


@functools.cache
def _header_lookup(columns: tuple[Column, ...]) -> dict[str, str]:
    """Lookup key of every accepted spelling -> contract column name."""
    return {_split_header(spelling)[0]: c.name for c in columns for spelling in (c.name, *c.aliases)}


def _match(header: Hashable, columns: tuple[Column, ...]) -> tuple[str, str] | None:
    """Contract column named by ``header`` and the header's unit text, or None.

    read_csv renames a repeated header ``营业收入`` to ``营业收入.1``; such copies match too, so
    that they are reported as duplicates instead of passing as extra columns.
    """
    for text in (str(header), _PANDAS_DUPLICATE.sub("", str(header).strip())):
        key, unit = _split_header(text)
        if key in _header_lookup(columns):
            return _header_lookup(columns)[key], unit
    return None


def _header_unit(unit: str) -> str | None:
    """Classify a header's unit text: ``"wan"``, ``"yuan"``, ``"%"``, ``"other"`` money, or None."""
    text = unit.lower()
    if not text:
        return None
    if "%" in text or "百分" in text:
        return "%"
    if any(mark in text for mark in ("亿", "千", "百")):  # before 万: 百万元 is not 万元
        return "other"
    if "万" in text or "wan" in text:
        return "wan"
    if "元" in text or text in ("yuan", "rmb", "cny"):
        return "yuan"
    return None


def header_positions(headers: Sequence[Hashable], table: str = "panel") -> dict[str, list[int]]:
    """Positions of the headers that :func:`standardize` reads as each contract column of
    ``table`` (several when a column is given twice; the first is used)."""
    return _map_headers(pd.Index(headers), TABLES[table], table, "yuan", 0)[0]


def _map_headers(
    headers: pd.Index, columns: tuple[Column, ...], table: str, units: str, n_rows: int
) -> tuple[dict[str, list[int]], dict[str, str | None], list[Problem]]:
    """Positions of each contract column in ``headers``, the unit of its first header, and
    the problems: missing required columns, columns given twice (the first is used), money
    headers whose unit contradicts ``units``."""
    found: dict[str, list[int]] = {}
    units_of: dict[str, str | None] = {}
    for i, header in enumerate(headers):
        hit = _match(header, columns)
        if hit:
            found.setdefault(hit[0], []).append(i)
            units_of.setdefault(hit[0], _header_unit(hit[1]))

    problems: list[Problem] = []
    for col in columns:
        where = found.get(col.name, [])
        if not where and not col.nullable:
            spellings = ", ".join((col.name, *col.aliases))
            problems.append(Problem(table, col.name, f"required column is missing (accepted headers: {spellings})", n_rows))
        if len(where) > 1:
            given = ", ".join(repr(str(headers[i])) for i in where)
            problems.append(Problem(table, col.name, f"given by {len(where)} headers: {given}", n_rows))
        rule = _unit_rule(str(headers[where[0]]), units_of[col.name], units) if where and col.money else None
        if rule:
            problems.append(Problem(table, col.name, rule, n_rows))
    return found, units_of, problems


def _unit_rule(header: str, header_unit: str | None, units: str) -> str | None:
    """The problem with a money header whose own unit contradicts ``units``, if any."""
    if header_unit == "other":
        return f"header {header!r} is in units lgml does not read; convert the column to 元 or 万元"
    if header_unit in UNITS and header_unit != units:
        said = "万元" if header_unit == "wan" else "元"
        return f"header {header!r} is in {said} but units={units!r}; read the file with units={header_unit!r}"
    return None


# ---------------------------------------------------------------------------------------------
# Values


def _parse(raw: pd.Series, col: Column, percent_header: bool = False) -> tuple[pd.Series, np.ndarray]:
    """Parse one column into its canonical dtype; also return the mask of unreadable values."""
    if col.kind in ("int", "float"):
        return _parse_number(raw, col, percent_header)
    if col.kind == "bool":
        return _parse_bool(raw)
    if col.kind == "category":
        return _parse_category(raw, col)
    return _parse_string(raw), np.zeros(len(raw), dtype=bool)


def _parse_rule(col: Column) -> str:
    if col.kind == "category":
        return CATEGORY_RULES[col.name]
    return {
        "int": "must be a whole number",
        "float": "must be a number",
        "bool": "must be yes/no (true/false, 1/0, 是/否, Y/N)",
    }[col.kind]


def _is_text(raw: pd.Series) -> bool:
    return not (is_numeric_dtype(raw) or is_bool_dtype(raw))


def _as_text(raw: pd.Series) -> pd.Series:
    """Stripped text of ``raw``, with the usual spellings of "no value" as missing."""
    text = raw.astype("str").str.strip()
    missing = text.isin(MISSING_TOKENS)
    return text.mask(missing) if missing.any() else text


def _to_float(text: pd.Series) -> np.ndarray:
    """Floats from stripped text; NaN where unreadable. Thousands separators are allowed."""
    try:  # Arrow casts a clean column ten times faster than pandas; coercion is slower still
        return pc.cast(pa.array(text), pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        digits = text.str.replace(",", "", regex=False).str.replace("，", "", regex=False)
        return pd.to_numeric(digits, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _parse_number(raw: pd.Series, col: Column, percent_header: bool) -> tuple[pd.Series, np.ndarray]:
    """Numbers from text (thousands separators, ``12%`` in share columns) or numeric dtypes."""
    percent = np.full(len(raw), percent_header)
    if _is_text(raw):
        text = _as_text(raw)
        if col.name in PERCENT_COLUMNS:
            marked = text.str.endswith("%") | text.str.endswith("％")
            percent |= marked.to_numpy(dtype=bool)
            text = text.str.removesuffix("%").str.removesuffix("％").str.strip()
        values = _to_float(text)
        bad = text.notna().to_numpy() & ~np.isfinite(values)
    else:
        values = raw.to_numpy(dtype="float64", na_value=np.nan)
        bad = np.isinf(values)
    if col.kind == "int":
        bad |= np.isfinite(values) & (values != np.round(values))
    values = np.where(bad, np.nan, np.where(percent, values / 100, values))
    if col.kind == "int" and not col.nullable and not np.isnan(values).any():
        return pd.Series(values.astype("int64"), index=raw.index), bad
    return pd.Series(values, index=raw.index, dtype="float64"), bad


def _map_distinct(raw: pd.Series, parse: Callable[[object], object], levels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Codes into ``levels`` (-1 = missing) by parsing each distinct value of ``raw`` once,
    which is fast when a million rows hold a few hundred distinct values; also the mask of
    values ``parse`` rejected (returned None for)."""
    if isinstance(raw.dtype, pd.CategoricalDtype):  # Parquet dictionaries: the categories are the values
        codes, uniques = raw.cat.codes.to_numpy(), pd.Series(raw.cat.categories)
        uniques = _as_text(uniques) if _is_text(uniques) else uniques  # a category may read as missing
    else:
        codes, uniques = pd.factorize(_as_text(raw) if _is_text(raw) else raw)
        uniques = pd.Series(uniques)
    position = {level: i for i, level in enumerate(levels)}
    lookup = np.array([-1 if pd.isna(u) else position.get(parse(u), -1) for u in uniques] + [-1], dtype=np.int64)
    given = np.append(uniques.notna().to_numpy(), False)
    mapped = lookup[codes]  # code -1 (missing) picks the trailing entries
    return mapped, given[codes] & (mapped < 0)


def _bool_word(value: object) -> bool | None:
    return BOOL_WORDS.get(str(value).strip().lower())


def _parse_bool(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if is_bool_dtype(raw) and not raw.hasnans:
        return raw.astype(bool), np.zeros(len(raw), dtype=bool)
    codes, bad = _map_distinct(raw, _bool_word, (False, True))
    if (codes < 0).any():
        return pd.Series(pd.arrays.BooleanArray(codes == 1, codes < 0), index=raw.index), bad
    return pd.Series(codes == 1, index=raw.index), bad


def _province(value: object) -> str | None:
    text = str(value).strip()
    return PROVINCE_ALIASES.get(text) or PROVINCE_ALIASES.get(text.lower())


def _sector(value: object) -> str | None:
    """GB/T 4754-2017 division from ``6``, ``"06"``, ``"C34"``, ``"C3411"`` or ``"3411"``.

    Three digits without a section letter are refused: ``"341"`` may be a group code (division
    34) or a class code that lost its leading zero (``"0341"``, division 03).
    """
    match = _SECTOR_CODE.fullmatch(str(value).strip().upper())
    if not match:
        return None
    letter, digits = match.groups()
    if len(digits) == 3 and not letter:
        return None
    division = digits.zfill(2) if len(digits) <= 2 else digits[:2]
    if division not in SECTOR_LEVELS or (letter and SECTION_OF.get(division) != letter):
        return None
    return division


def _word(words: Mapping[str, str]) -> Callable[[object], str | None]:
    return lambda value: words.get(str(value).strip().lower())


CATEGORY_PARSERS: dict[str, Callable[[object], str | None]] = {
    "province": _province,
    "sector": _sector,
    "ownership": _word(OWNERSHIP_WORDS),
    "rd_institution": _word(RD_INSTITUTION_WORDS),
}
CATEGORY_RULES: dict[str, str] = {
    "province": "must be one of the 31 province-level divisions (e.g. Jiangsu, 江苏省, 江苏)",
    "sector": "must be a GB/T 4754-2017 division code 01..97 (e.g. 34 or C34)",
    "ownership": "must be private, state, foreign or other (or 民营, 国有, 外资, 其他)",
    "rd_institution": "must be none, municipal, provincial or national (or 无, 市级, 省级, 国家级)",
}


def _parse_category(raw: pd.Series, col: Column) -> tuple[pd.Series, np.ndarray]:
    codes, bad = _map_distinct(raw, CATEGORY_PARSERS[col.name], CATEGORY_LEVELS[col.name])
    return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype_of(col)), index=raw.index), bad


def _parse_string(raw: pd.Series) -> pd.Series:
    # Numeric IDs read from Parquet as floats would otherwise print as "600000.0".
    if is_float_dtype(raw) and (raw.dropna() % 1 == 0).all():
        raw = raw.astype("Int64")
    return _as_text(raw)


def _all_missing(col: Column, index: pd.Index) -> pd.Series:
    """A column absent from the input: missing everywhere, in a dtype that can hold missing."""
    dtype = dtype_of(col)
    if col.kind == "int":
        dtype = "float64"
    elif col.kind == "bool":
        dtype = "boolean"
    return pd.Series(pd.NA if col.kind == "bool" else np.nan, index=index).astype(dtype)


# ---------------------------------------------------------------------------------------------
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
    for rule in RULES[table]:
        if rule.column in usable and (rule.other is None or rule.other in usable):
            values = df[rule.column] if rule.other is None else (df[rule.column], df[rule.other])
            problems += _problem(table, rule.column, rule.text, rule.bad(df), keys, values)
    if usable.issuperset(KEYS[table]):
        problems += _duplicate_keys(df, table, keys)
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
