"""Why a firm scores as it does, and what would have to change.

Flow: a feature table (:func:`lgml.features.build_features`) and a model bundle ->
:func:`contributions` (exact TreeSHAP, log-odds) -> :func:`group_contributions` (per criterion
dimension, 专 精 特 新 ...), :func:`probability_points` (the same split in probability points) and
:func:`top_reasons` (plain sentences). :func:`counterfactual` searches, with the model itself,
for the fewest changes to mutable inputs that lift a firm to a target probability or make it
eligible.

Units: contributions and base values are in the model's raw units: **log-odds** for the
designation model, expected log growth for the growth model. Probability points are percentage
points of the calibrated probability (``+4.0`` = four points, e.g. 10% -> 14%).

Example:
    >>> bundle = load_bundle("models/lgml-designation")  # doctest: +SKIP
    >>> contrib, base = contributions(bundle, table)  # doctest: +SKIP
    >>> group_contributions(contrib).mean()  # doctest: +SKIP
    >>> top_reasons(contrib, table, k=3).iloc[0]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lgml import criteria
from lgml.features import FEATURE_GROUPS, GROUPS
from lgml.modeling.forest import ZERO_THRESHOLD

log = logging.getLogger(__name__)

ADDITIVITY_TOL = 1e-6
DEFAULT_REGIME = "2022"

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


# ------------------------------------------------------------------------------------------------
# Exact TreeSHAP compiled with numba: subtree tables and Gauss-Legendre quadrature
# ------------------------------------------------------------------------------------------------
#
# Path-dependent TreeSHAP (what LightGBM's pred_contrib computes) credits feature j, for a leaf of
# value v whose path splits on the unique features F (m of them), with
#
#   phi_j = v (o_j - z_j) sum over S in F\{j} with o_S = 1 of |S|! (m-|S|-1)! / m! prod_{k in F\{j}\S} z_k
#
# where z_k is the product of the cover fractions of the path's splits on k and o_k = 1 when the
# row satisfies every one of them. The Shapley weight is a Beta integral,
# |S|! (m-|S|-1)! / m! = int_0^1 t^|S| (1-t)^(m-|S|-1) dt, so the sum over S factorises:
#
#   phi_j = v (o_j - z_j) int_0^1 prod_{k in F\{j}} f_k(t) dt,    f_k(t) = (1-t) z_k + o_k t.
#
# The integrand is a polynomial of degree m-1, which Gauss-Legendre quadrature on [0, 1] with
# ceil(m/2) nodes t_q and weights w_q integrates exactly. With P_q = prod_{k in F} f_k(t_q):
#   * every feature of the leaf that the row does not satisfy (o_j = 0) gets the same value,
#     sum_q P_q w_q (-v) / (1 - t_q)   (z_j cancels; P_q = 0 when z_j = 0, as it should);
#   * a satisfied feature gets  sum_q P_q w_q v (1 - z_j) / ((1 - t_q) z_j + t_q).
# Every factor is non-negative, so the values are accurate to a few ulps at any path length.
#
# A leaf's values depend on the row only through its m bits o. Summed over the leaves of a
# subtree, they depend only on the bits of the features split on above the subtree ("prefix") and
# on the row's decisions at the subtree's own splits, which preorder numbers consecutively, so they
# are one bit field of the row's decision mask. A subtree with p prefix features and s splits is
# therefore tabulated once per model over its 2^(p+s) keys, one value per feature it involves, and
# a row pays one key and one look-up per feature instead of work per leaf and feature. Per tree a
# small dynamic program picks these units (subtrees or single leaves, keys of at most
# FAST_SHAP_MAX_KEY_BITS bits) to minimise the per-row work plus a charge per table byte; leaves
# left out (long paths) are evaluated with the quadrature at run time.
#
# The kernel processes blocks of rows with the rows as the innermost loop, so that the compiler can
# use SIMD lanes: the block is transposed once, split decisions are computed node by node for all
# rows, and contributions accumulate feature by feature in row-contiguous arrays. Cover fractions
# come from the training counts and decisions follow LightGBM's rules, so the result equals
# pred_contrib (checked on a few rows at every call).

FAST_SHAP_MIN_ROWS = 2_000  # below this LightGBM's own pred_contrib is as fast
FAST_SHAP_MAX_NODES = 62  # most splits in one tree (a row's decisions are bits of one int64)
FAST_SHAP_MAX_KEY_BITS = 12  # largest table key (prefix features + subtree splits)
FAST_SHAP_BYTE_COST = 3e-4  # charge per table byte, in table look-ups per row
FAST_SHAP_TREE_BYTES = 1 << 20  # most table bytes for one tree (the charge rises until they fit)
FAST_SHAP_SPOT_ROWS = 16  # rows re-checked against pred_contrib at every call
FAST_SHAP_BLOCK_ROWS = 4096  # rows that visit the trees together (a tree's tables serve them all)
_VECTOR_PASS_COST = 0.6  # one SIMD pass over the rows, in table look-ups per row (tuned)
_ZERO_THRESHOLD = ZERO_THRESHOLD  # LightGBM's kZeroThreshold
prange = range  # numba's prange once the kernels are compiled (see _kernels)

# Flattened forests are also cached on disk, one .npz per model under <cache dir>/treeshap/, named
# by the sha256 of the model text, FOREST_CACHE_VERSION and the settings that shape the tables
# (_FOREST_CACHE_SETTINGS). A new process then loads the tables instead of building them again.
FOREST_CACHE_VERSION = 2  # bump whenever the _Forest arrays or the kernels' reading of them change
FOREST_CACHE_OFF = "off"  # LGML_CACHE_DIR=off turns the disk cache off
FOREST_CACHE_ENTRIES = 8  # models kept on disk (tens of MB each); the least recently used go first
_FOREST_CACHE_SETTINGS = ("FAST_SHAP_MAX_NODES", "FAST_SHAP_MAX_KEY_BITS", "FAST_SHAP_BYTE_COST",
                          "FAST_SHAP_TREE_BYTES", "_VECTOR_PASS_COST")
_FOREST_ARRAYS = {  # the arrays of each _Forest field, as the .npz stores them ("<field>.<name>")
    "nodes": ("feature", "threshold", "kind", "nan_left", "zero_left", "cat_start", "cat_words", "cat_bits"),
    "trees": ("node_start", "node_count", "unit_start", "unit_count", "leaf_start", "leaf_count"),
    "units": ("root", "splits", "prefix", "prefix_start", "width", "feature_start", "table_start", "prefix_mask",
              "prefix_want", "features", "table"),
    "leaves": ("m", "feature_start", "terms", "coef_start", "feature", "mask", "want", "coef"),
}
_FOREST_FLOATS = {"nodes.threshold", "units.table", "leaves.coef"}  # the rest are int64


@dataclass(frozen=True)
class _Forest:
    """A LightGBM model flattened for the compiled kernels (see _run_kernel for the arrays)."""

    nodes: dict[str, np.ndarray]  # per split, trees' splits in preorder
    trees: dict[str, np.ndarray]  # per tree: its splits, units and run-time leaves
    units: dict[str, np.ndarray]  # per unit: key layout, features and table position
    leaves: dict[str, np.ndarray]  # leaves evaluated at run time: features, bits and quadrature terms
    expected_value: float


@dataclass(slots=True)
class _Step:
    """One split on a root-to-node path."""

    feature: int
    node: int  # preorder number of the split within its tree
    left: bool  # the path goes left
    fraction: float  # cover of the child over cover of the split


def _count(node: dict) -> float:
    return float(node["leaf_count"] if "leaf_value" in node else node["internal_count"])


def _preorder(root: dict) -> list[dict]:
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            out.append(node)
            stack.extend((node["right_child"], node["left_child"]))
    return out


def _unique_features(path: Sequence[_Step]) -> list[int]:
    return list(dict.fromkeys(step.feature for step in path))


def _bit_masks(path: Sequence[_Step], features: Sequence[int], first: int = 0,
               stop: int | None = None) -> tuple[list[int], list[int]]:
    """Per feature, the decision bits of the path's splits on it, numbered from split ``first``
    (splits outside [first, stop) left out), and the values those bits take along the path."""
    mask, want = dict.fromkeys(features, 0), dict.fromkeys(features, 0)
    for step in path:
        if first <= step.node and (stop is None or step.node < stop):
            bit = 1 << (step.node - first)
            mask[step.feature] |= bit
            want[step.feature] |= bit if step.left else 0
    return [mask[f] for f in features], [want[f] for f in features]


def _cover(path: Sequence[_Step], features: Sequence[int]) -> list[float]:
    z = dict.fromkeys(features, 1.0)
    for step in path:
        z[step.feature] *= step.fraction
    return [z[f] for f in features]


def _quadrature_passes(m: int) -> int:
    """SIMD passes over the rows to evaluate one leaf with the quadrature (see _shap_kernel)."""
    q = (m + 1) // 2
    return 2 * m + 2 * m * q + q


_Leaves = list[tuple[dict, list[_Step]]]  # leaves with their paths from the root
_Plan = list[tuple[str, dict, list[_Step], _Leaves]]


def _plan_tree(root: dict, local: dict[int, int], byte_cost: float) -> tuple[_Plan, int]:
    """Choose the units of one tree and return them with their table bytes: ``("table", node,
    path, leaves)`` tabulates the subtree (or leaf) at ``node`` reached by ``path``; ``("leaf",
    leaf, path, [(leaf, path)])`` evaluates a leaf at run time. Minimises the modelled per-row work
    plus ``byte_cost`` per table byte."""

    def visit(node: dict, path: list[_Step]) -> tuple[float, _Plan, int, _Leaves, set[int]]:
        # -> (cost, plan, table bytes, leaves below, features split on below)
        prefix = {step.feature for step in path}
        p = len(prefix)
        key_cost = _VECTOR_PASS_COST * (p + 2)
        if "leaf_value" in node:
            leaves = [(node, path)]
            best = (_VECTOR_PASS_COST * _quadrature_passes(p), [("leaf", node, path, leaves)], 0)
            size = 8 * p << p
            if p <= FAST_SHAP_MAX_KEY_BITS and p + key_cost + byte_cost * size < best[0]:
                best = (p + key_cost + byte_cost * size, [("table", node, path, leaves)], size)
            return (*best, leaves, set())
        f = int(node["split_feature"])
        sides = []
        for key, went_left in (("left_child", True), ("right_child", False)):
            child = node[key]
            sides.append(visit(child, [*path, _Step(f, local[id(node)], went_left, _count(child) / _count(node))]))
        (cost_l, plan_l, size_l, leaves_l, feats_l), (cost_r, plan_r, size_r, leaves_r, feats_r) = sides
        features = feats_l | feats_r | {f}
        leaves = leaves_l + leaves_r
        best = (cost_l + cost_r, plan_l + plan_r, size_l + size_r)
        bits = p + len(leaves) - 1
        if bits <= FAST_SHAP_MAX_KEY_BITS:
            width = len(prefix | features)
            size = 8 * width << bits
            if width + key_cost + byte_cost * size < best[0]:
                best = (width + key_cost + byte_cost * size, [("table", node, path, leaves)], size)
        return (*best, leaves, features)

    _, plan, size, _, _ = visit(root, [])
    return plan, size


class _ForestBuilder:
    """Collects the arrays of :class:`_Forest` tree by tree."""

    def __init__(self) -> None:
        self.nodes = {k: [] for k in ("feature", "threshold", "kind", "nan_left", "zero_left", "cat_start",
                                      "cat_words")}
        self.cat_bits: list[int] = []
        self.trees = {k: [] for k in ("node_start", "node_count", "unit_start", "unit_count", "leaf_start",
                                      "leaf_count")}
        self.units = {k: [] for k in ("root", "splits", "prefix", "prefix_start", "width", "feature_start",
                                      "table_start", "leaf_start", "leaf_count")}
        self.unit_prefix = {k: [] for k in ("mask", "want")}
        self.unit_features: list[int] = []
        self.table_size = 0
        # the tabulated leaves, only needed to fill the tables
        self.build = {k: [] for k in ("m", "value", "feature_start")}
        self.build_features = {k: [] for k in ("z", "slot", "prefix_bit", "mask", "want")}
        # the leaves evaluated at run time
        self.leaves = {k: [] for k in ("m", "feature_start", "terms", "coef_start")}
        self.leaf_features = {k: [] for k in ("feature", "mask", "want")}
        self.coef: list[float] = []

    def add_split(self, flat: Any, index: int) -> None:
        """Split ``index`` of ``flat`` (:func:`lgml.modeling.forest.parse_model`, which holds
        LightGBM's split rules: missing values, zero as missing, category bitsets)."""
        cols = self.nodes
        kind = int(flat.kind[index])
        cols["feature"].append(int(flat.feature[index]))
        cols["kind"].append(kind)
        cols["threshold"].append(0.0 if kind == 2 else float(flat.threshold[index]))
        cols["nan_left"].append(int(flat.nan_left[index]))
        cols["zero_left"].append(int(flat.zero_left[index]))
        cols["cat_start"].append(len(self.cat_bits) if kind == 2 else 0)
        cols["cat_words"].append(int(flat.cat_words[index]) if kind == 2 else 0)
        if kind == 2:
            start = flat.cat_start[index]
            self.cat_bits.extend(flat.cat_bits[start:start + flat.cat_words[index]].tolist())

    def add_table(self, node: dict, path: list[_Step], leaves: _Leaves, local: dict[int, int]) -> None:
        """A unit: the subtree (or leaf) at ``node`` with its ``leaves``, tabulated over its key."""
        prefix = _unique_features(path)
        first = local[id(node)] if "split_index" in node else 0
        splits = len(leaves) - 1
        mask, want = _bit_masks(path, prefix)
        features = list(dict.fromkeys(prefix + [step.feature for _, p in leaves for step in p]))
        slot = {f: i for i, f in enumerate(features)}
        u = self.units
        u["root"].append(first)
        u["splits"].append(splits)
        u["prefix"].append(len(prefix))
        u["prefix_start"].append(len(self.unit_prefix["mask"]))
        u["width"].append(len(features))
        u["feature_start"].append(len(self.unit_features))
        u["table_start"].append(self.table_size)
        u["leaf_start"].append(len(self.build["m"]))
        u["leaf_count"].append(len(leaves))
        self.unit_prefix["mask"].extend(mask)
        self.unit_prefix["want"].extend(want)
        self.unit_features.extend(features)
        self.table_size += len(features) << (len(prefix) + splits)
        for leaf, leaf_path in leaves:
            own = _unique_features(leaf_path)
            inner_mask, inner_want = _bit_masks(leaf_path, own, first, first + splits)
            self.build["m"].append(len(own))
            self.build["value"].append(float(leaf["leaf_value"]))
            self.build["feature_start"].append(len(self.build_features["z"]))
            bf = self.build_features
            bf["z"].extend(_cover(leaf_path, own))
            bf["slot"].extend(slot[f] for f in own)
            bf["prefix_bit"].extend(prefix.index(f) if f in prefix else -1 for f in own)
            bf["mask"].extend(inner_mask)
            bf["want"].extend(inner_want)

    def add_leaf(self, leaf: dict, path: list[_Step]) -> None:
        """A leaf evaluated at run time: its bits and quadrature terms a = (1 - t_q) z_k and hot
        (m x Q), cold and t (Q), see the comment block above."""
        features = _unique_features(path)
        mask, want = _bit_masks(path, features)
        m = len(features)
        t, w = _gauss_legendre((m + 1) // 2)
        z = np.asarray(_cover(path, features))
        v = float(leaf["leaf_value"])
        a = (1.0 - t)[None, :] * z[:, None]
        hot = w[None, :] * v * (1.0 - z)[:, None] / (a + t[None, :])
        cold = -w * v / (1.0 - t)
        self.leaves["m"].append(m)
        self.leaves["feature_start"].append(len(self.leaf_features["feature"]))
        self.leaves["terms"].append(len(t))
        self.leaves["coef_start"].append(len(self.coef))
        self.leaf_features["feature"].extend(features)
        self.leaf_features["mask"].extend(mask)
        self.leaf_features["want"].extend(want)
        self.coef.extend(np.concatenate([a.ravel(), hot.ravel(), cold, t]).tolist())


@lru_cache(maxsize=None)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss-Legendre rule on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1.0) / 2.0, w / 2.0


def _flatten_forest(booster: Any) -> _Forest | None:
    """Flatten a single-output LightGBM model and fill its tables; None when it cannot be handled
    here (several outputs, averaged or linear trees, more than FAST_SHAP_MAX_NODES splits in a
    tree, or a split without training counts)."""
    from lgml.modeling.forest import forest_of

    dump = booster.dump_model()
    flat = forest_of(booster)  # the split rules, as the predictor parsed them (once per booster)
    if flat is None or dump.get("num_tree_per_iteration", 1) != 1 or dump.get("average_output"):
        return None
    b = _ForestBuilder()
    expected = 0.0
    for t, tree in enumerate(dump["tree_info"]):
        root = tree["tree_structure"]
        b.trees["node_start"].append(len(b.nodes["feature"]))
        b.trees["unit_start"].append(len(b.units["root"]))
        b.trees["leaf_start"].append(len(b.leaves["m"]))
        if "leaf_value" in root:
            expected += float(root["leaf_value"])
            for key in ("node_count", "unit_count", "leaf_count"):
                b.trees[key].append(0)
            continue
        internal = _preorder(root)
        if len(internal) > FAST_SHAP_MAX_NODES or any(_count(n) <= 0 for n in internal):
            return None
        if any("leaf_coeff" in node[side] for node in internal for side in ("left_child", "right_child")):
            return None  # linear trees
        local = {id(n): i for i, n in enumerate(internal)}
        for node in internal:
            b.add_split(flat, flat.roots[t] + node["split_index"])
        byte_cost = FAST_SHAP_BYTE_COST
        plan, size = _plan_tree(root, local, byte_cost)
        while size > FAST_SHAP_TREE_BYTES:  # charge more per byte until the tables fit
            byte_cost = 4 * byte_cost if byte_cost > 0 else 1e-6
            plan, size = _plan_tree(root, local, byte_cost)
        for kind, node, path, leaves in plan:
            if kind == "table":
                b.add_table(node, path, leaves, local)
            else:
                b.add_leaf(node, path)
            for leaf, _ in leaves:
                expected += float(leaf["leaf_value"]) * _count(leaf) / _count(root)
        b.trees["node_count"].append(len(internal))
        b.trees["unit_count"].append(len(b.units["root"]) - b.trees["unit_start"][-1])
        b.trees["leaf_count"].append(len(b.leaves["m"]) - b.trees["leaf_start"][-1])

    def ints(values: list) -> np.ndarray:
        return np.asarray(values, dtype=np.int64)

    table = np.empty(b.table_size)
    longest = max(b.build["m"], default=1)
    rules = [_gauss_legendre(n) for n in range(1, (longest + 1) // 2 + 1)]
    gauss_t = np.zeros((len(rules) + 1, len(rules)))
    gauss_w = np.zeros_like(gauss_t)
    for n, (t, w) in enumerate(rules, start=1):
        gauss_t[n, :n], gauss_w[n, :n] = t, w
    u, bf = b.units, b.build_features
    _kernels()["tables"](ints(u["prefix"]), ints(u["splits"]), ints(u["width"]), ints(u["table_start"]),
                         ints(u["leaf_start"]), ints(u["leaf_count"]), ints(b.build["m"]),
                         np.asarray(b.build["value"], dtype=float), ints(b.build["feature_start"]),
                         np.asarray(bf["z"], dtype=float), ints(bf["slot"]), ints(bf["prefix_bit"]), ints(bf["mask"]),
                         ints(bf["want"]), gauss_t, gauss_w, table)
    nodes = {k: np.asarray(v, dtype=float if k == "threshold" else np.int64) for k, v in b.nodes.items()}
    nodes["cat_bits"] = ints(b.cat_bits)
    units = {k: ints(u[k]) for k in ("root", "splits", "prefix", "prefix_start", "width", "feature_start",
                                     "table_start")}
    units.update(prefix_mask=ints(b.unit_prefix["mask"]), prefix_want=ints(b.unit_prefix["want"]),
                 features=ints(b.unit_features), table=table)
    leaves = {k: ints(v) for k, v in b.leaves.items()}
    leaves.update({k: ints(v) for k, v in b.leaf_features.items()}, coef=np.asarray(b.coef, dtype=float))
    return _Forest(nodes=nodes, trees={k: ints(v) for k, v in b.trees.items()}, units=units, leaves=leaves,
                   expected_value=expected)


def _tables_kernel(unit_prefix, unit_splits, unit_width, unit_table_start, unit_leaf_start, unit_leaf_count,
                   leaf_m, leaf_value, leaf_feature_start, z_all, slot, prefix_bit, inner_mask, inner_want,
                   gauss_t, gauss_w, table):  # pragma: no cover - compiled
    """Fill every unit's table: row ``key`` holds, per unit feature, the sum over the unit's leaves
    of their values for the bits ``key`` implies (low bits: prefix features; high bits: decisions at
    the unit's splits)."""
    for u in prange(len(unit_prefix)):
        p = unit_prefix[u]
        width = unit_width[u]
        base = unit_table_start[u]
        n_keys = 1 << (p + unit_splits[u])
        for i in range(base, base + n_keys * width):
            table[i] = 0.0
        for leaf in range(unit_leaf_start[u], unit_leaf_start[u] + unit_leaf_count[u]):
            m = leaf_m[leaf]
            v = leaf_value[leaf]
            fs = leaf_feature_start[leaf]
            n = (m + 1) // 2
            # the leaf's values for each of its 2^m bit patterns (see the comment block above)
            cold_factor = np.empty(n)
            hot_factor = np.empty((m, n))
            for q in range(n):
                t = gauss_t[n, q]
                cold_factor[q] = -gauss_w[n, q] * v / (1.0 - t)
                for j in range(m):
                    z = z_all[fs + j]
                    hot_factor[j, q] = gauss_w[n, q] * v * (1.0 - z) / ((1.0 - t) * z + t)
            values = np.zeros(((1 << m), m))
            for pattern in range(1 << m):
                cold = 0.0
                for q in range(n):
                    t = gauss_t[n, q]
                    product = 1.0
                    for k in range(m):
                        product *= (1.0 - t) * z_all[fs + k] + t * ((pattern >> k) & 1)
                    cold += product * cold_factor[q]
                    for j in range(m):
                        values[pattern, j] += product * hot_factor[j, q]
                for j in range(m):
                    if not (pattern >> j) & 1:
                        values[pattern, j] = cold
            # the leaf's pattern for a key: (bits from the prefix part) & (bits from the decisions)
            from_prefix = np.zeros(1 << p, np.int64)
            for low in range(1 << p):
                for k in range(m):
                    a = prefix_bit[fs + k]
                    if a < 0 or ((low >> a) & 1) == 1:
                        from_prefix[low] |= 1 << k
            from_splits = np.zeros(n_keys >> p, np.int64)
            for high in range(n_keys >> p):
                for k in range(m):
                    if ((high ^ inner_want[fs + k]) & inner_mask[fs + k]) == 0:
                        from_splits[high] |= 1 << k
            for key in range(n_keys):
                pattern = from_prefix[key & ((1 << p) - 1)] & from_splits[key >> p]
                row = base + key * width
                for k in range(m):
                    table[row + slot[fs + k]] += values[pattern, k]


def _shap_kernel(X, feature, threshold, kind, nan_left, zero_left, cat_start, cat_words, cat_bits,
                 node_start, node_count, unit_start, unit_count, leaf_start, leaf_count,
                 unit_root, unit_splits, unit_prefix, unit_prefix_start, unit_width, unit_feature_start,
                 unit_table_start, prefix_mask, prefix_want, unit_features, table,
                 leaf_m, leaf_feature_start, leaf_terms, leaf_coef_start, leaf_features, leaf_mask, leaf_want, coef,
                 n_threads, block_rows, out):  # pragma: no cover - compiled
    """Contributions of every row of ``X`` into ``out[:, :n_features]``."""
    n, n_features = X.shape
    block = max(16, min(block_rows, (n + n_threads - 1) // n_threads))
    n_blocks = (n + block - 1) // block
    n_workers = min(n_threads, n_blocks)
    longest = 1
    for leaf in range(len(leaf_m)):
        longest = max(longest, leaf_m[leaf])
    # Each worker owns its buffers and takes every n_workers-th block of rows. A row's result does
    # not depend on its block, so the output is the same for any thread count.
    for worker in prange(n_workers):
        xt = np.empty((n_features, block))  # the block transposed: one feature's values contiguous
        acc = np.empty((n_features, block))
        decisions = np.empty(block, np.int64)  # bit q set: the row goes left at the tree's split q
        key = np.empty(block, np.int64)
        bits = np.empty((longest, block))  # run-time leaves: o_k as 0.0 / 1.0
        products = np.empty(((longest + 1) // 2, block))
        cold = np.empty(block)
        hot = np.empty(block)
        for b in range(worker, n_blocks, n_workers):
            first_row = b * block
            rows = min(n, first_row + block) - first_row
            for i in range(rows):
                for f in range(n_features):
                    xt[f, i] = X[first_row + i, f]
            acc[:, :rows] = 0.0
            for t in range(len(node_start)):
                decisions[:rows] = 0
                for q in range(node_count[t]):  # LightGBM's split rules
                    node = node_start[t] + q
                    x = xt[feature[node]]
                    bit = np.int64(1) << q
                    if kind[node] == 0:  # numerical; NaN as one fixed side
                        thr = threshold[node]
                        nan_bit = bit if nan_left[node] else 0
                        for i in range(rows):
                            decisions[i] |= (bit if x[i] <= thr else 0) | (nan_bit if x[i] != x[i] else 0)
                    elif kind[node] == 1:  # numerical, zero and NaN as missing
                        thr = threshold[node]
                        missing_bit = bit if zero_left[node] else 0
                        for i in range(rows):
                            missing = x[i] != x[i] or abs(x[i]) <= _ZERO_THRESHOLD
                            decisions[i] |= missing_bit if missing else (bit if x[i] <= thr else 0)
                    else:  # categorical: listed categories left; NaN, negatives and unlisted right
                        words = cat_start[node]
                        limit = 64.0 * cat_words[node]
                        for i in range(rows):
                            inside = x[i] > -1.0 and x[i] < limit
                            c = np.int64(x[i] if inside else 0.0)
                            listed = (cat_bits[words + (c >> 6)] >> (c & 63)) & 1
                            decisions[i] |= listed << q if inside else 0
                for u in range(unit_start[t], unit_start[t] + unit_count[t]):
                    # key: prefix bits, then the decisions at the unit's splits
                    p = unit_prefix[u]
                    shift = unit_root[u]
                    field = (np.int64(1) << unit_splits[u]) - 1
                    for i in range(rows):
                        key[i] = ((decisions[i] >> shift) & field) << p
                    ps = unit_prefix_start[u]
                    for a in range(p):
                        mask = prefix_mask[ps + a]
                        want = prefix_want[ps + a]
                        bit = np.int64(1) << a
                        for i in range(rows):
                            key[i] |= bit if ((decisions[i] ^ want) & mask) == 0 else 0
                    width = unit_width[u]
                    base = unit_table_start[u]
                    for i in range(rows):
                        key[i] = base + key[i] * width
                    fs = unit_feature_start[u]
                    for j in range(width):
                        target = acc[unit_features[fs + j]]
                        for i in range(rows):  # an unsigned index spares the negative-index check
                            target[i] += table[np.uint64(key[i] + j)]
                for leaf in range(leaf_start[t], leaf_start[t] + leaf_count[t]):
                    # quadrature terms: a (m x Q), hot (m x Q), cold (Q), nodes t (Q)
                    m = leaf_m[leaf]
                    fs = leaf_feature_start[leaf]
                    terms = leaf_terms[leaf]
                    c_a = leaf_coef_start[leaf]
                    c_hot = c_a + m * terms
                    c_cold = c_hot + m * terms
                    c_t = c_cold + terms
                    for k in range(m):
                        mask = leaf_mask[fs + k]
                        want = leaf_want[fs + k]
                        o = bits[k]
                        for i in range(rows):
                            o[i] = 1.0 if ((decisions[i] ^ want) & mask) == 0 else 0.0
                    for q in range(terms):  # P_q = prod_k (a_kq + o_k t_q)
                        tq = coef[c_t + q]
                        product = products[q]
                        a = coef[c_a + q]
                        o = bits[0]
                        for i in range(rows):
                            product[i] = a + o[i] * tq
                        for k in range(1, m):
                            a = coef[c_a + k * terms + q]
                            o = bits[k]
                            for i in range(rows):
                                product[i] *= a + o[i] * tq
                    cold[:rows] = 0.0
                    for q in range(terms):
                        c = coef[c_cold + q]
                        product = products[q]
                        for i in range(rows):
                            cold[i] += product[i] * c
                    for j in range(m):
                        hot[:rows] = 0.0
                        for q in range(terms):
                            c = coef[c_hot + j * terms + q]
                            product = products[q]
                            for i in range(rows):
                                hot[i] += product[i] * c
                        target = acc[leaf_features[fs + j]]
                        o = bits[j]
                        for i in range(rows):
                            target[i] += hot[i] if o[i] != 0.0 else cold[i]
            for i in range(rows):
                for f in range(n_features):
                    out[first_row + i, f] = acc[f, i]


@lru_cache(maxsize=1)
def _kernels() -> dict[str, Callable]:
    """Compile the kernels once per process (numba caches the machine code on disk)."""
    import numba

    # The kernels' parallel loop names resolve here, at compile time.
    globals()["prange"] = numba.prange
    return {"tables": numba.njit(parallel=True, cache=True)(_tables_kernel),
            "shap": numba.njit(parallel=True, cache=True)(_shap_kernel)}


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


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


def _forest_key(booster: Any) -> str:
    """The cache key of a model's flattened forest: sha256 of the format version, the settings that
    shape the tables and the model text (about 30 ms for 300 trees of 31 leaves)."""
    settings = [FOREST_CACHE_VERSION] + [(name, globals()[name]) for name in _FOREST_CACHE_SETTINGS]
    digest = hashlib.sha256(repr(settings).encode())
    digest.update(booster.model_to_string().encode())
    return digest.hexdigest()


def _load_forest(path: Path) -> _Forest | None:
    """The forest cached at ``path``; None when there is none or it is unreadable or does not hold
    exactly the arrays of :class:`_Forest` with their dtypes."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        return None
    except Exception as exc:  # corrupt or truncated: rebuilt and overwritten
        log.debug("ignoring unreadable TreeSHAP cache %s: %s", path, exc)
        return None
    names = {f"{field}.{name}" for field, fields in _FOREST_ARRAYS.items() for name in fields}
    if set(arrays) != names | {"expected_value"}:
        log.debug("ignoring TreeSHAP cache %s: unexpected arrays", path)
        return None
    for name, values in arrays.items():
        dtype, ndim = (np.float64, 0) if name == "expected_value" else (
            np.float64 if name in _FOREST_FLOATS else np.int64, 1)
        if values.dtype != dtype or values.ndim != ndim:
            log.debug("ignoring TreeSHAP cache %s: %s is %s of %d dimensions", path, name, values.dtype, values.ndim)
            return None
    fields = {field: {name: arrays[f"{field}.{name}"] for name in fields} for field, fields in _FOREST_ARRAYS.items()}
    return _Forest(**fields, expected_value=float(arrays["expected_value"]))


def _save_forest(forest: _Forest, path: Path) -> None:
    """Write ``forest`` to ``path`` atomically (a temporary file in the same folder, then renamed);
    a folder that cannot be created or written is logged at debug level and skipped."""
    arrays = {f"{field}.{name}": values for field in _FOREST_ARRAYS for name, values in getattr(forest, field).items()}
    arrays["expected_value"] = np.asarray(forest.expected_value, dtype=np.float64)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays)
        os.replace(tmp, path)
        _trim_cache(path.parent)
    except Exception as exc:  # the cache must never fail a run
        log.debug("TreeSHAP tables not cached at %s: %s", path, exc)
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _trim_cache(folder: Path) -> None:
    """Keep the FOREST_CACHE_ENTRIES most recently used entries of ``folder`` (loads refresh an
    entry's time), delete the others."""
    entries = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[FOREST_CACHE_ENTRIES:]:
        old.unlink(missing_ok=True)


def _forest_of(booster: Any) -> _Forest | None:
    """The flattened model: kept on the booster object, cached on disk (see
    :func:`forest_cache_dir`) and built only when neither has it.

    Raises:
        ImportError: numba is not installed.
    """
    cached = getattr(booster, "_lgml_forest", False)
    if cached is not False:
        return cached
    _kernels()  # numba must be there before a cached forest is of any use
    folder = forest_cache_dir()
    path = None if folder is None else folder / f"{_forest_key(booster)}.npz"
    cached = None if path is None else _load_forest(path)
    if cached is not None:
        try:
            os.utime(path)  # recently used: kept longest
        except OSError:
            pass
    else:
        cached = _flatten_forest(booster)
        if cached is not None and path is not None:
            _save_forest(cached, path)
    booster._lgml_forest = cached
    return cached


def _run_kernel(forest: _Forest, matrix: np.ndarray) -> np.ndarray:
    out = np.zeros((matrix.shape[0], matrix.shape[1] + 1))
    n, t, u, lv = forest.nodes, forest.trees, forest.units, forest.leaves
    _kernels()["shap"](
        matrix, n["feature"], n["threshold"], n["kind"], n["nan_left"], n["zero_left"], n["cat_start"],
        n["cat_words"], n["cat_bits"], t["node_start"], t["node_count"], t["unit_start"], t["unit_count"],
        t["leaf_start"], t["leaf_count"], u["root"], u["splits"], u["prefix"], u["prefix_start"], u["width"],
        u["feature_start"], u["table_start"], u["prefix_mask"], u["prefix_want"], u["features"], u["table"],
        lv["m"], lv["feature_start"], lv["terms"], lv["coef_start"], lv["feature"], lv["mask"], lv["want"],
        lv["coef"], _threads(), FAST_SHAP_BLOCK_ROWS, out)
    out[:, -1] = forest.expected_value
    return out


def fast_contributions(booster: Any, X: pd.DataFrame | np.ndarray) -> np.ndarray | None:
    """Exact TreeSHAP with the compiled kernels.

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
        forest = _forest_of(booster)
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
    return _run_kernel(forest, matrix)


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
        groups: Feature -> group; default :data:`lgml.features.FEATURE_GROUPS`. Features with
            no group are summed under ``other``.

    Returns:
        DataFrame of shape (n_rows, n_groups), same units and index as ``contrib``; one column
        per group of :data:`lgml.features.GROUPS` in that order (0 where a group has no
        feature), then ``other`` if needed. Rows sum to ``contrib``'s row sums.
    """
    groups = FEATURE_GROUPS if groups is None else groups
    names = [groups.get(c, "other") for c in contrib.columns]
    order = list(GROUPS) + (["other"] if "other" in names else []) + sorted(set(names) - set(GROUPS) - {"other"})
    members = np.zeros((len(names), len(order)))
    members[np.arange(len(names)), [order.index(n) for n in names]] = 1.0
    return pd.DataFrame(contrib.to_numpy(dtype=float) @ members, index=contrib.index, columns=order)


def group_label(group: str) -> str:
    """Bilingual label of a group, e.g. ``"新 innovation"``; the name itself if unknown."""
    if group in GROUPS:
        zh, en = GROUPS[group]
        return f"{zh} {en}"
    return group


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


# ------------------------------------------------------------------------------------------------
# Labels and values in words
# ------------------------------------------------------------------------------------------------

# feature -> (English label, unit). Units: pct (fraction shown as %), yuan, count, years, level,
# flag, points, category, log (log ratio shown as % change), per100, number.
FEATURE_LABELS: dict[str, tuple[str, str]] = {
    "mb_share": ("main-business share", "pct"), "mb_growth_2y": ("main-business growth (2-yr avg)", "pct"),
    "niche_years": ("years in the niche", "years"), "revenue_growth_1y": ("revenue growth", "log"),
    "debt_ratio": ("debt ratio", "pct"), "net_margin": ("net margin", "pct"),
    "asset_turnover": ("asset turnover", "number"), "digital_level": ("digital level", "level"),
    "quality_certified": ("certification", "flag"), "score_refinement": ("refinement score", "points"),
    "niche_market_share": ("niche market share", "pct"), "own_brand": ("own brand", "flag"),
    "score_distinctive": ("distinctive score", "points"), "rd_intensity": ("R&D intensity", "pct"),
    "rd_intensity_prev": ("R&D intensity of the previous year", "pct"),
    "rd_intensity_2y": ("R&D intensity over 2 years", "pct"), "rd_expense": ("R&D spending", "yuan"),
    "rd_2y": ("R&D spending over 2 years", "yuan"), "rd_staff_share": ("R&D staff share", "pct"),
    "class1_ip": ("Class-I IP items", "count"), "class2_ip": ("Class-II IP items", "count"),
    "class1_growth_1y": ("new Class-I IP items (1 yr)", "count"),
    "class1_growth_2y": ("new Class-I IP items (2 yrs)", "count"),
    "class2_growth_1y": ("new Class-II IP items (1 yr)", "count"),
    "patents_per_100_employees": ("invention patents per 100 employees", "number"),
    "rd_institution_level": ("R&D institution", "institution"), "score_innovation": ("innovation score", "points"),
    "equity_2y": ("new equity over 2 years", "yuan"), "score_specialization": ("specialization score", "points"),
    "foundation_field": ("product in a foundation field (工业六基)", "flag"),
    "strategic_industry": ("strategic emerging industry", "flag"), "key_customers": ("key large customers", "count"),
    "province": ("province", "category"), "in_hightech_zone": ("in a national high-tech zone", "flag"),
    "province_designated_share": ("province's designations per firm", "pct"),
    "province_pool_share": ("province's SRDI pool share", "pct"), "sector": ("sector", "category"),
    "sector_designated_share": ("sector's designations per firm", "pct"), "revenue": ("revenue", "yuan"),
    "employees": ("employees", "count"), "total_assets": ("total assets", "yuan"), "firm_age": ("firm age", "years"),
    "size_band": ("size band", "category"), "ownership": ("ownership", "category"),
    "srdi_provincial": ("provincial SRDI SME status", "flag"),
    "srdi_eligible": ("qualifies as a provincial SRDI SME", "flag"),
    "score_total": ("SRDI 100-point score", "points"), "eligible": ("meets every Little Giant criterion", "flag"),
    "n_met": ("Little Giant criteria met", "count"), "share_met": ("share of criteria met", "pct"),
    "ever_revoked": ("lost a title before", "flag"),
    # criteria inputs that are not model features, for criterion sentences
    "revenue_cagr_2y": ("revenue CAGR (2 yrs)", "pct"), "profit_growth_2y": ("net-profit growth (2-yr avg)", "pct"),
    "invention_patents": ("invention patents", "count"),
}
for _name, _meta in criteria.CRITERIA.items():
    FEATURE_LABELS.setdefault(f"pass_{_name}", (f"{_meta['label_en']} rule", "pass"))
    FEATURE_LABELS.setdefault(f"short_{_name}", (f"shortfall on {_meta['label_en']}", f"short:{_meta['unit']}"))

_INSTITUTIONS = ("none", "municipal", "provincial", "national")


def feature_label(feature: str) -> str:
    """English label of a feature, e.g. ``"R&D intensity"``."""
    return FEATURE_LABELS.get(feature, (feature.replace("_", " "), "number"))[0]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pct_threshold(x: float) -> str:
    return f"{100 * x:g}%"


def _money(x: float) -> str:
    if abs(x) >= 1e5:
        return f"{x / 1e6:,.1f}".removesuffix(".0") + "M yuan"
    return f"{x:,.0f} yuan"


def _number(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.2f}"


def format_value(value: Any, unit: str) -> str:
    """A feature value in words and natural units (``"2.1%"``, ``"12.5M yuan"``, ``"yes"``)."""
    if isinstance(value, float):  # the usual case, checked without pd.isna
        if math.isnan(value):
            return "missing"
    elif value is None or (not isinstance(value, str) and pd.isna(value)):
        return "missing"
    if unit in ("category",):
        return str(value)
    x = float(value)
    if unit == "pct":
        return _pct(x)
    if unit == "log":
        return f"{100 * math.expm1(x):+.1f}%"
    if unit == "yuan":
        return _money(x)
    if unit in ("flag", "pass"):
        return "yes" if x >= 0.5 else "no"
    if unit == "institution":
        return _INSTITUTIONS[int(x)] if 0 <= x < len(_INSTITUTIONS) else _number(x)
    if unit == "years":
        return f"{_number(x)} year" + ("" if x == 1 else "s")
    if unit == "level":
        return f"level {_number(x)}"
    if unit == "points":
        return f"{_number(x)} points"
    if unit.startswith("short:"):
        return _gap(x, unit.removeprefix("short:"))
    return _number(x)


def _gap(x: float, unit: str) -> str:
    """A shortfall in the unit of a criterion (criteria.CRITERIA units)."""
    if unit == "ratio":
        return f"{100 * x:.1f} pp"
    if unit == "yuan":
        return _money(x)
    if unit == "flag":
        return "not held" if x > 0 else "held"
    words = {"years": "year", "items": "item", "points": "point", "employees": "employee", "level": "level"}
    if unit in words:
        return f"{_number(x)} {words[unit]}" + ("" if x == 1 else "s")
    return _number(x)


def _threshold(x: float, unit: str) -> str:
    if unit == "ratio":
        return _pct_threshold(x)
    if unit == "yuan":
        return _money(x)
    return _number(x)


# ------------------------------------------------------------------------------------------------
# Which criterion a feature speaks to
# ------------------------------------------------------------------------------------------------


def _criterion_map(regime: str) -> dict[str, str]:
    """Feature -> criterion of ``regime`` whose headline input it is (plus pass_/short_)."""
    rules = criteria.RULES[regime]["criteria"]
    out: dict[str, str] = {}
    for name, spec in rules.items():
        out[f"pass_{name}"] = out[f"short_{name}"] = name
        headline = criteria.CRITERIA[name]["inputs"][0]
        out.setdefault(headline, name)
        if spec["kind"] in ("all_min", "rd_band"):  # every R&D measure speaks to the R&D rule
            for feature in ("rd_intensity_prev", "rd_intensity_2y", "rd_expense", "rd_2y"):
                out.setdefault(feature, name)
    return out


CRITERION_OF: dict[str, dict[str, str]] = {regime: _criterion_map(regime) for regime in criteria.RULES}


def criterion_for(feature: str, batch_year: int | None = None) -> str | None:
    """The Little Giant criterion a feature speaks to in the regime of ``batch_year`` (default
    the 2022 rules), e.g. ``rd_intensity`` -> ``rd_band``; None if none."""
    regime = DEFAULT_REGIME if batch_year is None else criteria.regime_for(int(batch_year))
    return CRITERION_OF[regime].get(feature)


def _col(frame: pd.DataFrame | _Rows, name: str) -> np.ndarray:
    if isinstance(frame, _Rows):
        return frame.col(name)
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


class _Rows:
    """Some rows of a feature table, by position. A column is converted to floats (as
    :func:`_col` does) once for the whole table; subsets of the rows share the conversion."""

    def __init__(self, table: pd.DataFrame, positions: np.ndarray | None = None,
                 converted: dict[str, np.ndarray] | None = None):
        self.table = table
        self.columns = table.columns
        self.positions = np.arange(len(table)) if positions is None else positions
        self._converted = {} if converted is None else converted

    @classmethod
    def of(cls, rows: pd.DataFrame | _Rows) -> _Rows:
        return rows if isinstance(rows, cls) else cls(rows)

    def __len__(self) -> int:
        return len(self.positions)

    def take(self, positions: np.ndarray) -> _Rows:
        """The rows at ``positions`` of these rows."""
        return _Rows(self.table, self.positions[positions], self._converted)

    def col(self, name: str) -> np.ndarray:
        if name not in self._converted:
            self._converted[name] = _col(self.table, name)
        return self._converted[name][self.positions]


def _each(values: Any, text: Callable[[Any], str]) -> np.ndarray:
    """``text(v)`` for each of ``values``, as an object array of str. Numbers and string
    categories are formatted once per distinct value (floats by bit pattern, so that e.g. -0.0
    keeps its sign); a missing category is given as NaN, as ``Categorical.to_numpy`` gives it."""
    if isinstance(values, pd.Categorical) and pd.api.types.is_string_dtype(values.categories):
        texts = [text(v) for v in values.categories.tolist()] + [text(np.nan)]
        return np.array(texts, dtype=object)[values.codes]  # code -1 (missing) takes the last
    values = np.asarray(values)
    if values.dtype == np.float64:
        codes, distinct = pd.factorize(np.ascontiguousarray(values).view(np.int64))
        distinct = distinct.view(np.float64)
    elif values.dtype.kind in "biu":
        codes, distinct = pd.factorize(values)
    else:
        return np.array([text(v) for v in values], dtype=object)
    return np.array([text(v) for v in distinct.tolist()], dtype=object)[codes]


def _band_where(bands: Sequence[Mapping], i: int) -> str:
    low = bands[i]["revenue_min"]
    if i == 0:
        return f">= {_money(low)}"
    high = bands[i - 1]["revenue_min"]
    return f"under {_money(high)}" if low <= 0 else f"{low / 1e6:g}-{high / 1e6:g}M yuan"


_EQUITY_ROUTE_WORDS = {"equity_2y": "new equity over 2 years", "rd_2y": "R&D over 2 years",
                       "rd_staff_share": "R&D staff share"}


def _equity_route_phrases(band: Mapping, rows: _Rows, passed: np.ndarray) -> np.ndarray:
    """The R&D rule's equity route (revenue under 50M yuan): every minimum, what the firm has."""
    revenue = _col(rows, "revenue")
    out = np.empty(len(rows), dtype=object)
    out[passed] = _each(revenue[passed], lambda r: f"revenue {_money(r)}: the equity route of the R&D rule is met")
    failed = ~passed
    parts = [_each(revenue[failed], lambda r: f"revenue {_money(r)} is under 50M yuan: the equity route needs ")]
    for i, (col, need) in enumerate(band["min"].items()):
        show = _pct if col == "rd_staff_share" else _money
        head = f"{', ' if i else ''}{_EQUITY_ROUTE_WORDS.get(col, col)} >= {show(need)} (has "
        parts.append(_each(_col(rows, col)[failed],
                           lambda v, head=head, show=show: f"{head}{'missing' if math.isnan(v) else show(v)})"))
    out[failed] = list(map("".join, zip(*parts)))
    return out


def _phrase_rd_band(spec: Mapping, rows: pd.DataFrame | _Rows, regime_year: int) -> np.ndarray:
    rows = _Rows.of(rows)
    bands = spec["bands"]
    revenue = _col(rows, "revenue")
    now, prev = _col(rows, "rd_intensity"), _col(rows, "rd_intensity_prev")
    weaker = np.fmin(now, prev)
    weaker_named = prev < now
    passed = _col(rows, "pass_rd_band") >= 0.5
    band = np.full(len(rows), -1)
    for i in reversed(range(len(bands))):  # the first band whose revenue minimum is reached
        band[revenue >= bands[i]["revenue_min"] * (1 - 1e-9)] = i
    out = np.empty(len(rows), dtype=object)
    unknown = band < 0
    out[unknown] = _each(now[unknown], lambda v: f"R&D intensity {format_value(v, 'pct')}; "
                                                 "revenue missing, so the R&D band is unknown")
    for i, spec_i in enumerate(bands):
        at = band == i
        if not at.any():
            continue
        if "intensity_min" not in spec_i:
            at = np.flatnonzero(at)
            out[at] = _equity_route_phrases(spec_i, rows.take(at), passed[at])
            continue
        need, where = _pct_threshold(spec_i["intensity_min"]), _band_where(bands, i)
        out[at & np.isnan(weaker)] = f"R&D intensity of the last 2 years not known; {need} required at revenue {where}"
        for named in (True, False):
            for met in (True, False):
                tail = (f"{' (weaker of the last 2 years)' if named else ''} {'meets' if met else 'is below'} "
                        f"the {need} required at revenue {where}")
                here = at & ~np.isnan(weaker) & (weaker_named == named) & (passed == met)
                out[here] = _each(weaker[here], lambda w, tail=tail: f"R&D intensity {_pct(w)}{tail}")
    return out


def _criterion_phrases(name: str, rows: pd.DataFrame | _Rows, batch_year: int) -> np.ndarray:
    """One phrase per row on criterion ``name`` (an object array of str): the firm's value, the
    threshold and whether it is met (with the shortfall when not)."""
    rows = _Rows.of(rows)
    spec = criteria.RULES[criteria.regime_for(batch_year)]["criteria"][name]
    meta = criteria.CRITERIA[name]
    kind, unit = spec["kind"], meta["unit"]
    if kind == "rd_band":
        return _phrase_rd_band(spec, rows, batch_year)
    passed = _col(rows, f"pass_{name}") >= 0.5
    failed = ~passed
    short = _col(rows, f"short_{name}")
    out = np.empty(len(rows), dtype=object)
    if kind in ("min", "max"):
        column = spec["column"]
        value = _col(rows, column)
        label = feature_label(column)
        vunit = {"ratio": "pct", "yuan": "yuan", "years": "years", "points": "points"}
        vunit = vunit.get(unit, "number")
        if column == "rd_institution_level":
            need = f"at least a {_INSTITUTIONS[int(spec['min'])]}-level one"
            have = _each(value, lambda v: f"R&D institution: {format_value(v, 'institution')}; ")
            out[passed] = have[passed] + f"meets the requirement of {need}"
            out[failed] = have[failed] + f"required: {need}"
            return out
        bound = spec["min"] if kind == "min" else spec["max"]
        need = _threshold(bound, unit)
        known = ~np.isnan(value)
        met, unmet = known & passed, known & failed
        if kind == "min":
            verdict, verdict_unmet, gap = f"meets the {need} required", f"is below the {need} required", "short by"
        else:
            verdict, verdict_unmet, gap = f"is within the {need} allowed", f"is above the {need} allowed", "over by"
        out[~known] = f"{label} missing; {'at least' if kind == 'min' else 'at most'} {need} required"
        out[met] = _each(value[met], lambda v: f"{label} {format_value(v, vunit)} {verdict}")
        out[unmet] = (_each(value[unmet], lambda v: f"{label} {format_value(v, vunit)} {verdict_unmet} ({gap} ")
                      + _each(short[unmet], lambda s: f"{_gap(s, unit)})"))
        return out
    if kind == "flag":
        label = meta["label_en"]
        out[passed] = f"{label}: held (required)"
        out[failed] = f"no {label} (required)"
        return out
    if kind == "all_min":
        now, prev = _col(rows, spec["columns"][0]), _col(rows, spec["columns"][1])
        need = _pct_threshold(spec["min"])
        years = (_each(now, lambda v: f"R&D intensity {format_value(v, 'pct')} and ")
                 + _each(prev, lambda v: f"{format_value(v, 'pct')} (last 2 years) "))
        out[passed] = years[passed] + f"meet the {need} required each year"
        out[failed] = (years[failed] + f"fall short of the {need} required each year by "
                       + _each(short[failed], lambda s: _gap(s, "ratio")))
        return out
    if kind == "sme_size":
        out[passed] = "SME size rule met"
        out[failed] = (_each(_col(rows, "employees")[failed], lambda e: f"{_number(e)} employees and ")
                       + _each(_col(rows, "revenue")[failed], lambda r: f"{_money(r)} revenue exceed both SME limits"))
        return out
    # any_min: either route; the shortfall is that of the nearer one
    label = meta["label_en"]
    out[passed] = f"{label}: met"
    out[failed] = _each(short[failed], lambda s: f"{label}: not shown (data missing)" if math.isnan(s)
                        else f"{label}: not met, short by {_gap(s, unit)} on the nearer route")
    return out


# Features that summarise all criteria form one reason, which names the criteria missed.
AGGREGATES = ("eligible", "n_met", "share_met")
AGGREGATE_UNIT = "criteria_met"


def _aggregate_phrases(rows: pd.DataFrame | _Rows, batch_year: int, values: np.ndarray | None = None) -> np.ndarray:
    """The reason of the summary features: where they lower the score, ``"misses 1 of 13 Little
    Giant criteria: R&D intensity 2.1% is below ..."`` (the first criterion missed with its
    shortfall); where they raise it, ``"meets 11 of 13 Little Giant criteria (misses ...)"``."""
    rows = _Rows.of(rows)
    names = [n for n in criteria.RULES[criteria.regime_for(batch_year)]["criteria"] if f"pass_{n}" in rows.columns]
    if not names:
        return _plain_phrases("n_met", _col(rows, "n_met"))
    passed = np.column_stack([_col(rows, f"pass_{n}") >= 0.5 for n in names])
    raises = np.zeros(len(rows), dtype=bool) if values is None else np.asarray(values) > 0
    total = len(names)
    # Rows meeting the same criteria share their sentence, but for the detail of the first
    # criterion missed: the sentence parts are built once per set of criteria met.
    pattern, keys = pd.factorize(passed @ (1 << np.arange(total, dtype=np.int64)))
    missed = [[j for j in range(total) if not (key >> j) & 1] for key in keys.tolist()]
    labels = [[criteria.CRITERIA[names[j]]["label_en"] for j in failed] for failed in missed]
    summary = np.array([f"meets {total - len(m)} of {total} Little Giant criteria (misses {', '.join(words)})" if m
                        else f"meets all {total} Little Giant criteria of batch {batch_year}"
                        for m, words in zip(missed, labels)], dtype=object)
    head = np.array([f"misses {len(m)} of {total} Little Giant criteria: " for m in missed], dtype=object)
    tail = np.array([f" (and {', '.join(words[1:])})" if len(words) > 1 else "" for words in labels], dtype=object)
    first = np.array([m[0] if m else -1 for m in missed])[pattern]
    first[raises] = -1  # where the summary raises the score, the criteria missed are only named
    out = summary[pattern]
    for j in np.unique(first[first >= 0]):
        at = np.flatnonzero(first == j)
        detail = _criterion_phrases(names[j], rows.take(at), batch_year)
        out[at] = list(map("".join, zip(head[pattern[at]], detail, tail[pattern[at]])))
    return out


def _plain_phrases(feature: str, values: np.ndarray | pd.Series) -> np.ndarray:
    label, unit = FEATURE_LABELS.get(feature, (feature.replace("_", " "), "number"))
    if unit == "pass":
        return _each(values, lambda v: f"{label}: {'met' if v >= 0.5 else 'not met'}" if not pd.isna(v)
                     else f"{label}: not in force")
    if unit == "flag":
        return _each(values, lambda v: f"{label}: {format_value(v, unit)}")
    return _each(values, lambda v: f"{label} {format_value(v, unit)}")


def _values_at(table: pd.DataFrame, name: str, positions: np.ndarray) -> np.ndarray | pd.Categorical:
    """Column ``name`` at ``positions`` (a categorical column as a Categorical); NaN if absent."""
    if name not in table.columns:
        return np.full(len(positions), np.nan)
    column = table[name]
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.array.take(positions)
    return column.to_numpy()[positions]


def _batch_years(table: pd.DataFrame) -> np.ndarray:
    if "batch_year" in table.columns:
        return table["batch_year"].to_numpy(dtype=np.int64)
    if "year" in table.columns:
        return table["year"].to_numpy(dtype=np.int64) + 1
    first = criteria.RULES[DEFAULT_REGIME]["batches"][0]
    return np.full(len(table), first, dtype=np.int64)


def reason_units(features: Sequence[str], batch_year: int | None = None) -> dict[str, list[str]]:
    """Features grouped into reasons: all features measuring one Little Giant criterion of the
    batch's regime form one unit named after the criterion (e.g. ``rd_band`` gathers
    ``rd_intensity``, ``rd_intensity_prev``, ``rd_expense``, ``pass_rd_band`` ...), so that credit
    split among redundant features is summed again; every other feature is its own unit."""
    regime = DEFAULT_REGIME if batch_year is None else criteria.regime_for(int(batch_year))
    cmap = CRITERION_OF[regime]
    units: dict[str, list[str]] = {}
    for f in features:
        name = AGGREGATE_UNIT if f in AGGREGATES else cmap.get(f, f)
        units.setdefault(name, []).append(f)
    return units


_RANK_BLOCK_ROWS = 8192  # rows ranked at a time, so that the temporary arrays stay small


def _top_units(U: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of each row's k largest ``|U|`` (k <= n_columns), largest first, and whether each
    is non-zero; both of shape (n_rows, k)."""
    top = np.empty((len(U), k), dtype=np.intp)
    used = np.empty((len(U), k), dtype=bool)
    for start in range(0, len(U), _RANK_BLOCK_ROWS):
        block = slice(start, start + _RANK_BLOCK_ROWS)
        absU = np.abs(U[block])
        best = (np.argpartition(-absU, k - 1, axis=1)[:, :k] if k < absU.shape[1]
                else np.tile(np.arange(absU.shape[1]), (len(absU), 1)))
        order = np.argsort(-np.take_along_axis(absU, best, axis=1), axis=1, kind="stable")
        top[block] = np.take_along_axis(best, order, axis=1)
        used[block] = np.take_along_axis(absU, top[block], axis=1) > 0
    return top, used


def reason_matrix(contrib: pd.DataFrame, table: pd.DataFrame, k: int = 3
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's top-k reasons by |contribution|, as phrases.

    Contributions of features measuring the same criterion are summed first
    (:func:`reason_units`).

    Args:
        contrib: Contributions of shape (n_rows, n_features) (log-odds), rows matching
            ``table``'s rows by position.
        table: Feature table of the same rows (values, pass/short flags, ``batch_year``).
        k: Reasons per row.

    Returns:
        ``(units, phrases, values)``: arrays of shape (n_rows, k): the unit names (a criterion
        or a feature), their phrases (without the contribution) and summed contributions
        (log-odds); a row with fewer than k non-zero units has empty names in its last slots.
    """
    C = contrib.to_numpy(dtype=float)
    n = len(C)
    features = list(contrib.columns)
    batch = _batch_years(table)
    names = np.full((n, k), "", dtype=object)
    phrases = np.full((n, k), "", dtype=object)
    values = np.zeros((n, k))
    if n == 0 or k == 0:
        return names, phrases, values
    year_of_row, years = pd.factorize(batch)
    regime_of_year = np.array([criteria.regime_for(int(y)) for y in years], dtype=object)
    every_row = _Rows(table)
    for regime in sorted(set(regime_of_year)):
        rows = np.flatnonzero((regime_of_year == regime)[year_of_row])
        year = int(batch[rows[0]])
        units = reason_units(features, year)
        unit_names = np.asarray(list(units), dtype=object)
        members = np.zeros((len(features), len(units)))
        col = {f: i for i, f in enumerate(features)}
        for j, fs in enumerate(units.values()):
            members[[col[f] for f in fs], j] = 1.0
        U = C[rows] @ members
        kk = min(k, U.shape[1])
        top, used = _top_units(U, kk)
        names[rows, :kk] = np.where(used, unit_names[top], "")
        values[rows, :kk] = np.where(used, np.take_along_axis(U, top, axis=1), 0.0)
        r_local, slots = np.nonzero(used)
        chosen = top[r_local, slots]
        by_unit = np.argsort(chosen.astype(np.uint16), kind="stable")  # units fit 16 bits: a radix sort
        for at in np.split(by_unit, np.flatnonzero(np.diff(chosen[by_unit])) + 1):
            if not len(at):
                continue
            r, slots_at = rows[r_local[at]], slots[at]
            unit = unit_names[chosen[at[0]]]
            if unit == AGGREGATE_UNIT:
                phrases[r, slots_at] = _aggregate_phrases(every_row.take(r), year, values[r, slots_at])
            elif unit in criteria.RULES[regime]["criteria"]:
                phrases[r, slots_at] = _criterion_phrases(unit, every_row.take(r), year)
            else:
                phrases[r, slots_at] = _plain_phrases(unit, _values_at(table, unit, r))
    return names, phrases, values


def top_reasons(contrib: pd.DataFrame, table: pd.DataFrame, k: int = 3) -> pd.Series:
    """Short text of each row's top-k drivers, largest |contribution| first.

    Each reason names the firm's own value and, where a Little Giant criterion of the row's
    batch applies, its threshold and shortfall, followed by the contribution in log-odds, e.g.
    ``"R&D intensity 2.1% is below the 3% required at revenue >= 100M yuan (-0.42 log-odds)"``.
    Features measuring the same criterion count as one driver (:func:`reason_units`).
    Reasons are joined by ``" | "``.

    Args:
        contrib: Contributions of shape (n_rows, n_features) in log-odds (from
            :func:`contributions`).
        table: The feature table the contributions were computed on (same rows, same order).
        k: Drivers per row.

    Returns:
        Series of str with ``contrib``'s index.
    """
    names, phrases, values = reason_matrix(contrib, table, k)
    count = (names != "").sum(axis=1)  # a row's empty slots are its last ones
    texts = np.full(len(names), "", dtype=object)
    for c in range(1, names.shape[1] + 1):
        rows = np.flatnonzero(count == c)
        if not len(rows):
            continue
        parts = [phrases[rows, 0], _log_odds_texts(values[rows, 0])]
        for j in range(1, c):
            parts += [[" | "] * len(rows), phrases[rows, j], _log_odds_texts(values[rows, j])]
        texts[rows] = list(map("".join, zip(*parts)))
    return pd.Series(texts, index=contrib.index, name="reasons", dtype="str")


def _log_odds_texts(values: np.ndarray) -> np.ndarray:
    """``f" ({v:+.2f} log-odds)"`` of each value, as an object array of str.

    Values are rounded to hundredths with numpy and each distinct result is written once.
    ``100 * |v|`` carries a rounding error of at most 2e-8 (for |v| < 1e6), so it rounds as the
    exact value does unless it lies within 1e-6 of a half; those values, and values that are
    not finite, are formatted one by one."""
    v = np.asarray(values, dtype=float)
    hundredths = np.abs(v) * 100
    safe = (np.abs(np.modf(hundredths)[0] - 0.5) > 1e-6) & (hundredths < 1e8)
    rounded = np.rint(hundredths[safe])
    # a negative value, even one shown as "-0.00", gets key -1 - n
    codes, keys = pd.factorize(np.where(np.signbit(v[safe]), -1 - rounded, rounded))

    def text(key: float) -> str:
        sign, n = ("-", int(-1 - key)) if key < 0 else ("+", int(key))
        return f" ({sign}{n // 100}.{n % 100:02d} log-odds)"

    out = np.empty(len(v), dtype=object)
    out[safe] = np.array([text(key) for key in keys.tolist()], dtype=object)[codes]
    out[~safe] = [f" ({x:+.2f} log-odds)" for x in v[~safe].tolist()]
    return out


# ------------------------------------------------------------------------------------------------
# Counterfactual: what would have to change
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """A change a firm can make, on its panel rows.

    Attributes:
        name: Short key, e.g. ``rd_intensity``.
        feature: The model feature the change moves (for monotone directions).
        direction: +1 if the change raises that feature, -1 if it lowers it.
        label: What the firm does, in words.
    """

    name: str
    feature: str
    direction: int
    label: str


ACTIONS: tuple[Action, ...] = (
    Action("rd_intensity", "rd_intensity", 1, "raise R&D spending"),
    Action("rd_staff", "rd_staff_share", 1, "add R&D staff"),
    Action("class1_ip", "class1_ip", 1, "obtain more Class-I IP (invention patents)"),
    Action("mb_share", "mb_share", 1, "concentrate on the main business"),
    Action("debt_ratio", "debt_ratio", -1, "reduce debt"),
    Action("certification", "quality_certified", 1, "obtain a management or product certification"),
    Action("own_brand", "own_brand", 1, "establish an own brand"),
    Action("digital_level", "digital_level", 1, "raise the digital level"),
    Action("rd_institution", "rd_institution_level", 1, "set up or upgrade an R&D institution"),
    Action("niche_share", "niche_market_share", 1, "grow the national niche market share"),
)
MUTABLE_ACTIONS = tuple(a.name for a in ACTIONS)
# Realistic limits: the ladder of targets each change may reach, and how far it may move.
RD_LADDER = (0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.12)
RD_MAX_RISE = 0.06  # at most +6 pp of revenue
STAFF_LADDER = (0.05, 0.10, 0.20, 0.30, 0.50)
STAFF_MAX_RISE = 0.20
CLASS1_STEPS = (1, 2, 3, 5)
MB_LADDER = (0.60, 0.70, 0.80, 0.90)
MB_MAX_RISE = 0.25
DEBT_LADDER = (0.70, 0.60, 0.50)
DEBT_MAX_CUT = 0.25
DIGITAL_MAX = 5
NICHE_LADDER = (0.01, 0.05, 0.10, 0.15, 0.20)
NICHE_MAX_RISE = 0.10


@dataclass(frozen=True)
class Change:
    """One step: an action taken to a given size.

    Attributes:
        action: :attr:`Action.name`.
        before: The firm's value before (in ``unit``).
        after: The value after.
        unit: ``pct``, ``count``, ``level``, ``flag`` or ``institution``.
        effort: Rungs moved on the action's ladder (1 = the nearest).
        text: The change in words.
    """

    action: str
    before: float
    after: float
    unit: str
    effort: int
    text: str


@dataclass
class Counterfactual:
    """Outcome of :func:`counterfactual`.

    Attributes:
        firm_id, year: The firm and fiscal year (the application is for batch ``year + 1``).
        target: Target calibrated probability (0-1).
        probability_before, probability_after: Calibrated probabilities (0-1).
        raw_before, raw_after: Model scores in log-odds.
        eligible_before, eligible_after: Every Little Giant criterion of batch ``year + 1`` met.
        reached: Whether the changes reach the goal.
        goal: ``probability`` (target reached), ``eligible`` (became eligible), ``already``
            (no change needed) or None (not reached).
        changes: The changes, smallest set found first by count, then by size.
        message: One plain sentence saying what was found.
    """

    firm_id: str
    year: int
    target: float
    probability_before: float
    probability_after: float
    raw_before: float
    raw_after: float
    eligible_before: bool
    eligible_after: bool
    reached: bool
    goal: str | None
    changes: list[Change] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (probabilities 0-1, raw scores in log-odds)."""
        return {
            "firm_id": self.firm_id, "year": self.year, "target": self.target,
            "probability_before": self.probability_before, "probability_after": self.probability_after,
            "raw_before": self.raw_before, "raw_after": self.raw_after,
            "eligible_before": self.eligible_before, "eligible_after": self.eligible_after,
            "reached": self.reached, "goal": self.goal, "message": self.message,
            "changes": [{"action": c.action, "before": _finite(c.before), "after": _finite(c.after), "unit": c.unit,
                         "text": c.text} for c in self.changes],
        }


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


# Each proposer takes the firm's rows (fiscal years <= Y, sorted, last = Y) and yields
# (Change, edit) pairs; ``edit`` returns edited copies of the rows. Only raising moves.
Edit = Callable[[pd.DataFrame], pd.DataFrame]


def _last(rows: pd.DataFrame, col: str) -> float:
    return _f(rows[col].iloc[-1])


def _set_last(col: str, value: Any) -> Edit:
    def edit(rows: pd.DataFrame) -> pd.DataFrame:
        out = rows.copy()
        out.iloc[-1, out.columns.get_loc(col)] = value
        return out
    return edit


def _propose_rd(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    recent = rows.iloc[-2:]
    revenue = recent["revenue"].to_numpy(dtype=float)
    rd = recent["rd_expense"].to_numpy(dtype=float, na_value=np.nan)
    if not np.all(revenue > 0):
        return []
    intensity = np.nan_to_num(rd / revenue, nan=0.0)
    weaker = float(intensity.min())
    rungs = [r for r in RD_LADDER if weaker < r - 1e-9 and r <= weaker + RD_MAX_RISE + 1e-9]
    out = []
    for effort, r in enumerate(rungs, start=1):
        extra = np.maximum(r * revenue - np.nan_to_num(rd), 0.0)

        def edit(frame: pd.DataFrame, r: float = r) -> pd.DataFrame:
            res = frame.copy()
            pos = [res.columns.get_loc("rd_expense"), res.columns.get_loc("revenue")]
            for i in range(max(0, len(res) - 2), len(res)):
                cur, rev = _f(res.iat[i, pos[0]]), _f(res.iat[i, pos[1]])
                res.iat[i, pos[0]] = max(0.0 if np.isnan(cur) else cur, r * rev)
            return res

        years = "each of the last 2 years" if len(recent) == 2 else "the last year"
        text = (f"raise R&D spending to {_pct_threshold(r)} of revenue in {years} (from {_pct(weaker)}; "
                f"+{_money(float(extra[-1]))} in the last year)")
        out.append((Change("rd_intensity", weaker, r, "pct", effort, text), edit))
    return out


def _propose_rd_staff(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    employees, staff = _last(rows, "employees"), _last(rows, "rd_staff")
    if not employees > 0:
        return []
    share = 0.0 if np.isnan(staff) else staff / employees
    rungs = [r for r in STAFF_LADDER if share < r - 1e-9 and r <= share + STAFF_MAX_RISE + 1e-9]
    out = []
    for effort, r in enumerate(rungs, start=1):
        need = float(math.ceil(r * employees - 1e-9))
        add = need - (0.0 if np.isnan(staff) else staff)
        text = f"add {add:,.0f} R&D staff to reach {_pct_threshold(r)} of employees (from {_pct(share)})"
        out.append((Change("rd_staff", share, r, "pct", effort, text), _set_last("rd_staff", need)))
    return out


def _propose_class1(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    have = _last(rows, "class1_ip")
    out = []
    for effort, add in enumerate(CLASS1_STEPS, start=1):
        def edit(frame: pd.DataFrame, add: int = add) -> pd.DataFrame:
            res = frame.copy()
            for col in ("class1_ip", "invention_patents"):  # an invention patent is Class-I IP
                j = res.columns.get_loc(col)
                res.iat[-1, j] = int(res.iat[-1, j]) + add
            return res

        text = (f"obtain {add} more Class-I IP item{'s' if add > 1 else ''} such as invention patents "
                f"({have:,.0f} -> {have + add:,.0f})")
        out.append((Change("class1_ip", have, have + add, "count", effort, text), edit))
    return out


def _propose_ratio(rows: pd.DataFrame, action: str, num: str, den: str, ladder: Sequence[float], limit: float,
                   raise_it: bool, words: str) -> list[tuple[Change, Edit]]:
    numerator, denominator = _last(rows, num), _last(rows, den)
    if not denominator > 0 or np.isnan(numerator):
        return []
    now = numerator / denominator
    if raise_it:
        rungs = [r for r in ladder if now < r - 1e-9 and r <= now + limit + 1e-9]
    else:
        rungs = [r for r in ladder if now > r + 1e-9 and r >= now - limit - 1e-9]
    out = []
    for effort, r in enumerate(rungs, start=1):
        text = f"{words} to {_pct_threshold(r)} (from {_pct(now)})"
        out.append((Change(action, now, r, "pct", effort, text), _set_last(num, r * denominator)))
    return out


def _propose_share(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    now = _last(rows, "niche_market_share")
    base = 0.0 if np.isnan(now) else now
    rungs = [r for r in NICHE_LADDER if base < r - 1e-9 and r <= base + NICHE_MAX_RISE + 1e-9]
    return [(Change("niche_share", now, r, "pct", effort,
                    f"grow the national niche market share to {_pct_threshold(r)} (from {format_value(now, 'pct')})"),
             _set_last("niche_market_share", r)) for effort, r in enumerate(rungs, start=1)]


def _propose_flag(rows: pd.DataFrame, action: str, col: str, words: str) -> list[tuple[Change, Edit]]:
    if bool(rows[col].iloc[-1]):
        return []
    return [(Change(action, 0.0, 1.0, "flag", 1, words), _set_last(col, True))]


def _propose_digital(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    now = _last(rows, "digital_level")
    start = 1.0 if np.isnan(now) else now
    out = []
    for effort, level in enumerate(range(int(start) + 1, min(int(start) + 2, DIGITAL_MAX) + 1), start=1):
        text = f"raise the digital level to {level} (from {format_value(now, 'number')})"
        out.append((Change("digital_level", now, float(level), "level", effort, text),
                    _set_last("digital_level", float(level))))
    return out


def _propose_institution(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    value = rows["rd_institution"].iloc[-1]
    now = 0 if pd.isna(value) else _INSTITUTIONS.index(str(value))
    out = []
    for effort, level in enumerate(range(now + 1, min(now + 2, len(_INSTITUTIONS) - 1) + 1), start=1):
        text = f"set up a {_INSTITUTIONS[level]}-level R&D institution (now: {_INSTITUTIONS[now]})"
        out.append((Change("rd_institution", float(now), float(level), "institution", effort, text),
                    _set_last("rd_institution", _INSTITUTIONS[level])))
    return out


PROPOSERS: dict[str, Callable[[pd.DataFrame], list[tuple[Change, Edit]]]] = {
    "rd_intensity": _propose_rd,
    "rd_staff": _propose_rd_staff,
    "class1_ip": _propose_class1,
    "mb_share": lambda rows: _propose_ratio(rows, "mb_share", "main_business_revenue", "revenue", MB_LADDER,
                                            MB_MAX_RISE, True, "raise the main-business share of revenue"),
    "debt_ratio": lambda rows: _propose_ratio(rows, "debt_ratio", "total_liabilities", "total_assets", DEBT_LADDER,
                                              DEBT_MAX_CUT, False, "cut the debt ratio"),
    "certification": lambda rows: _propose_flag(rows, "certification", "quality_certified",
                                                "obtain a management or product certification"),
    "own_brand": lambda rows: _propose_flag(rows, "own_brand", "own_brand", "establish an own brand"),
    "digital_level": _propose_digital,
    "rd_institution": _propose_institution,
    "niche_share": lambda rows: _propose_share(rows),
}


def allowed_actions(monotone: Mapping[str, int] | None, actions: Sequence[Action] = ACTIONS) -> list[Action]:
    """Actions whose direction agrees with the model's monotone constraints (an action that
    moves a feature against its constraint could only lower the score, so it is dropped)."""
    monotone = monotone or {}
    return [a for a in actions if int(monotone.get(a.feature, 0)) != -a.direction]


@dataclass(frozen=True)
class _Node:
    changes: tuple[Change, ...]
    rows: pd.DataFrame
    raw: float
    prob: float
    eligible: bool
    n_met: float

    @property
    def key(self) -> tuple:
        return tuple(sorted((c.action, round(c.after, 6)) for c in self.changes))

    @property
    def effort(self) -> int:
        return sum(c.effort for c in self.changes)


def _window(panel: pd.DataFrame, firm_id: str, year: int) -> pd.DataFrame:
    rows = panel[(panel["firm_id"] == str(firm_id)) & panel["year"].between(year - 2, year)]
    rows = rows.sort_values("year").reset_index(drop=True)
    if rows.empty or int(rows["year"].iloc[-1]) != year:
        raise ValueError(f"firm {firm_id!r} has no row for fiscal year {year}")
    return rows


def _local_context(context: pd.DataFrame | None, rows: pd.DataFrame) -> pd.DataFrame | None:
    """Only the firm's province and sector records (the rest is never read for it)."""
    if context is None:
        return None
    keep = (((context["kind"] == "province") & (context["level"] == str(rows["province"].iloc[-1])))
            | ((context["kind"] == "sector") & (context["level"] == str(rows["sector"].iloc[-1]))))
    return context[keep]


def _evaluate(bundle: Any, variants: list[pd.DataFrame], firm_id: str, year: int, events: pd.DataFrame | None,
              context: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw score, probability, eligibility and criteria met of each variant of the firm's rows,
    with features rebuilt for all variants in one pass (each variant as its own firm)."""
    from lgml.features import build_features

    ids = [f"{firm_id}\u241f{i}" for i in range(len(variants))]
    panel = pd.concat([v.assign(firm_id=i) for v, i in zip(variants, ids)], ignore_index=True)
    panel["firm_id"] = panel["firm_id"].astype("str")
    ev = None
    if events is not None:
        mine = events[events["firm_id"].astype(str) == str(firm_id)]
        ev = pd.concat([mine.assign(firm_id=i) for i in ids], ignore_index=True) if len(mine) else mine.iloc[:0]
        ev = ev.astype({"firm_id": "str"})
    table = build_features(panel, ev, _local_context(context, variants[0]))
    table = table[table["year"] == year].set_index("firm_id").reindex(ids)
    raw = bundle.predict_raw(table)
    prob = bundle.calibrator.transform(raw) if bundle.calibrator is not None else raw
    return (raw, prob, table["eligible"].to_numpy(dtype=float) >= 0.5, table["n_met"].to_numpy(dtype=float))


def counterfactual(bundle: Any, panel: pd.DataFrame, firm_id: str, year: int, *,
                   events: pd.DataFrame | None = None, context: pd.DataFrame | None = None,
                   target: float = 0.5, goal: str = "either", max_changes: int = 3, beam_width: int = 4,
                   actions: Sequence[Action] | None = None, feature_row: pd.DataFrame | None = None
                   ) -> Counterfactual:
    """The smallest set of changes to mutable inputs that lifts a firm to ``target``.

    Searches with the model itself: a beam search over discrete, realistic steps (the
    ladders and limits in this module, e.g. R&D intensity to the next of 3/4/5/6/8/10/12% of
    revenue, at most +6 pp). Each candidate edits the firm's panel rows (years ``year - 2 ..
    year``) and rebuilds every feature with :func:`lgml.features.build_features`, so dependent
    features stay consistent (more R&D changes ``rd_intensity``, ``rd_2y``, the R&D rule's
    pass flag and shortfall, the 100-point score ...). Province, sector, age, high-tech zone,
    size and ownership are never changed; actions against the bundle's monotone constraints
    are dropped. Fewest changes win; among those, the smallest steps, then the highest score.

    Args:
        bundle: Designation bundle.
        panel: Canonical panel holding the firm's rows (money in yuan).
        firm_id: The firm.
        year: Fiscal year judged (the application is for batch ``year + 1``).
        events: Designation events (title history), if known.
        context: Province/sector records to build features with (the bundle's); computed from
            ``panel`` when None.
        target: Calibrated probability to reach (0-1).
        goal: ``probability`` (reach ``target``), ``eligible`` (meet every criterion) or
            ``either``.
        max_changes: Most distinct actions combined.
        beam_width: Partial solutions kept per depth.
        actions: Allowed actions; default all of :data:`ACTIONS` that respect monotonicity.
        feature_row: The firm's feature row as already built with ``context`` (saves
            rebuilding it).

    Returns:
        A :class:`Counterfactual`; ``reached`` is false (and ``message`` says so) when no
        feasible change exists within the limits.

    Raises:
        ValueError: The firm has no row for ``year`` or ``goal`` is unknown.
    """
    if goal not in ("probability", "eligible", "either"):
        raise ValueError(f"unknown goal {goal!r}; use 'probability', 'eligible' or 'either'")
    if context is None:
        from lgml.features import context_tables

        context = context_tables(panel, events)
    rows = _window(panel, firm_id, year)
    allowed = allowed_actions(bundle.metadata.get("monotone"), ACTIONS if actions is None else actions)
    seen: set[tuple] = set()
    nodes: list[_Node] | None = None
    if feature_row is not None:
        raw = bundle.predict_raw(feature_row.iloc[[0]])
        prob = bundle.calibrator.transform(raw) if bundle.calibrator is not None else raw
        start = _Node((), rows, float(raw[0]), float(prob[0]), bool(feature_row["eligible"].iloc[0] >= 0.5),
                      float(feature_row["n_met"].iloc[0]))
    else:  # score the firm as it is in the same pass as its first changes
        blank = _Node((), rows, np.nan, np.nan, False, np.nan)
        start, *nodes = _scored(bundle, [((), rows), *_children([blank], allowed, seen)], firm_id, year, events,
                                context)
    if _goal_met(start, start, goal, target) or (goal == "eligible" and start.eligible):
        return _result(start, start, firm_id, year, target, "already")
    beam, best = [start], start
    for _depth in range(max_changes):
        if nodes is None:
            children = _children(beam, allowed, seen)
            nodes = _scored(bundle, children, firm_id, year, events, context) if children else []
        winners = [n for n in nodes if _goal_met(n, start, goal, target)]
        if winners:
            win = min(winners, key=lambda n: (n.effort, -n.raw))
            return _result(start, win, firm_id, year, target, _goal_met(win, start, goal, target))
        # Keep the best partial solutions by score; criteria met break near-ties (the calibrated
        # probability can be flat, so the raw log-odds lead).
        nodes.sort(key=lambda n: (-(n.raw + 0.05 * n.n_met), n.effort))
        beam = [n for n in nodes if n.raw > start.raw + 1e-9 or n.n_met > start.n_met][:beam_width]
        nodes = None
        if not beam:
            break
        if beam[0].raw > best.raw:
            best = beam[0]
    return _result(start, best, firm_id, year, target, None, max_changes=max_changes)


def _scored(bundle: Any, children: list[tuple[tuple[Change, ...], pd.DataFrame]], firm_id: str, year: int,
            events: pd.DataFrame | None, context: pd.DataFrame | None) -> list[_Node]:
    raw, prob, elig, met = _evaluate(bundle, [c[1] for c in children], firm_id, year, events, context)
    return [_Node(ch, r, float(a), float(p), bool(e), float(m))
            for (ch, r), a, p, e, m in zip(children, raw, prob, elig, met)]


def _goal_met(node: _Node, start: _Node, goal: str, target: float) -> str | None:
    if goal in ("probability", "either") and node.prob >= target:
        return "probability"
    if goal in ("eligible", "either") and node.eligible and not start.eligible:
        return "eligible"
    return None


def _children(parents: list[_Node], allowed: Sequence[Action], seen: set[tuple]
              ) -> list[tuple[tuple[Change, ...], pd.DataFrame]]:
    """Every parent extended by one new action at each of its sizes (each change set once)."""
    out = []
    for node in parents:
        taken = {c.action for c in node.changes}
        for action in allowed:
            if action.name in taken:
                continue
            for change, edit in PROPOSERS[action.name](node.rows):
                key = tuple(sorted([*node.key, (change.action, round(change.after, 6))]))
                if key not in seen:
                    seen.add(key)
                    out.append(((*node.changes, change), edit(node.rows)))
    return out


def _plural(phrase: str) -> str:
    """``"lifts the ..."`` -> ``"lift the ..."`` (the verb after a plural subject)."""
    verb, _, rest = phrase.partition(" ")
    return f"{verb.removesuffix('s')} {rest}"


def _result(start: _Node, end: _Node, firm_id: str, year: int, target: float, goal: str | None,
            max_changes: int = 0) -> Counterfactual:
    changes = list(end.changes) if goal is not None else list(end.changes)
    if goal == "already":
        message = (f"Already at {100 * start.prob:.1f}%, at or above the {100 * target:.0f}% target"
                   + ("; meets every criterion." if start.eligible else "."))
        changes = []
    elif goal is not None:
        what = (f"lifts the probability from {100 * start.prob:.1f}% to {100 * end.prob:.1f}% "
                f"(target {100 * target:.0f}%)" if goal == "probability"
                else f"makes the firm meet every criterion (probability {100 * start.prob:.1f}% -> "
                     f"{100 * end.prob:.1f}%)")
        verb = f"{len(changes)} change " + what if len(changes) == 1 else f"{len(changes)} changes " + _plural(what)
        message = f"{verb}: " + "; ".join(c.text for c in changes) + "."
    else:
        best = (f" The best found, {'; '.join(c.text for c in changes)}, reaches {100 * end.prob:.1f}%."
                if changes else " No change within the limits raises the model's score.")
        message = (f"No feasible change: no combination of up to {max_changes} changes to mutable inputs within "
                   f"realistic limits lifts the probability from {100 * start.prob:.1f}% to {100 * target:.0f}% "
                   f"or makes the firm eligible.{best}")
    return Counterfactual(
        firm_id=str(firm_id), year=int(year), target=float(target),
        probability_before=start.prob, probability_after=end.prob if goal != "already" else start.prob,
        raw_before=start.raw, raw_after=end.raw if goal != "already" else start.raw,
        eligible_before=start.eligible, eligible_after=end.eligible if goal != "already" else start.eligible,
        reached=goal is not None, goal=goal, changes=changes, message=message)


# ------------------------------------------------------------------------------------------------
# One firm, everything a reader needs
# ------------------------------------------------------------------------------------------------

# Contract columns that may be blank, with what a blank costs.
_NULLABLE_EFFECTS = {
    "rd_expense": "R&D rules and the R&D part of the score cannot be shown",
    "rd_staff": "R&D staff share (equity route, score) cannot be shown",
    "equity_financing": "counted as no new equity",
    "niche_market_share": "niche market share rule cannot be shown",
    "digital_level": "digital level (information systems rule, score) cannot be shown",
    "ownership": "ownership treated as unknown",
}


def criteria_checklist(firm_rows: pd.DataFrame, year: int) -> list[dict[str, Any]]:
    """Every Little Giant criterion of batch ``year + 1`` for one firm, judged on fiscal year
    ``year`` (with ``year - 1`` and ``year - 2`` for two-year rules).

    Args:
        firm_rows: The firm's panel rows (contract columns, money in yuan).
        year: Fiscal year judged.

    Returns:
        One dict per criterion in rule order: ``criterion``, ``dimension``, ``dimension_label``
        (bilingual), ``label_en``, ``label_zh``, ``status`` (``pass``, ``fail`` or ``missing``),
        ``shortfall`` (criterion units, see :data:`lgml.criteria.CRITERIA`; None when passed or
        unknown) and ``text`` (:func:`lgml.criteria.shortfall_text`).
    """
    batch = year + 1
    inputs = criteria.criteria_inputs(firm_rows)
    inputs = pd.concat([inputs, criteria.srdi_score(inputs)], axis=1)
    row = inputs[inputs["year"] == year]
    if row.empty:
        raise ValueError(f"no row for fiscal year {year}")
    checked_rows = criteria.check(row, batch)
    checked = checked_rows.iloc[0]
    values = row.iloc[0].to_dict()
    judged = pd.concat([row, checked_rows], axis=1)
    out = []
    for name in criteria.RULES[criteria.regime_for(batch)]["criteria"]:
        meta = criteria.CRITERIA[name]
        short = float(checked[f"short_{name}"])
        passed = bool(checked[f"pass_{name}"])
        status = "pass" if passed else ("missing" if np.isnan(short) else "fail")
        if passed:  # say what was met, with the firm's value
            text = _criterion_phrases(name, judged, batch)[0]
        else:
            text = criteria.shortfall_text(name, values.get(meta["inputs"][0]), short, values, batch_year=batch)
        out.append({"criterion": name, "dimension": meta["dimension"],
                    "dimension_label": group_label(meta["dimension"]),
                    "label_en": meta["label_en"], "label_zh": meta["label_zh"], "status": status,
                    "shortfall": None if passed or np.isnan(short) else short, "text": text})
    return out


def data_quality(firm_rows: pd.DataFrame, feature_row: pd.Series, year: int, features: Sequence[str]) -> list[str]:
    """Plain notes on what is missing for one firm: blank contract fields of ``year``, absent
    prior years, features the model sees as missing."""
    notes = []
    last = firm_rows[firm_rows["year"] == year].iloc[0]
    for col, effect in _NULLABLE_EFFECTS.items():
        if col in last.index and pd.isna(last[col]):
            notes.append(f"{col} is blank in {year}: {effect}")
    have = set(firm_rows["year"].astype(int))
    absent = [y for y in (year - 1, year - 2) if y not in have]
    if absent:
        notes.append(f"no row for {', '.join(map(str, absent))}: two-year rules (R&D in each of 2 years, "
                     "2-year growth) cannot be shown")
    missing = [f for f in features if f in feature_row.index and pd.isna(feature_row[f])
               and not f.startswith(("pass_", "short_"))]
    if missing:
        shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        notes.append(f"{len(missing)} model input(s) missing (the model treats them as unknown): {shown}")
    return notes


def model_info(bundle: Any) -> dict[str, Any]:
    """Name, version and provenance of a bundle, for report footers."""
    meta = bundle.metadata
    return {
        "name": bundle.name, "task": bundle.task, "version": bundle.version,
        "model_sha256": (meta.get("model_sha256") or "")[:12], "git_commit": meta.get("git_commit"),
        "trained_at": meta.get("trained_at") or meta.get("created_at"), "path": str(bundle.path),
        "n_features": len(bundle.features), "calibration": getattr(bundle.calibrator, "method", None),
    }


def growth_prediction(growth_bundle: Any, table: pd.DataFrame) -> dict[str, Any]:
    """Expected revenue growth of the next year for the rows of ``table`` (one row), from a
    growth bundle: ``log_growth`` (log ratio), ``growth_pct`` (percent) and, when the bundle
    has quantile models, the 10%-90% interval in percent."""
    value = float(growth_bundle.predict(table)[0])
    out: dict[str, Any] = {"log_growth": value, "growth_pct": 100 * math.expm1(value)}
    if getattr(growth_bundle, "quantile_boosters", None):
        lo, hi = growth_bundle.predict_interval(table)[0]
        out.update(p10_pct=100 * math.expm1(float(lo)), p90_pct=100 * math.expm1(float(hi)))
    return out


def province_percentile(probability: float, peers: np.ndarray) -> float:
    """Percent of ``peers`` (probabilities of the firms of the same province and year) scoring
    at or below ``probability``; NaN without peers."""
    peers = np.asarray(peers, dtype=float)
    peers = peers[~np.isnan(peers)]
    if not len(peers):
        return float("nan")
    return float(100.0 * np.mean(peers <= probability + 1e-12))


def firm_explanation(bundle: Any, feature_row: pd.DataFrame, firm_rows: pd.DataFrame, *,
                     peers: np.ndarray | None = None, events: pd.DataFrame | None = None,
                     context: pd.DataFrame | None = None, growth_bundle: Any = None, target: float = 0.5,
                     k: int = 10, counterfactual_on: bool = True) -> dict[str, Any]:
    """Everything the per-firm report shows, as plain JSON-compatible data.

    Args:
        bundle: Designation bundle.
        feature_row: The firm's feature row (a one-row feature table).
        firm_rows: The firm's panel rows (fiscal years up to the row's ``year``).
        peers: Probabilities of the firms of the same province and year (for the percentile).
        events: Designation events (for the counterfactual's title history).
        context: Province/sector records the features were built with.
        growth_bundle: Optional growth bundle.
        target: Counterfactual target probability (0-1).
        k: Reasons listed.
        counterfactual_on: Search for a counterfactual.

    Returns:
        Dict with ``firm_id``, ``year``, ``batch_year``, ``province``, ``sector``,
        ``probability`` (0-1), ``raw_score`` and ``base_value`` (log-odds), ``base_probability``,
        ``percentile_in_province``, ``n_peers``, ``contributions`` (feature -> log-odds),
        ``contributions_pp`` (feature -> probability points), ``groups`` / ``groups_pp``,
        ``group_labels``, ``reasons`` (list of dicts: ``feature``, ``text``, ``log_odds``, ``pp``),
        ``criteria`` (:func:`criteria_checklist`), ``eligible``, ``counterfactual``, ``growth``,
        ``data_quality`` and ``model``.
    """
    row = feature_row.iloc[[0]]
    contrib, base = contributions(bundle, row)
    raw = float(base[0] + contrib.iloc[0].sum())
    calibrate = bundle.calibrator.transform
    prob = float(calibrate(np.array([raw]))[0])
    points = probability_points(contrib, base, calibrate)
    groups = group_contributions(contrib, bundle.metadata.get("feature_groups") or None)
    groups_pp = group_contributions(points, bundle.metadata.get("feature_groups") or None)
    units, phrases, values = reason_matrix(contrib, row, k)
    members = reason_units(bundle.features, int(row["batch_year"].iloc[0]))
    reasons = [{"unit": u, "features": members[u], "text": p, "log_odds": float(v),
                "pp": float(points.iloc[0][members[u]].sum())}
               for u, p, v in zip(units[0], phrases[0], values[0]) if u]
    firm_id, year = str(row["firm_id"].iloc[0]), int(row["year"].iloc[0])
    cf = None
    if counterfactual_on:
        cf = counterfactual(bundle, firm_rows, firm_id, year, events=events, context=context, target=target,
                            feature_row=row).to_dict()
    peers = np.asarray([] if peers is None else peers, dtype=float)
    series = contrib.iloc[0]
    return {
        "firm_id": firm_id, "year": year, "batch_year": year + 1,
        "province": str(row["province"].iloc[0]), "sector": str(row["sector"].iloc[0]),
        "probability": prob, "raw_score": raw, "base_value": float(base[0]),
        "base_probability": float(calibrate(base[:1])[0]),
        "percentile_in_province": province_percentile(prob, peers), "n_peers": int(np.sum(~np.isnan(peers))),
        "contributions": {f: float(v) for f, v in series.items()},
        "contributions_pp": {f: float(v) for f, v in points.iloc[0].items()},
        "feature_values": {f: _jsonable_value(row[f].iloc[0]) for f in bundle.features if f in row.columns},
        "feature_labels": {f: feature_label(f) for f in bundle.features},
        "groups": {g: float(v) for g, v in groups.iloc[0].items()},
        "groups_pp": {g: float(v) for g, v in groups_pp.iloc[0].items()},
        "group_labels": {g: group_label(g) for g in groups.columns},
        "reasons": reasons,
        "criteria": criteria_checklist(firm_rows, year),
        "eligible": bool(row["eligible"].iloc[0] >= 0.5) if "eligible" in row.columns else None,
        "counterfactual": cf,
        "growth": growth_prediction(growth_bundle, row) if growth_bundle is not None else None,
        "data_quality": data_quality(firm_rows, row.iloc[0], year, bundle.features),
        "model": model_info(bundle),
    }


def _jsonable_value(x: Any) -> Any:
    if x is None or (not isinstance(x, str) and pd.isna(x)):
        return None
    if isinstance(x, (np.integer, np.floating, float, int)):
        return float(x)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    return str(x)


# ------------------------------------------------------------------------------------------------
# Orchestration for the command line: score a year, pick firms, explain them
# ------------------------------------------------------------------------------------------------


def year_table(panel: pd.DataFrame, year: int, events: pd.DataFrame | None, context: pd.DataFrame | None,
               provinces: Sequence[str] | None = None) -> pd.DataFrame:
    """Feature rows of fiscal year ``year`` (application to batch ``year + 1``).

    Only the years ``year - 2 .. year`` are read (every feature looks back at most two years),
    optionally only for firms of ``provinces``.

    Returns:
        Feature table (see :func:`lgml.features.build_features`) with one row per firm that has
        a row for ``year``, index reset.
    """
    from lgml.features import build_features

    window = panel[panel["year"].between(year - 2, year)]
    if provinces is not None:
        window = window[window["province"].astype(str).isin([str(p) for p in provinces])]
    table = build_features(window, events, context)
    return table[table["year"] == year].reset_index(drop=True)


def latest_year(panel: pd.DataFrame, firm_id: str | None = None) -> int:
    """The last fiscal year of the panel (or of one firm).

    Raises:
        ValueError: The firm is not in the panel.
    """
    rows = panel if firm_id is None else panel[panel["firm_id"] == str(firm_id)]
    if rows.empty:
        raise ValueError(f"firm {firm_id!r} is not in the input")
    return int(rows["year"].max())


def top_per_province(table: pd.DataFrame, probability: np.ndarray, n: int) -> dict[str, list[int]]:
    """Positions (into ``table``) of the ``n`` most likely candidates of each province,
    provinces in name order; firms holding a valid title are not candidates."""
    frame = pd.DataFrame({"province": table["province"].astype(str).to_numpy(), "p": probability,
                          "pos": np.arange(len(table))})
    if "holds_title" in table.columns:
        frame = frame[~table["holds_title"].to_numpy(dtype=bool)]
    frame = frame.sort_values(["province", "p"], ascending=[True, False], kind="stable")
    return {prov: grp["pos"].head(n).tolist() for prov, grp in frame.groupby("province", sort=True)}


def explain_positions(bundle: Any, panel: pd.DataFrame, table: pd.DataFrame, probability: np.ndarray,
                      positions: Sequence[int], *, events: pd.DataFrame | None = None,
                      context: pd.DataFrame | None = None, growth_bundle: Any = None, target: float = 0.5,
                      k: int = 10, notes: Sequence[str] = (),
                      progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """:func:`firm_explanation` for the rows ``positions`` of a scored year table.

    Args:
        bundle: Designation bundle.
        panel: Canonical panel (for each firm's rows and the counterfactual).
        table: Year table from :func:`year_table`.
        probability: Calibrated probabilities of ``table``'s rows, shape (n_rows,).
        positions: Rows to explain.
        events, context, growth_bundle, target, k: See :func:`firm_explanation`.
        notes: Data-quality notes added to every firm (e.g. about the context used).
        progress: Called with 1 after each firm.

    Returns:
        One explanation dict per position, in order.
    """
    candidates = (~table["holds_title"].to_numpy(dtype=bool) if "holds_title" in table.columns
                  else np.ones(len(table), bool))
    provinces = table["province"].astype(str).to_numpy()
    year = int(table["year"].iloc[0]) if len(table) else 0
    by_firm = panel[panel["year"].between(year - 2, year)].groupby("firm_id", sort=False)
    out = []
    for pos in positions:
        row = table.iloc[[pos]]
        firm_id = str(row["firm_id"].iloc[0])
        peers = probability[candidates & (provinces == provinces[pos])]
        data = firm_explanation(bundle, row, by_firm.get_group(firm_id), peers=peers, events=events, context=context,
                                growth_bundle=growth_bundle, target=target, k=k)
        if not candidates[pos]:
            data["data_quality"].insert(0, "the firm holds a valid Little Giant title, so it is not a candidate "
                                           "for this batch; the percentile compares it with the candidates")
        data["data_quality"].extend(notes)
        out.append(data)
        if progress is not None:
            progress(1)
    return out
