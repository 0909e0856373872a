"""Real exports through the command line: .xlsx and GBK CSV with Chinese headers, units in the
headers, title and note rows, credit codes, unrecognised headers, the unit warning."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml import exports, io, validate as v
from lgml.cli import app

TITLE, NOTE = "2024年专精特新企业数据（导出）", "数据来源：模拟数据，仅供测试"


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def firms(small_sim) -> pd.DataFrame:
    """200 firms of the small simulated panel, fiscal years 2022-2025."""
    keep = small_sim.panel["firm_id"].isin(small_sim.panel["firm_id"].unique()[:200])
    rows = small_sim.panel[keep & small_sim.panel["year"].between(2022, 2025)]
    return rows.reset_index(drop=True)


@pytest.fixture(scope="module")
def export_files(firms, tmp_path_factory) -> dict[str, Path]:
    """The firms as an .xlsx (second sheet empty) and a GBK .csv export: title and note rows."""
    folder = tmp_path_factory.mktemp("exports")
    frame = exports.as_export(firms)
    xlsx = io.write_export(frame, folder / "firms.xlsx", title=TITLE, note=NOTE)
    csv = io.write_export(frame, folder / "firms.csv", title=TITLE, note=NOTE)
    return {"xlsx": xlsx, "csv": csv, "frame": frame}


def write(frame: pd.DataFrame, path: Path, **kwargs) -> Path:
    return io.write_export(frame, path, **kwargs)


@pytest.mark.parametrize("kind", ["xlsx", "csv"])
def test_an_export_reads_back_as_the_panel_in_yuan(kind, export_files, firms):
    panel, notes = v.read_panel(export_files[kind])
    pd.testing.assert_frame_equal(panel, v.conform_panel(firms))
    texts = " | ".join(n.text for n in notes)
    assert f"skipped 1 row above the header row: {TITLE!r}" in texts
    assert f"dropped 1 row without data (blank, or one cell of text): {NOTE!r}" in texts
    assert not any(n.level == "warning" for n in notes)


def test_cli_features_from_xlsx_hold_amounts_in_yuan(export_files, firms, tmp_path):
    out = tmp_path / "features.parquet"
    result = run("features", export_files["xlsx"], "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out).set_index(["firm_id", "year"])
    expected = firms.set_index(["firm_id", "year"])["revenue"]
    np.testing.assert_allclose(table.loc[expected.index, "revenue"], expected)  # 万元 in the file, yuan here
    assert "firm_name" not in table.columns and "credit_code" not in table.columns  # never model inputs


def test_cli_score_xlsx_carries_names_and_codes(export_files, firms, bundle_dir, tmp_path):
    out = tmp_path / "scores.csv"
    result = run("score", "--model", bundle_dir, "--input", export_files["xlsx"], "--output", out)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out, dtype={"credit_code": str})
    assert list(scores.columns[:4]) == ["firm_id", "firm_name", "credit_code", "year"]
    latest = firms.sort_values("year").groupby("firm_id").last()
    assert len(scores) == len(latest)
    for row in scores.head(20).itertuples():
        assert (row.firm_name, row.credit_code) == (latest.loc[row.firm_id, "firm_name"],
                                                    latest.loc[row.firm_id, "credit_code"])


def test_cli_score_csv_with_title_rows_streams_in_chunks(export_files, bundle_dir, tmp_path):
    out = tmp_path / "scores.parquet"
    result = run("score", "--model", bundle_dir, "--input", export_files["csv"], "--output", out, "--chunk-rows", 150)
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert len(scores) == 200 and scores["firm_name"].str.startswith("[模拟]").all()


def test_cli_score_lists_unrecognised_headers_and_warns_on_units(export_files, bundle_dir, tmp_path):
    frame = export_files["frame"].rename(columns=lambda h: h.replace("(万元)", "")).assign(备注="无")
    path = write(frame, tmp_path / "no_units.csv")
    result = run("score", "--model", bundle_dir, "--input", path, "--output", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert "1 header not recognised (kept, not read): '备注'" in result.output
    assert "Warning: amounts look like 万元 read as yuan" in result.output


def test_sheet_by_name_and_position_and_unknown_sheet(export_files, tmp_path):
    path = tmp_path / "two.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as book:
        pd.DataFrame({"说明": ["本表为测试"]}).to_excel(book, sheet_name="说明", index=False)
        export_files["frame"].head(40).to_excel(book, sheet_name="数据", index=False)
    first = run("validate", path)
    assert first.exit_code == 1 and "required column is missing" in first.output
    for sheet in ("数据", "1"):
        result = run("validate", path, "--sheet", sheet)
        assert result.exit_code == 0 and "40 firms, 40 firm-years" in result.output, result.output
    unknown = run("validate", path, "--sheet", "Sheet9")
    assert unknown.exit_code == 1 and "no sheet 'Sheet9'; the sheets are '说明', '数据'" in unknown.output
    assert "Traceback" not in unknown.output


def test_old_excel_format_is_refused_clearly(tmp_path):
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    result = run("validate", path)
    assert result.exit_code == 1 and "save it as .xlsx or .csv" in result.output and "Traceback" not in result.output


def test_cli_credit_code_errors_name_column_rule_and_rows(export_files, firms, tmp_path):
    frame = export_files["frame"].copy()
    good = frame.loc[0, "统一社会信用代码"]
    frame.loc[0, "统一社会信用代码"] = good[:-1] + ("0" if good[-1] != "0" else "1")
    frame.loc[5, "统一社会信用代码"] = "ABC123"
    path = write(frame, tmp_path / "bad.xlsx")
    result = run("validate", path)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "credit_code (2 rows): must be an 18-character unified social credit code" in result.output
    assert f"{firms.loc[0, 'firm_id']} {firms.loc[0, 'year']}: {frame.loc[0, '统一社会信用代码']}" in result.output
    assert f"{firms.loc[5, 'firm_id']} {firms.loc[5, 'year']}: ABC123" in result.output


def test_cli_unit_warning_names_the_evidence(export_files, tmp_path):
    # 万元 amounts under headers without a unit: read as yuan, 10,000 times too small.
    frame = export_files["frame"].rename(columns=lambda h: h.replace("(万元)", ""))
    path = write(frame, tmp_path / "no_units.csv")
    result = run("validate", path)
    assert result.exit_code == 0, result.output
    assert "Warning: amounts look like 万元 read as yuan" in result.output
    assert "median revenue " in result.output and "as 万元:" in result.output
    assert "median revenue per employee" in result.output and "pass --units wan" in result.output
    fixed = run("validate", path, "--units", "wan")
    assert fixed.exit_code == 0 and "look like" not in fixed.output


def test_cli_explicit_units_override_headers_and_the_reverse_warning(export_files, tmp_path):
    frame = export_files["frame"].copy()
    money = [h for h in frame.columns if h.endswith("(万元)")]
    for h in money:  # yuan values under 万元 headers: 10,000 times too large as read
        amounts = pd.to_numeric(frame[h].str.replace(",", ""), errors="coerce").mul(10_000)
        frame[h] = amounts.map(lambda x: f"{x:,.0f}", na_action="ignore").fillna("--")
    path = write(frame, tmp_path / "wrong_headers.xlsx")
    result = run("validate", path)
    assert result.exit_code == 0 and "amounts look like yuan read as 万元" in result.output
    assert "pass --units yuan" in result.output
    fixed = run("validate", path, "--units", "yuan")
    assert fixed.exit_code == 0 and "look like" not in fixed.output
    assert "units='yuan' (元) overrides the unit written in the headers '营业收入(万元)'" in fixed.output


def test_cli_lists_unrecognised_headers_and_warns_of_an_empty_optional_column(export_files, tmp_path):
    frame = export_files["frame"].rename(columns={"研发费用(万元)": "研发费用合计(万元)"}).assign(备注="无")
    path = write(frame, tmp_path / "renamed.csv")
    result = run("check", path, "--year", 2026)
    assert result.exit_code == 0, result.output
    assert "2 headers not recognised (kept, not read): '研发费用合计(万元)', '备注'" in result.output
    assert ("Warning: optional column rd_expense is entirely missing: no header names it (e.g. 研发费用, 研发投入, 研发支出); "
            "unrecognised headers that might hold it: "
            "'研发费用合计(万元)'") in result.output


def test_a_missing_required_column_names_candidate_headers(export_files, tmp_path):
    frame = export_files["frame"].rename(columns={"营业收入(万元)": "营业收入合计(万元)"})
    result = run("validate", write(frame, tmp_path / "revenue.csv"))
    assert result.exit_code == 1
    assert "revenue: required column is missing" in result.output
    assert "headers that might hold it: '营业收入合计(万元)'" in result.output


@pytest.mark.parametrize(("years", "founded"), [
    (["2023年", "2023年度", "2023-12-31", "2023/12/31", "20231231", "2023-12-31 00:00:00"],
     ["2008-05-01", "2008年", "2008/5/1", "2008", "2008-05-01 00:00:00", "20080501"]),
])
def test_years_as_labels_and_dates(years, founded):
    from tests.test_validate import panel

    df = panel().iloc[[0]].loc[[0] * len(years)].assign(firm_id=[f"F{i}" for i in range(len(years))])
    df = df.drop(columns=["year", "founded_year"]).assign(报告期=years, 成立日期=founded)
    out = v.conform_panel(df)
    assert out["year"].tolist() == [2023] * len(years) and out["founded_year"].tolist() == [2008] * len(years)


def test_excel_dates_and_leading_zeros_survive_xlsx(tmp_path):
    from tests.test_validate import panel

    df = panel().assign(year=pd.to_datetime([f"{y}-12-31" for y in panel()["year"]]), sector="06")
    path = tmp_path / "dates.xlsx"
    df.to_excel(path, index=False)  # real Excel date cells; "06" as text
    out = v.load_panel(path)
    assert out["year"].tolist() == [2021, 2022] * 3
    assert (out["sector"] == "06").all()


def test_an_optional_column_given_but_empty_is_a_warning_naming_its_header():
    from tests.test_validate import panel

    _, notes = v.conform_panel_notes(panel().assign(rd_expense="--").rename(columns={"rd_expense": "研发费用"}))
    assert [n.text for n in notes if n.level == "warning"] == [
        "optional column rd_expense is entirely missing: header '研发费用' holds no value"]


def test_events_without_revocations_are_not_warned_about(tmp_path):
    from tests.test_validate import events, panel

    path = tmp_path / "events.csv"
    events().drop(columns="revoked_year").to_csv(path, index=False)
    frame, notes = v.read_events(path, panel=v.conform_panel(panel()))
    assert len(frame) == 3 and notes == []


def test_simulated_files_say_they_are_synthetic(tmp_path):
    import pyarrow.parquet as pq

    result = run("simulate", "--out", tmp_path, "--firms", 100)
    assert result.exit_code == 0 and "names start with [模拟], credit codes are random" in result.output
    meta = pq.read_schema(tmp_path / "panel.parquet").metadata
    assert b"no row describes a real firm" in meta[b"lgml.synthetic"]
    panel = pd.read_parquet(tmp_path / "panel.parquet")
    assert panel.groupby("firm_id")["credit_code"].nunique().eq(1).all()  # constant per firm
    assert panel["firm_name"].str.startswith("[模拟]").all()


def test_a_training_config_reads_xlsx_sheets(export_files, firms, small_sim, tmp_path):
    from lgml.config import DataConfig
    from lgml.modeling.dataset import load_source

    panel, events = tmp_path / "panel.xlsx", tmp_path / "events.xlsx"
    history = small_sim.events[small_sim.events["firm_id"].isin(firms["firm_id"])]
    for path, frame in ((panel, export_files["frame"]), (events, history.rename(columns={"firm_id": "企业ID"}))):
        with pd.ExcelWriter(path, engine="openpyxl") as book:
            pd.DataFrame({"说明": ["封面"]}).to_excel(book, sheet_name="封面", index=False)
            frame.to_excel(book, sheet_name="数据", index=False)
    source = load_source(DataConfig(panel=panel, events=events, sheet="数据"))
    pd.testing.assert_frame_equal(source.panel, v.conform_panel(firms))
    assert len(source.events) == len(history)


def test_cli_check_writes_names_and_codes_beside_the_firm(export_files, firms, tmp_path):
    out = tmp_path / "check.csv"
    result = run("check", export_files["csv"], "--year", 2026, "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, dtype=str)
    assert list(table.columns[:4]) == ["firm_id", "firm_name", "credit_code", "year"]
    first = firms[(firms["firm_id"] == table.loc[0, "firm_id"])].iloc[0]
    assert (table.loc[0, "firm_name"], table.loc[0, "credit_code"]) == (first["firm_name"], first["credit_code"])
