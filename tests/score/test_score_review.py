"""``lgml score --review-model``: p_review_pass for the holders due for re-review only, the
summary's expected review failures, the model identity, the CLI line, and the Dask engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from typer.testing import CliRunner

from lgml.cli import app
from lgml.features import feature_rows
from lgml.modeling.bundle import load_bundle
from lgml.score import score_file

runner = CliRunner()


@pytest.fixture(scope="module")
def reviewed(models, data, review_dir, small_sim, tmp_path_factory):
    """Scores with the review model (year 2024: holders due in batch 2025, 23 of them in one
    review, levelled), and the review model's own predictions of the feature rows, computed here."""
    out = tmp_path_factory.mktemp("review") / "s.parquet"
    result = score_file(models["designation"], data["parquet"], out, events=data["events"], review_model=review_dir,
                        year=2024, summary=out.with_name("summary.csv"))
    review = load_bundle(review_dir)
    table = feature_rows(small_sim.panel, events=small_sim.events, context=load_bundle(models["designation"]).context,
                         year=2024)
    due = table["review_due"].to_numpy(dtype=bool)
    expected = pd.Series(np.nan, index=table["firm_id"].astype(str))
    expected[due] = review.calibrator.transform(review.predict_raw(table[due]))
    # Each review (batch, years held) of at least 20 holders levelled to the model's pass rate.
    assert review.metadata["pass_rate"]["rate"] == 0.87
    cohorts = table["batch_year"].to_numpy() * 100 + table["title_years"].to_numpy()
    for cohort in np.unique(cohorts[due]):
        rows = due & (cohorts == cohort)
        if rows.sum() >= 20:
            p = expected[rows].to_numpy()
            shift = brentq(lambda s: (1 / (1 + np.exp(-(np.log(p / (1 - p)) + s)))).mean() - 0.87, -20, 20)
            expected[rows] = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + shift)))
    return result, pd.read_parquet(out), expected, review


def test_p_review_pass_only_on_rows_due_for_review(reviewed):
    result, scores, expected, review = reviewed
    due = scores["review_due"].to_numpy(dtype=bool)
    assert scores["review_due"].dtype == bool and due.sum() >= 10
    assert result.review_due == due.sum()
    # Every due row is a title holder with a probability of passing; nobody else has one.
    assert scores.loc[due, "holds_title"].astype(bool).all()
    assert scores.loc[due, "p_review_pass"].between(0, 1).all() and scores.loc[~due, "p_review_pass"].isna().all()
    got = scores.set_index("firm_id")["p_review_pass"]
    np.testing.assert_allclose(got.to_numpy(), expected.reindex(got.index).to_numpy(), rtol=1e-12)
    assert scores.loc[due, "p_review_pass"].nunique() > 1  # the model separates holders
    # Candidates still get their designation probability; due holders have none.
    assert scores.loc[due, "probability"].isna().all()
    assert scores["review_model"].eq(review.name).all() and scores["review_model_version"].eq(review.version).all()
    assert result.review_model == f"{review.name} {review.version}"
    # The review of 23 holders averages the pass rate; the lone holder of the other keeps its own.
    levelled = scores[due].groupby(scores.loc[due, "review_round"])["p_review_pass"]
    assert levelled.size().to_dict() == {1.0: 23, 2.0: 1}
    assert levelled.mean()[1.0] == pytest.approx(0.87)
    assert result.review_level.startswith("levelled to the model's pass rate 87% in 1 of 2 review(s)")


def test_summary_counts_expected_review_failures(reviewed):
    result, scores, _, _ = reviewed
    summary = result.summary.set_index("province")
    due = scores[scores["review_due"]]
    assert summary.loc["All", "review_due"] == len(due)
    assert summary.loc["All", "expected_review_failures"] == pytest.approx((1 - due["p_review_pass"]).sum())
    per = due.groupby("province")["p_review_pass"].agg(lambda p: (1 - p).sum())
    for province, fails in per.items():
        assert summary.loc[province, "expected_review_failures"] == pytest.approx(fails)
    written = pd.read_csv(result.summary_output)
    assert written["review_due"].iloc[-1] == len(due)


def test_cli_prints_the_review_line(models, data, review_dir, tmp_path):
    result = runner.invoke(app, ["score", "--model", str(models["designation"]), "--input", str(data["parquet"]),
                                 "--output", str(tmp_path / "s.parquet"), "--events", str(data["events"]),
                                 "--review-model", str(review_dir), "--year", "2024"])
    assert result.exit_code == 0, result.output
    due = int(pd.read_parquet(tmp_path / "s.parquet")["review_due"].sum())
    assert f"Re-review: {due:,} holders due in the next batch, scored with test-review" in result.output
    assert "levelled to the model's pass rate 87%" in " ".join(result.output.split())
    assert "review" in result.output and "fails" in result.output  # the summary table's columns


def test_dask_partitions_load_review_and_horizon_models_from_their_folders(models, data, review_dir, horizon3_dir,
                                                                            small_sim):
    """What a Dask worker runs (:func:`lgml.score.engines._score_partition`): the job carries
    folders and hashes only, the worker loads every bundle itself; equal to local scoring."""
    from lgml.score import engines
    from lgml.score.core import score_rows

    bundles = {name: load_bundle(path) for name, path in
               (("h1", models["designation"]), ("h3", horizon3_dir), ("review", review_dir))}
    job = engines.ScoringJob(engines.bundle_identity(bundles["h1"]), None, small_sim.events, bundles["h1"].context,
                             2024, False, "panel", None, engines.bundle_identity(bundles["review"]),
                             (engines.bundle_identity(bundles["h3"]),))
    panel = small_sim.panel[small_sim.panel["firm_id"].isin(small_sim.panel["firm_id"].unique()[:400])]
    on_worker = engines._score_partition(panel, job)
    local = score_rows(panel, bundles["h1"], events=small_sim.events, year=2024, review=bundles["review"],
                       others=[bundles["h3"]])
    pd.testing.assert_frame_equal(on_worker.reset_index(drop=True), local.reset_index(drop=True))
    assert on_worker["p_review_pass"].notna().any() and on_worker["probability_h3"].notna().any()
    assert engines.bundle_at(*job.review) is engines.bundle_at(*job.review)  # loaded once per process


def test_level_reviews_shifts_each_review_and_leaves_models_without_a_pass_rate():
    from types import SimpleNamespace

    from lgml.score.core import level_reviews

    scored = pd.DataFrame({"batch_year": [2025] * 30 + [2026] * 5, "review_round": [1.0] * 25 + [2.0] * 10,
                           "p_review_pass": np.r_[np.linspace(0.5, 0.9, 30), [np.nan] * 5]})
    same, line = level_reviews(scored, SimpleNamespace(metadata={"pass_rate": None}))
    assert same is scored and line is None
    out, line = level_reviews(scored, SimpleNamespace(metadata={"pass_rate": {"rate": 0.6}}))
    first = out["p_review_pass"].iloc[:25]
    assert first.mean() == pytest.approx(0.6) and first.is_monotonic_increasing
    np.testing.assert_array_equal(out["p_review_pass"].iloc[25:30], scored["p_review_pass"].iloc[25:30])  # 5 only
    assert out["p_review_pass"].iloc[30:].isna().all()
    assert line.startswith("levelled to the model's pass rate 60% in 1 of 2 review(s)")
