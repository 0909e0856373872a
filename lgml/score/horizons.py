"""Several designation horizons scored together, made consistent.

A horizon-h designation model gives the probability that a candidate is designated in one of
the batches t+1 .. t+h. These events are nested, so for every firm the true probabilities
satisfy p_h1 <= p_h2 <= p_h3; separately trained models need not. :func:`repair_horizons` makes
each firm's probabilities monotone by isotonic regression across the horizons: the
least-squares nondecreasing fit with equal weights (what pool-adjacent-violators computes),
which pools each run of violating horizons into their mean and leaves consistent firms
untouched.

Example:
    >>> fixed = repair_horizons(np.array([[0.30, 0.20, 0.50], [0.1, 0.2, 0.3]]))
    >>> fixed.values.round(3).tolist(), fixed.repaired, round(fixed.largest_violation, 3)
    ([[0.25, 0.25, 0.5], [0.1, 0.2, 0.3]], 1, 0.1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

HORIZONS = (1, 2, 3)


def horizon_of(bundle: Any) -> int:
    """The bundle's horizon (batches ahead its target covers): ``bundle.horizon``, else its
    metadata's ``horizon``, else 1."""
    value = getattr(bundle, "horizon", None)
    if value is None:
        value = (getattr(bundle, "metadata", None) or {}).get("horizon", 1)
    return int(value)


def probability_column(horizon: int) -> str:
    """``probability_h<horizon>``: the output column of one horizon's probabilities."""
    return f"probability_h{int(horizon)}"


def check_horizons(bundles: Sequence[Any], option: str = "--model") -> list[int]:
    """The horizons of several designation bundles, which must be distinct.

    Raises:
        ValueError: Two bundles share a horizon (the message names ``option`` and both bundles).
    """
    seen: dict[int, Any] = {}
    for bundle in bundles:
        h = horizon_of(bundle)
        if h in seen:
            raise ValueError(f"{option} is given twice for horizon {h} ({seen[h].path} and {bundle.path}): "
                             "give one model per horizon")
        seen[h] = bundle
    return list(seen)


def isotonic_rows(values: np.ndarray) -> np.ndarray:
    """Each row's least-squares nondecreasing fit with equal weights (isotonic regression, the
    result of pool-adjacent-violators), shape kept.

    Uses the min-max formula ``fit[i] = max_{a<=i} min_{b>=i} mean(y[a..b])`` over the running
    sums, vectorised over rows (O(k^3) per row for k columns; k is at most 3 here). Rows
    containing NaN come back unchanged.

    Args:
        values: Array of shape (n_rows, k).

    Returns:
        A new float array of shape (n_rows, k).
    """
    y = np.asarray(values, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"values must have shape (n_rows, n_horizons), not {y.shape}")
    n, k = y.shape
    out = y.copy()
    sums = np.concatenate([np.zeros((n, 1)), np.cumsum(y, axis=1)], axis=1)
    for i in range(k):
        best = np.full(n, -np.inf)
        for a in range(i + 1):
            low = np.full(n, np.inf)
            for b in range(i, k):
                low = np.minimum(low, (sums[:, b + 1] - sums[:, a]) / (b - a + 1))
            best = np.maximum(best, low)
        out[:, i] = best
    bad = np.isnan(y).any(axis=1)
    out[bad] = y[bad]
    return out


@dataclass(frozen=True)
class Repair:
    """What :func:`repair_horizons` did.

    Attributes:
        values: The repaired probabilities, shape (n_rows, k): nondecreasing along each row.
        repaired: Rows (firms) that broke the order and were changed.
        largest_violation: The largest amount by which a shorter horizon's probability exceeded
            a longer one's, over every firm and pair of horizons, before the repair (0 when
            none did).
    """

    values: np.ndarray
    repaired: int
    largest_violation: float


def repair_horizons(values: np.ndarray) -> Repair:
    """Make each row's probabilities nondecreasing across horizons (columns in increasing
    horizon order) by isotonic regression; rows already in order and rows with NaN are left
    exactly as they are.

    Args:
        values: Probabilities of shape (n_rows, k), column j the j-th shortest horizon.

    Returns:
        :class:`Repair`.
    """
    y = np.asarray(values, dtype=float)
    finite = ~np.isnan(y).any(axis=1)
    if y.shape[1] < 2 or not finite.any():
        return Repair(y.copy(), 0, 0.0)
    before = np.maximum.accumulate(y[finite], axis=1)[:, :-1]  # the largest shorter-horizon value
    excess = np.max(before - y[finite][:, 1:], axis=1)
    broken = np.zeros(len(y), dtype=bool)
    broken[finite] = excess > 0
    out = y.copy()
    out[broken] = isotonic_rows(y[broken])
    return Repair(out, int(broken.sum()), float(max(excess.max(), 0.0)))


def repair_scores(scored: pd.DataFrame, horizons: Sequence[int], primary: int) -> tuple[pd.DataFrame, Repair]:
    """:func:`repair_horizons` applied to the ``probability_h<h>`` columns of scored rows; the
    ``probability`` column becomes the repaired value of the ``primary`` horizon (title holders
    keep NaN everywhere).

    Args:
        scored: Scored rows with a ``probability_h<h>`` column for every horizon given.
        horizons: The horizons scored (any order).
        primary: The horizon of the primary model.

    Returns:
        A new frame and the :class:`Repair`.
    """
    order = sorted(int(h) for h in horizons)
    columns = [probability_column(h) for h in order]
    fixed = repair_horizons(scored[columns].to_numpy(dtype=float))
    out = scored.assign(**{c: fixed.values[:, j] for j, c in enumerate(columns)})
    return out.assign(probability=out[probability_column(primary)].to_numpy(dtype=float)), fixed
