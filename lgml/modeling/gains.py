"""Gains: what share of a batch's designations the highest-ranked candidates hold.

A designation is rare (about 1% of candidates), so the question a reader asks of a ranking is
"if we look at the top k firms, how many of those designated do we find?". For each held-out
batch, :func:`batch_gains` ranks the batch's candidates by each scorer and records the
designations captured by the top ``k`` rows (the headline) and by the top 0-100% of rows (the
gains curve). Ties are broken by row order, as in
:func:`lgml.modeling.evaluate.topk_precision`.

Example:
    >>> y = np.array([1, 0, 1, 0, 0]); s = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    >>> top_k_hits(y, s, 2)
    1
    >>> captured_share(y, s, [0.2, 0.6, 1.0])
    [0.5, 1.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

HEADLINE_K = 100  # "of the 100 firms ranked highest ..."
MIN_HEADLINE_K = 10
GAINS_TABLE_SHARES = (0.01, 0.05, 0.10, 0.20)
CURVE_SHARES = tuple(i / 100 for i in range(101))  # 0%, 1%, ..., 100% of candidates
GAINS_SCORERS = ("model", "rules", "oracle")  # the scorers a gains chart compares


def ranked(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Labels ``y`` (shape (n,)) reordered by ``score`` (shape (n,)), highest first; ties keep
    row order."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    return np.asarray(y, dtype=float)[order]


def top_k_hits(y: np.ndarray, score: np.ndarray, k: int) -> int:
    """Designations (``y`` = 1) among the ``k`` rows with the highest ``score``."""
    return int(ranked(y, score)[: max(int(k), 0)].sum())


def rows_in_top(share: float, n: int) -> int:
    """Rows in the top ``share`` (0-1) of ``n`` candidates: ``ceil(share * n)``, so any share
    above 0 holds at least one row."""
    return min(n, math.ceil(round(share * n, 9)))


def captured_share(y: np.ndarray, score: np.ndarray, shares: Sequence[float]) -> list[float]:
    """Share of all designations held by the top ``share`` of rows, for each of ``shares``
    (fractions 0-1); NaN for every share when ``y`` has no designation."""
    hits = np.concatenate([[0.0], np.cumsum(ranked(y, score))])
    total = hits[-1]
    if total == 0:
        return [float("nan")] * len(shares)
    return [float(hits[rows_in_top(s, len(y))] / total) for s in shares]


def headline_k(n: int, k: int = HEADLINE_K) -> int:
    """How many top-ranked firms the headline counts: ``k`` (100), scaled down to a tenth of the
    batch's ``n`` candidates when it has fewer than ``10 * k``, but never below 10 (nor above
    ``n``)."""
    return max(0, min(n, k, max(MIN_HEADLINE_K, n // 10)))


def batch_gains(y: np.ndarray, scores: Mapping[str, np.ndarray], k: int = HEADLINE_K) -> dict:
    """Gains of each scorer on one batch's candidates.

    Args:
        y: 0/1 designations, shape (n,).
        scores: Scorer name -> ranking score of shape (n,) (higher = more likely); rows where a
            score is NaN rank last.
        k: Top-ranked firms the headline counts (see :func:`headline_k`).

    Returns:
        ``{"n", "n_pos", "k", "top_k": {scorer: designations in its top k},
        "table": [{"share", "rows", scorer: share captured, ...}] at 1/5/10/20%,
        "curve": {"share": [0, 0.01, ..., 1], scorer: [share captured, ...]}}``.
    """
    y = np.asarray(y, dtype=float)
    clean = {name: np.nan_to_num(np.asarray(s, dtype=float), nan=-np.inf) for name, s in scores.items()}
    kk = headline_k(len(y), k)
    table = [{"share": s, "rows": rows_in_top(s, len(y)),
              **{name: captured_share(y, s_, [s])[0] for name, s_ in clean.items()}} for s in GAINS_TABLE_SHARES]
    return {
        "n": int(len(y)), "n_pos": int(y.sum()), "k": kk,
        "top_k": {name: top_k_hits(y, s, kk) for name, s in clean.items()},
        "table": table,
        "curve": {"share": list(CURVE_SHARES), **{name: captured_share(y, s, CURVE_SHARES) for name, s in clean.items()}},
    }


def gains_by_batch(test: pd.DataFrame, scores: Mapping[str, np.ndarray], k: int = HEADLINE_K) -> dict[str, dict]:
    """:func:`batch_gains` of each batch year of ``test`` (rows with ``target`` and
    ``batch_year``), keyed by the year as a string, in year order."""
    years = test["batch_year"].to_numpy()
    y = test["target"].to_numpy(dtype=float)
    return {str(int(year)): batch_gains(y[years == year], {n: np.asarray(s)[years == year] for n, s in scores.items()}, k)
            for year in sorted(pd.unique(years))}
