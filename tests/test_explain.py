"""Explanations: exact contributions, groups, probability points, reasons, counterfactuals, and
the ``explain`` / ``report`` commands.

One small designation model is trained per session on the simulated default (3,000 firms).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml import criteria, explain as ex, io
from lgml.cli import app
from lgml.features import FEATURE_GROUPS, GROUPS, build_features, context_tables
from lgml.modeling.bundle import load_bundle
from lgml.modeling.data import lightgbm_matrix
from lgml.report.model import global_importance, psi_table, reference_profile

XSS = "<script>alert(1)</script>"


# ---------------------------------------------------------------------------------------------
# Contributions, groups, probability points
# ---------------------------------------------------------------------------------------------


def test_contributions_add_up_to_the_raw_score(bundle, candidates):
    contrib, base = ex.contributions(bundle, candidates)
    assert list(contrib.columns) == bundle.features
    assert contrib.index.equals(candidates.index)
    assert base.shape == (len(candidates),)
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy() + base, bundle.predict_raw(candidates), atol=1e-6)


def test_tabulated_treeshap_equals_lightgbm_pred_contrib(bundle, candidates):
    X = bundle.prepare(candidates)
    assert X["ownership"].isna().any() and X.select_dtypes("category").shape[1] == 4
    fast = ex.fast_contributions(bundle.booster, X)
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
def test_each_evaluation_path_equals_lightgbm_pred_contrib(bundle, candidates, monkeypatch, settings, path):
    """Subtree tables, single-leaf tables and leaves evaluated by quadrature at run time (long
    paths) each reproduce pred_contrib, with categorical splits and missing values."""
    for name, value in settings.items():
        monkeypatch.setattr(ex, name, value)
    monkeypatch.setattr(bundle.booster, "_lgml_forest", False, raising=False)  # rebuilt with the settings
    X = bundle.prepare(candidates)
    fast = ex.fast_contributions(bundle.booster, X)
    assert _evaluation_paths(ex._forest_of(bundle.booster))[path] > 0
    np.testing.assert_allclose(fast, bundle.booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)


def test_fast_treeshap_takes_a_matrix_and_does_not_depend_on_threads(bundle, candidates):
    import numba

    X = bundle.prepare(candidates)
    from_frame = ex.fast_contributions(bundle.booster, X)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        from_matrix = ex.fast_contributions(bundle.booster, lightgbm_matrix(X, bundle.booster.pandas_categorical))
    finally:
        numba.set_num_threads(threads)
    assert np.array_equal(from_frame, from_matrix)
    with pytest.raises(ValueError, match="feature columns"):
        ex.fast_contributions(bundle.booster, np.zeros((3, X.shape[1] - 1)))


@pytest.fixture(scope="module")
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


def _fit(data: tuple[pd.DataFrame, np.ndarray], **params):
    import lightgbm as lgb

    X, y = data
    params = {"objective": "regression", "num_leaves": 31, "min_data_in_leaf": 5, "verbose": -1, "num_threads": 2,
              "seed": 1, **params}
    label = np.arange(len(y)) % params["num_class"] if "num_class" in params else y
    return lgb.train(params, lgb.Dataset(X, label), num_boost_round=12)


@pytest.mark.parametrize("params", [{}, {"zero_as_missing": True}, {"num_leaves": 60, "min_data_in_leaf": 2}])
def test_fast_treeshap_with_zero_as_missing_wide_categoricals_and_large_trees(synthetic, params):
    booster = _fit(synthetic, **params)
    X, _ = synthetic
    fast = ex.fast_contributions(booster, X)
    assert fast is not None
    forest = ex._forest_of(booster)
    assert (forest.nodes["cat_words"] > 1).any()  # categories beyond 63 in a split
    if params.get("zero_as_missing"):
        assert (forest.nodes["kind"] == 1).any()
    np.testing.assert_allclose(fast, booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)


@pytest.mark.parametrize("params", [{"num_leaves": 80, "min_data_in_leaf": 2},
                                    {"objective": "multiclass", "num_class": 3}])
def test_models_beyond_the_kernels_are_left_to_lightgbm(synthetic, params):
    booster = _fit(synthetic, **params)
    assert ex.fast_contributions(booster, synthetic[0]) is None


def _cache_file(cache: Path, booster) -> Path:
    return cache / "treeshap" / f"{ex._forest_key(booster)}.npz"


def _no_build(booster):
    raise AssertionError("the forest should have come from the disk cache")


def test_a_new_process_loads_the_flattened_forest_from_disk(synthetic, tmp_path, monkeypatch):
    import lightgbm as lgb

    monkeypatch.setenv("LGML_CACHE_DIR", str(tmp_path))
    booster = _fit(synthetic)
    X, _ = synthetic
    first = ex.fast_contributions(booster, X)
    built = ex._forest_of(booster)
    assert [p.name for p in (tmp_path / "treeshap").iterdir()] == [_cache_file(tmp_path, booster).name]
    monkeypatch.setattr(ex, "_flatten_forest", _no_build)
    fresh = lgb.Booster(model_str=booster.model_to_string())  # as a new process would load it
    second = ex.fast_contributions(fresh, X)
    loaded = ex._forest_of(fresh)
    assert loaded is not built and loaded.expected_value == built.expected_value
    for field in ("nodes", "trees", "units", "leaves"):
        ours, theirs = getattr(built, field), getattr(loaded, field)
        assert ours.keys() == theirs.keys()
        assert all(np.array_equal(ours[k], theirs[k]) and ours[k].dtype == theirs[k].dtype for k in ours)
    assert np.array_equal(first, second)
    np.testing.assert_allclose(second, fresh.predict(X, pred_contrib=True), rtol=0, atol=1e-9)


def _garbage(path: Path, forest) -> None:
    path.write_bytes(b"not a zip file" * 100)


def _truncated(path: Path, forest) -> None:
    ex._save_forest(forest, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _missing_array(path: Path, forest) -> None:
    ex._save_forest(forest, path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "units.table"}
    np.savez(path, **arrays)


def _wrong_dtype(path: Path, forest) -> None:
    ex._save_forest(forest, path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["nodes.feature"] = arrays["nodes.feature"].astype(np.int32)
    np.savez(path, **arrays)


def _pickled(path: Path, forest) -> None:
    ex._save_forest(forest, path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["units.table"] = np.array([{"x": 1}], dtype=object)
    np.savez(path, **arrays)


@pytest.mark.parametrize("spoil", [_garbage, _truncated, _missing_array, _wrong_dtype, _pickled])
def test_a_spoilt_cache_file_is_rebuilt_and_overwritten(synthetic, tmp_path, monkeypatch, spoil):
    monkeypatch.setenv("LGML_CACHE_DIR", str(tmp_path))
    booster = _fit(synthetic)
    X, _ = synthetic
    path = _cache_file(tmp_path, booster)
    path.parent.mkdir(parents=True)
    spoil(path, ex._flatten_forest(booster))
    assert ex._load_forest(path) is None
    builds = []
    real = ex._flatten_forest
    monkeypatch.setattr(ex, "_flatten_forest", lambda b: builds.append(b) or real(b))
    fast = ex.fast_contributions(booster, X)
    assert len(builds) == 1
    np.testing.assert_allclose(fast, booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)
    assert ex._load_forest(path) is not None  # overwritten with the rebuilt forest
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_a_wrong_cached_forest_falls_back_to_pred_contrib(bundle, candidates, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LGML_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(bundle.booster, "_lgml_forest", False, raising=False)
    path = _cache_file(tmp_path, bundle.booster)
    forest = ex._forest_of(bundle.booster)
    assert path.exists()
    forest.units["table"][:] += 0.01  # a well-formed entry with wrong values
    ex._save_forest(forest, path)
    monkeypatch.setattr(bundle.booster, "_lgml_forest", False)
    monkeypatch.setattr(ex, "_flatten_forest", _no_build)
    contrib, base = ex.contributions(bundle, candidates)
    assert "differs from pred_contrib" in caplog.text
    expected = bundle.booster.predict(bundle.prepare(candidates), pred_contrib=True)
    np.testing.assert_allclose(contrib.to_numpy(), expected[:, :-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(base, expected[:, -1], rtol=0, atol=1e-9)


def test_an_unwritable_cache_folder_is_skipped(synthetic, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LGML_CACHE_DIR", str(blocker / "cache"))
    booster = _fit(synthetic)
    X, _ = synthetic
    with caplog.at_level("DEBUG", logger="lgml.explain"):
        fast = ex.fast_contributions(booster, X)
    assert "not cached" in caplog.text
    np.testing.assert_allclose(fast, booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_the_disk_cache_can_be_turned_off(synthetic, tmp_path, monkeypatch):
    for name in ("HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LGML_CACHE_DIR", "off")
    assert ex.forest_cache_dir() is None
    booster = _fit(synthetic)
    X, _ = synthetic
    fast = ex.fast_contributions(booster, X)
    np.testing.assert_allclose(fast, booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)
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
    assert ex.forest_cache_dir() == Path(expected.format(tmp=tmp_path))


def test_each_model_and_each_table_setting_has_its_own_cache_file(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("LGML_CACHE_DIR", str(tmp_path))
    X, _ = synthetic
    one, other = _fit(synthetic), _fit(synthetic, num_leaves=20)
    for booster in (one, other):
        ex.fast_contributions(booster, X)
    names = {p.name for p in (tmp_path / "treeshap").iterdir()}
    assert names == {_cache_file(tmp_path, one).name, _cache_file(tmp_path, other).name} and len(names) == 2
    key = ex._forest_key(one)
    for name, value in [("FAST_SHAP_MAX_KEY_BITS", 4), ("FAST_SHAP_BYTE_COST", 0.0), ("FAST_SHAP_TREE_BYTES", 2_000),
                        ("FAST_SHAP_MAX_NODES", 30), ("FOREST_CACHE_VERSION", ex.FOREST_CACHE_VERSION + 1)]:
        with monkeypatch.context() as patch:
            patch.setattr(ex, name, value)
            assert ex._forest_key(one) != key, name
    assert ex._forest_key(one) == key


def test_a_cached_forest_is_not_used_without_numba(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("LGML_CACHE_DIR", str(tmp_path))
    booster = _fit(synthetic)
    X, _ = synthetic
    ex.fast_contributions(booster, X)
    assert _cache_file(tmp_path, booster).exists()
    booster._lgml_forest = False

    def no_numba():
        raise ImportError("numba")

    monkeypatch.setattr(ex, "_kernels", no_numba)
    assert ex.fast_contributions(booster, X) is None


def test_additivity_failure_raises(bundle, candidates, monkeypatch):
    real = bundle.booster.predict

    def skewed(X, **kwargs):
        out = real(X, **kwargs)
        return out + 0.01 if kwargs.get("raw_score") else out

    monkeypatch.setattr(bundle.booster, "predict", skewed)
    with pytest.raises(ex.AdditivityError):
        ex.contributions(bundle, candidates.head(5))


def test_group_sums_equal_the_sum_of_their_features(bundle, candidates):
    contrib, _ = ex.contributions(bundle, candidates)
    groups = ex.group_contributions(contrib)
    assert list(groups.columns) == list(GROUPS)
    for group in GROUPS:
        members = [f for f in contrib.columns if FEATURE_GROUPS[f] == group]
        np.testing.assert_allclose(groups[group], contrib[members].sum(axis=1), atol=1e-12)
    np.testing.assert_allclose(groups.sum(axis=1), contrib.sum(axis=1), atol=1e-9)


@pytest.mark.parametrize("method", ["proportional", "sequential"])
def test_probability_points_sum_to_the_probability_difference(bundle, candidates, method):
    contrib, base = ex.contributions(bundle, candidates)
    calibrate = bundle.calibrator.transform
    points = ex.probability_points(contrib, base, calibrate, method=method)
    expected = 100 * (calibrate(base + contrib.sum(axis=1).to_numpy()) - calibrate(base))
    np.testing.assert_allclose(points.sum(axis=1).to_numpy(), expected, atol=1e-9)
    if method == "proportional":  # signs kept: calibration never decreases
        assert (np.sign(points.to_numpy()) * np.sign(contrib.to_numpy()) >= 0).all()


def test_grouped_importance_ranks_innovation_and_specialization_above_region_and_sector(bundle, candidates):
    contrib, _ = ex.contributions(bundle, candidates)
    _, by_group = global_importance(contrib)
    for strong in ("innovation", "specialization"):
        for weak in ("region", "sector"):
            assert by_group[strong] > by_group[weak], by_group.to_dict()


# ---------------------------------------------------------------------------------------------
# Drift
# ---------------------------------------------------------------------------------------------


def test_psi_is_zero_against_itself_and_grows_with_a_shift(bundle, candidates):
    ref = reference_profile(candidates, bundle.features)
    same = psi_table(ref, candidates)
    assert same["psi"].max() < 1e-9
    shifted = candidates.assign(rd_intensity=candidates["rd_intensity"] * 3)
    assert psi_table(ref, shifted).set_index("feature").loc["rd_intensity", "psi"] > 0.25


def test_contributions_check_additivity_against_a_given_raw_score(bundle, candidates):
    rows = candidates.head(300)
    raw = bundle.predict_raw(rows)
    contrib, base = ex.contributions(bundle, rows, raw=raw)
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy() + base, raw, atol=1e-9)
    with pytest.raises(ex.AdditivityError):
        ex.contributions(bundle, rows, raw=raw + 0.01)
    with pytest.raises(ValueError, match="one value per row"):
        ex.contributions(bundle, rows, raw=raw[:-1])


def test_contributions_from_a_given_model_matrix(bundle, candidates):
    rows = candidates.head(2500)  # the compiled kernels' size
    matrix = bundle.model_matrix(rows)
    contrib, base = ex.contributions(bundle, rows, matrix=matrix)
    again, base_again = ex.contributions(bundle, rows)
    pd.testing.assert_frame_equal(contrib, again)
    np.testing.assert_array_equal(base, base_again)
    with pytest.raises(ValueError, match="matrix must have shape"):
        ex.contributions(bundle, rows, matrix=matrix[:-1])


def test_the_disk_cache_keeps_the_most_recently_used_models(synthetic, tmp_path, monkeypatch):
    import lightgbm as lgb

    monkeypatch.setenv("LGML_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ex, "FOREST_CACHE_ENTRIES", 2)
    X, _ = synthetic
    boosters = [_fit(synthetic, num_leaves=leaves) for leaves in (7, 11, 15)]
    paths = [_cache_file(tmp_path, b) for b in boosters]
    ex._forest_of(boosters[0])
    ex._forest_of(boosters[1])
    os.utime(paths[0], (1, 1))  # long unused ...
    os.utime(paths[1], (2, 2))
    ex._forest_of(lgb.Booster(model_str=boosters[0].model_to_string()))  # ... until loaded again
    ex._forest_of(boosters[2])
    assert sorted(p.name for p in (tmp_path / "treeshap").iterdir()) == sorted([paths[0].name, paths[2].name])
