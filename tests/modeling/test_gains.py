"""Gains on hand-made scores: exact counts and shares."""

import numpy as np
import pandas as pd
import pytest

from lgml.modeling.gains import batch_gains, captured_share, gains_by_batch, headline_k, rows_in_top, top_k_hits

Y = np.array([1, 0, 1, 0, 0, 0, 0, 1, 0, 0])
MODEL = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], dtype=float)  # designations ranked 1st, 3rd, 8th
RULES = np.array([1, 1, 1, 5, 5, 5, 5, 5, 0, 0], dtype=float)  # ties keep row order: ranks 4..8, then 1..3


def test_top_k_hits_counts_designations_among_the_highest_scores():
    assert [top_k_hits(Y, MODEL, k) for k in (0, 1, 2, 3, 8, 10)] == [0, 1, 1, 2, 3, 3]
    assert [top_k_hits(Y, RULES, k) for k in (1, 4, 5, 6, 8)] == [0, 0, 1, 2, 3]


def test_captured_share_uses_the_top_share_of_rows_rounded_up():
    assert [rows_in_top(s, 10) for s in (0, 0.01, 0.1, 0.25, 1)] == [0, 1, 1, 3, 10]
    assert captured_share(Y, MODEL, [0, 0.1, 0.3, 0.8, 1.0]) == pytest.approx([0, 1 / 3, 2 / 3, 1, 1])
    assert all(np.isnan(captured_share(np.zeros(4), np.arange(4.0), [0.5, 1])))


def test_headline_k_scales_down_for_small_batches():
    assert headline_k(5000) == 100 and headline_k(1000) == 100
    assert headline_k(600) == 60 and headline_k(50) == 10 and headline_k(4) == 4


def test_batch_gains_of_model_rules_and_an_oracle():
    oracle = np.where(Y == 1, 0.9, 0.1)
    oracle[1] = np.nan  # a row the truth lacks ranks last
    g = batch_gains(Y, {"model": MODEL, "rules": RULES, "oracle": oracle})
    assert (g["n"], g["n_pos"], g["k"]) == (10, 3, 10)
    assert g["top_k"] == {"model": 3, "rules": 3, "oracle": 3}
    first = g["table"][0]
    assert first["share"] == 0.01 and first["rows"] == 1
    assert (first["model"], first["rules"], first["oracle"]) == pytest.approx((1 / 3, 0, 1 / 3))
    assert g["table"][3]["rows"] == 2 and g["table"][3]["rules"] == 0
    assert g["curve"]["share"][:3] == [0, 0.01, 0.02] and len(g["curve"]["model"]) == 101
    assert g["curve"]["oracle"][30] == 1.0 and g["curve"]["rules"][50] == pytest.approx(1 / 3)


def test_gains_by_batch_splits_by_batch_year():
    test = pd.DataFrame({"batch_year": [2025] * 10 + [2024] * 4, "target": [*Y, 0, 1, 0, 1]})
    score = np.concatenate([MODEL, [4, 3, 2, 1]])
    out = gains_by_batch(test, {"model": score}, k=2)
    assert list(out) == ["2024", "2025"]
    assert out["2024"]["k"] == 2 and out["2024"]["top_k"]["model"] == 1
    assert out["2025"]["top_k"]["model"] == 1


def test_calibration_figure_draws_zero_rates_on_the_edge_not_at_a_floor():
    from lgml.modeling.plots import calibration_figure, pyplot

    y = np.r_[np.zeros(300), np.ones(3)]
    p = np.r_[np.linspace(0.001, 0.02, 300), [0.3, 0.4, 0.5]]
    fig = calibration_figure(y, {"model": p}, n_bins=5)
    ax = fig.axes[0]
    data_lines = [ln for ln in ax.lines if ln.get_transform() == ax.transData and len(ln.get_ydata())]
    assert all(min(ln.get_ydata()) > 1e-4 for ln in data_lines), "no point at an invented floor"
    edge = [ln for ln in ax.lines if ln.get_transform() != ax.transData and len(ln.get_ydata())]
    assert len(edge) == 1 and len(edge[0].get_ydata()) == 4 and set(edge[0].get_ydata()) == {0}
    assert any("observed 0" in t.get_text() for t in ax.get_legend().get_texts())
    pyplot().close(fig)
