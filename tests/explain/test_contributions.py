"""Exact contributions of a bundle (compiled kernels checked against pred_contrib, additivity),
the cache folder they use, groups and probability points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lgml.explain.contributions import (AdditivityError, contributions, fast_contributions, forest_cache_dir,
                                        group_contributions, probability_points)
from lgml.vocabulary import DIMENSIONS, FEATURE_DIMENSIONS
from lgml.kernels import cache, treeshap
from lgml.modeling.matrix import lightgbm_matrix


def test_contributions_add_up_to_the_raw_score(bundle, candidates):
    contrib, base = contributions(bundle, candidates)
    assert list(contrib.columns) == bundle.features
    assert contrib.index.equals(candidates.index)
    assert base.shape == (len(candidates),)
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy() + base, bundle.predict_raw(candidates), atol=1e-6)


def test_fast_contributions_take_a_frame_or_a_matrix(bundle, candidates):
    X = bundle.prepare(candidates)
    from_frame = fast_contributions(bundle.booster, X)
    from_matrix = fast_contributions(bundle.booster, lightgbm_matrix(X, bundle.booster.pandas_categorical))
    assert np.array_equal(from_frame, from_matrix)
    np.testing.assert_allclose(from_frame, bundle.booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="feature columns"):
        fast_contributions(bundle.booster, np.zeros((3, X.shape[1] - 1)))


def test_a_wrong_cached_forest_falls_back_to_pred_contrib(bundle, candidates, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LGML_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(bundle.booster, "_lgml_forest", False, raising=False)
    path = tmp_path / "treeshap" / f"{cache.forest_key(bundle.booster)}.npz"
    forest = cache.cached_forest(bundle.booster, forest_cache_dir())
    assert path.exists()
    forest.units["table"][:] += 0.01  # a well-formed entry with wrong values
    cache.save_forest(forest, path)
    monkeypatch.setattr(bundle.booster, "_lgml_forest", False)
    monkeypatch.setattr(treeshap, "flatten_forest", lambda booster: pytest.fail("not loaded from the cache"))
    contrib, base = contributions(bundle, candidates)
    assert "differs from pred_contrib" in caplog.text
    expected = bundle.booster.predict(bundle.prepare(candidates), pred_contrib=True)
    np.testing.assert_allclose(contrib.to_numpy(), expected[:, :-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(base, expected[:, -1], rtol=0, atol=1e-9)


def test_without_numba_contributions_come_from_pred_contrib(bundle, candidates, monkeypatch):
    def no_numba():
        raise ImportError("numba")

    monkeypatch.setattr(bundle.booster, "_lgml_forest", False, raising=False)
    monkeypatch.setattr(treeshap, "compile_kernels", no_numba)
    X = bundle.prepare(candidates)
    assert fast_contributions(bundle.booster, X) is None
    contrib, base = contributions(bundle, candidates)
    expected = bundle.booster.predict(X, pred_contrib=True)
    np.testing.assert_allclose(contrib.to_numpy(), expected[:, :-1], rtol=0, atol=1e-9)


def test_the_disk_cache_can_be_turned_off(bundle, candidates, tmp_path, monkeypatch):
    for name in ("HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LGML_CACHE_DIR", "off")
    assert forest_cache_dir() is None
    monkeypatch.setattr(bundle.booster, "_lgml_forest", False, raising=False)  # built again
    X = bundle.prepare(candidates)
    fast = fast_contributions(bundle.booster, X)
    np.testing.assert_allclose(fast, bundle.booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("env, expected", [
    ({"LGML_CACHE_DIR": "{tmp}/mine", "XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/mine/treeshap"),
    ({"LGML_CACHE_DIR": "", "XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/lgml/treeshap"),
    ({"XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/lgml/treeshap"),
    ({"XDG_CACHE_HOME": "relative"}, "{tmp}/home/.cache/lgml/treeshap"),  # ignored, as the XDG spec says
    ({}, "{tmp}/home/.cache/lgml/treeshap"),
])
def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch, env, expected):
    monkeypatch.setenv("HOME", f"{tmp_path}/home")
    for name in ("LGML_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
        if name in env:
            monkeypatch.setenv(name, env[name].format(tmp=tmp_path))
    assert forest_cache_dir() == Path(expected.format(tmp=tmp_path))


def test_additivity_failure_raises(bundle, candidates, monkeypatch):
    real = bundle.booster.predict

    def skewed(X, **kwargs):
        out = real(X, **kwargs)
        return out + 0.01 if kwargs.get("raw_score") else out

    monkeypatch.setattr(bundle.booster, "predict", skewed)
    with pytest.raises(AdditivityError):
        contributions(bundle, candidates.head(5))


def test_contributions_check_additivity_against_a_given_raw_score(bundle, candidates):
    rows = candidates.head(300)
    raw = bundle.predict_raw(rows)
    contrib, base = contributions(bundle, rows, raw=raw)
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy() + base, raw, atol=1e-9)
    with pytest.raises(AdditivityError):
        contributions(bundle, rows, raw=raw + 0.01)
    with pytest.raises(ValueError, match="one value per row"):
        contributions(bundle, rows, raw=raw[:-1])


def test_contributions_from_a_given_model_matrix(bundle, candidates):
    rows = candidates.head(2500)  # the compiled kernels' size
    matrix = bundle.model_matrix(rows)
    contrib, base = contributions(bundle, rows, matrix=matrix)
    again, base_again = contributions(bundle, rows)
    pd.testing.assert_frame_equal(contrib, again)
    np.testing.assert_array_equal(base, base_again)
    with pytest.raises(ValueError, match="matrix must have shape"):
        contributions(bundle, rows, matrix=matrix[:-1])


def test_group_sums_equal_the_sum_of_their_features(bundle, candidates):
    contrib, _ = contributions(bundle, candidates)
    groups = group_contributions(contrib)
    assert list(groups.columns) == list(DIMENSIONS)
    for group in DIMENSIONS:
        members = [f for f in contrib.columns if FEATURE_DIMENSIONS[f] == group]
        np.testing.assert_allclose(groups[group], contrib[members].sum(axis=1), atol=1e-12)
    np.testing.assert_allclose(groups.sum(axis=1), contrib.sum(axis=1), atol=1e-9)


@pytest.mark.parametrize("method", ["proportional", "sequential"])
def test_probability_points_sum_to_the_probability_difference(bundle, candidates, method):
    contrib, base = contributions(bundle, candidates)
    calibrate = bundle.calibrator.transform
    points = probability_points(contrib, base, calibrate, method=method)
    expected = 100 * (calibrate(base + contrib.sum(axis=1).to_numpy()) - calibrate(base))
    np.testing.assert_allclose(points.sum(axis=1).to_numpy(), expected, atol=1e-9)
    if method == "proportional":  # signs kept: calibration never decreases
        assert (np.sign(points.to_numpy()) * np.sign(contrib.to_numpy()) >= 0).all()
