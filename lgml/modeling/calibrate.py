"""Probability calibration of a binary model's log-odds, fitted on held-out batches.

Calibrators map raw scores (log-odds, shape (n,)) to probabilities and serialise to plain
JSON: the monotone spline as its knots and tail slopes, isotonic as its threshold arrays, Platt
as two coefficients. No pickle.

``spline`` (the default) is strictly increasing in the score, so a ranking by probability is the
ranking by the model's score: isotonic regression finds the blocks of the calibration curve,
and a monotone cubic (PCHIP) through the blocks' centres, in log-odds, joins them, with
straight Platt-slope tails beyond the first and last block. ``isotonic`` is flat below its
lowest threshold and between thresholds' plateaus, so many firms share one probability;
``platt`` is strictly increasing but bends only one way.

Example:
    >>> import numpy as np
    >>> cal = PlattCalibrator().fit(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), np.array([0, 0, 1, 0, 1]))
    >>> cal2 = calibrator_from_dict(cal.to_dict())
    >>> bool(np.allclose(cal.transform(np.zeros(1)), cal2.transform(np.zeros(1))))
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Probability from log-odds, without overflow at large |x|."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=float)))


class IdentityCalibrator:
    """No calibration: probability = sigmoid(log-odds)."""

    method = "none"

    def fit(self, raw: np.ndarray, y: np.ndarray) -> IdentityCalibrator:
        """Nothing to learn; returns self."""
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities of shape (n,) from log-odds of shape (n,)."""
        return sigmoid(raw)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method}


