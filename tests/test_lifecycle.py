"""The title lifecycle: horizon-h designation targets, their censoring and purge, the re-review
target, the simulator's re-review truth and the review model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lgml import criteria, published
from lgml import features as F
from lgml import simulate as sim_mod
from lgml.modeling import dataset


def train_tiny(sim, config_text: str, folder):
    """Train ``config_text`` (``{models}`` filled with ``folder``) on the simulated panel ``sim``."""
    from lgml.config import TrainConfig
    from lgml.modeling.train import train_from_config

    config = TrainConfig.from_yaml(config_text.format(models=folder.as_posix()))
    return train_from_config(config, source=dataset.Source(sim.panel, sim.events, sim.truth)).bundle_path


def _events(*rows):
    return pd.DataFrame(rows, columns=["firm_id", "batch_year", "revoked_year"]).astype(
        {"firm_id": "str", "batch_year": "int64", "revoked_year": "float64"})


# Events span batches 2019-2024 (the last known batch is 2024).
EVENTS = _events(
    ("edge", 2023, np.nan),        # designated at the far edge of a 3-batch window from 2021
    ("lost", 2019, 2022),          # lost its title at the 2022 re-review, designated again in 2024
    ("lost", 2024, np.nan),
    ("gap", 2021, np.nan),         # no panel row for 2020 (the year before its batch)
    ("twice", 2019, np.nan),       # passed its 2022 review; second review in 2025 (not known yet)
    ("brief", 2021, 2022),         # won and lost inside one window (lost outside a review year)
    ("late", 2024, np.nan),
)
PANEL_ROWS = {  # fiscal years with a panel row
    "edge": range(2018, 2025), "lost": range(2018, 2025), "gap": [2018, 2019, 2021, 2022, 2023],
    "twice": range(2018, 2025), "brief": range(2018, 2025), "late": range(2018, 2025), "never": range(2016, 2025),
}


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    panel = pd.DataFrame([(f, y) for f, years in PANEL_ROWS.items() for y in years], columns=["firm_id", "year"])
    titles = F.title_history(panel, EVENTS)
    table = panel.assign(batch_year=panel["year"] + 1, holds_title=titles["holds_title"])
    for h in (1, 2, 3):
        table[f"h{h}"] = F.designated_within(table, EVENTS, h)
    return pd.concat([table, F.review_columns(table, titles, EVENTS, True)], axis=1).set_index(["firm_id", "year"])


def _at(history, firm, year, col):
    return history.loc[(firm, year), col]


def test_window_includes_its_last_batch_and_nothing_after(history):
    # Batch 2023 is the third batch after fiscal 2020 (2021, 2022, 2023) but the fourth after 2019.
    assert [_at(history, "edge", 2020, f"h{h}") for h in (1, 2, 3)] == [0.0, 0.0, 1.0]
    assert [_at(history, "edge", 2019, f"h{h}") for h in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert [_at(history, "edge", 2022, f"h{h}") for h in (1, 2)] == [1.0, 1.0]
    assert np.isnan(_at(history, "edge", 2023, "h1"))  # holds the title: not a candidate


def test_revoked_firms_are_candidates_again_and_a_lost_title_still_counts(history):
    # "lost" holds its 2019 title through fiscal 2021, loses it in 2022, wins again in 2024.
    assert all(np.isnan(_at(history, "lost", y, "h1")) for y in (2019, 2020, 2021))
    assert [_at(history, "lost", 2022, f"h{h}") for h in (1, 2)] == [0.0, 1.0]
    assert _at(history, "lost", 2023, "h1") == 1.0
    # "brief" won in 2021 and lost the title in 2022: designated within the window all the same.
    assert [_at(history, "brief", 2019, f"h{h}") for h in (1, 2, 3)] == [0.0, 1.0, 1.0]
    assert _at(history, "brief", 2022, "h1") == 0.0  # a candidate again after losing it


def test_missing_panel_years_do_not_hide_a_designation(history):
    assert ("gap", 2020) not in history.index
    assert [_at(history, "gap", 2019, f"h{h}") for h in (1, 2, 3)] == [0.0, 1.0, 1.0]
    assert _at(history, "gap", 2018, "h3") == 1.0


def test_windows_past_the_last_known_batch_are_censored_not_negative(history):
    never = history.loc["never"]
    # Batches 2019-2024 are known: fiscal t is labelled at horizon h while t + h <= 2024 (and
    # from 2018 on: a window starting before batch 2019 is not labelled either).
    for h in (1, 2, 3):
        labelled = never.index[never[f"h{h}"].notna()].tolist()
        assert labelled == list(range(2018, 2024 - h + 1)), h
        assert (never[f"h{h}"].dropna() == 0).all()


def test_horizons_are_nested(history):
    labelled = history.dropna(subset=["h1", "h2", "h3"])
    assert len(labelled) > 10
    assert (labelled["h1"] <= labelled["h2"]).all() and (labelled["h2"] <= labelled["h3"]).all()


def test_horizons_are_nested_on_a_simulated_panel(small_sim):
    table = F.build_features(small_sim.panel, small_sim.events)
    y = pd.DataFrame({h: F.designated_within(table, small_sim.events, h) for h in (1, 2, 3)}).dropna()
    assert len(y) > 1000 and y[3].sum() > y[1].sum() > 0
    assert (y[1] <= y[2]).all() and (y[2] <= y[3]).all()
    pd.testing.assert_series_equal(F.designated_within(table, small_sim.events, 1), table["designated_next"],
                                   check_names=False)


def test_review_target_follows_the_three_year_schedule(history):
    due = history[history["review_due"]]
    assert sorted(due.index.tolist()) == [("gap", 2023), ("lost", 2021), ("twice", 2021), ("twice", 2024)]
    assert _at(history, "gap", 2023, "review_passed") == 1.0  # the 2021 title kept at the 2024 review
    # 2019 titles come to review in batch 2022 (fiscal 2021): "twice" passes, "lost" fails.
    assert _at(history, "twice", 2021, "review_due") and _at(history, "twice", 2021, "review_passed") == 1.0
    assert _at(history, "twice", 2021, "review_round") == 1.0
    assert _at(history, "lost", 2021, "review_due") and _at(history, "lost", 2021, "review_passed") == 0.0
    # The second review of "twice" (batch 2025) is past the last known batch: due, outcome unknown.
    assert _at(history, "twice", 2024, "review_due") and _at(history, "twice", 2024, "review_round") == 2.0
    assert np.isnan(_at(history, "twice", 2024, "review_passed"))
    # Not due in other years; "brief" lost its 2021 title before any review.
    assert not _at(history, "twice", 2022, "review_due") and np.isnan(_at(history, "twice", 2022, "review_passed"))
    assert not history.loc["brief", "review_due"].any()
    assert _at(history, "twice", 2022, "title_years") == 4.0 and np.isnan(_at(history, "never", 2022, "title_years"))


def test_every_simulated_revocation_is_a_failed_review_row(small_sim):
    table = F.build_features(small_sim.panel, small_sim.events)
    rows = table[table["review_due"]]
    assert rows["review_passed"].notna().sum() > 20
    failed = rows.loc[rows["review_passed"] == 0, ["firm_id", "batch_year"]]
    lost = small_sim.events.dropna(subset=["revoked_year"])
    keys = set(zip(lost["firm_id"], lost["revoked_year"].astype(int)))
    assert set(zip(failed["firm_id"], failed["batch_year"])) <= keys
    assert len(failed) >= 0.9 * len(keys)  # the rest lack a panel row the year before
    truth = small_sim.truth.dropna(subset=["p_review_pass"])
    assert set(zip(truth["firm_id"], truth["year"])) == set(zip(rows["firm_id"], rows["year"]))


@pytest.mark.parametrize("year", [2022, 2024, 2025])
def test_review_truth_is_recomputed_from_what_is_observable_at_t(small_sim, year):
    """The true probability of passing the re-review of batch year + 1 follows from the panel up
    to ``year`` and the events known by then alone."""
    from lgml.inputs import criteria_inputs

    panel = small_sim.panel[small_sim.panel["year"] <= year]
    events = small_sim.events[small_sim.events["batch_year"] <= year].copy()
    events.loc[events["revoked_year"] > year, "revoked_year"] = np.nan  # not yet known at t
    inputs = criteria_inputs(panel)
    last = (inputs["year"] == year).to_numpy()
    rows = panel[last].reset_index(drop=True)
    inputs = inputs[last].reset_index(drop=True)
    inputs = pd.concat([inputs, rows.drop(columns=[c for c in rows.columns if c in inputs]),
                        criteria.srdi_score(inputs)], axis=1)
    review = year + 1
    held = events[events["revoked_year"].isna()].drop_duplicates("firm_id", keep="last").set_index("firm_id")
    cohort = rows["firm_id"].map(held["batch_year"]).to_numpy(dtype=float)
    due = ((review - cohort) % 3 == 0) & (review > cohort)
    checked = criteria.check(inputs, review)
    strength = 1.8 * checked["eligible"].to_numpy() + 0.25 * (checked["n_met"] - checked["n_criteria"]).to_numpy()
    rates = {int(k.split("->")[0]): v for k, v in published.PUBLISHED["review_pass_rate"].items()
             if int(k.split("->")[1]) == review}
    expected = np.full(len(rows), np.nan)
    for c in np.unique(cohort[due]):
        sel = due & (cohort == c)
        a = sim_mod.solve_intercepts(strength[sel], np.zeros(sel.sum(), int), np.array([rates.get(int(c), 0.87) * sel.sum()]))
        expected[sel] = 1 / (1 + np.exp(-(a[0] + strength[sel])))
    truth = small_sim.truth[small_sim.truth["year"] == year].reset_index(drop=True)
    assert truth["firm_id"].equals(rows["firm_id"]) and due.sum() > 5
    np.testing.assert_allclose(truth["p_review_pass"], expected, atol=1e-9)


def test_purge_drops_rows_whose_window_reaches_the_test_batches():
    frame = lambda years: pd.DataFrame({"batch_year": years, "target": [0.0, 1.0] * (len(years) // 2)})  # noqa: E731
    sets = {"train": frame([2020, 2021, 2022, 2023]), "valid": frame([2022, 2023]), "test": frame([2025, 2025])}
    out, dropped = dataset.purge_overlap(sets, 3)
    assert out["train"]["batch_year"].tolist() == [2020, 2021, 2022]
    assert out["valid"]["batch_year"].tolist() == [2022] and dropped == 2
    assert out["test"].equals(sets["test"])
    same, none = dataset.purge_overlap(sets, 1)
    assert none == 0 and same["train"].equals(sets["train"])


def test_a_split_emptied_by_the_purge_names_the_horizon(small_sim):
    from lgml.config import TrainConfig

    config = TrainConfig.from_yaml("task: designation\nname: h3\nhorizon: 3\ndata: {simulate: {firms: 3000}}\n"
                                   "split: {train_until: 2022, valid: [2024], test: [2025]}\n")
    source = dataset.Source(small_sim.panel, small_sim.events, small_sim.truth)
    with pytest.raises(dataset.SplitError, match=r"split 'valid' has no labelled rows.*horizon 3"):
        dataset.model_data(source, config)


def test_horizon_is_a_designation_setting():
    from lgml.config import ConfigError, TrainConfig

    base = "name: x\ndata: {simulate: {firms: 3000}}\nsplit: {train_until: 2022, valid: [2023], test: [2024]}\n"
    with pytest.raises(ConfigError, match="horizon applies to task 'designation', not 'review'"):
        TrainConfig.from_yaml("task: review\nhorizon: 2\n" + base)
    with pytest.raises(ConfigError, match="horizon"):
        TrainConfig.from_yaml("task: designation\nhorizon: 4\n" + base)


REVIEW_CONFIG = """
task: review
name: tiny-review
seed: 3
data: {{simulate: {{firms: 12000, seed: 5}}}}
split: {{train_until: 2024, valid: [2025], test: [2026, 2027]}}
lightgbm: {{learning_rate: 0.1, num_leaves: 3, min_child_samples: 10, num_boost_round: 40,
           early_stopping_rounds: 20, num_threads: 1}}
