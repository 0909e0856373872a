"""The disk cache of flattened TreeSHAP forests (:class:`lgml.kernels.treeshap.ShapForest`).

One .npz per model in a folder the caller passes in (:func:`lgml.explain.contributions.forest_cache_dir`
resolves it from the environment), named by the sha256 of the model text, FOREST_CACHE_VERSION
and the settings that shape the tables (:data:`lgml.kernels.treeshap.TABLE_SETTINGS`). A new
process then loads the tables instead of building them again. The cache never fails a run:
unreadable entries are rebuilt and overwritten, unwritable folders skipped.

An entry is trusted only after two checks: the sha256 of its arrays, written with them, still
matches (a damaged file), and every index the kernels would read is inside its arrays
(:func:`lgml.kernels.bounds.forest_problem`: an edited file whose checksum was recomputed). An
entry that fails either is rebuilt from the model and overwritten.

Example:
    >>> forest = cached_forest(booster, Path("~/.cache/lgml/treeshap").expanduser())  # doctest: +SKIP
    >>> forest is cached_forest(booster, None)  # kept on the booster from now on  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lgml.kernels import treeshap
from lgml.kernels.bounds import forest_problem
from lgml.kernels.treeshap import ShapForest

log = logging.getLogger(__name__)

FOREST_CACHE_VERSION = 3  # bump whenever the ShapForest arrays or the kernels' reading of them change
FOREST_CACHE_ENTRIES = 8  # models kept on disk (tens of MB each); the least recently used go first
FOREST_ARRAYS = {  # the arrays of each ShapForest field, as the .npz stores them ("<field>.<name>")
    "nodes": ("feature", "threshold", "kind", "nan_left", "zero_left", "cat_start", "cat_words", "cat_bits"),
    "trees": ("node_start", "node_count", "unit_start", "unit_count", "leaf_start", "leaf_count"),
    "units": ("root", "splits", "prefix", "prefix_start", "width", "feature_start", "table_start", "prefix_mask",
              "prefix_want", "features", "table"),
    "leaves": ("m", "feature_start", "terms", "coef_start", "feature", "mask", "want", "coef"),
}
FOREST_FLOATS = {"nodes.threshold", "units.table", "leaves.coef"}  # the rest are int64
CHECKSUM = "checksum"  # sha256 of the other arrays, as 32 uint8


def arrays_checksum(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """sha256 of ``arrays`` (names, dtypes, shapes and bytes, in name order) as 32 uint8."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        values = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{values.dtype.str}:{values.shape}".encode())
        digest.update(values.tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint8)


def forest_key(booster: Any) -> str:
    """The cache key of a model's flattened forest: sha256 of the format version, the settings that
    shape the tables and the model text (about 30 ms for 300 trees of 31 leaves).

    Args:
        booster: A LightGBM booster.

    Returns:
        64 hexadecimal digits; the entry's file name is ``<key>.npz``.
    """
    settings = [FOREST_CACHE_VERSION] + treeshap.table_settings()
    digest = hashlib.sha256(repr(settings).encode())
    digest.update(booster.model_to_string().encode())
    return digest.hexdigest()


def load_forest(path: Path, n_features: int | None = None) -> ShapForest | None:
    """The forest cached at ``path``, if it can be trusted.

    Args:
        path: An entry's file (``<folder>/<key>.npz``).
        n_features: The model's feature count; given, every index is checked against it and
            against the arrays (:func:`lgml.kernels.bounds.forest_problem`).

    Returns:
        The forest; None when there is none, or it is unreadable, does not hold exactly the
        arrays of :class:`ShapForest` with their dtypes (int64 or float64, one dimension), its
        checksum does not match, or an index is out of bounds.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        return None
    except Exception as exc:  # corrupt or truncated: rebuilt and overwritten
        log.debug("ignoring unreadable TreeSHAP cache %s: %s", path, exc)
        return None
    names = {f"{field}.{name}" for field, fields in FOREST_ARRAYS.items() for name in fields}
    if set(arrays) != names | {"expected_value", CHECKSUM}:
        log.debug("ignoring TreeSHAP cache %s: unexpected arrays", path)
        return None
    stored = arrays.pop(CHECKSUM)
    if stored.dtype != np.uint8 or not np.array_equal(stored, arrays_checksum(arrays)):
        log.warning("ignoring a damaged TreeSHAP cache file %s (checksum mismatch); rebuilding it", path)
        return None
    for name, values in arrays.items():
        dtype, ndim = (np.float64, 0) if name == "expected_value" else (
            np.float64 if name in FOREST_FLOATS else np.int64, 1)
        if values.dtype != dtype or values.ndim != ndim:
            log.debug("ignoring TreeSHAP cache %s: %s is %s of %d dimensions", path, name, values.dtype, values.ndim)
            return None
    fields = {field: {name: arrays[f"{field}.{name}"] for name in fields} for field, fields in FOREST_ARRAYS.items()}
    forest = ShapForest(**fields, expected_value=float(arrays["expected_value"]))
    problem = None if n_features is None else forest_problem(forest, n_features)
    if problem is not None:
        log.warning("ignoring an inconsistent TreeSHAP cache file %s (%s); rebuilding it", path, problem)
        return None
    return forest


def save_forest(forest: ShapForest, path: Path) -> None:
    """Write ``forest`` to ``path`` atomically (a temporary file in the same folder, then renamed)
    and keep only the FOREST_CACHE_ENTRIES most recently used entries of the folder.

    A folder that cannot be created or written is logged at debug level and skipped.

    Args:
        forest: The flattened forest.
        path: The entry's file (``<folder>/<key>.npz``); its folder is created if needed.
    """
    arrays = {f"{field}.{name}": values for field in FOREST_ARRAYS for name, values in getattr(forest, field).items()}
    arrays["expected_value"] = np.asarray(forest.expected_value, dtype=np.float64)
    arrays[CHECKSUM] = arrays_checksum(arrays)
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


def cached_forest(booster: Any, folder: Path | None) -> ShapForest | None:
    """The flattened model: kept on the booster object, cached on disk in ``folder`` and built
    (:func:`lgml.kernels.treeshap.flatten_forest`) only when neither has it.

    Args:
        booster: A LightGBM booster.
        folder: The cache folder; None: no disk cache.

    Returns:
        The forest, or None when the kernels cannot handle the model.

    Raises:
        ImportError: numba is not installed.
    """
    cached = getattr(booster, "_lgml_forest", False)
    if cached is not False:
        return cached
    treeshap.compile_kernels()  # numba must be there before a cached forest is of any use
    path = None if folder is None else folder / f"{forest_key(booster)}.npz"
    cached = None if path is None else load_forest(path, booster.num_feature())
    if cached is not None:
        try:
            os.utime(path)  # recently used: kept longest
        except OSError:
            pass
    else:
        cached = treeshap.flatten_forest(booster)
        if cached is not None and path is not None:
            save_forest(cached, path)
    booster._lgml_forest = cached
    return cached
