"""The model card of a bundle trained by ``lgml train``: its headline and gains state the
bundle's evaluation, its per-group tables cover held-out batches only, its drift section
compares the data with the training reference stored in the bundle, and the Markdown card has
the same sections as the HTML one."""

import dataclasses
import html as html_lib
import json
import re

import pandas as pd

import pytest
from typer.testing import CliRunner

from lgml import schema
from lgml.cli import app
from lgml.features import build_features
from lgml.report.model import build_model_report, model_report, render_model


@pytest.fixture(scope="module")
def trained(bundle):
    """The session's designation bundle (tests/conftest.py), trained on 3,000 simulated firms."""
    return bundle


def test_model_report_on_data_has_a_drift_table(trained, small_sim):
    table = build_features(small_sim.panel, small_sim.events, trained.context)
    report = model_report(trained, table, sample=300, seed=0)
    drift = report["drift"]
    assert drift and {d["feature"] for d in drift} == set(trained.features)
    assert all(d["level"] in ("stable", "moderate", "major") and d["psi"] >= 0 for d in drift)
    assert "drift_note" not in report and report["images"]["psi"].startswith("data:image/png;base64,")
    assert report["by_province"] and {"roc_pr", "calibration"} <= set(report["images"])


def test_report_of_a_simulated_model_without_data_uses_a_fresh_sample(trained):
    steps = []
    report = build_model_report(trained, sample=300, on_step=steps.append)
    assert steps == ["Building features", "Computing contributions and metrics"]
    assert "fresh simulated sample of 3,000 firms" in report["data_note"]
    assert report["drift"] and report["n_sample"] == 300