class PlattCalibrator:
    """Platt scaling: probability = sigmoid(a * log-odds + b), fitted by maximum likelihood.

    Attributes:
        a_: Slope on the log-odds.
        b_: Intercept.
    """

    method = "platt"
    MIN_SLOPE = 1e-3  # a score that does not rank still must not rank backwards

    def fit(self, raw: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        """Fit on log-odds ``raw`` of shape (n,) and 0/1 labels ``y`` of shape (n,). The slope is
        kept at or above ``MIN_SLOPE``, so probabilities always increase with the score; with
        one class only, the intercept gives the observed rate within ``[1/(2n), 1 - 1/(2n)]``."""
        from sklearn.linear_model import LogisticRegression

        raw, y = np.asarray(raw, dtype=float).reshape(-1, 1), np.asarray(y, dtype=int)
        if 0 < y.sum() < len(y):
            model = LogisticRegression(C=1e6, max_iter=1000).fit(raw, y)
            self.a_, self.b_ = float(model.coef_[0, 0]), float(model.intercept_[0])
        else:
            self.a_, self.b_ = 0.0, 0.0
        if self.a_ < self.MIN_SLOPE:  # refit the intercept alone at the floored slope
            eps = 0.5 / max(len(y), 1)
            rate = float(np.clip(y.mean() if len(y) else 0.5, eps, 1 - eps))
            self.a_ = self.MIN_SLOPE
            self.b_ = float(np.log(rate / (1 - rate)) - self.a_ * raw.mean()) if len(raw) else 0.0
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities of shape (n,) from log-odds of shape (n,)."""
        return sigmoid(self.a_ * np.asarray(raw, dtype=float) + self.b_)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "a": self.a_, "b": self.b_}


class IsotonicCalibrator:
    """Isotonic regression of the label on log-odds, piecewise linear between thresholds and
    flat beyond them. Probabilities are kept within ``[1 / (2n), 1 - 1 / (2n)]`` for ``n``
    fitting rows: a block without a single positive says the rate is small, not zero.

    Attributes:
        x_: Log-odds thresholds, increasing, shape (m,).
        y_: Probabilities at the thresholds, non-decreasing, shape (m,).
    """

    method = "isotonic"

    def fit(self, raw: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        """Fit on log-odds ``raw`` of shape (n,) and 0/1 labels ``y`` of shape (n,)."""
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
        iso.fit(np.asarray(raw, dtype=float), np.asarray(y, dtype=float))
        eps = 0.5 / max(len(raw), 1)
        self.x_ = np.asarray(iso.X_thresholds_, dtype=float)
        self.y_ = np.clip(np.asarray(iso.y_thresholds_, dtype=float), eps, 1 - eps)
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities of shape (n,) from log-odds of shape (n,)."""
        return np.interp(np.asarray(raw, dtype=float), self.x_, self.y_)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": self.x_.tolist(), "y": self.y_.tolist()}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.log(p) - np.log1p(-p)


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities (clipped to 1e-12 .. 1 - 1e-12), shape of ``p``."""
    return _logit(np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12))


class SplineCalibrator:
    """Strictly increasing calibration: a monotone cubic (PCHIP) in log-odds through the
    centres of the isotonic blocks, extended by straight tails.

    Isotonic regression of the label on the model's log-odds pools the rows into blocks of
    increasing rate. Each block becomes a knot: x = the mean log-odds of its rows, y = the logit
    of its rate, kept within ``[1 / (2n), 1 - 1 / (2n)]`` for ``n`` fitting rows (a block
    without a positive says the rate is small, not zero). Knot y values increase strictly, so
    PCHIP between them increases strictly; beyond the outer knots the curve continues in a
    straight line (in log-odds) with the Platt slope fitted on the same rows. Neighbouring
    blocks whose knots rise by less than ``MIN_SLOPE`` are pooled, and the tail slope is
    floored at it, so the curve is nowhere nearly flat. Equal scores get equal probabilities; different scores never do,
    up to floating-point resolution.

    Attributes:
        x_: Knot positions in the model's log-odds, strictly increasing, shape (m,).
        y_: Calibrated log-odds at the knots, strictly increasing, shape (m,).
        slope_: Tail slope (calibrated log-odds per model log-odds), > 0.
    """

    method = "spline"
    MIN_SLOPE = 0.05  # calibrated log-odds per model log-odds, at least, everywhere

    def fit(self, raw: np.ndarray, y: np.ndarray) -> SplineCalibrator:
        """Fit on log-odds ``raw`` of shape (n,) and 0/1 labels ``y`` of shape (n,).

        Raises:
            ValueError: ``raw`` and ``y`` differ in length or are empty.
        """
        from sklearn.isotonic import IsotonicRegression

        raw, y = np.asarray(raw, dtype=float), np.asarray(y, dtype=float)
        if len(raw) != len(y) or not len(raw):
            raise ValueError(f"raw ({len(raw)}) and y ({len(y)}) must be non-empty and of one length")
        order = np.argsort(raw, kind="stable")
        rate = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit_transform(raw, y)[order]
        # Consecutive rows (by score) with one fitted rate form a block: (rows, sum of scores, positives).
        starts = np.flatnonzero(np.r_[True, np.diff(rate) != 0])
        blocks = [[len(r), s.sum(), t.sum()] for r, s, t in
                  zip(np.split(rate, starts[1:]), np.split(raw[order], starts[1:]), np.split(y[order], starts[1:]))]
        self.x_, self.y_ = self._knots(blocks, eps=0.5 / len(raw))
        self.slope_ = max(PlattCalibrator().fit(raw, y).a_, self.MIN_SLOPE)
        return self

    def _knots(self, blocks: list[list[float]], eps: float) -> tuple[np.ndarray, np.ndarray]:
        """Knots (mean score, logit of the rate) of the blocks, pooling neighbours whose knots
        rise by less than ``MIN_SLOPE``, so that no stretch of the curve is nearly flat."""
        while True:
            n, score, positives = (np.array(c, dtype=float) for c in zip(*blocks))
            x, knots = score / n, _logit(np.clip(positives / n, eps, 1 - eps))
            secant = np.diff(knots) / np.maximum(np.diff(x), 1e-300)
            if not len(secant) or secant.min() >= self.MIN_SLOPE:
                return x, knots
            i = int(np.argmin(secant))
            blocks[i:i + 2] = [[a + b for a, b in zip(blocks[i], blocks[i + 1])]]

    def log_odds(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated log-odds of shape (n,) from model log-odds of shape (n,)."""
        raw = np.asarray(raw, dtype=float)
        x, y = self.x_, self.y_
        out = np.empty_like(raw)
        low, high = raw <= x[0], raw >= x[-1]
        out[low] = y[0] + self.slope_ * (raw[low] - x[0])
        out[high] = y[-1] + self.slope_ * (raw[high] - x[-1])
        inside = ~(low | high)
        if inside.any():
            from scipy.interpolate import PchipInterpolator

            out[inside] = PchipInterpolator(x, y, extrapolate=False)(raw[inside])
        return out

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities of shape (n,) from log-odds of shape (n,); strictly increasing."""
        return sigmoid(self.log_odds(raw))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": self.x_.tolist(), "y": self.y_.tolist(), "slope": self.slope_}


Calibrator = IdentityCalibrator | PlattCalibrator | IsotonicCalibrator | SplineCalibrator
_METHODS = {c.method: c for c in (IdentityCalibrator, PlattCalibrator, IsotonicCalibrator, SplineCalibrator)}


def make_calibrator(method: str) -> Calibrator:
    """An unfitted calibrator: ``spline``, ``isotonic``, ``platt`` or ``none``."""
    if method not in _METHODS:
        raise ValueError(f"unknown calibration {method!r}; allowed: {sorted(_METHODS)}")
    return _METHODS[method]()


def calibrator_from_dict(data: dict[str, Any]) -> Calibrator:
    """Rebuild a fitted calibrator from :meth:`to_dict` output."""
    cal = make_calibrator(data["method"])
    if isinstance(cal, PlattCalibrator):
        cal.a_, cal.b_ = float(data["a"]), float(data["b"])
    elif isinstance(cal, (IsotonicCalibrator, SplineCalibrator)):
        cal.x_, cal.y_ = np.asarray(data["x"], dtype=float), np.asarray(data["y"], dtype=float)
        if isinstance(cal, SplineCalibrator):
            cal.slope_ = float(data["slope"])
    return cal


def shift_to_count(p: np.ndarray, expected: float) -> tuple[np.ndarray, float]:
    """Shift probabilities by one constant in log-odds so that they sum to ``expected``.

    A calibrator carries the base rate of the batch it was fitted on. When the size of the
    forecast batch is known (announced, or a province's quota) the intercept is refitted to it:
    ``p' = sigmoid(logit(p) + shift)`` with ``sum(p') = expected``. Every firm keeps its rank.

    Args:
        p: Probabilities of shape (n,) (NaN rows are ignored and stay NaN).
        expected: Designations expected among the rows, 0 < expected < number of rows.

    Returns:
        The shifted probabilities and the shift (log-odds).

    Raises:
        ValueError: ``expected`` is not strictly between 0 and the number of rows with a
            probability, or no probability is strictly between 0 and 1.
    """
    p = np.asarray(p, dtype=float)
    known = np.isfinite(p)
    n = int(known.sum())
    if not (np.isfinite(expected) and 0 < expected < n):
        raise ValueError(f"expected designations must be above 0 and below the {n:,} candidates, not {expected}")
    logit = _logit(np.clip(p[known], 1e-12, 1 - 1e-12))
    lo, hi = -50.0, 50.0
    for _ in range(100):  # sum(sigmoid(logit + s)) increases with s: bisection
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sigmoid(logit + mid).sum() < expected else (lo, mid)
    shift = (lo + hi) / 2
    out = np.full(len(p), np.nan)
    out[known] = sigmoid(logit + shift)
    return out, shift


MIN_LEVEL_ROWS = 20  # holders of one review needed to set its pass-rate level


def review_cohorts(table: Any) -> np.ndarray:
    """The re-review each row belongs to, as one number ``review_batch * 100 + years held``
    (the batch year of the review and the cohort's years since its title), shape (n,): the
    published pass rates are per cohort and review."""
    return (table["batch_year"].to_numpy(dtype=float) * 100 + table["title_years"].to_numpy(dtype=float))


def shift_to_rate(p: np.ndarray, groups: np.ndarray, rate: float,
                  min_rows: int = MIN_LEVEL_ROWS) -> tuple[np.ndarray, dict[float, float | None]]:
    """Shift each group's probabilities by one constant in log-odds so that they average
    ``rate`` (:func:`shift_to_count` per group). Pass rates of re-reviews are set by policy
    (57% for batch 1, 87% in 2025), not by the firms, like the size of a designation batch:
    the model tells the holders of one review apart, the rate sets their level. Ranks within
    a group do not change; NaN rows stay NaN. A group of fewer than ``min_rows`` rows is too
    small to set a level on and keeps its probabilities (its shift is None).

    Args:
        p: Probabilities, shape (n,).
        groups: Group of each row (:func:`review_cohorts`), shape (n,).
        rate: Share expected to pass, 0 < rate < 1.
        min_rows: Smallest group shifted.

    Returns:
        The shifted probabilities and the shift (log-odds) of each group.
    """
    if not (np.isfinite(rate) and 0 < rate < 1):
        raise ValueError(f"the pass rate must be strictly between 0 and 1, not {rate}")
    p = np.asarray(p, dtype=float)
    groups = np.asarray(groups, dtype=float)
    out, shifts = p.copy(), {}
    known = np.isfinite(p) & np.isfinite(groups)
    for group in np.unique(groups[known]):
        rows = known & (groups == group)
        if rows.sum() < min_rows:
            shifts[float(group)] = None
            continue
        out[rows], shift = shift_to_count(p[rows], rate * rows.sum())
        shifts[float(group)] = float(shift)
    return out, shifts