calibration: platt
gates: {{beat_rules: false}}
mlflow: {{enabled: false}}
models_dir: {models}
"""


def test_review_model_trains_on_holders_due_with_its_baselines(tmp_path):
    from lgml.modeling.bundle import load_bundle

    sim = sim_mod.simulate(12_000, seed=5)
    bundle = load_bundle(train_tiny(sim, REVIEW_CONFIG, tmp_path))
    meta, evaluation = bundle.metadata, bundle.evaluation
    assert bundle.task == "review" and bundle.horizon == 1 and "title_years" in bundle.features
    assert meta["calibration"] == "platt" and "re-review" in meta["rows_scored"]
    scorers = evaluation["populations"]["all"]
    assert {"model", "rules", "cohort", "logistic", "oracle"} <= set(scorers)
    table = F.build_features(sim.panel, sim.events)
    test = table[table["review_passed"].notna() & table["batch_year"].isin([2026, 2027])]
    assert scorers["model"]["n"] == len(test) and scorers["model"]["n_pos"] == int(test["review_passed"].sum())
    # The cohort baseline is the latest published pass rate for reviews without one of their own.
    assert scorers["cohort"]["mean_p"] == pytest.approx(0.87)
    # The model's probabilities of each review are levelled to that rate too.
    assert evaluation["pass_rate"]["rate"] == 0.87 and meta["pass_rate"]["rate"] == 0.87
    assert scorers["model"]["mean_p"] == pytest.approx(0.87, abs=0.01)
    p = bundle.predict(test)
    assert p.shape == (len(test),) and np.all((p > 0) & (p < 1))


H3_CONFIG = """
task: designation
horizon: 3
name: tiny-h3
seed: 5
data: {{simulate: {{firms: 3000, seed: 11}}}}
split: {{train_until: 2021, valid: [2022], test: [2025]}}
lightgbm: {{num_threads: 1, num_boost_round: 30, learning_rate: 0.1, num_leaves: 7, min_child_samples: 40,
            early_stopping_rounds: 10}}
