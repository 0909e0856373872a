"""Exact TreeSHAP contributions in the model's raw units (log-odds for designation), grouped by
专精特新 dimension and translated into probability points.

Large tables are explained by the compiled kernels of :mod:`lgml.kernels.treeshap` (their
tables cached on disk by :mod:`lgml.kernels.cache`, in :func:`forest_cache_dir`), re-checked on
a few rows against LightGBM's own ``pred_contrib`` at every call."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lgml.vocabulary import DIMENSIONS, FEATURE_DIMENSIONS
from lgml.kernels import cache, treeshap

log = logging.getLogger(__name__)


ADDITIVITY_TOL = 1e-6
FAST_SHAP_MIN_ROWS = 2_000  # below this LightGBM's own pred_contrib is as fast
FAST_SHAP_SPOT_ROWS = 16  # rows re-checked against pred_contrib at every call
FOREST_CACHE_OFF = "off"  # LGML_CACHE_DIR=off turns the disk cache off

# ------------------------------------------------------------------------------------------------
# Contributions
# ------------------------------------------------------------------------------------------------


class AdditivityError(RuntimeError):
    """Contributions plus base do not add up to the model's raw score."""


def _normalise_contrib(values: Any, n_rows: int, n_features: int) -> np.ndarray:
    """The one place where LightGBM's ``pred_contrib`` output is brought to shape
    (n_rows, n_features + 1), the last column being the expected value."""
    if isinstance(values, list):  # some versions return one array per class
        values = values[-1]
    if hasattr(values, "toarray"):  # sparse input gives sparse output
        values = values.toarray()
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values.reshape(n_rows, -1)
    if values.shape != (n_rows, n_features + 1):
        raise ValueError(f"unexpected pred_contrib shape {values.shape}; expected ({n_rows}, {n_features + 1}) "
                         "(a single-output model)")
    return values


def forest_cache_dir() -> Path | None:
    """Where flattened forests are cached on disk.

    Returns:
        ``$LGML_CACHE_DIR/treeshap`` if that variable is set (and not empty), else
        ``$XDG_CACHE_HOME/lgml/treeshap``, else ``~/.cache/lgml/treeshap``; None when
        ``LGML_CACHE_DIR=off`` or no home folder is known.
    """
    root = os.environ.get("LGML_CACHE_DIR", "")
    if root.strip().lower() == FOREST_CACHE_OFF:
        return None
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        try:
            root = Path(xdg) / "lgml" if os.path.isabs(xdg) else Path.home() / ".cache" / "lgml"
        except RuntimeError:  # no home folder
            return None
    return Path(root) / "treeshap"


