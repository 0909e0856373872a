"""Checks that a bundle's files are whole and agree with each other before any of them is used.

- :func:`write_manifest` / :func:`verify_manifest`: ``manifest.json`` holds the sha256 of every
  other file of the bundle; a file changed, missing or added after saving is named.
- :func:`check_model_text`: a LightGBM text model is parsed here, field by field, before
  LightGBM sees it (LightGBM aborts the process on some malformed texts): every tree whole, its
  arrays of the right lengths, children and split features in range, the feature names those
  of ``metadata.json`` in the same order.
- :func:`check_metadata` and :func:`check_calibration`: the shapes the loader relies on.

Every check raises ``ValueError`` with a one-line message; :mod:`lgml.modeling.bundle` turns it
into a :class:`lgml.modeling.bundle.BundleError` naming the bundle.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lgml.config import BINARY_TASKS

MANIFEST_FILE = "manifest.json"
_TREE_ARRAYS_INTERNAL = ("split_feature", "split_gain", "threshold", "decision_type", "left_child", "right_child",
                         "internal_value", "internal_count")
_TREE_ARRAYS_LEAF = ("leaf_value", "leaf_count")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST_FILE)


def write_manifest(folder: str | os.PathLike) -> dict[str, str]:
    """Write ``manifest.json``: relative path -> sha256 of every other file of ``folder``."""
    folder = Path(folder)
    manifest = {name: _sha256(folder / name) for name in _files(folder)}
    (folder / MANIFEST_FILE).write_text(json.dumps({"sha256": manifest}, indent=2) + "\n", encoding="utf-8")
    return manifest


def verify_manifest(folder: str | os.PathLike) -> bool:
    """Check every file of ``folder`` against ``manifest.json``.

    Returns:
        True when checked; False when the folder has no manifest (a bundle saved before
        manifests existed).

    Raises:
        ValueError: The manifest is unreadable, or a file is missing, altered or unlisted.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return False
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))["sha256"]
        if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
            raise TypeError("not a mapping of file names to sha256")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{MANIFEST_FILE} is unreadable ({exc})") from None
    present = _files(folder)
    missing = sorted(set(listed) - set(present))
    if missing:
        raise ValueError(f"{', '.join(missing)} listed in {MANIFEST_FILE} but missing")
    extra = sorted(set(present) - set(listed))
    if extra:
        raise ValueError(f"{', '.join(extra)} not listed in {MANIFEST_FILE} (added after saving?)")
    altered = [name for name in present if _sha256(folder / name) != listed[name]]
    if altered:
        raise ValueError(f"{', '.join(altered)} does not match its sha256 in {MANIFEST_FILE} (altered after saving?)")
    return True


def check_metadata(metadata: Any) -> None:
    """``metadata.json`` as the loader needs it: an object with ``task``, a non-empty list of
    distinct feature names, and ``categorical_levels`` mapping features to lists."""
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata.json holds a {type(metadata).__name__}, not an object")
    for key in ("task", "features", "categorical_levels"):
        if key not in metadata:
            raise ValueError(f"metadata.json lacks {key!r}")
    features = metadata["features"]
    if not isinstance(features, list) or not features or not all(isinstance(f, str) and f for f in features):
        raise ValueError("metadata.json 'features' is not a non-empty list of names")
    if len(set(features)) != len(features):
        raise ValueError("metadata.json 'features' lists a name twice")
    levels = metadata["categorical_levels"]
    if not isinstance(levels, dict) or not all(isinstance(v, list) for v in levels.values()):
        raise ValueError("metadata.json 'categorical_levels' is not a mapping of features to lists")
    unknown = sorted(set(levels) - set(features))
    if unknown:
        raise ValueError(f"metadata.json 'categorical_levels' names features the model lacks: {', '.join(unknown)}")


def _finite(values: Sequence[Any], what: str) -> list[float]:
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values):
        raise ValueError(f"calibration.json {what!r} is not a list of numbers")
    out = [float(v) for v in values]
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"calibration.json {what!r} holds a value that is not finite")
    return out


def check_calibration(data: Any, task: str) -> None:
    """``calibration.json``: a known method with complete, finite, ordered parameters (no
    calibrator for growth)."""
    if not isinstance(data, dict) or "method" not in data:
        raise ValueError("calibration.json is not an object with a 'method'")
    method = data["method"]
    if task not in BINARY_TASKS:
        if method is not None:
            raise ValueError(f"calibration.json of a {task} model holds a calibrator")
        return
    if method == "platt":
        _finite([data.get("a"), data.get("b")], "a, b")
    elif method in ("isotonic", "spline"):
        x, y = _finite(data.get("x"), "x"), _finite(data.get("y"), "y")
        if len(x) != len(y) or len(x) < 2:
            raise ValueError(f"calibration.json has {len(x)} knots x and {len(y)} values y; they must be equal, "
                             "at least 2")
        strict = method == "spline"
        if any((b <= a) if strict else (b < a) for a, b in zip(x, x[1:])):
            raise ValueError("calibration.json knots x are not increasing")
        if any(b < a for a, b in zip(y, y[1:])):
            raise ValueError("calibration.json values y decrease")
        if method == "isotonic" and not all(0.0 <= v <= 1.0 for v in y):
            raise ValueError("calibration.json isotonic values y are not probabilities")
        if method == "spline":
            slope = _finite([data.get("slope")], "slope")[0]
            if slope <= 0:
                raise ValueError("calibration.json spline slope is not positive")
    elif method not in ("none", None):
        raise ValueError(f"calibration.json names an unknown method {method!r}")


