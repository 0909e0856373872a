"""The bounds check that guards the compiled TreeSHAP kernels against an inconsistent forest."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lgml.kernels import treeshap
from lgml.kernels.bounds import forest_problem


def _copy(forest):
    return dataclasses.replace(forest, **{field: {k: v.copy() for k, v in getattr(forest, field).items()}
                                          for field in ("nodes", "trees", "units", "leaves")})


def test_a_built_forest_is_consistent(fit):
    booster = fit()
    assert forest_problem(treeshap.flatten_forest(booster), booster.num_feature()) is None


def test_too_few_matrix_columns_is_refused_before_the_kernel(synthetic, fit, matrix_of):
    booster = fit()
    X, _ = synthetic
    forest = treeshap.flatten_forest(booster)
    narrow = np.ascontiguousarray(matrix_of(booster, X)[:, :1])
    with pytest.raises(ValueError, match="inconsistent.*(feature|not a feature)"):
        treeshap.shap_values(forest, narrow)


def test_every_corrupted_index_is_caught_or_harmless(synthetic, fit, matrix_of):
    """Each integer array, one entry at a time set to a value far out of range (either sign): the
    check names it, or the kernel runs to the end (values the kernel only compares, such as bit
    masks). A read out of bounds would crash this process instead."""
    booster = fit()
    X, _ = synthetic
    matrix = matrix_of(booster, X)[:50]
    forest = treeshap.flatten_forest(booster)
    rng = np.random.default_rng(0)
    caught = 0
    for field in ("nodes", "trees", "units", "leaves"):
        for name, values in getattr(forest, field).items():
            if values.dtype != np.int64 or not len(values):
                continue
            for bad in (-(10**9), 10**9, len(values), 63):
                spoilt = _copy(forest)
                getattr(spoilt, field)[name][rng.integers(len(values))] = bad
                problem = forest_problem(spoilt, booster.num_feature())
                if problem is None:
                    treeshap.shap_values(spoilt, matrix)
                else:
                    caught += 1
                    with pytest.raises(ValueError, match="inconsistent"):
                        treeshap.shap_values(spoilt, matrix)
    assert caught > 40


def test_malformed_arrays_are_named(fit):
    booster = fit()
    forest = _copy(treeshap.flatten_forest(booster))
    kind = forest.nodes["kind"]
    forest.nodes["kind"] = kind[:-1]
    assert "nodes.kind" in forest_problem(forest, booster.num_feature())
    forest.nodes["kind"] = kind
    del forest.units["table_start"]
    assert "malformed" in forest_problem(forest, booster.num_feature())
