"""Evaluation metrics on hand-made cases."""

import numpy as np
import pandas as pd
import pytest


def test_metrics_on_known_cases():
    from lgml.modeling.evaluate import expected_calibration_error, topk_precision

    y = np.array([0, 0, 1, 1, 0, 1])
    groups = pd.DataFrame({"province": ["A", "A", "A", "B", "B", "B"], "batch_year": 2025})
    # A has 1 positive: its top-1 is the positive; B has 2: its top-2 hold one of them.
    score = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.7])
    assert topk_precision(y, score, groups) == pytest.approx(2 / 3)
    # Bins {0.1, 0.2}, {0.3, 0.4}, {0.5, 0.6}: |0 - 0.15|, |1 - 0.35|, |0.5 - 0.55|.
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert expected_calibration_error(y, p, n_bins=3) == pytest.approx((0.15 + 0.65 + 0.05) / 3)
    assert expected_calibration_error(y.astype(float), y.astype(float), n_bins=2) == 0


def test_growth_metrics_separate_the_years_level_from_the_firms_order():
    from lgml.modeling.evaluate import regression_metrics

    year = np.array([2024] * 4 + [2025] * 4)
    firm = np.array([-0.1, 0.0, 0.1, 0.2, -0.1, 0.0, 0.1, 0.2])
    level = np.where(year == 2024, 0.05, -0.03)
    actual = level + firm
    # right order within each year, but one level for both years, 0.02 too high on average
    pred = firm + 0.03
    m = regression_metrics(actual, pred, year, interval=(pred - 0.15, pred + 0.05))
    assert m["r2_within"] == pytest.approx(1.0)
    assert m["level_error"] == pytest.approx(0.03 - 0.01)
    assert m["r2"] < m["r2_within"]
    assert m["spearman"] == pytest.approx(pd.Series(actual).rank().corr(pd.Series(pred).rank()))
    # actual - pred is +0.02 in 2024 and -0.06 in 2025: inside [-0.15, +0.05] both times
    assert m["coverage"] == 1.0
    narrow = regression_metrics(actual, pred, year, interval=(pred - 0.01, pred + 0.03))
    assert narrow["coverage"] == 0.5
    assert "r2_within" not in regression_metrics(actual, pred) and "coverage" not in regression_metrics(actual, pred)
