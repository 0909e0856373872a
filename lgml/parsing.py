"""Reading the values of an export: headers (English, Chinese, unit-suffixed such as
``营业收入(万元)``) mapped to contract names, and raw cells parsed into the contract's dtypes
(numbers with thousands separators and "--" for missing, 是/否, province and industry names).

Pure functions on frames and series; :mod:`lgml.validate` reports what they could not read.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import is_bool_dtype, is_float_dtype, is_numeric_dtype

from lgml.credit_code import normalise as normalise_code
from lgml.schema import (
    CREDIT_CODE_ALIASES,
    MONEY_COLUMNS,
    Problem,
    CATEGORY_LEVELS,
    EVENT_COLUMNS,
    OWNERSHIP_LEVELS,
    PANEL_COLUMNS,
    PROVINCE_ALIASES,
    RD_INSTITUTION_LEVELS,
    SECTOR_LEVELS,
    Column,
    dtype_of,
)

TABLES: dict[str, tuple[Column, ...]] = {"panel": PANEL_COLUMNS, "events": EVENT_COLUMNS}
UNITS = ("yuan", "wan")  # the values of the ``units`` override (None: each header's unit, else yuan)
# Yuan per unit of a money header: 元, 千元, 万元, 百万元, 千万元, 亿元.
UNIT_FACTORS: dict[str, float] = {"yuan": 1.0, "qian": 1e3, "wan": 1e4, "baiwan": 1e6, "qianwan": 1e7, "yi": 1e8}
UNIT_WORDS: dict[str, str] = {"yuan": "元", "qian": "千元", "wan": "万元", "baiwan": "百万元", "qianwan": "千万元", "yi": "亿元"}
YEAR_COLUMNS = ("year", "founded_year", "batch_year", "revoked_year")
# A year in a date or a label: "2023年", "2023年度", "2023-12-31", "2023/12/31 00:00:00", "20231231".
_YEAR_TEXT = re.compile(r"((?:19|20)\d\d)(?:年.*|[-/.](?:0?[1-9]|1[0-2])(?:[-/.]\d{1,2})?(?:[ T].*)?|(?:0[1-9]|1[0-2])\d\d)?")
_FOREIGN = ("美", "港", "欧", "日元", "英镑", "usd", "hkd", "eur", "$")
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
    """Classify a header's unit text: a key of :data:`UNIT_FACTORS`, ``"%"``, ``"other"`` money
    (a foreign currency), or None (no unit)."""
    text = unit.lower()
    if not text:
        return None
    if "%" in text or "百分" in text:
        return "%"
    if any(mark in text for mark in _FOREIGN):
        return "other"
    for mark, key in (("千万", "qianwan"), ("百万", "baiwan"), ("亿", "yi"), ("万", "wan"), ("千", "qian")):
        if mark in text:  # longest first: 百万元 is not 万元
            return key
    if "wan" in text:
        return "wan"
    if "元" in text or text in ("yuan", "rmb", "cny"):
        return "yuan"
    return None


def money_factor(header_unit: str | None, units: str | None) -> float:
    """Yuan per value of a money column: the ``units`` override when given, else the header's
    unit, else 1 (yuan)."""
    if units is not None:
        return UNIT_FACTORS[units]
    return UNIT_FACTORS.get(header_unit or "yuan", 1.0)


_GENERIC = frozenset(("企业", "公司", "是否", "数量", "合计", "年份", "年度", "总额", "金额", "_id"))


def _overlap(a: str, b: str) -> int:
    """Length of the longest common substring of ``a`` and ``b`` (0 when it is a generic word
    such as 企业 or 合计, which says nothing about what a column holds)."""
    best = 0
    for i in range(len(a)):
        for j in range(i + best + 1, len(a) + 1):
            if a[i:j] not in b:
                break
            if a[i:j] not in _GENERIC:
                best = j - i
    return best


def candidate_headers(col: Column, headers: Sequence[Hashable], limit: int = 3) -> list[str]:
    """Headers (among unrecognised ones) that might hold ``col``: those sharing at least two
    characters in a row (three in Latin letters) with one of its spellings, best first.

    >>> candidate_headers(PANEL_COLUMNS[14], ["研发费用合计", "研发经费", "备注"])
    ['研发费用合计', '研发经费']
    """
    scored = []
    for header in headers:
        key = _split_header(_PANDAS_DUPLICATE.sub("", str(header).strip()))[0]
        score = max(_overlap(key, _split_header(s)[0]) for s in (col.name, *col.aliases))
        if score >= (3 if key.isascii() else 2):
            scored.append((-score, str(header)))
    return [h for _, h in sorted(scored)[:limit]]


def header_positions(headers: Sequence[Hashable], table: str = "panel") -> dict[str, list[int]]:
    """Positions of the headers that :func:`lgml.validate.standardize` reads as each contract column of
    ``table`` (several when a column is given twice; the first is used)."""
    return map_headers(pd.Index(headers), TABLES[table], table, None, 0)[0]


def _credit_code_position(headers: pd.Index) -> int | None:
    """Position of the first header naming a unified social credit code, or None."""
    keys = {_split_header(a)[0] for a in CREDIT_CODE_ALIASES} | {"credit_code"}
    return next((i for i, h in enumerate(headers) if _split_header(h)[0] in keys), None)


def unrecognised(headers: pd.Index, found: Mapping[str, list[int]]) -> list[str]:
    """The headers that name no contract column (kept as extra columns, never read)."""
    used = {i for where in found.values() for i in where}
    return [str(h) for i, h in enumerate(headers) if i not in used]


def map_headers(
    headers: pd.Index, columns: tuple[Column, ...], table: str, units: str | None, n_rows: int
) -> tuple[dict[str, list[int]], dict[str, str | None], list[Problem]]:
    """Positions of each contract column in ``headers``, the unit of its first header, and
    the problems: missing required columns (naming the unrecognised headers that might hold
    them), columns given twice (the first is used), money headers in a unit lgml cannot read.

    Without a firm ID header, a credit code header (统一社会信用代码) is read as ``firm_id``.
    """
    found: dict[str, list[int]] = {}
    units_of: dict[str, str | None] = {}
    for i, header in enumerate(headers):
        hit = _match(header, columns)
        if hit:
            found.setdefault(hit[0], []).append(i)
            units_of.setdefault(hit[0], _header_unit(hit[1]))
    if "firm_id" not in found and _credit_code_position(headers) is not None:
        found["firm_id"] = [_credit_code_position(headers)]
        units_of["firm_id"] = None

    problems: list[Problem] = []
    for col in columns:
        where = found.get(col.name, [])
        if not where and not col.nullable:
            spellings = ", ".join((col.name, *col.aliases))
            maybe = candidate_headers(col, unrecognised(headers, found))
            hint = f"; headers that might hold it: {', '.join(map(repr, maybe))}" if maybe else ""
            if col.name == "firm_id":
                hint += f"; without one, a credit code column ({CREDIT_CODE_ALIASES[0]}) serves as firm_id"
            problems.append(Problem(table, col.name, f"required column is missing (accepted headers: {spellings}){hint}",
                                    n_rows))
        if len(where) > 1:
            given = ", ".join(repr(str(headers[i])) for i in where)
            problems.append(Problem(table, col.name, f"given by {len(where)} headers: {given}", n_rows))
        if where and col.money and units is None and units_of[col.name] == "other":
            problems.append(Problem(table, col.name, f"header {str(headers[where[0]])!r} is in a currency lgml does "
                                    "not read; convert the column to 元 or 万元", n_rows))
    return found, units_of, problems


def unit_overrides(headers: pd.Index, found: Mapping[str, list[int]], units_of: Mapping[str, str | None],
                   units: str | None) -> list[str]:
    """Notes on money headers whose own unit the ``units`` override contradicts."""
    if units is None:
        return []
    said = [str(headers[found[c][0]]) for c in MONEY_COLUMNS
            if c in found and units_of.get(c) not in (None, "%", units)]
    if not said:
        return []
    return [f"units={units!r} ({UNIT_WORDS[units]}) overrides the unit written in the header"
            f"{'s' if len(said) > 1 else ''} {', '.join(map(repr, said))}"]


# ---------------------------------------------------------------------------------------------
# Values


def parse(raw: pd.Series, col: Column, percent_header: bool = False) -> tuple[pd.Series, np.ndarray]:
    """Parse one column into its canonical dtype; also return the mask of unreadable values."""
    if col.kind in ("int", "float"):
        return _parse_number(raw, col, percent_header)
    if col.kind == "bool":
        return _parse_bool(raw)
    if col.kind == "category":
        return _parse_category(raw, col)
    text = _parse_string(raw)
    if col.name in ("credit_code", "firm_id_from_credit_code"):
        text = text.map(normalise_code, na_action="ignore").astype("str")
    return text, np.zeros(len(raw), dtype=bool)


def parse_rule(col: Column) -> str:
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
    if pd.api.types.is_datetime64_any_dtype(raw):  # dates (Parquet, Excel) in a year column
        values = raw.dt.year.to_numpy(dtype="float64", na_value=np.nan)
        bad = np.zeros(len(raw), dtype=bool)
    elif _is_text(raw):
        text = _as_text(raw)
        if col.name in PERCENT_COLUMNS:
            marked = text.str.endswith("%") | text.str.endswith("％")
            percent |= marked.to_numpy(dtype=bool)
            text = text.str.removesuffix("%").str.removesuffix("％").str.strip()
        values = _to_float(text)
        bad = text.notna().to_numpy() & ~np.isfinite(values)
        if col.name in YEAR_COLUMNS and bad.any():
            values = np.where(bad, _year_of_text(text.where(bad)), values)
            bad = text.notna().to_numpy() & ~np.isfinite(values)
        if col.name in YEAR_COLUMNS:  # dates written as numbers: 20231231
            values = np.where((values >= 1e7) & (values < 1e8), np.floor(values / 10_000), values)
    else:
        values = raw.to_numpy(dtype="float64", na_value=np.nan)
        bad = np.isinf(values)
    if col.kind == "int":  # whole numbers that an int64 holds exactly
        bad |= np.isfinite(values) & ((values != np.round(values)) | (np.abs(values) > 2.0 ** 53))
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


def _year_of_text(text: pd.Series) -> np.ndarray:
    """Years from labels and dates (``"2023年"``, ``"2023-12-31"``, ``"2023/12/31 00:00:00"``); NaN
    where there is none."""
    years = text.str.extract(f"^\\s*{_YEAR_TEXT.pattern}\\s*$", expand=False)
    return pd.to_numeric(years, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _parse_string(raw: pd.Series) -> pd.Series:
    # Numeric IDs read from Parquet as floats would otherwise print as "600000.0".
    if is_float_dtype(raw) and (raw.dropna() % 1 == 0).all():
        raw = raw.astype("Int64")
    return _as_text(raw)


def all_missing(col: Column, index: pd.Index) -> pd.Series:
    """A column absent from the input: missing everywhere, in a dtype that can hold missing."""
    dtype = dtype_of(col)
    if col.kind == "int":
        dtype = "float64"
    elif col.kind == "bool":
        dtype = "boolean"
    return pd.Series(pd.NA if col.kind == "bool" else np.nan, index=index).astype(dtype)
