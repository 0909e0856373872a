"""Calibrators: fitted on raw scores, saved as JSON."""

import json

import numpy as np
import pytest


@pytest.mark.parametrize("method", ["isotonic", "platt", "none"])
def test_calibrators_round_trip_through_json(method):
    from lgml.modeling.calibrate import calibrator_from_dict, make_calibrator

    rng = np.random.default_rng(0)
    raw = rng.normal(-3, 1.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(0.5 * raw - 1)))).astype(int)
    cal = make_calibrator(method).fit(raw, y)
    again = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_array_equal(again.transform(raw), cal.transform(raw))
    p = cal.transform(raw)
    assert ((p >= 0) & (p <= 1)).all()
    if method != "none":  # fitted calibrators match the observed rate
        assert abs(p.mean() - y.mean()) < 0.01