def test_cli_report_writes_the_drift_table(trained, tmp_path):
    out = tmp_path / "model.json"
    args = ["report", "--model", str(trained.path), "--sample", "300", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["drift"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_grouped_importance_ranks_innovation_and_specialization_above_region_and_sector(bundle, candidates):
    from lgml.explain.contributions import contributions
    from lgml.report.model import global_importance

    contrib, _ = contributions(bundle, candidates)
    _, by_group = global_importance(contrib)
    for strong in ("innovation", "specialization"):
        for weak in ("region", "sector"):
            assert by_group[strong] > by_group[weak], by_group.to_dict()


def test_cli_report(bundle_dir, data_dir, tmp_path):
    out = tmp_path / "model.html"
    args = ["report", "--model", str(bundle_dir), "--data", str(data_dir / "panel.parquet"),
            "--events", str(data_dir / "events.parquet"), "--sample", "800", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 4
    assert "By province: held-out batch" in html and "AUC beats the rule check" in html
    assert "evaluation / populations" not in html and "(compared)" not in html
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1
    js = tmp_path / "model.json"
    result = CliRunner().invoke(app, ["report", "--model", str(bundle_dir), "--sample", "500", "--out", str(js)])
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text(encoding="utf-8"))
    assert data["group_importance"] and data["headline"]["text"].startswith("Of the ")
    assert data["drift"], "the bundle's training reference gives a drift table even without --data"
    assert {"feature", "psi", "level"} <= set(data["drift"][0])


# ------------------------------------------------------------------------------------------------
# The model card
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def card(trained, table):
    """The model card of the session bundle on every firm-year of the simulated panel."""
    return model_report(trained, table, sample=300, seed=0, data_note="the test panel")


def test_headline_states_the_top_k_of_the_last_test_batch(trained, card):
    gains = trained.evaluation["gains"]
    batch = max(gains, key=int)
    g = gains[batch]
    head = card["headline"]
    assert head["batch"] == int(batch) == max(trained.metadata["batches"]["test"])
    assert (head["k"], head["model"], head["rules"], head["oracle"]) == (
        g["k"], g["top_k"]["model"], g["top_k"]["rules"], g["top_k"]["oracle"])
    assert head["text"] == (f"Of the {g['k']} firms ranked highest for batch {batch}, {g['top_k']['model']} were "
                            f"designated; the rule check's top {g['k']} held {g['top_k']['rules']} (the best possible, "
                            f"by the simulator's true probabilities, {g['top_k']['oracle']}).")
    assert g["k"] == min(100, max(10, g["n"] // 10), g["n"])
    html = render_model(card)
    assert head["text"] in html_lib.unescape(html) and card["images"]["gains"].startswith("data:image/png")


def test_gains_table_is_the_evaluation_of_the_headline_batch(trained, card):
    g = trained.evaluation["gains"][str(card["headline"]["batch"])]
    assert [r["share"] for r in card["gains"]] == [0.01, 0.05, 0.10, 0.20]
    assert [r["model"] for r in card["gains"]] == [r["model"] for r in g["table"]]
    assert all(0 <= r[s] <= 1 for r in card["gains"] for s in ("model", "rules", "oracle"))
    assert g["curve"]["model"][0] == 0 and g["curve"]["model"][-1] == 1.0


def test_group_tables_cover_held_out_batches_only_and_say_so(trained, card):
    seen = set(trained.metadata["batches"]["train"]) | set(trained.metadata["batches"]["valid"])
    years = card["held_out"]["years"]
    assert years and not seen & set(years) and min(years) == min(trained.metadata["batches"]["test"])
    label = card["held_out"]["label"]
    assert re.fullmatch(r"held-out batch(es)? \d{4}(–\d{4})? \(the model never saw (these|it)\)", label)
    html = render_model(card)
    assert f"By province: {label}" in html and f"By sector (GB/T 4754-2017 division): {label}" in html
    n_held = sum(r["n"] for r in card["by_province"])
    assert n_held == card["n_labelled"] < int(card_labelled_rows(card))
    assert all(r["name"] for r in card["by_province"]) and all(r["name"] for r in card["by_sector"])


def card_labelled_rows(card) -> str:
    return dict(card["provenance"]["data"])["labelled candidate rows"].replace(",", "")


def test_drift_table_is_filled_with_a_verdict(card):
    assert len(card["drift"]) > 10 and card["drift_verdict"]["level"] in ("stable", "moderate", "major")
    assert re.match(r"(Stable|Moderate shift|Major shift)", card["drift_verdict"]["text"])
    assert "latest batch in the data" in card["drift_rows_note"]
    assert "the last batch the model learned from" in card["reference_note"]
    html = render_model(card)
    rows = re.search(r'<table id="drift-table">(.*?)</table>', html, re.S).group(1)
    assert rows.count("<tr>") > 10


def test_drift_without_a_stored_reference_uses_the_data_of_the_last_training_batch(trained, table):
    bare = dataclasses.replace(trained, reference=None)
    report = model_report(bare, table, sample=200, seed=0)
    last = max(trained.metadata["batches"]["train"])
    assert report["drift"] and f"last training batch {last}" in report["reference_note"]
    assert model_report(bare, None)["drift"] is None


def test_headline_from_the_data_when_the_bundle_records_no_gains(trained, table):
    old = dataclasses.replace(trained, evaluation={k: v for k, v in trained.evaluation.items() if k != "gains"})
    report = model_report(old, table, sample=200, seed=0)
    assert report["headline"]["oracle"] is None and "held-out rows of the data" in report["gains_source"]
    assert "the rule check's top" in report["headline"]["text"] and "No best-possible line" in render_model(report)


def test_markdown_has_the_same_sections_as_html(card):
    html, md = render_model(card, "html"), render_model(card, "md")
    h2 = [html_lib.unescape(t) for t in re.findall(r"<h2>(.*?)</h2>", html)]
    md2 = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert h2 == md2 and len(h2) >= 8
    assert card["headline"]["text"] in md and card["drift_verdict"]["text"] in md
    assert "data:image/png;base64," in md and "| province | name 名称 |" in md and "\\|" not in md


def test_cli_writes_markdown(bundle_dir, tmp_path):
    out = tmp_path / "card.md"
    result = CliRunner().invoke(app, ["report", "--model", str(bundle_dir), "--sample", "300", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("# Model card: ")


def test_every_gbt4754_division_has_a_name():
    codes = [f"{i:02d}" for i in range(1, 98)]
    assert sorted(schema.SECTOR_NAMES) == codes == list(schema.SECTOR_LEVELS)
    for code, (zh, en) in schema.SECTOR_NAMES.items():
        assert re.search(r"[\u4e00-\u9fff]", zh) and en and en.isascii(), code
    assert schema.SECTOR_NAMES["34"] == ("通用设备制造业", "general equipment")
    assert schema.SECTOR_NAMES["01"][0] == "农业" and schema.SECTOR_NAMES["97"][0] == "国际组织"
    assert schema.SECTOR_NAMES["65"][0] == "软件和信息技术服务业"


def test_features_that_move_with_new_rules_are_set_apart_from_the_verdict():
    from lgml.modeling.drift import drift_verdict

    drift = pd.DataFrame({"feature": ["margin_revenue", "met_revenue", "rd_intensity"], "psi": [18.4, 3.4, 0.04],
                          "level": ["major", "major", "stable"]})
    plain = drift_verdict(drift)
    assert plain["level"] == "major"
    note = "batch 2027 is judged under the 2026 rules, the reference batch 2024 under the 2022 rules"
    ruled = drift_verdict(drift, rule_features=["margin_revenue", "met_revenue"], rules_note=note)
    assert ruled["level"] == "stable" and ruled["text"].startswith("Stable")
    assert note in ruled["text"] and "margin_revenue (18.40)" in ruled["text"]
