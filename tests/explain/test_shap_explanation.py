"""lgml's contributions as a shap.Explanation: the same numbers as contributions(), additive to
the raw score (level adjustment included), equal to shap.TreeExplainer's, plottable, and grouped
per dimension."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

shap = pytest.importorskip("shap")

from lgml.explain import by_dimension, shap_explanation  # noqa: E402
from lgml.explain.contributions import FAST_SHAP_MIN_ROWS, contributions, group_contributions  # noqa: E402
from lgml.vocabulary import DIMENSIONS  # noqa: E402

LEVEL_ADJUSTED_CONFIG = """
task: designation
name: test-level-adjusted
seed: 5
data: {{simulate: {{firms: 3000, seed: 11}}}}
split: {{train_until: 2022, valid: [2023], test: [2024, 2025]}}
lightgbm: {{num_threads: 1, num_boost_round: 20, learning_rate: 0.2, num_leaves: 7, min_child_samples: 40,
            early_stopping_rounds: 10}}
level_adjust: {{by: province, rounds: 3, min_child_samples: 20}}
calibration: isotonic
gates: {{beat_rules: false}}
mlflow: {{enabled: false}}
models_dir: '{models}'
"""


@pytest.fixture(scope="module")
def expl(bundle, candidates):
    assert len(candidates) >= FAST_SHAP_MIN_ROWS  # the compiled kernels, not pred_contrib
    return shap_explanation(bundle, candidates)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_the_explanation_holds_lgml_contributions(bundle, candidates, expl):
    contrib, base = contributions(bundle, candidates)
    n, k = len(candidates), len(bundle.features)
    assert isinstance(expl, shap.Explanation)
    assert expl.values.shape == (n, k) and expl.base_values.shape == (n,) and expl.data.shape == (n, k)
    assert list(expl.feature_names) == bundle.features
    np.testing.assert_array_equal(expl.values, contrib.to_numpy())
    np.testing.assert_array_equal(expl.base_values, base)
    assert np.ptp(expl.base_values) == 0  # one expected value for every row
    np.testing.assert_array_equal(expl.data, bundle.model_matrix(candidates))


def test_data_are_codes_and_display_data_the_levels(bundle, candidates, expl):
    levels = bundle.categorical_levels
    assert levels, "the test bundle should have a categorical input"
    for name, names in levels.items():
        j = bundle.features.index(name)
        codes, shown = expl.data[:, j], expl.display_data[:, j]
        known = ~np.isnan(codes)
        assert known.any()
        assert list(shown[known]) == [names[int(c)] for c in codes[known]]
        assert list(shown[known]) == candidates[name].astype(str).to_numpy()[known].tolist()
    numeric = [j for j, f in enumerate(bundle.features) if f not in levels]
    np.testing.assert_array_equal(expl.display_data[:, numeric].astype(float), expl.data[:, numeric])


def test_display_data_is_left_out_on_request_and_for_large_tables(bundle, candidates, monkeypatch):
    from lgml.explain import shap_values

    rows = candidates.head(50)
    assert shap_explanation(bundle, rows, display_data=False).display_data is None
    monkeypatch.setattr(shap_values, "DISPLAY_MAX_VALUES", 49 * len(bundle.features))
    assert shap_explanation(bundle, rows).display_data is None
    shown = shap_explanation(bundle, rows, display_data=True)
    assert shown.display_data.shape == (50, len(bundle.features))


def test_values_and_base_add_up_to_the_raw_score(bundle, candidates, expl):
    total = expl.values.sum(axis=1) + expl.base_values
    np.testing.assert_allclose(total, bundle.predict_raw(candidates), rtol=0, atol=1e-6)
    raw = bundle.booster.predict(bundle.prepare(candidates), raw_score=True)
    np.testing.assert_allclose(total, raw, rtol=0, atol=1e-6)
    assert np.abs(total).max() > 1  # log-odds, not probabilities


def test_the_explanation_equals_shap_tree_explainer(bundle, candidates, expl):
    explainer = shap.TreeExplainer(bundle.booster)
    reference = explainer(bundle.prepare(candidates))
    assert reference.values.shape == expl.values.shape
    assert np.max(np.abs(expl.values - reference.values)) < 1e-9
    assert np.max(np.abs(expl.base_values - reference.base_values)) < 1e-9
    np.testing.assert_allclose(expl.base_values, explainer.expected_value, rtol=0, atol=1e-9)


def test_a_level_adjusted_bundle_explains_its_offsets_on_the_level_feature(small_sim, context, tmp_path_factory):
    from lgml.config import TrainConfig
    from lgml.features import build_features
    from lgml.modeling.bundle import load_bundle
    from lgml.modeling.dataset import Source
    from lgml.modeling.train import train_from_config

    config = TrainConfig.from_yaml(LEVEL_ADJUSTED_CONFIG.format(models=tmp_path_factory.mktemp("level").as_posix()))
    adjusted = load_bundle(train_from_config(config, source=Source(small_sim.panel, small_sim.events, small_sim.truth)).bundle_path)
    n_model = adjusted.metadata["best_iteration"]
    assert adjusted.metadata["level_adjust"]["by"] == "province" and adjusted.booster.num_trees() > n_model
    rows = build_features(small_sim.panel, small_sim.events, context).sample(n=400, random_state=1)
    e = shap_explanation(adjusted, rows)
    np.testing.assert_allclose(e.values.sum(axis=1) + e.base_values, adjusted.predict_raw(rows), rtol=0, atol=1e-6)
    reference = shap.TreeExplainer(adjusted.booster)(adjusted.prepare(rows))
    assert np.max(np.abs(e.values - reference.values)) < 1e-9
    # the level trees add to the province column only
    before = adjusted.booster.predict(adjusted.prepare(rows), pred_contrib=True, num_iteration=n_model)
    moved = np.abs(e.values - before[:, :-1]).max(axis=0)
    j = adjusted.features.index("province")
    assert moved[j] > 1e-3
    assert np.delete(moved, j).max() < 1e-9


def test_waterfall_and_beeswarm_draw_it(expl):
    ax = shap.plots.waterfall(expl[0], show=False)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert any(" = " in t for t in labels)  # feature = value, from display_data
    plt.close("all")
    shap.plots.beeswarm(expl, show=False)
    assert len(plt.gcf().axes[0].get_yticklabels()) == 10  # nine features and the rest
    plt.close("all")
    shap.plots.bar(expl, show=False)
    plt.close("all")
    shap.plots.scatter(expl[:, "province"], show=False)  # a categorical: its levels on the x axis
    ticks = {t.get_text() for t in plt.gcf().axes[0].get_xticklabels()}
    assert ticks & set(levels_shown(expl, "province"))


def levels_shown(expl, name: str) -> list[str]:
    j = list(expl.feature_names).index(name)
    return [v for v in expl.display_data[:, j] if isinstance(v, str)]


def test_the_dimension_explanation_sums_the_features(expl):
    dims = by_dimension(expl)
    contrib = pd.DataFrame(expl.values, columns=expl.feature_names)
    expected = group_contributions(contrib)
    assert list(dims.feature_names) == list(expected.columns)
    assert list(dims.feature_names)[:len(DIMENSIONS)] == list(DIMENSIONS)
    np.testing.assert_allclose(dims.values, expected.to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(dims.base_values, expl.base_values)
    np.testing.assert_allclose(dims.values.sum(axis=1), expl.values.sum(axis=1), rtol=0, atol=1e-9)
    one = by_dimension(expl[3])
    assert one.values.shape == (len(dims.feature_names),)
    np.testing.assert_allclose(one.values, dims.values[3], rtol=0, atol=1e-12)
    shap.plots.bar(dims, show=False)
    shap.plots.beeswarm(dims, show=False)
    shap.plots.waterfall(one, show=False)


def test_custom_groups_and_bad_input(expl):
    first = expl.feature_names[0]
    dims = by_dimension(expl, {first: "mine"})
    assert dims.feature_names[-2:] == ["other", "mine"]
    np.testing.assert_allclose(dims.values[:, -1], expl.values[:, 0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="feature names"):
        by_dimension(shap.Explanation(values=np.zeros((2, 3))))


def test_importing_lgml_explain_does_not_import_shap():
    import subprocess
    import sys

    code = "import sys, lgml.explain; print('shap' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
