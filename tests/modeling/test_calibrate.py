"""Calibrators: strictly increasing where promised, JSON round trip, sensible fits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lgml.modeling.calibrate import (PlattCalibrator, SplineCalibrator, calibrator_from_dict, make_calibrator,
                                     sigmoid)

STRICT = ("spline", "platt", "none")


def _data(seed: int, n: int, slope: float = 0.9, shift: float = -0.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = rng.normal(-3.0, 1.5, n)
    y = (rng.random(n) < sigmoid(slope * raw + shift)).astype(int)
    return raw, y


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(20, 3_000), slope=st.floats(0.2, 3.0),
       shift=st.floats(-3.0, 3.0), spread=st.floats(1e-6, 50.0), method=st.sampled_from(STRICT))
def test_strict_calibrators_keep_every_distinct_score_distinct(seed, n, slope, shift, spread, method):
    raw, y = _data(seed, n, slope, shift)
    cal = make_calibrator(method).fit(raw, y)
    # new scores anywhere: inside the fitted range, beyond it, and close together
    rng = np.random.default_rng(seed + 1)
    scores = np.unique(np.concatenate([rng.normal(-3.0, spread, 500), raw[:50] + 1e-9, [-60.0, 60.0]]))
    p = cal.transform(scores)
    assert np.all((p >= 0) & (p <= 1))
    steps = np.diff(p)
    # strictly increasing wherever float64 can still tell the probabilities apart
    resolvable = np.abs(np.diff(scores)) > 1e-9 * np.maximum(1.0, np.abs(scores[1:]))
    assert np.all(steps >= 0)
    assert np.all(steps[resolvable & (p[1:] < 1 - 1e-12) & (p[:-1] > 1e-300)] > 0)


def test_spline_is_as_well_calibrated_as_isotonic_on_held_out_rows():
    raw, y = _data(0, 40_000)
    test_raw, test_y = _data(1, 40_000)
    bins = np.quantile(test_raw, np.linspace(0, 1, 21))

    def ece(p: np.ndarray) -> float:
        which = np.clip(np.searchsorted(bins, test_raw, side="right") - 1, 0, 19)
        return sum(abs(p[which == b].mean() - test_y[which == b].mean()) * np.mean(which == b) for b in range(20))

    spline = make_calibrator("spline").fit(raw, y).transform(test_raw)
    isotonic = make_calibrator("isotonic").fit(raw, y).transform(test_raw)
    assert ece(spline) <= 0.005
    assert ece(spline) <= ece(isotonic) + 0.002
    assert len(np.unique(spline)) == len(np.unique(test_raw))
    assert len(np.unique(isotonic)) < len(np.unique(test_raw)) / 10  # the ties the spline removes


def test_spline_tails_continue_with_the_platt_slope():
    raw, y = _data(3, 20_000, slope=1.3)
    cal = SplineCalibrator().fit(raw, y)
    platt = PlattCalibrator().fit(raw, y)
    assert cal.slope_ == pytest.approx(platt.a_)
    far = np.array([cal.x_[-1] + 1.0, cal.x_[-1] + 2.0])
    np.testing.assert_allclose(np.diff(cal.log_odds(far)), [platt.a_])


def test_spline_without_positives_still_increases():
    raw = np.linspace(-5, 0, 300)
    cal = SplineCalibrator().fit(raw, np.zeros(300))
    assert cal.slope_ == SplineCalibrator.MIN_SLOPE
    p = cal.transform(np.linspace(-6, 1, 50))
    assert np.all(np.diff(p) > 0) and p.max() < 0.01


def test_spline_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one length"):
        SplineCalibrator().fit(np.zeros(3), np.zeros(2))


@pytest.mark.parametrize("method", ["spline", "isotonic", "platt", "none"])
def test_calibrators_round_trip_through_json_exactly(method):
    raw, y = _data(5, 5_000)
    cal = make_calibrator(method).fit(raw, y)
    again = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    scores = np.linspace(-12, 6, 1_001)
    np.testing.assert_array_equal(again.transform(scores), cal.transform(scores))
    p = cal.transform(raw)
    assert ((p >= 0) & (p <= 1)).all()
    if method != "none":  # fitted calibrators match the observed rate
        assert abs(p.mean() - y.mean()) < 0.01
