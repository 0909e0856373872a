"""Model input: a feature table cast to what the model was trained on.

Training and scoring both go through :func:`model_frame` (columns in model order, categoricals
with fixed levels, everything else float), so the two always agree; :func:`lightgbm_matrix`
turns that frame into the float matrix LightGBM and the compiled kernel predict from.

This module imports nothing else of lgml at module level: the bundle builds on it.

Example:
    >>> t = pd.DataFrame({"a": [1, 2], "c": ["x", None]})
    >>> model_frame(t, ["c", "a"], {"c": ["x", "y"]}).dtypes.astype(str).tolist()
    ['category', 'float64']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


class BundleInputError(ValueError):
    """A table cannot be scored by a bundle: missing columns, unseen category levels or
    non-numeric values. The message lists every problem with row counts."""


def feature_levels(features: list[str]) -> dict[str, list[str]]:
    """Fixed category levels (:func:`lgml.features.categorical_levels`) of the categorical
    features among ``features``."""
    from lgml.features import categorical_levels

    return {k: v for k, v in categorical_levels().items() if k in features}


def model_frame(table: pd.DataFrame, features: list[str], levels: dict[str, list[str]]) -> pd.DataFrame:
    """LightGBM input: ``features`` in order, categoricals cast to the fixed ``levels``,
    everything else as float.

    Args:
        table: DataFrame of shape (n_rows, >= n_features).
        features: Column names in model order.
        levels: Category levels per categorical feature.

    Returns:
        A new DataFrame of shape (n_rows, n_features).

    Raises:
        BundleInputError: Missing columns, unseen category levels (with
            counts) or non-numeric values; nothing is silently turned into NaN.
    """
    problems: list[str] = []
    missing = [c for c in features if c not in table.columns]
    if missing:
        problems.append(f"missing column(s) ({len(missing)}): {', '.join(missing)}")
    columns: dict[str, pd.Series] = {}
    for name in (c for c in features if c not in missing):
        col = table[name]
        if name in levels:
            columns[name], problem = _as_category(col, levels[name])
        else:
            columns[name], problem = _as_float(col)
        if problem:
            problems.append(f"{name}: {problem}")
    if problems:
        raise BundleInputError("table does not fit the model:\n  " + "\n  ".join(problems))
    return pd.DataFrame(columns, index=table.index)[features]


def lightgbm_matrix(X: pd.DataFrame, pandas_categorical: list[list[Any]] | None) -> np.ndarray:
    """The row-major float matrix LightGBM predicts from, as its own pandas conversion builds
    it: categoricals as codes of the model's levels (``booster.pandas_categorical``, missing
    -> NaN), everything else as float64. Row-major matters: LightGBM's own conversion yields a
    column-major array, which it predicts from about 20% more slowly.

    Args:
        X: Model input frame of shape (n_rows, n_features) (:func:`model_frame` output).
        pandas_categorical: Category lists of the categorical columns, in column order.

    Returns:
        C-contiguous float64 array of shape (n_rows, n_features).
    """
    levels = iter(pandas_categorical or [])
    out = np.empty(X.shape, dtype=np.float64)
    for j, name in enumerate(X.columns):
        col = X[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = pd.Categorical(col, categories=next(levels)).codes.astype(np.float64)
            codes[codes < 0] = np.nan
            out[:, j] = codes
        else:
            out[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _as_category(col: pd.Series, levels: list[str]) -> tuple[pd.Series, str | None]:
    values = col.astype(object).where(col.notna(), None)
    codes = pd.Index(levels).get_indexer(values)
    cast = pd.Series(pd.Categorical.from_codes(codes, categories=levels), index=col.index, name=col.name)
    unseen = values[(codes < 0) & values.notna().to_numpy()]
    if unseen.empty:
        return cast, None
    counts = unseen.astype(str).value_counts()
    shown = ", ".join(f"{k!r} x{v}" for k, v in counts.head(10).items())
    more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
    return cast, f"{len(unseen)} row(s) with unseen level(s) {shown}{more}"


def _as_float(col: pd.Series) -> tuple[pd.Series, str | None]:
    try:
        return col.astype(float), None
    except (TypeError, ValueError):
        bad = pd.to_numeric(col, errors="coerce").isna() & col.notna()
        examples = ", ".join(repr(v) for v in col[bad].astype(str).unique()[:5])
        return col, f"{int(bad.sum())} row(s) not numeric (e.g. {examples})"
