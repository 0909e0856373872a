"""Exact path-dependent TreeSHAP (LightGBM's ``pred_contrib``) compiled with numba, arrays in and
arrays out: :func:`flatten_forest` turns a booster into a :class:`ShapForest` of subtree tables
(once per model; :mod:`lgml.kernels.cache` keeps them on disk), :func:`shap_values` computes a
float matrix's contributions with it. The entry point with its spot check against LightGBM is
:func:`lgml.explain.contributions.contributions`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from lgml.kernels.forest import ZERO_THRESHOLD, forest_of

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
# pred_contrib (lgml.explain.contributions re-checks a few rows at every call).

FAST_SHAP_MAX_NODES = 62  # most splits in one tree (a row's decisions are bits of one int64)
FAST_SHAP_MAX_KEY_BITS = 12  # largest table key (prefix features + subtree splits)
FAST_SHAP_BYTE_COST = 3e-4  # charge per table byte, in table look-ups per row
FAST_SHAP_TREE_BYTES = 1 << 20  # most table bytes for one tree (the charge rises until they fit)
FAST_SHAP_BLOCK_ROWS = 4096  # rows that visit the trees together (a tree's tables serve them all)
_VECTOR_PASS_COST = 0.6  # one SIMD pass over the rows, in table look-ups per row (tuned)
prange = range  # numba's prange once the kernels are compiled (see compile_kernels)
# the settings that shape the tables: a forest flattened under other values is another forest
TABLE_SETTINGS = ("FAST_SHAP_MAX_NODES", "FAST_SHAP_MAX_KEY_BITS", "FAST_SHAP_BYTE_COST", "FAST_SHAP_TREE_BYTES",
                  "_VECTOR_PASS_COST")


@dataclass(frozen=True)
class ShapForest:
    """A LightGBM model flattened for the compiled kernels (see _shap_kernel for the arrays)."""

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
    """Collects the arrays of :class:`ShapForest` tree by tree."""

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
        """Split ``index`` of ``flat`` (:func:`lgml.kernels.forest.parse_model`, which holds
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


def flatten_forest(booster: Any) -> ShapForest | None:
    """Flatten a single-output LightGBM model and fill its tables.

    Args:
        booster: A LightGBM booster (its split rules are read from
            :func:`lgml.kernels.forest.forest_of`, its covers from ``dump_model``).

    Returns:
        The forest; None when it cannot be handled here (several outputs, averaged or linear
        trees, more than FAST_SHAP_MAX_NODES splits in a tree, or a split without training
        counts).

    Raises:
        ImportError: numba is not installed.
    """
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
    compile_kernels()["tables"](ints(u["prefix"]), ints(u["splits"]), ints(u["width"]), ints(u["table_start"]),
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
    return ShapForest(nodes=nodes, trees={k: ints(v) for k, v in b.trees.items()}, units=units, leaves=leaves,
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
                            missing = x[i] != x[i] or abs(x[i]) <= ZERO_THRESHOLD
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
def compile_kernels() -> dict[str, Callable]:
    """Compile the kernels once per process (numba caches the machine code on disk)."""
    import numba

    # The kernels' parallel loop names resolve here, at compile time.
    globals()["prange"] = numba.prange
    return {"tables": numba.njit(parallel=True, cache=True)(_tables_kernel),
            "shap": numba.njit(parallel=True, cache=True)(_shap_kernel)}


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


def table_settings() -> list[tuple[str, Any]]:
    """The current value of each of :data:`TABLE_SETTINGS`, as ``(name, value)`` pairs."""
    return [(name, globals()[name]) for name in TABLE_SETTINGS]


def shap_values(forest: ShapForest, matrix: np.ndarray) -> np.ndarray:
    """Contributions of every row of ``matrix`` with the compiled kernel.

    Args:
        forest: The model, as :func:`flatten_forest` (or :func:`lgml.kernels.cache.cached_forest`)
            returns it.
        matrix: C-contiguous float64 model input of shape (n_rows, n_features), categoricals as
            codes, NaN missing; exactly the model's number of columns.

    Returns:
        Array of shape (n_rows, n_features + 1) in the model's raw units, as LightGBM's
        ``pred_contrib`` returns it (last column the expected value).

    Raises:
        ImportError: numba is not installed.
        ValueError: An index of ``forest`` is outside its arrays or the matrix's columns; no kernel runs.
    """
    from lgml.kernels.bounds import forest_problem
    if (problem := forest_problem(forest, matrix.shape[1])) is not None:
        raise ValueError(f"TreeSHAP forest is inconsistent: {problem}")
    out = np.zeros((matrix.shape[0], matrix.shape[1] + 1))
    n, t, u, lv = forest.nodes, forest.trees, forest.units, forest.leaves
    compile_kernels()["shap"](
        matrix, n["feature"], n["threshold"], n["kind"], n["nan_left"], n["zero_left"], n["cat_start"],
        n["cat_words"], n["cat_bits"], t["node_start"], t["node_count"], t["unit_start"], t["unit_count"],
        t["leaf_start"], t["leaf_count"], u["root"], u["splits"], u["prefix"], u["prefix_start"], u["width"],
        u["feature_start"], u["table_start"], u["prefix_mask"], u["prefix_want"], u["features"], u["table"],
        lv["m"], lv["feature_start"], lv["terms"], lv["coef_start"], lv["feature"], lv["mask"], lv["want"],
        lv["coef"], _threads(), FAST_SHAP_BLOCK_ROWS, out)
    out[:, -1] = forest.expected_value
    return out