def fast_contributions(booster: Any, X: pd.DataFrame | np.ndarray) -> np.ndarray | None:
    """Exact TreeSHAP with the compiled kernels (:mod:`lgml.kernels.treeshap`), their tables
    kept on the booster and cached on disk in :func:`forest_cache_dir`.

    Args:
        booster: Single-output LightGBM booster.
        X: Model input frame of shape (n_rows, n_features) (``bundle.prepare`` output), or the
            float matrix LightGBM predicts from (categoricals as codes, NaN missing).

    Returns:
        Array of shape (n_rows, n_features + 1) as ``pred_contrib`` returns it (last column the
        expected value), or None when the model cannot be handled by the kernels.

    Raises:
        ValueError: ``X`` does not have the model's number of features.
    """
    try:
        forest = cache.cached_forest(booster, forest_cache_dir())
    except ImportError:  # numba unavailable
        return None
    if forest is None:
        return None
    if isinstance(X, pd.DataFrame):
        from lgml.modeling.matrix import lightgbm_matrix

        matrix = lightgbm_matrix(X, booster.pandas_categorical)
    else:
        matrix = np.ascontiguousarray(X, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != booster.num_feature():  # the kernels do not check bounds
        raise ValueError(f"expected {booster.num_feature()} feature columns, got shape {matrix.shape}")
    return treeshap.shap_values(forest, matrix)


def _pred_contrib(booster: Any, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    return _normalise_contrib(booster.predict(X, pred_contrib=True), len(X), X.shape[1])


def contributions(bundle: Any, table: pd.DataFrame, raw: np.ndarray | None = None,
                  matrix: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Exact TreeSHAP contributions of every feature, in the model's raw units.

    Uses ``booster.predict(X, pred_contrib=True)`` on ``bundle.model_matrix(table)`` (the same
    algorithm shap's TreeExplainer runs for LightGBM), normalised here in one place, and checks
    additivity: ``contrib.sum(axis=1) + base`` equals ``bundle.predict_raw(table)``.

    Args:
        bundle: A loaded :class:`lgml.modeling.bundle.Bundle`.
        table: Feature table of shape (n_rows, >= n_features).
        raw: ``bundle.predict_raw(table)`` when the caller already has it (the additivity check
            then needs no second prediction); shape (n_rows,).
        matrix: ``bundle.model_matrix(table)`` when the caller already has it (the model input
            is then not built a second time).

    Returns:
        ``(contrib, base)``: ``contrib`` a DataFrame of shape (n_rows, n_features) in log-odds
        (designation) or log growth (growth), columns ``bundle.features``, index
        ``table.index``; ``base`` an array of shape (n_rows,), the model's expected raw value.

    Raises:
        AdditivityError: The sum differs from the raw score by more than 1e-6 on any row.
        lgml.modeling.bundle.BundleInputError: ``table`` does not fit the model.

    Example:
        >>> contrib, base = contributions(bundle, table)  # doctest: +SKIP
        >>> np.allclose(contrib.sum(1) + base, bundle.predict_raw(table))  # doctest: +SKIP
        True
    """
    X = bundle.model_matrix(table) if matrix is None else matrix
    features = bundle.features
    if X.shape != (len(table), len(features)):
        raise ValueError(f"matrix must have shape {(len(table), len(features))}, not {X.shape}")
    if len(X) == 0:
        return pd.DataFrame(np.zeros((0, len(features))), index=table.index, columns=features), np.zeros(0)
    values = fast_contributions(bundle.booster, X) if len(X) >= FAST_SHAP_MIN_ROWS else None
    if values is None:
        values = _pred_contrib(bundle.booster, X)
    else:  # the tabulated kernels must agree with LightGBM's own TreeSHAP
        spot = np.linspace(0, len(X) - 1, FAST_SHAP_SPOT_ROWS).astype(int)
        gap = float(np.max(np.abs(values[spot] - _pred_contrib(bundle.booster, X[spot]))))
        if not gap <= ADDITIVITY_TOL:
            log.warning("tabulated TreeSHAP differs from pred_contrib by %.3g; using pred_contrib", gap)
            values = _pred_contrib(bundle.booster, X)
    # a view of the kernel's fresh output: no copy of n_rows x n_features floats
    contrib = pd.DataFrame(values[:, :-1], index=table.index, columns=features, copy=False)
    base = values[:, -1].copy()
    if len(X):
        if raw is None:
            raw = bundle.raw_from_matrix(X)
        elif np.shape(raw) != (len(X),):
            raise ValueError(f"raw must have one value per row ({len(X)}), not shape {np.shape(raw)}")
        gap = np.abs(values.sum(axis=1) - np.asarray(raw, dtype=float))
        worst = float(np.nanmax(gap))
        if not worst <= ADDITIVITY_TOL:
            raise AdditivityError(f"contributions + base differ from the raw score by up to {worst:.3g} "
                                  f"(tolerance {ADDITIVITY_TOL:g})")
    return contrib, base


def group_contributions(contrib: pd.DataFrame, groups: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Sum contributions per criterion dimension.

    Args:
        contrib: Contributions of shape (n_rows, n_features), any units (they are summed).
        groups: Feature -> group; default :data:`lgml.vocabulary.FEATURE_DIMENSIONS`. Features with
            no group are summed under ``other``.

    Returns:
        DataFrame of shape (n_rows, n_groups), same units and index as ``contrib``; one column
        per group of :data:`lgml.vocabulary.DIMENSIONS` in that order (0 where a group has no
        feature), then ``other`` if needed. Rows sum to ``contrib``'s row sums.
    """
    groups = FEATURE_DIMENSIONS if groups is None else groups
    names = [groups.get(c, "other") for c in contrib.columns]
    order = list(DIMENSIONS) + (["other"] if "other" in names else []) + sorted(set(names) - set(DIMENSIONS) - {"other"})
    members = np.zeros((len(names), len(order)))
    members[np.arange(len(names)), [order.index(n) for n in names]] = 1.0
    return pd.DataFrame(contrib.to_numpy(dtype=float) @ members, index=contrib.index, columns=order)


def probability_points(contrib: pd.DataFrame, base: np.ndarray, calibrate: Callable[[np.ndarray], np.ndarray],
                       method: str = "proportional", *, eps: float = 1e-9) -> pd.DataFrame:
    """Translate log-odds contributions into percentage points of calibrated probability.

    The calibrated probability moves from ``p0 = calibrate(base)`` (the model's expected
    log-odds, calibrated) to ``p = calibrate(base + sum(contrib))``. That difference is
    allocated exactly:

    * ``proportional`` (default): each feature gets ``contrib_i * (p - p0) / (raw - base)``,
      i.e. its log-odds times the secant slope of the calibration curve between the base and
      the firm's score. Signs are kept (calibration is non-decreasing) and the result does not
      depend on any ordering. When ``|raw - base| < eps`` the local slope at ``base`` is used.
    * ``sequential``: features are added one by one in order of decreasing ``|contrib|`` and
      each gets the change in calibrated probability its step causes:
      ``calibrate(base + c_1 + ... + c_i) - calibrate(base + c_1 + ... + c_{i-1})``
      (the waterfall reading; depends on the order).

    Either way each row sums to ``100 * (p - p0)``.

    Args:
        contrib: Log-odds contributions of shape (n_rows, n_features).
        base: Expected log-odds of shape (n_rows,).
        calibrate: Log-odds (n,) -> probability (n,), e.g. ``bundle.calibrator.transform``.
        method: ``proportional`` or ``sequential``.

    Returns:
        DataFrame like ``contrib`` in percentage points.

    Raises:
        ValueError: Unknown method.
    """
    C = contrib.to_numpy(dtype=float)
    base = np.asarray(base, dtype=float)
    raw = base + C.sum(axis=1)
    if method == "proportional":
        p, p0 = calibrate(raw), calibrate(base)
        delta = raw - base
        h = 1e-4
        local = (calibrate(base + h) - calibrate(base - h)) / (2 * h)
        safe = np.where(np.abs(delta) < eps, 1.0, delta)
        slope = np.where(np.abs(delta) < eps, local, (p - p0) / safe)
        points = C * slope[:, None]
    elif method == "sequential":
        order = np.argsort(-np.abs(C), axis=1, kind="stable")
        steps = np.take_along_axis(C, order, axis=1)
        path = base[:, None] + np.concatenate([np.zeros((len(C), 1)), np.cumsum(steps, axis=1)], axis=1)
        probs = calibrate(path.ravel()).reshape(path.shape)
        points = np.empty_like(C)
        np.put_along_axis(points, order, np.diff(probs, axis=1), axis=1)
    else:
        raise ValueError(f"unknown method {method!r}; use 'proportional' or 'sequential'")
    return pd.DataFrame(100.0 * points, index=contrib.index, columns=contrib.columns)


