"""Model bundles: round trip, input checks, integrity, the prediction route and the stored
drift reference (on the bundle ``lgml train`` writes in conftest)."""

import shutil

import numpy as np
import pytest

from lgml.features import build_features
from lgml.modeling.bundle import BundleError, BundleInputError, load_bundle, sha256_file
from lgml.modeling.matrix import lightgbm_matrix, model_frame


def test_bundle_round_trip_gives_identical_predictions(designation_bundle, small_sim):
    table = build_features(small_sim.panel, small_sim.events)
    table = table[table["batch_year"] == 2025]
    b = designation_bundle
    raw = b.booster.predict(model_frame(table, b.features, b.categorical_levels), raw_score=True)
    np.testing.assert_array_equal(b.predict_raw(table), raw)
    p = b.predict(table)
    np.testing.assert_array_equal(p, b.calibrator.transform(raw))
    assert ((p >= 0) & (p <= 1)).all()
    # Column order and category order in the input do not matter.
    shuffled = table[table.columns[::-1]].assign(province=table["province"].astype(object))
    np.testing.assert_array_equal(b.predict(shuffled), p)
    again = load_bundle(b.path)
    np.testing.assert_array_equal(again.predict(table), p)
    assert b.metadata["model_sha256"] == sha256_file(b.path / "model.txt")
    assert b.features == b.metadata["features"] and b.task == "designation"


def test_bundle_rejects_missing_columns_and_unseen_levels(designation_bundle, small_sim):
    table = build_features(small_sim.panel, small_sim.events).head(40).copy()
    table["province"] = table["province"].astype(object)
    table.loc[table.index[:3], "province"] = "Atlantis"
    table["sector"] = table["sector"].astype(object)
    table.loc[table.index[:5], "sector"] = "6"  # unpadded code: not a level
    with pytest.raises(BundleInputError) as err:
        designation_bundle.prepare(table.drop(columns=["rd_intensity", "score_total"]))
    message = str(err.value)
    assert "missing column(s) (2): rd_intensity, score_total" in message
    assert "province: 3 row(s) with unseen level(s) 'Atlantis' x3" in message
    assert "sector: 5 row(s) with unseen level(s) '6' x5" in message
    with pytest.raises(BundleInputError, match=r"revenue: 1 row\(s\) not numeric"):
        designation_bundle.prepare(table.assign(revenue=["n/a"] + [1.0] * 39, province="Beijing", sector="34"))


def test_altered_bundle_is_refused(designation_bundle, tmp_path):
    copy = shutil.copytree(designation_bundle.path, tmp_path / "copy")
    with open(copy / "model.txt", "a") as fh:
        fh.write("\n")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(copy)


def test_bundle_predicts_from_a_row_major_matrix_like_lightgbm_from_the_frame(designation_bundle, small_sim):
    """bundle.predict_raw feeds LightGBM a C-ordered float matrix; the values equal LightGBM's
    own pandas route (categories mapped to the model's levels, unknown ones missing)."""
    table = build_features(small_sim.panel, small_sim.events).sample(n=2000, random_state=0)
    table.loc[table.index[:50], "ownership"] = np.nan
    X = designation_bundle.prepare(table)
    matrix = lightgbm_matrix(X, designation_bundle.booster.pandas_categorical)
    assert matrix.flags["C_CONTIGUOUS"] and matrix.shape == X.shape
    assert np.isnan(matrix[:50, X.columns.get_loc("ownership")]).all()
    expected = designation_bundle.booster.predict(X, raw_score=True)
    np.testing.assert_array_equal(designation_bundle.predict_raw(table), expected)


def test_bundle_predictions_come_from_the_compiled_kernel_and_equal_lightgbm(designation_bundle, small_sim,
                                                                             monkeypatch):
    """Large tables are predicted by lgml.kernels.forest; the values are LightGBM's, bit for bit."""
    from lgml.kernels import forest

    table = build_features(small_sim.panel, small_sim.events).sample(n=3000, random_state=1)
    calls = []
    kernel = forest.predict_forest
    monkeypatch.setattr(forest, "predict_forest", lambda f, m: calls.append(len(m)) or kernel(f, m))
    matrix = designation_bundle.model_matrix(table)
    raw = designation_bundle.raw_from_matrix(matrix)
    assert calls == [3000]
    np.testing.assert_array_equal(raw, designation_bundle.booster.predict(matrix, raw_score=True))
    np.testing.assert_array_equal(designation_bundle.predict_raw(table), raw)
