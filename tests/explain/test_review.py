"""``lgml explain --review-model``: a title holder due for re-review is explained by the review
model (probability of keeping the title, drivers, criteria it would fail at the review, what-if);
a holder not due gets a plain statement; the option's errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy.optimize import brentq
from typer.testing import CliRunner

from lgml import criteria, io
from lgml.cli import app
from lgml.explain.review import review_schedule
from lgml.inputs import criteria_inputs
from lgml.modeling.bundle import load_bundle

runner = CliRunner()
YEAR = 2024  # fiscal year judged: re-reviews of batch 2025 (one review of 23 holders, levelled)


@pytest.fixture(scope="module")
def holders(small_sim, table, review_dir, tmp_path_factory):
    """The panel and events as files, a holder due for re-review in batch YEAR + 1 and one not due,
    and the review model's own probability of the due holder."""
    folder = tmp_path_factory.mktemp("review-explain")
    io.write_table(small_sim.panel, folder / "panel.parquet")
    io.write_table(small_sim.events, folder / "events.parquet")
    rows = table[table["year"] == YEAR]  # the session's feature table (tests/conftest.py)
    first_review = rows["review_due"] & (rows["review_round"] == 1)
    due = rows[first_review].iloc[0]
    not_due = rows[rows["holds_title"] & ~rows["review_due"]].iloc[0]
    review = load_bundle(review_dir)
    # The review of 23 holders levelled to the model's pass rate (87%): one log-odds shift.
    logits = review.calibrator.transform(review.predict_raw(rows[first_review]))
    logits = np.log(logits / (1 - logits))
    assert first_review.sum() == 23 and review.metadata["pass_rate"]["rate"] == 0.87
    shift = brentq(lambda s: (1 / (1 + np.exp(-(logits + s)))).mean() - 0.87, -20, 20)
    p = float(1 / (1 + np.exp(-(logits[0] + shift))))
    return {"folder": folder, "due": due, "not_due": not_due, "p": p, "review": review, "table": rows,
            "shift": shift}


def explain(holders, bundle_dir, review_dir, out, *extra):
    folder = holders["folder"]
    return runner.invoke(app, ["explain", "--model", str(bundle_dir), "--input", str(folder / "panel.parquet"),
                               "--events", str(folder / "events.parquet"), "--review-model", str(review_dir),
                               "--year", str(YEAR), "--out", str(out), *extra])


def test_json_report_of_a_holder_due_for_review(holders, bundle_dir, review_dir, small_sim, tmp_path):
    due, not_due = holders["due"]["firm_id"], holders["not_due"]["firm_id"]
    result = explain(holders, bundle_dir, review_dir, tmp_path / "r.json", "--firm", due, "--firm", not_due,
                     "--target", "0.99")
    assert result.exit_code == 0, result.output
    first, second = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["firms"]
    # The due holder: the review model's probability of passing, from its own contributions.
    assert first["kind"] == "review" and first["model"]["task"] == "review"
    assert first["probability"] == pytest.approx(holders["p"], rel=1e-9)
    assert first["review"]["p_review_pass"] == first["probability"] and first["review"]["due"] is True
    assert first["review"]["level_shift"] == pytest.approx(holders["shift"], abs=1e-6) != 0
    assert first["base_value"] + sum(first["contributions"].values()) == pytest.approx(first["raw_score"], abs=1e-6)
    assert set(first["contributions"]) == set(holders["review"].features)
    assert "title_years" in first["contributions"] and first["reasons"]
    # Its title and round, from the events.
    ev = small_sim.events[(small_sim.events["firm_id"] == due) & (small_sim.events["batch_year"] <= YEAR)]
    title = int(ev["batch_year"].max())
    assert (first["review"]["title_batch"], first["review"]["review_batch"]) == (title, YEAR + 1)
    assert (YEAR + 1 - title) % 3 == 0 and first["review"]["review_round"] == (YEAR + 1 - title) // 3
    # The criteria it would fail: the rule check of batch YEAR + 1 (the regime in force at the review).
    inputs = criteria_inputs(small_sim.panel[small_sim.panel["firm_id"] == due])
    checked = criteria.check(inputs[inputs["year"] == YEAR], YEAR + 1)
    failed = [c for c in criteria.RULES[criteria.regime_for(YEAR + 1)]["criteria"] if not checked[f"pass_{c}"].iloc[0]]
    assert [c["criterion"] for c in first["criteria"] if c["status"] == "fail"] == failed
    assert first["review"]["failing"] == [criteria.CRITERIA[c]["label_en"] for c in failed]
    assert first["review"]["regime"].startswith(f"{criteria.regime_for(YEAR + 1)} rules")
    # The what-if searched with the review model, from its probability toward the 99% target.
    cf = first["counterfactual"]
    assert cf["target"] == 0.99 and cf["probability_before"] == pytest.approx(first["probability"], rel=1e-9)
    assert cf["changes"] or not cf["reached"]
    # Peers: the province's holders due for re-review.
    table = holders["table"]
    province = table[(table["province"] == holders["due"]["province"]) & table["review_due"]]
    assert first["n_peers"] == len(province) and first["rank_in_province"]["of"] == len(province)
    # The holder not due: its designation explanation with a plain statement.
    assert second["kind"] == "designation" and second["model"]["task"] == "designation"
    schedule = second["review"]
    assert schedule["due"] is False and schedule["p_review_pass"] is None
    assert schedule["next_review"] > YEAR + 1 and (schedule["next_review"] - schedule["title_batch"]) % 3 == 0
    assert schedule["statement"] == (
        f"Firm {not_due} holds the Little Giant title from batch {schedule['title_batch']}; its next re-review is in "
        f"batch {schedule['next_review']} (review {schedule['review_round']}), not in batch {YEAR + 1}: the review "
        "model has nothing to say about it for this batch.")


