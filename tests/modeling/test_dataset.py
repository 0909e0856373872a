"""The modelling dataset: task rows and the out-of-time split."""

import pandas as pd
import pytest


def test_split_has_no_leakage(designation_data):
    cfg, data = designation_data
    sets = data.sets
    years = {name: set(frame["batch_year"]) for name, frame in sets.items()}
    assert max(years["train"]) <= cfg.split.train_until
    assert years["valid"] == set(cfg.split.valid) and years["test"] == set(cfg.split.test)
    assert not (years["train"] & years["valid"] or years["train"] & years["test"] or years["valid"] & years["test"])
    keys = pd.concat([f[["firm_id", "year"]] for f in sets.values()])
    assert not keys.duplicated().any()
    for frame in sets.values():
        assert frame["target"].notna().all() and set(frame["target"].unique()) == {0.0, 1.0}
        assert not frame["holds_title"].any()  # title holders are never candidates
        assert frame["oracle"].notna().all()
    assert "target" not in data.features and "designated_next" not in data.features


def test_criteria_features_pick_margins_or_per_regime(designation_data, small_sim):
    from lgml.config import TrainConfig
    from lgml.features import MARGIN_FEATURES, PER_REGIME_FEATURES
    from lgml.modeling.dataset import Source, model_data

    cfg, data = designation_data
    assert cfg.criteria_features == "margins"
    assert set(MARGIN_FEATURES) | {"n_failed"} <= set(data.features)
    assert not set(PER_REGIME_FEATURES) & set(data.features)
    per_regime = cfg.model_copy(update={"criteria_features": "per_regime"})
    other = model_data(Source(small_sim.panel, small_sim.events, small_sim.truth), per_regime)
    assert set(PER_REGIME_FEATURES) <= set(other.features) and "n_failed" not in other.features
    assert not set(MARGIN_FEATURES) & set(other.features)
    # Every other feature is shared, in the same order.
    shared = [f for f in data.features if f not in set(MARGIN_FEATURES) | {"n_failed"}]
    assert shared == [f for f in other.features if f not in set(PER_REGIME_FEATURES)]
    with pytest.raises(ValueError, match="criteria_features"):
        TrainConfig.from_yaml(cfg.to_yaml().replace("criteria_features: margins", "criteria_features: both"))


def test_bundle_records_its_batches_and_criteria_features(designation_bundle):
    meta = designation_bundle.metadata
    assert meta["criteria_features"] == "margins"
    train = meta["batches"]["train"]  # the batches with labels (the events' span) up to train_until
    assert train == list(range(train[0], 2024)) and 2019 <= train[0] <= 2020
    assert meta["batches"]["valid"] == [2024] and meta["batches"]["test"] == [2025]
