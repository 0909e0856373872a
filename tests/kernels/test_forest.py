"""The compiled predictor gives LightGBM's own predictions, bit for bit."""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pytest

from lgml.kernels import forest

ROWS = 3_000


def _data(seed: int = 0, rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([
        rng.normal(size=rows),
        rng.exponential(size=rows),
        rng.integers(0, 100, size=rows).astype(float),  # categorical with 100 levels (bitsets > 64 bits)
        rng.integers(0, 4, size=rows).astype(float),  # categorical with few levels
        np.where(rng.random(rows) < 0.3, 0.0, rng.normal(size=rows)),  # many exact zeros
    ])
    X[rng.random(rows) < 0.1, 0] = np.nan
    X[rng.random(rows) < 0.1, 2] = np.nan
    logit = X[:, 1] - 1 + np.nan_to_num(X[:, 0]) + (X[:, 2] % 7 == 0) + 0.5 * X[:, 3] + X[:, 4]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(float)
    return X, y


def _train(params: dict, rounds: int = 40, label=None) -> tuple[lgb.Booster, np.ndarray]:
    X, y = _data()
    if params.get("objective") in ("regression", "quantile"):  # a continuous target
        y = y + X[:, 1] + np.nan_to_num(X[:, 0]) + (X[:, 2] % 7 == 0) + X[:, 4]
    base = {"verbosity": -1, "num_leaves": 15, "min_data_in_leaf": 5, "seed": 1, "num_threads": 1}
    data = lgb.Dataset(X, label if label is not None else y, categorical_feature=[2, 3], free_raw_data=False)
    booster = lgb.train({**base, **params}, data, num_boost_round=rounds)
    # a model as bundles load it: from its text
    return lgb.Booster(model_str=booster.model_to_string()), X


def _awkward(X: np.ndarray) -> np.ndarray:
    """Rows that reach every missing-value and category rule."""
    rng = np.random.default_rng(5)
    out = X.copy()
    for value, share in ((np.nan, 0.1), (0.0, 0.05), (1e-40, 0.03), (-1e-40, 0.03), (-0.5, 0.03),
                         (-3.0, 0.02), (250.0, 0.02), (7.9, 0.02)):
        out[rng.random(out.shape) < share] = value
    return out


@pytest.mark.parametrize("params", [
    {"objective": "binary"},
    {"objective": "binary", "zero_as_missing": True},
    {"objective": "binary", "use_missing": False},
    {"objective": "regression"},
    {"objective": "quantile", "alpha": 0.9},
    {"objective": "binary", "max_cat_to_onehot": 8, "num_leaves": 63, "max_depth": -1},
], ids=["nan-missing", "zero-missing", "no-missing", "regression", "quantile", "deep"])
def test_same_values_as_lightgbm(params: dict) -> None:
    booster, X = _train(params)
    kinds = set(forest.forest_of(booster).kind.tolist())
    assert 2 in kinds  # categorical splits are exercised
    if params.get("zero_as_missing"):
        assert 1 in kinds
    for matrix in (X, _awkward(X)):
        raw = booster.predict(matrix, raw_score=True)
        assert np.array_equal(forest.predict_forest(forest.forest_of(booster), matrix), raw)
        assert np.array_equal(forest.raw_scores(booster, matrix), raw)
        assert np.array_equal(forest.predict(booster, matrix), booster.predict(matrix))


def test_transformed_output_left_to_lightgbm() -> None:
    booster, X = _train({"objective": "binary"})
    assert np.array_equal(forest.predict(booster, X), booster.predict(X))  # sigmoid: LightGBM's own
    assert np.array_equal(forest.predict(booster, X, raw_score=True), booster.predict(X, raw_score=True))


def test_single_leaf_trees() -> None:
    # no split can hold 5,000 rows per leaf: training keeps one single-leaf tree
    booster, X = _train({"objective": "regression", "min_data_in_leaf": 5_000}, rounds=3)
    f = forest.forest_of(booster)
    assert (f.roots < 0).all() and f.n_trees == booster.num_trees() >= 1
    assert np.array_equal(forest.predict_forest(f, X), booster.predict(X, raw_score=True))


def test_thread_and_block_invariance(monkeypatch: pytest.MonkeyPatch) -> None:
    import numba

    booster, X = _train({"objective": "binary"})
    f = forest.forest_of(booster)
    reference = forest.predict_forest(f, X)
    monkeypatch.setattr(forest, "BLOCK_ROWS", 7)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert np.array_equal(forest.predict_forest(f, X), reference)
    finally:
        numba.set_num_threads(previous)


@pytest.mark.parametrize("params", [
    {"objective": "multiclass", "num_class": 3},
    {"objective": "binary", "linear_tree": True},
    {"objective": "binary", "boosting": "rf", "bagging_freq": 1, "bagging_fraction": 0.5},
], ids=["multiclass", "linear", "random-forest"])
def test_models_not_handled_fall_back(params: dict) -> None:
    X, y = _data()
    label = (y + (X[:, 1] > 1)).astype(float) if params["objective"] == "multiclass" else None
    booster, X = _train(params, rounds=5, label=label)
    assert forest.forest_of(booster) is None
    assert forest.raw_scores(booster, X) is None
    assert np.array_equal(forest.predict(booster, X, raw_score=True), booster.predict(X, raw_score=True))


def test_small_inputs_use_lightgbm(monkeypatch: pytest.MonkeyPatch) -> None:
    booster, X = _train({"objective": "binary"})
    monkeypatch.setattr(forest, "predict_forest", lambda *a: pytest.fail("kernel used"))
    small = X[: forest.MIN_ROWS - 1]
    assert forest.raw_scores(booster, small) is None
    assert np.array_equal(forest.predict(booster, small, raw_score=True), booster.predict(small, raw_score=True))


def test_disagreement_falls_back(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    booster, X = _train({"objective": "binary"})
    good = forest.predict_forest
    monkeypatch.setattr(forest, "predict_forest", lambda f, m: good(f, m) + 1e-12)
    with caplog.at_level(logging.WARNING, logger="lgml.kernels.forest"):
        assert forest.raw_scores(booster, X) is None
        assert np.array_equal(forest.predict(booster, X, raw_score=True), booster.predict(X, raw_score=True))
    assert "differs from LightGBM" in caplog.text


def test_wrong_width_is_refused() -> None:
    booster, X = _train({"objective": "binary"})
    with pytest.raises(ValueError, match="expected 5 feature columns"):
        forest.predict_forest(forest.forest_of(booster), X[:, :4])