def test_html_report_shows_review_risk_failures_and_statement(holders, bundle_dir, review_dir, tmp_path):
    due, not_due = holders["due"]["firm_id"], holders["not_due"]["firm_id"]
    result = explain(holders, bundle_dir, review_dir, tmp_path / "r.html", "--firm", due, "--firm", not_due)
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    first, second = html.split('<section class="firm" id="firm-1">')
    p = float(re.search(r'data-p-review-pass="([0-9.e-]+)"', first).group(1))
    assert p == pytest.approx(holders["p"], rel=1e-9)
    assert f"{100 * p:.1f}%</div><div class=\"k\">probability of passing the re-review in batch {YEAR + 1}" in first
    assert "rank among the holders due for re-review of" in first
    assert f"Criteria at the re-review in batch {YEAR + 1}: {criteria.regime_for(YEAR + 1)} rules" in first
    failing = int(re.search(r'data-review-failing="(\d+)"', first).group(1))
    assert failing == first.count('data-criterion-status="fail"')
    assert "What would have to change to keep the title" in first
    assert "Explained by the review model test-review" in first
    assert 'data-review-due="false"' in second and f"not in batch {YEAR + 1}" in second
    assert "probability of designation in batch" in second
    # The document's model is the designation model; the review model is named in its section.
    assert "Model test-designation" in html.split("<section")[0]


def test_review_schedule_counts_three_year_rounds():
    assert review_schedule(2019, 2022) == {"title_batch": 2019, "due": True, "next_review": 2022, "review_round": 1}
    assert review_schedule(2019, 2023) == {"title_batch": 2019, "due": False, "next_review": 2025, "review_round": 2}
    assert review_schedule(2024, 2025) == {"title_batch": 2024, "due": False, "next_review": 2027, "review_round": 1}


def test_review_model_option_errors(holders, bundle_dir, review_dir, tmp_path):
    folder, due = holders["folder"], holders["due"]["firm_id"]
    base = ["explain", "--model", str(bundle_dir), "--input", str(folder / "panel.parquet"), "--out",
            str(tmp_path / "r.json")]
    result = runner.invoke(app, [*base, "--firm", due, "--review-model", str(review_dir)])
    assert result.exit_code == 1 and "--review-model needs --events" in result.output
    events = ["--events", str(folder / "events.parquet")]
    result = runner.invoke(app, [*base, *events, "--top", "3", "--review-model", str(review_dir)])
    assert result.exit_code == 1 and "give --firm ID, not --top" in result.output
    result = runner.invoke(app, [*base, *events, "--firm", due, "--review-model", str(bundle_dir)])
    assert result.exit_code == 1 and "--review-model needs a review model" in result.output
    result = runner.invoke(app, ["explain", "--model", str(review_dir), "--input", str(folder / "panel.parquet"),
                                 "--out", str(tmp_path / "r.json"), "--firm", due])
    assert result.exit_code == 1 and "review in --review-model" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r.json").exists()
    assert np.isfinite(holders["p"])
