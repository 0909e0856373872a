"""Tests of lgml.validate: header mapping, parsing, every contract rule, files and the CLI."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml import parsing, validate as v
from lgml.schema import Problem
from lgml.cli import app
from lgml.schema import CATEGORY_LEVELS, EVENT_COLUMNS, MONEY_COLUMNS, PANEL_COLUMNS, dtype_of

DATA = Path(__file__).parent / "data"
BROKEN, VALID = DATA / "broken_gbk.csv", DATA / "valid_gbk.csv"

ROW = dict(
    firm_id="F001", year=2021, province="Jiangsu", sector="34", founded_year=2010, in_hightech_zone=True,
    ownership="private", employees=200, rd_staff=40, revenue=2e8, main_business_revenue=1.8e8,
    net_profit=1e7, total_assets=3e8, total_liabilities=1e8, rd_expense=1e7, equity_financing=5e6,
    invention_patents=5, class1_ip=8, class2_ip=10, niche_years=6, niche_market_share=0.12,
    own_brand=True, quality_certified=True, digital_level=3, rd_institution="provincial", key_customers=4,
    foundation_field=False, strategic_industry=True, srdi_provincial=True,
)
BOOL_COLUMNS = tuple(c.name for c in PANEL_COLUMNS if c.kind == "bool")
CHINESE = {c.name: c.aliases[0] for c in PANEL_COLUMNS}


def panel() -> pd.DataFrame:
    """A valid panel in yuan with plain Python values: 3 firms x 2 years, F001 2021 first."""
    rows = [{**ROW, "firm_id": f"F00{i}", "year": year} for i in (1, 2, 3) for year in (2021, 2022)]
    return pd.DataFrame(rows)


def with_value(column: str, value: object) -> pd.DataFrame:
    """The panel as text-like objects with ``column`` of F001 2021 set to ``value``."""
    df = panel().astype(object)
    df.loc[0, column] = value
    return df


def problems_of(df: pd.DataFrame, units: str | None = "yuan") -> list[Problem]:
    try:
        v.conform_panel(df, units=units)
    except v.ContractError as err:
        return err.problems
    return []


def events() -> pd.DataFrame:
    return pd.DataFrame({"firm_id": ["F001", "F001", "F002"], "batch_year": [2019, 2022, 2021],
                         "revoked_year": [None, None, 2024]})


def load_fixture_script():
    spec = importlib.util.spec_from_file_location("make_fixtures", DATA / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the contract, rule by rule ---------------------------------------------------------------

def test_valid_panel_conforms_to_canonical_dtypes():
    out = v.conform_panel(panel().sample(frac=1, random_state=0))
    assert list(out.columns) == [c.name for c in PANEL_COLUMNS]
    assert {c: out[c].dtype for c in out} == {c.name: dtype_of(c) for c in PANEL_COLUMNS}
    assert list(zip(out.firm_id, out.year)) == sorted(zip(out.firm_id, out.year))
    assert out.index.equals(pd.RangeIndex(len(out)))
    pd.testing.assert_frame_equal(v.conform_panel(out), out)  # idempotent


BAD = [
    ("firm_id", None, "must not be missing"),
    ("firm_id", "--", "must not be missing"),
    ("year", 1999, "2000..2035"),
    ("year", 2036, "2000..2035"),
    ("year", "二〇二一", "whole number"),
    ("year", 2021.5, "whole number"),
    ("province", "火星省", "province-level"),
    ("province", None, "must not be missing"),
    ("sector", "99", "GB/T 4754"),
    ("sector", "C65", "GB/T 4754"),
    ("sector", "341", "GB/T 4754"),
    ("sector", "制造业", "GB/T 4754"),
    ("founded_year", 2022, "<= year"),
    ("founded_year", "abc", "whole number"),
    ("ownership", "合伙", "private, state"),
    ("employees", -1, ">= 0"),
    ("employees", "约200人", "whole number"),
    ("rd_staff", -1, ">= 0"),
    ("rd_staff", 201, "<= employees"),
    ("revenue", -1, ">= 0"),
    ("revenue", "abc", "must be a number"),
    ("revenue", None, "must not be missing"),
    ("main_business_revenue", -1, ">= 0"),
    ("main_business_revenue", 2e8 * 1.02, "<= revenue"),
    ("net_profit", "n.a.", "must be a number"),
    ("total_assets", 0, "> 0"),
    ("total_liabilities", -1, ">= 0"),
    ("rd_expense", -1, ">= 0"),
    ("equity_financing", -1, ">= 0"),
    ("invention_patents", -1, ">= 0"),
    ("class1_ip", 4, ">= invention_patents"),
    ("class2_ip", -1, ">= 0"),
    ("niche_years", -1, ">= 0"),
    ("niche_market_share", 1.5, "0..1"),
    ("niche_market_share", "120%", "0..1"),
    ("niche_market_share", -0.1, "0..1"),
    ("digital_level", 0, "1..5"),
    ("digital_level", 6, "1..5"),
    ("digital_level", 2.5, "whole number"),
    ("rd_institution", "区级", "none, municipal"),
    ("rd_institution", None, "must not be missing"),
    ("key_customers", -1, ">= 0"),
    *((name, "maybe", "yes/no") for name in BOOL_COLUMNS),
    *((name, None, "must not be missing") for name in BOOL_COLUMNS),
]


@pytest.mark.parametrize(("column", "value", "rule"), BAD)
def test_each_rule_rejects_a_bad_value(column, value, rule):
    (problem,) = problems_of(with_value(column, value))  # exactly one problem: no knock-on reports
    assert (problem.table, problem.column, problem.count) == ("panel", column, 1)
    assert rule in problem.rule
    assert problem.examples[0][0] == ("F001" if column != "firm_id" else None)


GOOD = [
    ("firm_id", " F009 ", "F009"),
    ("year", "2023", 2023),
    ("year", 2023.0, 2023),
    ("province", "江苏省", "Jiangsu"),
    ("province", " 江苏 ", "Jiangsu"),
    ("province", "guangdong", "Guangdong"),
    ("province", "深圳市", "Guangdong"),
    ("province", "内蒙古自治区", "Inner Mongolia"),
    ("sector", 6, "06"),
    ("sector", "6", "06"),
    ("sector", "06", "06"),
    ("sector", 34.0, "34"),
    ("sector", "C34", "34"),
    ("sector", "c3411", "34"),
    ("sector", "3411", "34"),
    ("founded_year", 2021, 2021),
    ("ownership", "民营", "private"),
    ("ownership", "私营", "private"),
    ("ownership", "国企", "state"),
    ("ownership", "国有", "state"),
    ("ownership", "外商", "foreign"),
    ("ownership", "外资", "foreign"),
    ("ownership", "其他", "other"),
    ("ownership", "Private", "private"),
    ("ownership", None, np.nan),
    ("employees", "1,200", 1200),
    ("rd_staff", 200, 200),
    ("rd_staff", None, np.nan),
    ("revenue", "200,000,000.5", 200_000_000.5),
    ("main_business_revenue", 2e8 * 1.005, 2e8 * 1.005),
    ("net_profit", -5e6, -5e6),
    ("total_assets", 1, 1.0),
    ("rd_expense", None, np.nan),
    ("equity_financing", "--", np.nan),
    ("invention_patents", 0, 0),
    ("class1_ip", 5, 5),
    ("niche_market_share", "12%", 0.12),
    ("niche_market_share", " 12.5 ％", 0.125),
    ("niche_market_share", 0.3, 0.3),
    ("niche_market_share", None, np.nan),
    ("digital_level", 5, 5),
    ("digital_level", None, np.nan),
    ("rd_institution", "无", "none"),
    ("rd_institution", "市级", "municipal"),
    ("rd_institution", "省级", "provincial"),
    ("rd_institution", "国家级", "national"),
    ("rd_institution", "National", "national"),
    ("key_customers", 0, 0),
    *(("in_hightech_zone", word, expected) for word, expected in (
        ("是", True), ("否", False), ("Y", True), ("n", False), ("1", True), (0, False), ("TRUE", True),
        ("no", False), ("有", True), ("无", False))),
    *((name, "否", False) for name in BOOL_COLUMNS),
]


@pytest.mark.parametrize(("column", "value", "expected"), GOOD)
def test_each_rule_accepts_a_good_value(column, value, expected):
    frame, problems = v.standardize(with_value(column, value))
    assert problems == [] and v.check_panel(frame) == []
    got = frame.loc[0, column]
    assert (pd.isna(got) and pd.isna(expected)) or got == pytest.approx(expected) or got == expected
    assert {c: frame[c].dtype for c in frame} == {c.name: dtype_of(c) for c in PANEL_COLUMNS}


def test_duplicate_firm_years_are_reported_once_with_the_key():
    df = pd.concat([panel(), panel().iloc[[0, 0, 3]]])
    (problem,) = problems_of(df)
    assert (problem.column, problem.rule, problem.count) == ("firm_id, year", "must be unique", 5)
    assert problem.examples == (("F001", 2021, "3 rows"), ("F002", 2022, "2 rows"))


def test_missing_required_column_names_its_accepted_headers():
    (problem,) = problems_of(panel().drop(columns="revenue"))
    assert problem.column == "revenue" and "required column is missing" in problem.rule
    assert "营业收入" in problem.rule


def test_missing_nullable_columns_are_added_as_missing():
    nullable = [c.name for c in PANEL_COLUMNS if c.nullable]
    out = v.conform_panel(panel().drop(columns=[c for c in nullable if c in panel().columns]))
    assert out[nullable].isna().all().all()
    assert {c: out[c].dtype for c in nullable} == {c.name: dtype_of(c) for c in PANEL_COLUMNS if c.nullable}


def test_every_problem_is_reported_at_once():
    df = with_value("revenue", -1)
    df.loc[1, "province"] = "火星"
    df.loc[2, "employees"] = "many"
    df = df.drop(columns="sector")
    with pytest.raises(v.ContractError) as caught:
        v.conform_panel(df, source="firms.csv")
    found = {(p.column, p.rule.split(" (")[0]) for p in caught.value.problems}
    assert found == {("revenue", "must be >= 0"), ("province", "must be one of the 31 province-level divisions"),
                     ("employees", "must be a whole number"), ("sector", "required column is missing")}
    text = str(caught.value)
    assert text.splitlines()[0] == "4 problems in firms.csv:"
    assert "-1 yuan" in text and "火星" in text and "many" in text
    assert "dtype" not in text and "Name:" not in text


def test_check_panel_reports_unstandardized_columns_instead_of_raising():
    df = panel().astype({"revenue": str})
    problems = v.check_panel(df)
    assert [(p.column, p.rule.split(",")[0]) for p in problems] == [("revenue", "must hold float values")]


# --- headers, units and the caller's frame ---------------------------------------------------

def chinese_wan_panel() -> pd.DataFrame:
    """The panel as a Chinese export: aliases, 万元 with unit-suffixed headers, text values."""
    df = panel()
    df[list(MONEY_COLUMNS)] = df[list(MONEY_COLUMNS)] / 10_000
    headers = {name: CHINESE[name] + (("(万元)" if i % 2 else "（万元）") if name in MONEY_COLUMNS else "")
               for i, name in enumerate(df.columns)}
    return df.astype(str).rename(columns=headers)


def test_chinese_and_unit_suffixed_headers_map_to_the_contract():
    out = v.conform_panel(chinese_wan_panel(), units="wan")
    pd.testing.assert_frame_equal(out, v.conform_panel(panel()))


def test_english_headers_match_case_whitespace_and_bom():
    df = panel().rename(columns={"firm_id": "\ufeffFirm ID", "year": " YEAR ", "revenue": "Revenue"})
    pd.testing.assert_frame_equal(v.conform_panel(df), v.conform_panel(panel()))


@pytest.mark.parametrize("table", ["panel", "events"])
def test_every_alias_maps_to_its_own_column(table):
    columns = parsing.TABLES[table]
    sample = {"string": "F1", "int": "1", "float": "1", "bool": "是"}
    spellings = [(col.name, *col.aliases) for col in columns]
    for i in range(max(map(len, spellings))):  # one frame per alias rank: every column once
        headers = [names[i % len(names)] for names in spellings]
        values = [CATEGORY_LEVELS[c.name][0] if c.kind == "category" else sample[c.kind] for c in columns]
        frame, problems = v.standardize(pd.DataFrame([values], columns=headers), table=table)
        assert problems == [] and list(frame.columns) == [c.name for c in columns], headers
        assert frame.notna().all().all(), headers


def test_extra_columns_are_kept_untouched_at_the_end():
    df = panel().assign(备注="苏州精工", note=range(6))
    frame, problems = v.standardize(df)
    assert problems == []
    assert list(frame.columns[-2:]) == ["备注", "note"]
    pd.testing.assert_frame_equal(frame[["备注", "note"]], df[["备注", "note"]])


def test_a_column_given_twice_is_reported():
    df = panel().assign(营业收入=panel()["revenue"])
    problems = [p for p in problems_of(df) if p.column == "revenue"]
    assert len(problems) == 1 and problems[0].rule == "given by 2 headers: 'revenue', '营业收入'"


@pytest.mark.parametrize(("header", "factor"), [
    ("营业收入(万元)", 1e4), ("营业收入(元)", 1.0), ("营业收入（千元）", 1e3), ("营业收入(百万元)", 1e6),
    ("营业收入（亿元）", 1e8), ("营业收入", 1.0),
])
def test_money_headers_are_read_in_their_own_unit(header, factor):
    out = v.conform_panel(panel().rename(columns={"revenue": header}))
    np.testing.assert_allclose(out["revenue"], v.conform_panel(panel())["revenue"] * factor)
    np.testing.assert_allclose(out["net_profit"], v.conform_panel(panel())["net_profit"])  # only that column


@pytest.mark.parametrize(("header", "units"), [("营业收入(万元)", "yuan"), ("营业收入(元)", "wan"),
                                               ("营业收入(百万元)", "wan")])
def test_explicit_units_override_the_header_and_say_so(header, units):
    frame, notes = v.conform_panel_notes(panel().rename(columns={"revenue": header}), units=units)
    np.testing.assert_allclose(frame["revenue"], v.conform_panel(panel())["revenue"] * (1e4 if units == "wan" else 1))
    assert any(f"units={units!r}" in n.text and header in n.text for n in notes)


def test_a_foreign_currency_header_is_reported():
    (problem,) = problems_of(panel().rename(columns={"revenue": "营业收入(万美元)"}), units=None)
    assert problem.column == "revenue" and "currency lgml does not read" in problem.rule


def test_percent_header_reads_shares():
    df = panel().assign(niche_market_share=12.5).rename(columns={"niche_market_share": "细分市场占有率(%)"})
    assert (v.conform_panel(df)["niche_market_share"] == 0.125).all()


def test_units_wan_converts_every_money_column_and_only_those():
    text = panel().astype(str)
    yuan, _ = v.standardize(text, units="yuan")
    wan, _ = v.standardize(text, units="wan")
    changed = {c for c in yuan if not yuan[c].equals(wan[c])}
    assert changed == set(MONEY_COLUMNS)
    for c in MONEY_COLUMNS:
        np.testing.assert_allclose(wan[c], yuan[c] * 10_000)


@pytest.mark.parametrize(("kwargs", "match"), [({"units": "万元"}, "units"), ({"table": "firms"}, "table")])
def test_unknown_units_or_table_is_a_clear_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match) as caught:
        v.standardize(panel(), **kwargs)
    assert not isinstance(caught.value, v.ContractError)


def test_the_callers_frame_is_never_modified():
    df = chinese_wan_panel().assign(企业名称="x").set_axis(list("abcdef"))
    df.iloc[0, 5] = "abc"  # one unreadable value as well
    before = copy.deepcopy(df)
    v.standardize(df, units="wan")
    with pytest.raises(v.ContractError):
        v.conform_panel(df, units="wan")
    v.check_panel(df)
    pd.testing.assert_frame_equal(df, before)
    good = panel()
    good_before = copy.deepcopy(good)
    v.conform_panel(good)
    v.check_panel(good)
    pd.testing.assert_frame_equal(good, good_before)


def test_standardize_keeps_the_callers_index():
    df = panel().set_axis([10, 10, 11, 12, 13, 14])  # repeated labels too
    frame, problems = v.standardize(df)
    assert problems == [] and list(frame.index) == [10, 10, 11, 12, 13, 14]


# --- files --------------------------------------------------------------------------------

def chinese_panel() -> pd.DataFrame:
    df = panel().rename(columns=CHINESE)
    df["省份"] = ["江苏省", "江苏", " 江苏省 ", "Jiangsu", "jiangsu", "江苏"]
    return df.assign(企业名称="苏州精工传动")


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-8-sig", "utf-8"])
def test_csv_encodings_are_read(tmp_path, encoding):
    df = chinese_panel()
    if encoding == "gb18030":
        df["企业名称"] = "䶮科技"  # outside GBK: only GB18030 decodes it
    path = tmp_path / "panel.csv"
    df.to_csv(path, index=False, encoding=encoding)
    out = v.load_panel(path)  # 企业名称 is the contract's optional firm_name
    pd.testing.assert_frame_equal(out.drop(columns="firm_name"), v.conform_panel(panel()).drop(columns="firm_name"))
    assert out["firm_name"].iloc[0] == df["企业名称"].iloc[0]


def test_forced_encoding_is_used(tmp_path):
    path = tmp_path / "panel.csv"
    chinese_panel().to_csv(path, index=False, encoding="gbk")
    assert len(v.load_panel(path, encoding="gbk")) == 6


def test_parquet_with_typed_columns_is_read(tmp_path):
    df = panel().assign(sector=6, rd_staff=pd.array([40, None, 3, 4, 5, 6], dtype="Int64"),
                        province=pd.Categorical(["江苏省"] * 6))
    path = tmp_path / "panel.parquet"
    df.to_parquet(path)
    out = v.load_panel(path)
    assert (out["sector"] == "06").all() and (out["province"] == "Jiangsu").all()
    assert out["rd_staff"].isna().sum() == 1 and out["rd_staff"].dtype == "float64"


# --- events -------------------------------------------------------------------------------

def test_valid_events_conform_and_may_renew_a_title():
    frame, problems = v.standardize(events(), table="events")
    assert problems == [] and v.check_events(frame, panel=v.conform_panel(panel())) == []
    assert {c: frame[c].dtype for c in frame} == {c.name: dtype_of(c) for c in EVENT_COLUMNS}


@pytest.mark.parametrize(("row", "column", "rule"), [
    ({"batch_year": 2018}, "batch_year", "2019..2035"),
    ({"batch_year": "二〇二一"}, "batch_year", "whole number"),
    ({"revoked_year": 2019}, "revoked_year", "> batch_year"),
    ({"revoked_year": 2018}, "revoked_year", "> batch_year"),
    ({"batch_year": 2022}, "firm_id, batch_year", "must be unique"),
    ({"firm_id": "F999"}, "firm_id", "must be a firm in the panel"),
    ({"firm_id": None}, "firm_id", "must not be missing"),
])
def test_each_event_rule_rejects_a_bad_value(tmp_path, row, column, rule):
    df = events().astype(object)
    for name, value in row.items():
        df.loc[0, name] = value
    df.to_csv(tmp_path / "events.csv", index=False)
    with pytest.raises(v.ContractError) as caught:
        v.load_events(tmp_path / "events.csv", panel=v.conform_panel(panel()))
    (problem,) = caught.value.problems
    assert (problem.table, problem.column, problem.count) == ("events", column, 1 + (column == "firm_id, batch_year"))
    assert rule in problem.rule


def test_events_without_a_panel_skip_the_firm_check():
    assert v.check_events(events().assign(firm_id="F999").iloc[:1]) == []


def test_load_events_reads_chinese_headers(tmp_path):
    path = tmp_path / "events.csv"
    events().rename(columns={"firm_id": "企业代码", "batch_year": "认定年份", "revoked_year": "撤销年份"}).to_csv(
        path, index=False, encoding="gbk")
    out = v.load_events(path, panel=v.conform_panel(panel()))
    assert list(zip(out.firm_id, out.batch_year)) == [("F001", 2019), ("F001", 2022), ("F002", 2021)]
    assert out["revoked_year"].tolist()[2] == 2024


# --- fixtures and the command line ----------------------------------------------------------

BROKEN_PROBLEMS = {
    ("employees", "must be a whole number", (("F001", 2021, "约320人"),)),
    ("revenue", "must be >= 0", (("F002", 2021, -86_000_000),)),
    ("province", parsing.CATEGORY_RULES["province"], (("F002", 2022, "火星省"),)),
    ("firm_id, year", "must be unique", (("F003", 2022, "2 rows"),)),
}
BROKEN_REPORT = (  # each problem of BROKEN_PROBLEMS as the terminal shows it
    "- employees (1 row): must be a whole number\n    e.g. F001 2021: 约320人",
    "- revenue (1 row): must be >= 0\n    e.g. F002 2021: -86,000,000 yuan",
    f"- province (1 row): {parsing.CATEGORY_RULES['province']}\n    e.g. F002 2022: 火星省",
    "- firm_id, year (2 rows): must be unique\n    e.g. F003 2022: 2 rows",
)


def test_fixtures_are_gbk_and_up_to_date(tmp_path):
    for path in (BROKEN, VALID):
        raw = path.read_bytes()
        raw.decode("gbk")
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
    for fresh in load_fixture_script().write(tmp_path):
        assert fresh.read_bytes() == (DATA / fresh.name).read_bytes(), f"run tests/data/make_fixtures.py ({fresh.name})"


def test_broken_fixture_reports_exactly_its_four_faults():
    with pytest.raises(v.ContractError) as caught:
        v.load_panel(BROKEN)
    assert {(p.column, p.rule, p.examples) for p in caught.value.problems} == BROKEN_PROBLEMS


def test_valid_fixture_loads_in_wan():
    out = v.load_panel(VALID, units="wan")
    assert len(out) == 5 and out["firm_name"].iloc[0] == "苏州精工传动科技有限公司"
    first = out.iloc[0]
    assert (first.firm_id, first.year, first.province, first.sector) == ("F001", 2021, "Jiangsu", "34")
    assert first.revenue == pytest.approx(250_005_000) and first.niche_market_share == pytest.approx(0.12)


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_cli_validate_broken_file_lists_every_problem():
    result = run("validate", str(BROKEN))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"4 problems in {BROKEN}:" in result.output
    for shown in BROKEN_REPORT:
        assert shown in result.output


def test_cli_validate_valid_file_in_wan():
    result = run("validate", str(VALID), "--units", "wan")
    assert result.exit_code == 0, result.output
    assert "3 firms, 5 firm-years, 2021-2022" in result.output


def test_cli_validate_valid_file_reads_units_from_its_headers():
    # Its headers say 万元: read so without --units (before, --units wan was required).
    result = run("validate", str(VALID))
    assert result.exit_code == 0 and "3 firms, 5 firm-years" in result.output and "Traceback" not in result.output
    assert "look like" not in result.output


def test_cli_validate_with_events_of_unknown_firms(tmp_path):
    path = tmp_path / "events.csv"
    pd.DataFrame({"firm_id": ["F001", "F404"], "batch_year": [2022, 2022]}).to_csv(path, index=False)
    result = run("validate", str(VALID), "--units", "wan", "--events", str(path))
    assert result.exit_code == 1 and "must be a firm in the panel" in result.output and "F404" in result.output


@pytest.mark.parametrize(("args", "code", "message"), [
    (("--units", "万元"), 2, "Invalid value for '--units'"),
    (("--encoding", "klingon"), 1, "unknown encoding 'klingon'"),
])
def test_cli_validate_bad_options_fail_cleanly(args, code, message):
    result = run("validate", str(VALID), *args)
    assert result.exit_code == code and message in result.output and "Traceback" not in result.output


def test_cli_validate_missing_file_fails_cleanly(tmp_path):
    result = run("validate", str(tmp_path / "nope.csv"))
    assert result.exit_code == 1 and "no such file" in result.output and "Traceback" not in result.output


def test_summary_names_size_years_provinces_and_gaps():
    text = v.summary(v.conform_panel(panel().assign(rd_staff=None)))
    assert "3 firms, 6 firm-years, 2021-2022" in text
    assert "provinces: 1 (largest: Jiangsu 100%)" in text
    assert "provincial SRDI: 100.0%" in text and "rd_staff 100.0%" in text
    assert v.summary(v.conform_panel(panel()).iloc[:0]) == "0 firm-years"


def test_category_columns_read_as_categoricals_parse_like_text():
    """Parquet dictionary columns arrive as pandas categoricals: only their categories are
    parsed, with the same result and the same problems as plain text."""
    text = panel().astype({"province": object, "ownership": object})
    text.loc[1, "province"] = " 江苏省 "
    text.loc[2, "province"] = "NA"  # a missing-value token: missing, not unknown
    text.loc[3, "province"] = "火星省"
    text.loc[4, "ownership"] = "民营"
    as_categories = text.astype({"province": "category", "ownership": "category"})
    from_text, from_categories = problems_of(text), problems_of(as_categories)
    assert from_categories == from_text
    assert {(p.column, p.rule) for p in from_text} == {("province", parsing.CATEGORY_RULES["province"]),
                                                      ("province", "must not be missing")}
    assert [p.count for p in from_text] == [1, 1]
    clean = text.drop(index=[2, 3])
    pd.testing.assert_frame_equal(v.conform_panel(clean.astype({"province": "category", "ownership": "category"})),
                                  v.conform_panel(clean))


def test_conform_without_sort_keeps_the_row_order():
    shuffled = panel().sample(frac=1, random_state=3)
    kept = v.conform_panel(shuffled, sort=False)
    assert list(zip(kept["firm_id"], kept["year"])) == list(zip(shuffled["firm_id"], shuffled["year"]))
    pd.testing.assert_frame_equal(kept.sort_values(["firm_id", "year"]).reset_index(drop=True), v.conform_panel(shuffled))
