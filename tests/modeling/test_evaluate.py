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