def _numbers(value: str, key: str, tree: int, integer: bool) -> list[float]:
    try:
        out = [int(v) if integer else float(v) for v in value.split()]
    except ValueError:
        raise ValueError(f"tree {tree}: {key} holds a value that is not a number") from None
    if not integer and not all(math.isfinite(v) or abs(v) == math.inf for v in out):
        raise ValueError(f"tree {tree}: {key} holds NaN")
    return out


def check_model_text(text: str, features: Sequence[str] | None = None) -> None:
    """Parse a LightGBM text model enough to know LightGBM can load it safely.

    Args:
        text: The contents of ``model.txt``.
        features: The feature names of ``metadata.json``, in order; None: not compared.

    Raises:
        ValueError: The text is not a whole, consistent single-output tree model, or its
            features are not ``features`` in the same order.
    """
    if not text.startswith("tree\n"):
        raise ValueError("does not start as a LightGBM text model")
    head, sep, _ = text.partition("\nTree=")
    end = text.find("\nend of trees")
    if not sep or end < 0:
        raise ValueError("holds no complete list of trees (truncated?)")
    header = dict(line.split("=", 1) for line in head.splitlines()[1:] if "=" in line)
    try:
        n_class = int(header.get("num_class", ""))
        max_feature = int(header.get("max_feature_idx", ""))
        sizes = [int(v) for v in header.get("tree_sizes", "").split()]
    except ValueError:
        raise ValueError("header lacks num_class, max_feature_idx or tree_sizes") from None
    if n_class != 1 or int(header.get("num_tree_per_iteration", "1")) != 1:
        raise ValueError("is not a single-output model")
    names = header.get("feature_names", "").split()
    if len(names) != max_feature + 1:
        raise ValueError(f"lists {len(names)} feature names for {max_feature + 1} features")
    if features is not None and list(features) != names:
        if sorted(features) == sorted(names):
            raise ValueError("lists the features of metadata.json in another order")
        raise ValueError(f"has {len(names)} features, metadata.json lists {len(features)} that differ")
    n_trees = text.count("\nTree=", 0, end)
    if n_trees != len(sizes):
        raise ValueError(f"holds {n_trees} trees, its header announces {len(sizes)}")
    start = len(head) + 1
    for i, size in enumerate(sizes):
        block = text[start:start + size]
        if not block.startswith(f"Tree={i}\n"):
            raise ValueError(f"tree {i} is not where tree_sizes puts it (edited?)")
        _check_tree(block, i, max_feature)
        start += size
    if not text[start:].startswith("end of trees"):
        raise ValueError("tree_sizes do not add up to the trees (edited?)")


def _check_tree(block: str, i: int, max_feature: int) -> None:
    fields = dict(line.split("=", 1) for line in block.splitlines()[1:] if "=" in line)
    try:
        n_leaves, n_cat = int(fields["num_leaves"]), int(fields.get("num_cat", "0"))
    except (KeyError, ValueError):
        raise ValueError(f"tree {i}: num_leaves is missing or not a number") from None
    if n_leaves < 1 or n_cat < 0:
        raise ValueError(f"tree {i}: {n_leaves} leaves, {n_cat} categorical splits")
    if fields.get("is_linear", "0") != "0":
        raise ValueError(f"tree {i}: linear trees are not supported")
    arrays = {key: n_leaves for key in _TREE_ARRAYS_LEAF}
    if n_leaves > 1:
        arrays.update({key: n_leaves - 1 for key in _TREE_ARRAYS_INTERNAL})
    values = {}
    for key, length in arrays.items():
        if key not in fields:
            raise ValueError(f"tree {i}: {key} is missing")
        integer = key in ("split_feature", "decision_type", "left_child", "right_child", "leaf_count",
                          "internal_count")
        values[key] = _numbers(fields[key], key, i, integer)
        if len(values[key]) != length:
            raise ValueError(f"tree {i}: {key} has {len(values[key])} values, not {length}")
    if n_leaves == 1:
        return
    if not all(0 <= f <= max_feature for f in values["split_feature"]):
        raise ValueError(f"tree {i}: a split reads a feature outside 0..{max_feature}")
    for side in ("left_child", "right_child"):
        if not all(-n_leaves <= c < n_leaves - 1 for c in values[side]):
            raise ValueError(f"tree {i}: {side} points outside the tree")
    if n_cat:
        bounds = _numbers(fields.get("cat_boundaries", ""), "cat_boundaries", i, integer=True)
        words = _numbers(fields.get("cat_threshold", ""), "cat_threshold", i, integer=True)
        if (len(bounds) != n_cat + 1 or bounds[0] != 0 or any(b < a for a, b in zip(bounds, bounds[1:]))
                or bounds[-1] != len(words)):
            raise ValueError(f"tree {i}: categorical bitsets are inconsistent")
    for d, t in zip(values["decision_type"], values["threshold"]):
        if d & 1 and not (0 <= t < n_cat and float(t).is_integer()):
            raise ValueError(f"tree {i}: a categorical split points outside its bitsets")
