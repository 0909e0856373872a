"""Every index a compiled TreeSHAP kernel reads, checked against the arrays it reads from.

The kernels of :mod:`lgml.kernels.treeshap` do not check bounds (that is what makes them fast).
A forest built by :func:`lgml.kernels.treeshap.flatten_forest` is consistent by construction, but
one loaded from the disk cache is a file anyone with write access may have damaged or edited:
:func:`forest_problem` tells, before any kernel runs, whether every position the kernel would
compute from the arrays falls inside them. It costs a few vector operations per array.

Example:
    >>> forest_problem(forest, n_features=12)  # doctest: +SKIP
    'units.table_start: unit 3 reads the table past its end (2,048 of 1,024 values)'
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_BITS = 62  # decisions and table keys are int64 bit fields: shifts stay below 63


def _ints(forest: Any, field: str, name: str) -> np.ndarray:
    return np.asarray(getattr(forest, field)[name], dtype=np.int64)


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def _span(start: np.ndarray, count: np.ndarray, size: int) -> np.ndarray:
    """Rows whose ``[start, start + count)`` is not inside ``[0, size)`` or has a negative count."""
    return (start < 0) | (count < 0) | (start + count > size)


def forest_problem(forest: Any, n_features: int) -> str | None:
    """The first inconsistency of ``forest`` that would make a kernel read out of bounds.

    Args:
        forest: A :class:`lgml.kernels.treeshap.ShapForest`.
        n_features: Columns of the matrices it will be given (the model's feature count).

    Returns:
        A one-line description of the problem, or None when every index is in range.
    """
    try:
        return _problem(forest, n_features)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # missing or malformed arrays
        return f"malformed arrays ({exc})"


def _lengths(forest: Any, field: str, names: tuple[str, ...]) -> tuple[int, str | None]:
    sizes = {name: len(np.asarray(getattr(forest, field)[name])) for name in names}
    size = sizes[names[0]]
    odd = [name for name, n in sizes.items() if n != size]
    return size, (f"{field}.{odd[0]} has {sizes[odd[0]]:,} entries, {field}.{names[0]} {size:,}" if odd else None)


def _problem(forest: Any, n_features: int) -> str | None:
    ints = lambda field, name: _ints(forest, field, name)  # noqa: E731
    n_nodes, bad = _lengths(forest, "nodes", ("feature", "threshold", "kind", "nan_left", "zero_left", "cat_start",
                                               "cat_words"))
    if bad:
        return bad
    n_trees, bad = _lengths(forest, "trees", ("node_start", "node_count", "unit_start", "unit_count", "leaf_start",
                                              "leaf_count"))
    if bad:
        return bad
    n_units, bad = _lengths(forest, "units", ("root", "splits", "prefix", "prefix_start", "width", "feature_start",
                                              "table_start"))
    if bad:
        return bad
    n_prefix, bad = _lengths(forest, "units", ("prefix_mask", "prefix_want"))
    if bad:
        return bad
    n_leaves, bad = _lengths(forest, "leaves", ("m", "feature_start", "terms", "coef_start"))
    if bad:
        return bad
    n_leaf_features, bad = _lengths(forest, "leaves", ("feature", "mask", "want"))
    if bad:
        return bad

    # splits: the feature read, categorical bitsets inside cat_bits
    feature, kind = ints("nodes", "feature"), ints("nodes", "kind")
    checks: list[tuple[np.ndarray, str]] = [
        ((feature < 0) | (feature >= n_features), f"nodes.feature: split {{}} reads a feature outside 0..{n_features - 1}"),
        (~np.isin(kind, (0, 1, 2)), "nodes.kind: split {} is of no known kind"),
        ((kind == 2) & _span(ints("nodes", "cat_start"), ints("nodes", "cat_words"),
                             len(np.asarray(forest.nodes["cat_bits"]))),
         "nodes.cat_start: split {} reads its categories outside cat_bits"),
    ]
    # trees: their splits, units and leaves inside the per-split, per-unit and per-leaf arrays
    node_count = ints("trees", "node_count")
    checks += [
        (_span(ints("trees", "node_start"), node_count, n_nodes) | (node_count > MAX_BITS),
         "trees.node_start: tree {} reads splits outside the split arrays"),
        (_span(ints("trees", "unit_start"), ints("trees", "unit_count"), n_units),
         "trees.unit_start: tree {} reads units outside the unit arrays"),
        (_span(ints("trees", "leaf_start"), ints("trees", "leaf_count"), n_leaves),
         "trees.leaf_start: tree {} reads leaves outside the leaf arrays"),
    ]
    # units: key bits, prefix conditions, features and the table rows every key can reach
    root, splits, prefix, width = ints("units", "root"), ints("units", "splits"), ints("units", "prefix"), ints("units", "width")
    bits_ok = (root >= 0) & (splits >= 0) & (prefix >= 0) & (root + splits <= MAX_BITS) & (prefix + splits <= MAX_BITS)
    unit_features = ints("units", "features")
    table_end = ints("units", "table_start") + np.where(bits_ok, np.left_shift(1, np.where(bits_ok, prefix + splits, 0)),
                                                        0) * np.maximum(width, 0)
    checks += [
        (~bits_ok, f"units.splits: unit {{}} has a key of more than {MAX_BITS} bits"),
        (_span(ints("units", "prefix_start"), prefix, n_prefix), "units.prefix_start: unit {} reads outside prefix_mask"),
        (_span(ints("units", "feature_start"), width, len(unit_features)),
         "units.feature_start: unit {} reads outside units.features"),
        ((ints("units", "table_start") < 0) | (table_end > len(np.asarray(forest.units["table"]))),
         "units.table_start: unit {} reads the table past its end"),
    ]
    if len(unit_features) and ((unit_features < 0) | (unit_features >= n_features)).any():
        return f"units.features: entry {_first((unit_features < 0) | (unit_features >= n_features))} is not a feature"
    # leaves evaluated at run time: their features and quadrature coefficients
    m, terms = ints("leaves", "m"), ints("leaves", "terms")
    longest = max(1, int(m.max())) if len(m) else 1
    leaf_features = ints("leaves", "feature")
    coef_end = ints("leaves", "coef_start") + 2 * m * terms + 2 * terms
    checks += [
        ((m < 0) | (m > MAX_BITS) | (terms < 0) | (terms > (longest + 1) // 2),
         "leaves.m: leaf {} has an impossible number of features or quadrature terms"),
        (_span(ints("leaves", "feature_start"), m, n_leaf_features),
         "leaves.feature_start: leaf {} reads outside the leaf feature arrays"),
        ((ints("leaves", "coef_start") < 0) | (coef_end > len(np.asarray(forest.leaves["coef"]))),
         "leaves.coef_start: leaf {} reads coefficients past their end"),
    ]
    if len(leaf_features) and ((leaf_features < 0) | (leaf_features >= n_features)).any():
        return f"leaves.feature: entry {_first((leaf_features < 0) | (leaf_features >= n_features))} is not a feature"
    for bad, message in checks:
        if len(bad) and bad.any():
            return message.format(_first(bad))
    if not np.isfinite(float(forest.expected_value)):
        return "expected_value is not finite"
    return None
