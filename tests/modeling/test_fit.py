"""LightGBM fitting: tuning and the level-adjustment rounds."""

import pandas as pd


def test_level_rounds_split_only_on_province(designation_bundle):
    from lgml.modeling.fit import split_features

    b = designation_bundle
    meta = b.metadata
    assert meta["best_iteration"] < meta["n_trees"] <= meta["best_iteration"] + 3
    assert split_features(b.booster, b.features, first_tree=meta["best_iteration"]) == {"province"}
    assert isinstance(b.context, pd.DataFrame) and set(b.context["kind"]) == {"province", "sector"}


def test_optuna_tuning_runs_and_is_recorded(designation_data):
    from lgml.modeling.fit import fit_model
    from lgml.modeling.matrix import feature_levels

    cfg, data = designation_data
    cfg = cfg.model_copy(update={"tuning": cfg.tuning.model_copy(update={"n_trials": 2})})
    fit = fit_model(data, cfg, feature_levels(data.features))
    assert fit.tuning["n_trials"] == 2 and set(fit.tuning["best_params"]) >= {"num_leaves", "min_child_samples"}
    assert fit.params["num_leaves"] == fit.tuning["best_params"]["num_leaves"]