calibration: platt
gates: {{beat_rules: false}}
mlflow: {{enabled: false}}
models_dir: '{models}'
"""


def test_horizon_model_learns_the_window_target_and_says_so(small_sim, tmp_path):
    from lgml.modeling.bundle import load_bundle
    from lgml.report import card
    from lgml.tracking import output_columns

    bundle = load_bundle(train_tiny(small_sim, H3_CONFIG, tmp_path))
    meta, evaluation = bundle.metadata, bundle.evaluation
    assert bundle.horizon == 3 and evaluation["horizon"] == 3 and "next 3 batches" in meta["target"]
    table = F.build_features(small_sim.panel, small_sim.events)
    window = F.designated_within(table, small_sim.events, 3)
    test = window[table["batch_year"] == 2025]
    model = evaluation["populations"]["all"]["model"]
    assert model["n"] == test.notna().sum() and model["n_pos"] == int(test.sum())
    assert model["n_pos"] > int(table.loc[table["batch_year"] == 2025, "designated_next"].sum())
    assert "oracle" not in evaluation["populations"]["all"]  # the truth is one batch ahead only
    assert output_columns(bundle) == ["p_designation_h3"]
    line = card.headline(evaluation["gains"], horizon=3)["text"]
    assert line.startswith("Of the ") and "for batches 2025-2027" in line and "designated within them" in line


def test_each_review_is_levelled_to_its_pass_rate_and_keeps_its_ranks():
    from lgml.modeling.calibrate import shift_to_rate

    rng = np.random.default_rng(0)
    p = rng.uniform(0.3, 0.95, 100)
    p[7] = np.nan
    groups = np.r_[np.full(60, 202600.0), np.full(30, 202703.0), np.full(10, 202706.0)]
    out, shifts = shift_to_rate(p, groups, 0.87)
    for g in (202600.0, 202703.0):
        rows = (groups == g) & np.isfinite(p)
        assert out[rows].mean() == pytest.approx(0.87, abs=1e-6)
        assert (np.argsort(out[rows]) == np.argsort(p[rows])).all()
        assert shifts[g] > 0  # these draws average below 87%
    small = groups == 202706.0
    assert shifts[202706.0] is None and np.array_equal(out[small], p[small])  # too few holders to level
    assert np.isnan(out[7])
    with pytest.raises(ValueError, match="pass rate must be strictly between 0 and 1"):
        shift_to_rate(p, groups, 1.0)


def test_pass_rate_is_a_review_setting():
    from lgml.config import ConfigError, TrainConfig
    from lgml.modeling.train import review_pass_rate

    base = "name: x\ndata: {simulate: {firms: 3000}}\nsplit: {train_until: 2022, valid: [2023], test: [2024]}\n"
    assert review_pass_rate(TrainConfig.from_yaml("task: review\n" + base)) == {
        "rate": 0.87, "source": "the latest published re-review pass rate (2025 review, 87%)"}
    assert review_pass_rate(TrainConfig.from_yaml("task: review\npass_rate: 0.8\n" + base))["rate"] == 0.8
    assert review_pass_rate(TrainConfig.from_yaml("task: review\npass_rate: calibrated\n" + base)) is None
    with pytest.raises(ConfigError, match="pass_rate applies to task 'review', not 'designation'"):
        TrainConfig.from_yaml("task: designation\npass_rate: 0.8\n" + base)
