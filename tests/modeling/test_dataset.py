"""The modelling dataset: task rows and the out-of-time split."""

import pandas as pd


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
