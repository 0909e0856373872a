"""Fixtures of the TreeSHAP kernel and cache tests: a synthetic regression frame with NaNs, exact
zeros and a 100-level categorical, and small LightGBM models fitted on it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def synthetic() -> tuple[pd.DataFrame, np.ndarray]:
    """Rows with NaNs, exact zeros and a 100-level categorical."""
    rng = np.random.default_rng(3)
    n = 4_000
    X = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(14)})
    X["x0"] = X["x0"].mask(rng.random(n) < 0.1)
    X["sparse"] = np.where(rng.random(n) < 0.3, 0.0, rng.normal(size=n))
    X["code"] = pd.Categorical(rng.integers(0, 100, n))
    numeric = X.drop(columns="code").fillna(0.0).to_numpy()
    y = (numeric @ rng.normal(size=numeric.shape[1]) + rng.normal(size=100)[X["code"].cat.codes]
         + np.sin(3 * numeric[:, 1]) * numeric[:, 2] + rng.normal(scale=0.3, size=n))
    return X, y


@pytest.fixture(scope="session")
def fit(synthetic) -> Callable:
    """``fit(**params)``: a 12-round LightGBM model of :func:`synthetic` (regression by default)."""

    def fit_model(**params):
        import lightgbm as lgb

        X, y = synthetic
        params = {"objective": "regression", "num_leaves": 31, "min_data_in_leaf": 5, "verbose": -1,
                  "num_threads": 2, "seed": 1, **params}
        label = np.arange(len(y)) % params["num_class"] if "num_class" in params else y
        return lgb.train(params, lgb.Dataset(X, label), num_boost_round=12)

    return fit_model


@pytest.fixture(scope="session")
def matrix_of() -> Callable:
    """``matrix_of(booster, frame)``: the float matrix the kernels read (categoricals as codes)."""
    from lgml.modeling.matrix import lightgbm_matrix

    return lambda booster, X: lightgbm_matrix(X, booster.pandas_categorical)
