"""The disk cache of flattened TreeSHAP forests: one file per model and table settings, loaded by a
new process, rebuilt when spoilt, skipped when unwritable, trimmed to the most recently used."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lgml.kernels import cache, treeshap


def _cache_file(folder: Path, booster) -> Path:
    return folder / f"{cache.forest_key(booster)}.npz"


def _no_build(booster):
    raise AssertionError("the forest should have come from the disk cache")


def test_a_new_process_loads_the_flattened_forest_from_disk(synthetic, fit, matrix_of, tmp_path, monkeypatch):
    import lightgbm as lgb

    booster = fit()
    X, _ = synthetic
    built = cache.cached_forest(booster, tmp_path)
    assert cache.cached_forest(booster, tmp_path) is built  # kept on the booster
    assert [p.name for p in tmp_path.iterdir()] == [_cache_file(tmp_path, booster).name]
    monkeypatch.setattr(treeshap, "flatten_forest", _no_build)
    fresh = lgb.Booster(model_str=booster.model_to_string())  # as a new process would load it
    loaded = cache.cached_forest(fresh, tmp_path)
    assert loaded is not built and loaded.expected_value == built.expected_value
    for field in ("nodes", "trees", "units", "leaves"):
        ours, theirs = getattr(built, field), getattr(loaded, field)
        assert ours.keys() == theirs.keys()
        assert all(np.array_equal(ours[k], theirs[k]) and ours[k].dtype == theirs[k].dtype for k in ours)
    matrix = matrix_of(fresh, X)
    second = treeshap.shap_values(loaded, matrix)
    assert np.array_equal(treeshap.shap_values(built, matrix), second)
    np.testing.assert_allclose(second, fresh.predict(X, pred_contrib=True), rtol=0, atol=1e-9)


def _garbage(path: Path, forest) -> None:
    path.write_bytes(b"not a zip file" * 100)


def _truncated(path: Path, forest) -> None:
    cache.save_forest(forest, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _missing_array(path: Path, forest) -> None:
    cache.save_forest(forest, path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "units.table"}
    np.savez(path, **arrays)


def _wrong_dtype(path: Path, forest) -> None:
    cache.save_forest(forest, path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["nodes.feature"] = arrays["nodes.feature"].astype(np.int32)
    np.savez(path, **arrays)


def _pickled(path: Path, forest) -> None:
    cache.save_forest(forest, path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["units.table"] = np.array([{"x": 1}], dtype=object)
    np.savez(path, **arrays)


def _edited(path: Path, forest) -> None:
    """A value changed in place: the file loads, but its checksum no longer matches."""
    cache.save_forest(forest, path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["nodes.threshold"][0] += 1.0
    np.savez(path, **arrays)


def _out_of_bounds(path: Path, forest) -> None:
    """An index pointed past the table, the checksum recomputed to match: only the bounds check
    stands between this file and a read outside the table."""
    cache.save_forest(forest, path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != cache.CHECKSUM}
    arrays["units.table_start"][-1] = 10**12
    arrays[cache.CHECKSUM] = cache.arrays_checksum(arrays)
    np.savez(path, **arrays)


@pytest.mark.parametrize("spoil", [_garbage, _truncated, _missing_array, _wrong_dtype, _pickled, _edited,
                                   _out_of_bounds])
def test_a_spoilt_cache_file_is_rebuilt_and_overwritten(synthetic, fit, matrix_of, tmp_path, monkeypatch, spoil):
    booster = fit()
    X, _ = synthetic
    path = _cache_file(tmp_path, booster)
    spoil(path, treeshap.flatten_forest(booster))
    assert cache.load_forest(path, booster.num_feature()) is None
    builds = []
    real = treeshap.flatten_forest
    monkeypatch.setattr(treeshap, "flatten_forest", lambda b: builds.append(b) or real(b))
    forest = cache.cached_forest(booster, tmp_path)
    assert len(builds) == 1
    fast = treeshap.shap_values(forest, matrix_of(booster, X))
    np.testing.assert_allclose(fast, booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)
    assert cache.load_forest(path) is not None  # overwritten with the rebuilt forest
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_an_unwritable_cache_folder_is_skipped(synthetic, fit, matrix_of, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    booster = fit()
    X, _ = synthetic
    with caplog.at_level("DEBUG", logger="lgml.kernels"):
        forest = cache.cached_forest(booster, blocker / "cache" / "treeshap")
    assert "not cached" in caplog.text
    fast = treeshap.shap_values(forest, matrix_of(booster, X))
    np.testing.assert_allclose(fast, booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_no_folder_no_disk_cache(fit, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cache.cached_forest(fit(), None) is not None
    assert list(tmp_path.iterdir()) == []


def test_each_model_and_each_table_setting_has_its_own_cache_file(fit, tmp_path, monkeypatch):
    one, other = fit(), fit(num_leaves=20)
    for booster in (one, other):
        cache.cached_forest(booster, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {_cache_file(tmp_path, one).name, _cache_file(tmp_path, other).name} and len(names) == 2
    key = cache.forest_key(one)
    for module, name, value in [
        (treeshap, "FAST_SHAP_MAX_KEY_BITS", 4), (treeshap, "FAST_SHAP_BYTE_COST", 0.0),
        (treeshap, "FAST_SHAP_TREE_BYTES", 2_000), (treeshap, "FAST_SHAP_MAX_NODES", 30),
        (cache, "FOREST_CACHE_VERSION", cache.FOREST_CACHE_VERSION + 1),
    ]:
        with monkeypatch.context() as patch:
            patch.setattr(module, name, value)
            assert cache.forest_key(one) != key, name
    assert cache.forest_key(one) == key


def test_a_cached_forest_is_not_used_without_numba(fit, tmp_path, monkeypatch):
    booster = fit()
    cache.cached_forest(booster, tmp_path)
    assert _cache_file(tmp_path, booster).exists()
    booster._lgml_forest = False

    def no_numba():
        raise ImportError("numba")

    monkeypatch.setattr(treeshap, "compile_kernels", no_numba)
    with pytest.raises(ImportError):
        cache.cached_forest(booster, tmp_path)


def test_the_disk_cache_keeps_the_most_recently_used_models(fit, tmp_path, monkeypatch):
    import lightgbm as lgb

    monkeypatch.setattr(cache, "FOREST_CACHE_ENTRIES", 2)
    boosters = [fit(num_leaves=leaves) for leaves in (7, 11, 15)]
    paths = [_cache_file(tmp_path, b) for b in boosters]
    cache.cached_forest(boosters[0], tmp_path)
    cache.cached_forest(boosters[1], tmp_path)
    os.utime(paths[0], (1, 1))  # long unused ...
    os.utime(paths[1], (2, 2))
    cache.cached_forest(lgb.Booster(model_str=boosters[0].model_to_string()), tmp_path)  # ... until loaded again
    cache.cached_forest(boosters[2], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([paths[0].name, paths[2].name])
