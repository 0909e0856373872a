"""Streamed scoring: chunked equals unchunked (in memory and through bucket files), the year
option and row-group skipping, the context fallback, CSV and GBK inputs, key headers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lgml.score import score_file, stream
from lgml.score.stream import key_headers

PREDICTIONS = ["probability", "growth", "growth_p10", "growth_p90"]


@pytest.mark.parametrize("spill", [False, True], ids=["in-memory", "bucket-files"])
def test_chunked_equals_unchunked(score, data, reference, tmp_path, monkeypatch, spill):
    monkeypatch.setattr(stream, "MIN_BUCKET_ROWS", 2000)  # several buckets, a firm's years in different chunks
    if spill:  # the path of windows too large for memory
        monkeypatch.setattr(stream, "IN_MEMORY_ROWS", 0)
    stages: dict[str, tuple[int, int | None]] = {}
    chunked = score(tmp_path / "chunked.parquet", chunk_rows=997,
                    progress=lambda stage, done, total: stages.__setitem__(stage, (done, total)))
    pd.testing.assert_frame_equal(chunked, reference)
    assert stages["score"] == ((9, 9) if spill else (1, 1))  # 18,000 window rows (t-5..t) in buckets of about 2,000
    assert stages["read"][0] == len(pd.read_parquet(data["parquet"], columns=["year"]))
    assert reference["firm_id"].is_unique and len(reference) == 3000
    assert reference["year"].eq(2026).all() and reference["batch_year"].eq(2027).all()


def test_year_option_scores_that_year_and_counts_firms_without_it(models, data, tmp_path):
    result = score_file(models["designation"], data["parquet"], tmp_path / "y.parquet", year=2021)
    scores = pd.read_parquet(tmp_path / "y.parquet")
    assert scores["year"].eq(2021).all() and result.scored == len(scores)
    assert result.skipped == result.firms - len(scores) > 0


def test_folder_of_yearly_files_skips_years_outside_the_window(models, data, small_sim, tmp_path):
    folder = tmp_path / "by_year"
    folder.mkdir()
    for year, rows in small_sim.panel.groupby("year"):
        rows.to_parquet(folder / f"firms_{year}.parquet", index=False)
    yearly = score_file(models["designation"], folder, tmp_path / "a.parquet", year=2021)
    mixed = score_file(models["designation"], data["parquet"], tmp_path / "b.parquet", year=2021)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))
    in_window = small_sim.panel["year"].between(2016, 2021).sum()
    assert yearly.rows_read == in_window < mixed.rows_read == len(small_sim.panel)
    # Without a year, the small folder is read into memory once, files joined into one table.
    latest = score_file(models["designation"], folder, tmp_path / "c.parquet")
    score_file(models["designation"], data["parquet"], tmp_path / "d.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "c.parquet"), pd.read_parquet(tmp_path / "d.parquet"))
    assert latest.rows_read == len(small_sim.panel) and latest.scored == small_sim.panel["firm_id"].nunique()


def test_bundle_without_context_falls_back_to_the_whole_input(models, data, edit_bundle, tmp_path, monkeypatch,
                                                              caplog):
    def drop_context(meta):
        del meta["sha256"]["context.parquet"]

    bundle = edit_bundle(models["designation"], tmp_path / "old-bundle", drop_context)
    (bundle / "context.parquet").unlink()
    (bundle / "manifest.json").unlink()  # saved before bundles had either
    monkeypatch.setattr(stream, "MIN_BUCKET_ROWS", 2000)
    with caplog.at_level("WARNING", logger="lgml.score"):
        score_file(bundle, data["parquet"], tmp_path / "a.parquet", chunk_rows=997)
    assert "no province/sector context" in caplog.text
    score_file(bundle, data["csv"], tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))


def test_csv_in_and_out_equal_parquet(score, data, reference, tmp_path):
    from_csv = score(tmp_path / "scores.csv", input=data["csv"], chunk_rows=5000)
    cols = ["firm_id", "year", "rank_national", *PREDICTIONS]
    expected = reference[cols].astype({"year": "str", "rank_national": "str"})
    got = from_csv[cols]
    assert got["firm_id"].tolist() == expected["firm_id"].tolist()
    np.testing.assert_allclose(got[PREDICTIONS].astype(float), expected[PREDICTIONS].astype(float), rtol=1e-12)
    assert (tmp_path / "scores.csv").read_bytes().startswith(b"\xef\xbb\xbf")  # BOM for Excel


def test_gbk_csv_with_chinese_headers_in_wan(models, small_sim, tmp_path):
    firms = small_sim.panel["firm_id"].drop_duplicates().head(50)
    panel = small_sim.panel[small_sim.panel["firm_id"].isin(firms)]
    money = ["revenue", "main_business_revenue", "net_profit", "total_assets", "total_liabilities", "rd_expense",
             "equity_financing"]
    headers = {"firm_id": "企业代码", "year": "年度", "province": "省份", "revenue": "营业收入(万元)"}
    wan = panel.assign(**{c: panel[c] / 1e4 for c in money}).rename(columns=headers)
    wan.to_csv(tmp_path / "firms.csv", index=False, encoding="gbk")
    result = score_file(models["designation"], tmp_path / "firms.csv", tmp_path / "out.parquet", units="wan")
    assert result.scored == 50
    scores = pd.read_parquet(tmp_path / "out.parquet")
    assert scores["probability"].between(0, 1).all()


@pytest.mark.parametrize("headers, expected", [
    (["\ufeff 企业代码 ", "Year", "营业收入（万元）"], ("\ufeff 企业代码 ", "Year")),
    (["年度", "x", "firm_id", "年份"], ("firm_id", "年度")),  # the first of two year headers
    (["x", "营业收入"], (None, None)),
])
def test_key_headers_match_headers_as_the_contract_does(headers, expected):
    assert key_headers(headers) == expected
