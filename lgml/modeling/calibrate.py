"""Probability calibration of a binary model's log-odds, fitted on held-out batches.

Calibrators map raw scores (log-odds, shape (n,)) to probabilities and serialise to plain
JSON: isotonic as its threshold arrays, Platt as two coefficients. No pickle.

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
    """Probability from log-odds."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


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

    def fit(self, raw: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        """Fit on log-odds ``raw`` of shape (n,) and 0/1 labels ``y`` of shape (n,)."""
        from sklearn.linear_model import LogisticRegression

        raw = np.asarray(raw, dtype=float).reshape(-1, 1)
        model = LogisticRegression(C=1e6, max_iter=1000).fit(raw, np.asarray(y, dtype=int))
        self.a_, self.b_ = float(model.coef_[0, 0]), float(model.intercept_[0])
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


Calibrator = IdentityCalibrator | PlattCalibrator | IsotonicCalibrator
_METHODS = {c.method: c for c in (IdentityCalibrator, PlattCalibrator, IsotonicCalibrator)}


def make_calibrator(method: str) -> Calibrator:
    """An unfitted calibrator: ``isotonic``, ``platt`` or ``none``."""
    if method not in _METHODS:
        raise ValueError(f"unknown calibration {method!r}; allowed: {sorted(_METHODS)}")
    return _METHODS[method]()


def calibrator_from_dict(data: dict[str, Any]) -> Calibrator:
    """Rebuild a fitted calibrator from :meth:`to_dict` output."""
    cal = make_calibrator(data["method"])
    if isinstance(cal, PlattCalibrator):
        cal.a_, cal.b_ = float(data["a"]), float(data["b"])
    elif isinstance(cal, IsotonicCalibrator):
        cal.x_, cal.y_ = np.asarray(data["x"], dtype=float), np.asarray(data["y"], dtype=float)
    return cal
