"""Tests of lgml.explain.firm: the per-firm report and ``lgml explain``, as a user runs it."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml import criteria, io
from lgml.cli import app
from lgml.vocabulary import DIMENSIONS

XSS = "<script>alert(1)</script>"
runner = CliRunner()


def _some_firm(table) -> str:
    rows = table[(table["year"] == 2025) & ~table["holds_title"]]
    return str(rows.sort_values("score_total").iloc[-1]["firm_id"])


@pytest.mark.parametrize("fmt", ["html", "md", "json"])
def test_cli_explain_writes_each_format(bundle_dir, data_dir, table, tmp_path, fmt):
    firm = _some_firm(table)
    out = tmp_path / f"firm.{fmt}"
    result = runner.invoke(app, ["explain", "--model", str(bundle_dir), "--input", str(data_dir / "panel.parquet"),
                                 "--events", str(data_dir / "events.parquet"), "--firm", firm, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        data = json.loads(text)
        for key in ("probability", "raw_score", "base_value", "contributions", "groups", "reasons", "counterfactual"):
            assert key in data
        assert sum(data["contributions"].values()) + data["base_value"] == pytest.approx(data["raw_score"], abs=1e-6)
        assert set(data["groups"]) == set(DIMENSIONS)
    elif fmt == "html":
        assert text.count("data:image/png;base64,") >= 2
        assert "http://" not in text and "https://" not in text
    else:
        assert f"## Firm {firm}" in text


def test_cli_explain_errors(bundle_dir, data_dir, tmp_path):
    base = ["explain", "--model", str(bundle_dir), "--input", str(data_dir / "panel.parquet")]
    out = tmp_path / "x.html"
    assert runner.invoke(app, [*base, "--firm", "NO-SUCH-FIRM", "--out", str(out)]).exit_code == 1
    assert not out.exists()
    out.write_text("keep")
    assert runner.invoke(app, [*base, "--top", "1", "--out", str(out)]).exit_code == 1
    assert out.read_text() == "keep"
    assert runner.invoke(app, [*base, "--top", "1", "--out", str(tmp_path / "x.pdf")]).exit_code == 1
    assert runner.invoke(app, ["explain", "--model", str(tmp_path), "--input", str(data_dir / "panel.parquet"),
                               "--top", "1", "--out", str(tmp_path / "y.html")]).exit_code == 1


def _explain_renamed(bundle_dir, small_sim, table, tmp_path, firm_id: str, out) -> str:
    """The report of one firm of the panel renamed ``firm_id`` (a hostile ID), as text."""
    panel = small_sim.panel.copy()
    panel["firm_id"] = panel["firm_id"].replace({_some_firm(table): firm_id})
    io.write_table(panel, tmp_path / "panel.parquet")
    result = runner.invoke(app, ["explain", "--model", str(bundle_dir), "--input", str(tmp_path / "panel.parquet"),
                                 "--firm", firm_id, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def test_cli_explain_escapes_firm_ids(bundle_dir, small_sim, table, tmp_path):
    html = _explain_renamed(bundle_dir, small_sim, table, tmp_path, XSS, tmp_path / "xss.html")
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    md = tmp_path / "xss.md"
    result = runner.invoke(app, ["explain", "--model", str(bundle_dir), "--input", str(tmp_path / "panel.parquet"),
                                 "--firm", XSS, "--out", str(md), "--format", "md"])
    assert result.exit_code == 0, result.output
    assert "<script" not in md.read_text(encoding="utf-8")


def test_cli_explain_top_per_province(bundle_dir, data_dir, tmp_path):
    out = tmp_path / "top.json"
    result = runner.invoke(app, ["explain", "--model", str(bundle_dir), "--input", str(data_dir / "panel.parquet"),
                                 "--events", str(data_dir / "events.parquet"), "--top", "1", "--per-province",
                                 "--year", "2024", "--target", "0.05", "--out", str(out)])
    assert result.exit_code == 0, result.output
    firms = json.loads(out.read_text(encoding="utf-8"))["firms"]
    provinces = [f["province"] for f in firms]
    assert len(provinces) == len(set(provinces)) > 5
    assert all(f["year"] == 2024 for f in firms)


def test_cli_explain_with_a_growth_model(bundle_dir, growth_dir, data_dir, table, tmp_path):
    out = tmp_path / "growth.json"
    result = runner.invoke(app, ["explain", "--model", str(bundle_dir), "--growth-model", str(growth_dir),
                                 "--input", str(data_dir / "panel.parquet"), "--firm", _some_firm(table),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    growth = json.loads(out.read_text(encoding="utf-8"))["growth"]
    assert growth["p10_pct"] <= growth["p90_pct"]
    assert -100 < growth["growth_pct"] < 1000
    swapped = runner.invoke(app, ["explain", "--model", str(growth_dir), "--input", str(data_dir / "panel.parquet"),
                                  "--firm", _some_firm(table), "--out", str(tmp_path / "g.json")])
    assert swapped.exit_code == 1


def test_explain_and_score_give_the_same_probability_reasons_and_model(bundle, bundle_dir, data_dir, table, tmp_path):
    """The same firm gets the same features, probability, reasons and model name from both verbs."""
    rows = table[(table["year"] == 2025) & ~table["holds_title"]].sort_values("score_total")
    firms = [str(f) for f in rows["firm_id"].iloc[[0, len(rows) // 2, -1]]]
    panel, events = str(data_dir / "panel.parquet"), str(data_dir / "events.parquet")
    scores = tmp_path / "scores.parquet"
    result = runner.invoke(app, ["score", "--model", str(bundle_dir), "--input", panel, "--events", events,
                                 "--output", str(scores), "--explain"])
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(scores).set_index("firm_id")
    out = tmp_path / "firms.json"
    args = ["explain", "--model", str(bundle_dir), "--input", panel, "--events", events, "--out", str(out)]
    result = runner.invoke(app, [*args, *(a for f in firms for a in ("--firm", f))])
    assert result.exit_code == 0, result.output
    explained = json.loads(out.read_text(encoding="utf-8"))["firms"]
    assert [e["firm_id"] for e in explained] == firms
    for e in explained:
        assert e["probability"] == pytest.approx(scored.loc[e["firm_id"], "probability"], abs=1e-12)
        assert e["model"]["name"] == scored.loc[e["firm_id"], "model"] == bundle.name
        assert e["model"]["version"] == scored.loc[e["firm_id"], "model_version"] == bundle.version
        top = scored.loc[e["firm_id"], "reasons"].split(" | ")
        assert len(top) == 3 and all(t.startswith(r["text"]) for t, r in zip(top, e["reasons"][:3]))


def test_checklist_says_what_is_met_and_what_is_short(small_sim, table):
    from lgml.explain.firm import criteria_checklist
    from lgml.explain.reasons import criterion_phrases

    row = table[(table["year"] == 2023) & (table["n_met"] < table["n_met"].max())].iloc[0]
    firm_rows = small_sim.panel[small_sim.panel["firm_id"] == row["firm_id"]]
    checklist = criteria_checklist(firm_rows, 2023)
    assert [c["criterion"] for c in checklist] == list(criteria.RULES["2022"]["criteria"])
    statuses = {c["status"] for c in checklist}
    assert "pass" in statuses and statuses & {"fail", "missing"}
    for c in checklist:
        same = criterion_phrases(c["criterion"], table[table.index == row.name], 2024)[0]
        assert c["text"] == same, c  # one engine: the checklist and the reasons agree
        assert (c["shortfall"] is None) == (c["status"] != "fail")


def _item(name: str, status: str) -> dict:
    return {"criterion": name, "label_en": criteria.CRITERIA[name]["label_en"], "status": status}


def test_eligibility_has_three_states_and_one_caption_per_fact():
    from lgml.explain.firm import eligibility

    meets = eligibility([_item("mb_share", "pass"), _item("debt_ratio", "pass")], 2026)
    assert (meets["state"], meets["badge"]) == ("meets", "eligible") and "every one of the 2" in meets["caption"]
    unknown = eligibility([_item("mb_share", "pass"), _item("niche_share", "missing")], 2026)
    assert (unknown["state"], unknown["badge"], unknown["missing"]) == ("unknown", "cannot tell", ["niche_share"])
    assert "national niche market share cannot be shown" in unknown["caption"]
    assert "eligible if it is met, not eligible otherwise" in unknown["caption"]
    fails = eligibility([_item("mb_share", "fail"), _item("niche_share", "missing"), _item("debt_ratio", "pass")], 2025)
    assert (fails["state"], fails["badge"], fails["failed"]) == ("fails", "fails 1 of 3", ["mb_share"])
    assert "main-business share of revenue" in fails["caption"] and "cannot show national niche" in fails["caption"]


def test_report_badge_and_caption_follow_the_checklist(bundle_dir, data_dir, small_sim, table, tmp_path):
    """A firm whose only gap is a missing value reads "cannot tell", never "not eligible" beside
    "meets every criterion"; the Markdown says the same."""
    last = int(table["year"].max())  # explain judges each firm's latest year
    rows = table[(table["year"] == last) & ~table["holds_title"]]
    firm = str(rows.sort_values("n_met").iloc[-1]["firm_id"])
    panel = small_sim.panel.copy()
    panel.loc[(panel["firm_id"] == firm) & (panel["year"] == last), "niche_market_share"] = float("nan")
    path = tmp_path / "panel.parquet"
    panel.to_parquet(path)
    out = {}
    for fmt in ("json", "md", "html"):
        out[fmt] = tmp_path / f"firm.{fmt}"
        result = runner.invoke(app, ["explain", "--model", str(bundle_dir), "--input", str(path), "--events",
                                     str(data_dir / "events.parquet"), "--firm", firm, "--out", str(out[fmt])])
        assert result.exit_code == 0, result.output
    data = json.loads(out["json"].read_text(encoding="utf-8"))
    statuses = {c["criterion"]: c["status"] for c in data["criteria"]}
    assert statuses["niche_share"] == "missing"
    el = data["eligibility"]
    expected = "fails" if "fail" in statuses.values() else "unknown"
    assert el["state"] == expected and "niche_share" in el["missing"]
    html = out["html"].read_text(encoding="utf-8")
    assert el["badge"] in html and el["caption"] in html
    assert "not eligible</span>" not in html
    assert el["caption"] in out["md"].read_text(encoding="utf-8")


def test_whatif_below_target_says_so_plainly(bundle, rd_only_firm, context):
    from lgml.explain import whatif as ex

    panel, firm_id = rd_only_firm
    result = ex.counterfactual(bundle, panel, firm_id, 2023, context=context, target=0.999)
    assert result.probability_after < 0.999  # the target is out of reach for this model
    assert result.eligible_after and result.goal == "eligible"
    assert "lifts the probability to the 100% target; this is the best found" in result.message


def test_ties_in_rank_are_shown_as_ties_and_agree_with_score(bundle_dir, small_sim, table, tmp_path):
    firm = _some_firm(table)
    panel = small_sim.panel.copy()
    twin = panel[panel["firm_id"] == firm].assign(firm_id="TWIN-OF-" + firm)
    io.write_table(pd.concat([panel, twin], ignore_index=True), tmp_path / "panel.parquet")
    base = ["--model", str(bundle_dir), "--input", str(tmp_path / "panel.parquet")]
    out = tmp_path / "twins.json"
    result = runner.invoke(app, ["explain", *base, "--firm", firm, "--firm", "TWIN-OF-" + firm, "--year", "2025",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    first, second = json.loads(out.read_text(encoding="utf-8"))["firms"]
    assert first["probability"] == second["probability"]
    assert first["rank_in_province"] == second["rank_in_province"]
    assert first["rank_in_province"]["tied"] >= 1
    scores = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", *base, "--output", str(scores), "--year", "2025"])
    assert result.exit_code == 0, result.output
    ranks = pd.read_csv(scores, dtype={"firm_id": str}).set_index("firm_id")["rank_province"]
    assert ranks[firm] == ranks["TWIN-OF-" + firm] == first["rank_in_province"]["rank"]
    html = tmp_path / "twins.html"
    result = runner.invoke(app, ["explain", *base, "--firm", firm, "--year", "2025", "--out", str(html)])
    assert result.exit_code == 0, result.output
    text = html.read_text(encoding="utf-8")
    assert f'data-rank="{first["rank_in_province"]["rank"]}" data-tied="{first["rank_in_province"]["tied"]}"' in text
    assert "tied with" in text


@pytest.mark.parametrize("firm_id", ["[click](http://evil.example/x)", "![pixel](http://evil.example/p.png)",
                                     "data:image/png;base64,AAAA", "*bold*|`code`"])
def test_markdown_report_shows_hostile_firm_ids_as_text(firm_id, bundle_dir, small_sim, table, tmp_path):
    text = _explain_renamed(bundle_dir, small_sim, table, tmp_path, firm_id, tmp_path / "firm.md")
    assert "](http://evil" not in text.replace("\\](http://evil", "")  # every bracket escaped
    assert "![pixel]" not in text and "`code`" not in text and "*bold*" not in text
    from lgml.report import _markdown_escape

    assert "## Firm " + _markdown_escape(firm_id) in text  # shown, as literal text
    assert text.count("](data:image/png;base64,") >= 1  # the report's own figures still embed
    assert "](data:image/png;base64,AAAA)" not in text


def test_reports_name_the_firm_and_its_credit_code(bundle_dir, data_dir, small_sim, table, tmp_path):
    firm = _some_firm(table)
    row = small_sim.panel[small_sim.panel["firm_id"] == firm].iloc[-1]
    assert row["firm_name"] and row["credit_code"]  # the simulator writes both
    base = ["explain", "--model", str(bundle_dir), "--input", str(data_dir / "panel.parquet")]
    one = tmp_path / "one.html"
    assert runner.invoke(app, [*base, "--firm", firm, "--out", str(one)]).exit_code == 0
    text = one.read_text(encoding="utf-8")
    assert f"<h1>Firm {firm} · {row['firm_name']}: Little Giant outlook</h1>" in text
    assert f"统一社会信用代码 {row['credit_code']}" in text
    top = tmp_path / "top.json"
    assert runner.invoke(app, [*base, "--top", "1", "--out", str(top)]).exit_code == 0
    best = json.loads(top.read_text(encoding="utf-8"))["firms"][0]
    html = tmp_path / "top.html"
    assert runner.invoke(app, [*base, "--top", "1", "--out", str(html)]).exit_code == 0
    text = html.read_text(encoding="utf-8")
    assert f"Firm {best['firm_id']} · {best['firm_name']}</h" in text  # a top list names each firm
