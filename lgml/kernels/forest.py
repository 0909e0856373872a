"""Compiled prediction for LightGBM models: the raw scores of ``Booster.predict``, bit for bit,
in about half the time.

LightGBM walks each row through every tree in turn, with per-row bookkeeping around each walk.
Here the trees are read from the model text into flat arrays (LightGBM's own node numbering)
and a numba kernel walks blocks of rows through one tree at a time, so that a tree's nodes stay
in cache while the block passes. Each row's score is the sum of its leaves in tree order,
starting from 0.0: the same additions in the same order as LightGBM, so the same float64.

The split rules are LightGBM's (``Tree::NumericalDecision`` and ``Tree::CategoricalDecision``):

- numerical, missing type ``None``: NaN is read as 0.0, then ``x <= threshold`` goes left;
- numerical, missing type ``NaN``: NaN goes to the default side;
- numerical, missing type ``Zero``: NaN and zero go to the default side;
- categorical: the categories in the split's bitset go left; NaN, negatives and others right.

Like LightGBM's dense-matrix input, values with ``|x| <= 1e-35`` are read as 0.0.

Models the kernel does not handle (several outputs per iteration, linear trees, averaged
output as in random forests) return None from :func:`parse_model`, and callers use
``Booster.predict``. :func:`raw_scores` re-checks a few rows against ``Booster.predict`` on
every call and falls back to it on any difference.

Example:
    >>> raw = raw_scores(booster, matrix)  # doctest: +SKIP
    >>> raw is None or np.array_equal(raw, booster.predict(matrix, raw_score=True))  # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MIN_ROWS = 2_000  # below this Booster.predict is as fast (one block of rows runs on one thread)
SPOT_ROWS = 16  # rows re-checked against Booster.predict on every call
BLOCK_ROWS = 1_024  # rows that pass through a tree together (measured: 256-4096 within 10%)
# objectives whose prediction is the raw score itself (no sigmoid, exp, square...)
IDENTITY_OBJECTIVES = frozenset({"regression", "regression_l1", "huber", "fair", "quantile", "mape"})
ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float literal)

# decision_type bits in the model text (LightGBM's tree.h)
_CATEGORICAL_MASK = 1
_DEFAULT_LEFT_MASK = 2
_MISSING_ZERO, _MISSING_NAN = 1, 2

prange = range  # numba's prange once the kernel is compiled (see _kernel)


@dataclass(frozen=True)
class Forest:
    """A LightGBM model as flat arrays, one entry per split (all trees' splits in order).

    Attributes:
        feature: Column read by the split.
        threshold: Numerical threshold (unused by categorical splits).
        kind: 0 numerical, 1 numerical with zero as missing, 2 categorical.
        nan_left: Numerical splits: whether NaN goes left.
        zero_left: Kind 1: whether zero and NaN go left.
        cat_start, cat_words: Categorical splits: their bitset in ``cat_bits`` (64-bit words).
        cat_bits: Bitsets of all categorical splits.
        left, right: Child of each split: a split index, or ``~leaf`` (negative) for a leaf.
        leaf_value: Every leaf's output (shrinkage applied, as in the model text).
        roots: Per tree, its first split, or ``~leaf`` for a single-leaf tree.
        n_features: Columns of the model input.
        objective: The model text's ``objective`` line (e.g. ``binary sigmoid:1``).
    """

    feature: np.ndarray
    threshold: np.ndarray
    kind: np.ndarray
    nan_left: np.ndarray
    zero_left: np.ndarray
    cat_start: np.ndarray
    cat_words: np.ndarray
    cat_bits: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf_value: np.ndarray
    roots: np.ndarray
    n_features: int
    objective: str = ""

    @property
    def n_trees(self) -> int:
        return len(self.roots)


def _fields(block: str) -> dict[str, str]:
    out = {}
    for line in block.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _numbers(text: str, dtype: Any) -> np.ndarray:
    return np.array(text.split(), dtype=dtype) if text else np.empty(0, dtype=dtype)


def parse_model(model_text: str) -> Forest | None:
    """Flatten a LightGBM model text (``Booster.model_to_string()``, ``model.txt``).

    Returns:
        The forest, or None when the model is not a plain single-output tree ensemble.
    """
    head, _, rest = model_text.partition("\nTree=")
    header = _fields(head)
    if header.get("num_tree_per_iteration", "1") != "1" or "average_output" in head.split():
        return None
    body = rest.split("\nend of trees", 1)[0]
    cols: dict[str, list] = {k: [] for k in ("feature", "threshold", "kind", "nan_left", "zero_left", "cat_start",
                                             "cat_words", "left", "right")}
    cat_bits: list[np.ndarray] = []
    n_cat_words = 0
    leaf_values: list[np.ndarray] = []
    roots: list[int] = []
    n_splits = n_leaves = 0
    for block in ("Tree=" + body).split("\nTree=")[0:]:
        tree = _fields(block)
        if not tree:
            continue
        if tree.get("is_linear", "0") != "0":
            return None
        leaves = _numbers(tree.get("leaf_value", ""), np.float64)
        count = int(tree.get("num_leaves", len(leaves)))
        if count != len(leaves) or count < 1:
            return None
        if count == 1:
            roots.append(~n_leaves)
        else:
            decision = _numbers(tree["decision_type"], np.int64)
            threshold = _numbers(tree["threshold"], np.float64)
            left = _numbers(tree["left_child"], np.int64)
            right = _numbers(tree["right_child"], np.int64)
            if not (len(decision) == len(threshold) == len(left) == len(right) == count - 1):
                return None
            categorical = (decision & _CATEGORICAL_MASK) != 0
            missing = (decision >> 2) & 3
            default_left = (decision & _DEFAULT_LEFT_MASK) != 0
            kind = np.where(categorical, 2, np.where(missing == _MISSING_ZERO, 1, 0))
            nan_left = np.where(missing == _MISSING_NAN, default_left, 0.0 <= threshold) & ~categorical
            cat_start = np.zeros(count - 1, np.int64)
            cat_words = np.zeros(count - 1, np.int64)
            if categorical.any():
                bounds = _numbers(tree["cat_boundaries"], np.int64)
                words32 = _numbers(tree["cat_threshold"], np.uint64)
                for node in np.flatnonzero(categorical):
                    index = int(threshold[node])
                    bits32 = words32[bounds[index]:bounds[index + 1]]
                    if len(bits32) % 2:
                        bits32 = np.append(bits32, np.uint64(0))
                    bits64 = bits32[0::2] | (bits32[1::2] << np.uint64(32))
                    cat_start[node] = n_cat_words
                    cat_words[node] = len(bits64)
                    cat_bits.append(bits64.view(np.int64))
                    n_cat_words += len(bits64)
            # children: splits renumbered across trees, leaves (~leaf) across trees
            cols["left"].append(np.where(left >= 0, left + n_splits, ~(~left + n_leaves)))
            cols["right"].append(np.where(right >= 0, right + n_splits, ~(~right + n_leaves)))
            cols["feature"].append(_numbers(tree["split_feature"], np.int64))
            cols["threshold"].append(threshold)
            cols["kind"].append(kind)
            cols["nan_left"].append(nan_left)
            cols["zero_left"].append(default_left)
            cols["cat_start"].append(cat_start)
            cols["cat_words"].append(cat_words)
            roots.append(n_splits)
            n_splits += count - 1
        leaf_values.append(leaves)
        n_leaves += count
    if not roots:
        return None

    def joined(name: str, dtype: Any) -> np.ndarray:
        return np.concatenate(cols[name]).astype(dtype) if cols[name] else np.empty(0, dtype)

    return Forest(
        feature=joined("feature", np.int64), threshold=joined("threshold", np.float64),
        kind=joined("kind", np.int64), nan_left=joined("nan_left", np.bool_),
        zero_left=joined("zero_left", np.bool_), cat_start=joined("cat_start", np.int64),
        cat_words=joined("cat_words", np.int64),
        cat_bits=np.concatenate(cat_bits) if cat_bits else np.zeros(1, np.int64),
        left=joined("left", np.int64), right=joined("right", np.int64),
        leaf_value=np.concatenate(leaf_values), roots=np.asarray(roots, np.int64),
        n_features=int(header.get("max_feature_idx", "-1")) + 1, objective=header.get("objective", ""),
    )


def _predict_kernel(X, feature, threshold, kind, nan_left, zero_left, cat_start, cat_words, cat_bits,
                    left, right, leaf_value, roots, block_rows, out):  # pragma: no cover - compiled
    """Raw score of every row of ``X`` into ``out``."""
    n = X.shape[0]
    n_blocks = (n + block_rows - 1) // block_rows
    for b in prange(n_blocks):
        first = b * block_rows
        last = min(n, first + block_rows)
        for i in range(first, last):
            out[i] = 0.0
        for t in range(len(roots)):
            root = roots[t]
            for i in range(first, last):
                node = root
                while node >= 0:
                    x = X[i, feature[node]]
                    if abs(x) <= ZERO_THRESHOLD:  # as LightGBM reads a dense matrix
                        x = 0.0
                    k = kind[node]
                    if k == 0:
                        go_left = x <= threshold[node] or (x != x and nan_left[node])
                    elif k == 1:
                        if x != x or x == 0.0:
                            go_left = zero_left[node]
                        else:
                            go_left = x <= threshold[node]
                    else:
                        inside = x > -1.0 and x < 64.0 * cat_words[node]
                        c = np.int64(x if inside else 0.0)
                        go_left = inside and ((cat_bits[cat_start[node] + (c >> 6)] >> (c & 63)) & 1) == 1
                    node = left[node] if go_left else right[node]
                out[i] += leaf_value[~node]


@lru_cache(maxsize=1)
def _kernel() -> Callable:
    """Compile the kernel once per process (numba caches the machine code on disk)."""
    import numba

    globals()["prange"] = numba.prange  # the parallel loop's name resolves at compile time
    return numba.njit(parallel=True, cache=True)(_predict_kernel)


def predict_forest(forest: Forest, matrix: np.ndarray) -> np.ndarray:
    """Raw scores of ``matrix`` (float64, shape (n_rows, n_features)) with the compiled kernel.

    Raises:
        ValueError: ``matrix`` does not have the model's number of columns.
    """
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != forest.n_features:  # the kernel does not check bounds
        raise ValueError(f"expected {forest.n_features} feature columns, got shape {matrix.shape}")
    out = np.empty(len(matrix))
    f = forest
    _kernel()(matrix, f.feature, f.threshold, f.kind, f.nan_left, f.zero_left, f.cat_start, f.cat_words, f.cat_bits,
              f.left, f.right, f.leaf_value, f.roots, BLOCK_ROWS, out)
    return out


def forest_of(booster: Any) -> Forest | None:
    """The booster's flattened model, built once per booster object (None: not handled here)."""
    cached = getattr(booster, "_lgml_predict_forest", False)
    if cached is False:
        cached = parse_model(booster.model_to_string())
        booster._lgml_predict_forest = cached
    return cached


def raw_scores(booster: Any, matrix: np.ndarray) -> np.ndarray | None:
    """``booster.predict(matrix, raw_score=True)`` computed by the compiled kernel, or None when
    the kernel cannot serve this call (model not handled, numba unavailable, fewer than
    :data:`MIN_ROWS` rows, or a spot check that disagrees with LightGBM).

    Args:
        booster: A LightGBM booster predicting all its trees (as loaded from a model file).
        matrix: Float64 model input of shape (n_rows, n_features), categoricals as codes,
            NaN missing (:func:`lgml.modeling.matrix.lightgbm_matrix`).

    Returns:
        Array of shape (n_rows,), equal to LightGBM's raw scores.
    """
    if len(matrix) < MIN_ROWS:
        return None
    try:
        forest = forest_of(booster)
        if forest is None or forest.n_trees != booster.num_trees():
            return None
        out = predict_forest(forest, matrix)
    except ImportError:  # numba unavailable
        return None
    spot = np.linspace(0, len(matrix) - 1, SPOT_ROWS).astype(int)
    expected = booster.predict(matrix[spot], raw_score=True)
    if not np.array_equal(out[spot], expected, equal_nan=True):
        log.warning("compiled prediction differs from LightGBM's by up to %.3g; using Booster.predict",
                    float(np.nanmax(np.abs(out[spot] - expected))))
        return None
    return out


def predict(booster: Any, matrix: np.ndarray, raw_score: bool = False) -> np.ndarray:
    """``booster.predict(matrix, raw_score=raw_score)``, by the compiled kernel whenever it can
    serve the call (see :func:`raw_scores`): raw scores, or predictions of objectives whose
    output is the raw score (regression, huber, quantile...).

    Args:
        booster: A LightGBM booster predicting all its trees.
        matrix: Float64 model input of shape (n_rows, n_features).
        raw_score: Return raw scores (log-odds for binary models).

    Returns:
        Array of shape (n_rows,).
    """
    if not raw_score:
        forest = forest_of(booster) if len(matrix) >= MIN_ROWS else None
        words = forest.objective.split() if forest is not None else []
        raw_score = bool(words) and words[0] in IDENTITY_OBJECTIVES and "sqrt" not in words
        if not raw_score:
            return booster.predict(matrix)
    fast = raw_scores(booster, matrix)
    return fast if fast is not None else booster.predict(matrix, raw_score=True)
