"""The compiled TreeSHAP kernels give LightGBM's own pred_contrib, on every evaluation path."""

from __future__ import annotations

import numpy as np
import pytest

from lgml.kernels import treeshap


def _shap(booster, matrix) -> np.ndarray | None:
    forest = treeshap.flatten_forest(booster)
    return None if forest is None else treeshap.shap_values(forest, matrix)


def test_tabulated_treeshap_equals_lightgbm_pred_contrib(bundle, candidates, matrix_of):
    X = bundle.prepare(candidates)
    assert X["ownership"].isna().any() and X.select_dtypes("category").shape[1] == 4
    fast = _shap(bundle.booster, matrix_of(bundle.booster, X))
    assert fast is not None
    np.testing.assert_allclose(fast, bundle.booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)


def _evaluation_paths(forest) -> dict[str, int]:
    splits = forest.units["splits"]
    return {"subtree tables": int((splits > 0).sum()), "leaf tables": int((splits == 0).sum()),
            "run-time leaves": len(forest.leaves["m"])}


@pytest.mark.parametrize("settings, path", [
    ({}, "subtree tables"),
    ({"FAST_SHAP_BYTE_COST": 0.0}, "subtree tables"),
    ({"FAST_SHAP_MAX_KEY_BITS": 4}, "leaf tables"),
    ({"FAST_SHAP_MAX_KEY_BITS": 4}, "run-time leaves"),
    ({"FAST_SHAP_MAX_KEY_BITS": 0}, "run-time leaves"),
    ({"FAST_SHAP_TREE_BYTES": 2_000, "FAST_SHAP_BYTE_COST": 0.0}, "run-time leaves"),
])
def test_each_evaluation_path_equals_lightgbm_pred_contrib(bundle, candidates, matrix_of, monkeypatch, settings,
                                                           path):
    """Subtree tables, single-leaf tables and leaves evaluated by quadrature at run time (long
    paths) each reproduce pred_contrib, with categorical splits and missing values."""
    for name, value in settings.items():
        monkeypatch.setattr(treeshap, name, value)
    X = bundle.prepare(candidates)
    forest = treeshap.flatten_forest(bundle.booster)
    assert _evaluation_paths(forest)[path] > 0
    fast = treeshap.shap_values(forest, matrix_of(bundle.booster, X))
    np.testing.assert_allclose(fast, bundle.booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)


def test_treeshap_does_not_depend_on_threads_or_blocks(bundle, candidates, matrix_of, monkeypatch):
    import numba

    matrix = matrix_of(bundle.booster, bundle.prepare(candidates))
    forest = treeshap.flatten_forest(bundle.booster)
    reference = treeshap.shap_values(forest, matrix)
    monkeypatch.setattr(treeshap, "FAST_SHAP_BLOCK_ROWS", 7)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one_thread = treeshap.shap_values(forest, matrix)
    finally:
        numba.set_num_threads(threads)
    assert np.array_equal(reference, one_thread)


@pytest.mark.parametrize("params", [{}, {"zero_as_missing": True}, {"num_leaves": 60, "min_data_in_leaf": 2}])
def test_treeshap_with_zero_as_missing_wide_categoricals_and_large_trees(synthetic, fit, matrix_of, params):
    booster = fit(**params)
    X, _ = synthetic
    forest = treeshap.flatten_forest(booster)
    assert forest is not None
    assert (forest.nodes["cat_words"] > 1).any()  # categories beyond 63 in a split
    if params.get("zero_as_missing"):
        assert (forest.nodes["kind"] == 1).any()
    fast = treeshap.shap_values(forest, matrix_of(booster, X))
    np.testing.assert_allclose(fast, booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)


@pytest.mark.parametrize("params", [{"num_leaves": 80, "min_data_in_leaf": 2},
                                    {"objective": "multiclass", "num_class": 3}])
def test_models_beyond_the_kernels_are_not_flattened(fit, params):
    assert treeshap.flatten_forest(fit(**params)) is None
