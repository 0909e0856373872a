"""Scoring core: the same scores in memory and streamed, one firm alone as in a batch, ranks,
the per-province summary, the designation-history notice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lgml.modeling.bundle import load_bundle
from lgml.score import score_file
from lgml.score.core import province_summary, rank_scores, score_panel

PREDICTIONS = ["probability", "growth", "growth_p10", "growth_p90"]


def _by_firm(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("firm_id").reset_index(drop=True)


def test_streamed_equals_in_memory(models, data, reference, small_sim):
    bundle, growth = load_bundle(models["designation"]), load_bundle(models["growth"])
    memory = score_panel(small_sim.panel, bundle, growth=growth, events=small_sim.events,
                            context=bundle.context)
    cols = ["firm_id", "year", *PREDICTIONS, "rank_national", "rank_province", "percentile_province"]
    pd.testing.assert_frame_equal(_by_firm(memory[cols]), _by_firm(reference[cols]))


def test_one_firm_alone_equals_the_same_firm_in_a_batch(models, small_sim, reference):
    bundle, growth = load_bundle(models["designation"]), load_bundle(models["growth"])
    firm = reference.loc[reference["probability"].notna(), "firm_id"].iloc[10]
    alone = score_panel(small_sim.panel[small_sim.panel["firm_id"] == firm], bundle, growth=growth,
                           events=small_sim.events, explain=True)
    batch = score_panel(small_sim.panel, bundle, growth=growth, events=small_sim.events, explain=True)
    cols = [c for c in alone.columns if c == "reasons" or c.startswith("shap_") or c in PREDICTIONS]
    pd.testing.assert_frame_equal(alone[cols].reset_index(drop=True),
                                  batch.loc[batch["firm_id"] == firm, cols].reset_index(drop=True))
    assert alone["rank_national"].iloc[0] == 1


def test_ranks_percentiles_and_title_holders(reference):
    holders = reference["holds_title"].astype(bool)
    assert holders.any() and reference.loc[holders, ["probability", "rank_national"]].isna().all().all()
    candidates = reference[~holders]
    assert candidates["probability"].between(0, 1).all()
    top = candidates.sort_values(["probability", "log_odds"]).iloc[-1]
    assert top["rank_national"] == 1 and top["percentile_national"] == 100
    for _, group in candidates.groupby("province"):
        best = group.sort_values(["probability", "log_odds"]).iloc[-1]
        assert best["rank_province"] == 1
        assert (group["rank_province"] == 1).sum() == (group[["probability", "log_odds"]] == best[
            ["probability", "log_odds"]].to_numpy(dtype=float)).all(axis=1).sum()
        assert (group["rank_province"] <= len(group)).all()
    assert reference["model"].eq("test-designation").all()
    assert reference["model_version"].str.len().gt(0).all()
    assert (reference["growth_p10"] <= reference["growth_p90"]).all()
    assert reference["designation_history"].str.startswith("events events.parquet").all()


def test_province_summary_sums_probabilities(reference):
    summary = province_summary(reference)
    total = summary.iloc[-1]
    assert total["province"] == "All" and total["firms"] == len(reference)
    assert total["expected_designations"] == pytest.approx(reference["probability"].sum())
    assert total["candidates"] + total["title_holders"] == total["firms"]
    assert summary.iloc[:-1]["p>=0.1"].sum() == (reference["probability"] >= 0.1).sum()


def test_without_events_the_output_says_which_history_the_model_saw(models, data, tmp_path):
    result = score_file(models["designation"], data["parquet"], tmp_path / "s.parquet")
    scores = pd.read_parquet(tmp_path / "s.parquet")
    assert scores["holds_title"].isna().all() and scores["probability"].notna().all()
    meta = load_bundle(models["designation"]).metadata
    assert "none given" in result.history and f"data sha256 {meta['data_hash'][:12]}" in result.history
    assert "labels of batches up to 2025" in result.history
    assert scores["designation_history"].eq(result.history).all()


def test_ties_in_probability_are_broken_by_the_models_score():
    scored = pd.DataFrame({
        "firm_id": list("abcdef"), "province": ["Jiangsu"] * 4 + ["Zhejiang"] * 2,
        "probability": [0.2, 0.2, 0.2, 0.1, np.nan, 0.3],
        "log_odds": [-1.0, -0.5, -0.5, -2.0, np.nan, -0.2],
    })
    ranked = rank_scores(scored).set_index("firm_id")
    assert ranked["rank_national"].tolist()[:4] == [4, 2, 2, 5] and pd.isna(ranked.loc["e", "rank_national"])
    assert ranked.loc["f", "rank_national"] == 1 and ranked.loc["f", "percentile_national"] == 100
    assert ranked.loc["a", "rank_province"] == 3 and ranked.loc["b", "rank_province"] == 1
    assert ranked.loc["b", "percentile_national"] == pytest.approx(80.0)  # b, c, a, d of five
    without = rank_scores(scored.drop(columns="log_odds")).set_index("firm_id")
    assert without.loc[["a", "b", "c"], "rank_national"].tolist() == [2, 2, 2]


def test_scores_carry_the_models_log_odds(reference, bundle_dir):
    candidates = reference[~reference["holds_title"].astype(bool)]
    calibrated = load_bundle(bundle_dir).calibrator.transform(candidates["log_odds"].to_numpy())
    np.testing.assert_allclose(calibrated, candidates["probability"].to_numpy())
    assert reference.loc[reference["holds_title"].astype(bool), "log_odds"].isna().all()


def test_every_distinct_score_keeps_a_distinct_probability(reference):
    """The session bundle calibrates with the default spline: no ties the model did not make."""
    candidates = reference[~reference["holds_title"].astype(bool)]
    assert candidates["probability"].nunique() >= 0.99 * candidates["log_odds"].nunique()
