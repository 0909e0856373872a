import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml import published, simulate as sim_mod
from lgml.cli import app
from lgml.schema import PANEL_NAMES, dtype_of, PANEL_COLUMNS
from lgml.validate import check_events, check_panel


def test_same_seed_same_tables_and_other_seed_differs():
    a, b, c = sim_mod.simulate(500, seed=5), sim_mod.simulate(500, seed=5), sim_mod.simulate(500, seed=6)
    for name in ("panel", "events", "truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert not a.panel["revenue"].equals(c.panel["revenue"])


def test_rejects_tiny_universe():
    with pytest.raises(ValueError, match="at least 100"):
        sim_mod.simulate(10)


def test_panel_and_events_keep_the_contract(small_sim):
    panel, events = small_sim.panel, small_sim.events
    assert list(panel.columns) == list(PANEL_NAMES)
    assert {c.name: str(dtype_of(c)) for c in PANEL_COLUMNS} == panel.dtypes.astype(str).to_dict()
    assert check_panel(panel) == []
    assert check_events(events, panel=panel) == []
    assert panel["year"].min() == 2016 and panel["year"].max() == 2026
    assert set(events["batch_year"]) == set(range(2019, 2028))


def test_messy_like_real_data(small_sim):
    missing = small_sim.panel[["rd_expense", "niche_market_share", "digital_level"]].isna().mean()
    assert (missing > 0.02).all() and (missing < 0.4).all()
    # Firms founded during the panel enter in their founding year.
    first = small_sim.panel.groupby("firm_id")["year"].min()
    assert (first > 2016).any()


def test_truth_covers_every_firm_year_and_is_a_probability(small_sim):
    truth, panel = small_sim.truth, small_sim.panel
    assert len(truth) == len(panel)
    assert truth[["firm_id", "year"]].equals(panel[["firm_id", "year"]])
    assert truth["p_designation"].between(0, 1).all()
    # No batch follows fiscal years 2016-2017.
    assert (truth.loc[truth["year"] < 2018, "p_designation"] == 0).all()


def test_title_holders_have_zero_probability(small_sim):
    ev, truth = small_sim.events, small_sim.truth
    held_2022 = set(published.titles_held(ev, 2022))
    rows = truth[(truth["year"] == 2022) & truth["firm_id"].isin(held_2022)]
    assert len(rows) > 0 and (rows["p_designation"] == 0).all()


def test_true_probabilities_match_drawn_counts(calib_sim):
    truth, ev = calib_sim.truth, calib_sim.events
    for batch, count in ev["batch_year"].value_counts().items():
        expected = truth.loc[truth["year"] == batch - 1, "p_designation"].sum()
        assert abs(count - expected) < 4 * np.sqrt(expected), (batch, count, expected)


def test_calibration_targets_within_tolerance(calib_sim):
    report = published.calibration_report(calib_sim)
    bad = report[~report["ok"]]
    assert bad.empty, "\n" + bad.to_string()
    assert len(report) >= 30


def test_oracle_auc_band(calib_sim):
    scores = published.oracle_scores(calib_sim)
    assert 0.85 <= scores["auc_pool"] <= 0.93
    assert scores["auc_all"] >= scores["auc_pool"]
    assert 0.20 <= scores["growth_r2"] <= 0.45


def test_solve_intercepts_hits_targets():
    rng = np.random.default_rng(0)
    eta = rng.normal(0, 1, 3000)
    group = rng.integers(0, 3, 3000)
    a = sim_mod.solve_intercepts(eta, group, np.array([10.0, 50.0, 0.0]))
    got = np.bincount(group, weights=1 / (1 + np.exp(-(a[group] + eta))), minlength=3)
    assert got[:2] == pytest.approx([10.0, 50.0], rel=1e-6)
    assert got[2] < 1e-6


def test_province_shares_sum_to_one():
    for batch in range(2019, 2028):
        shares = sim_mod.province_batch_shares(batch)
        assert shares.sum() == pytest.approx(1.0) and (shares >= 0).all()


def test_cli_writes_three_files_and_refuses_to_overwrite(tmp_path):
    runner = CliRunner()
    out = tmp_path / "sim"
    result = runner.invoke(app, ["simulate", "--firms", "400", "--seed", "1", "--out", str(out), "--report"])
    assert result.exit_code == 0, result.output
    for name in ("panel.parquet", "events.parquet", "truth.parquet"):
        assert (out / name).stat().st_size > 0
    assert "Calibration" in result.output and "oracle AUC" in result.output
    again = runner.invoke(app, ["simulate", "--firms", "400", "--out", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output
    panel = pd.read_parquet(out / "panel.parquet")
    assert panel["firm_id"].nunique() == 400


@pytest.mark.parametrize("year", [2021, 2024, 2025, 2026])
def test_truth_is_recomputed_from_what_is_observable_at_t(small_sim, year):
    """The true probability for batch year + 1 follows from the panel up to ``year`` and the
    events known by then alone: no later value enters the ceiling."""
    from lgml import criteria
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
    batch = year + 1
    eta = sim_mod.designation_logodds(inputs, criteria.check(inputs, batch), batch)
    candidate = ~rows["firm_id"].isin(published.titles_held(events, year)).to_numpy()
    prov = rows["province"].cat.codes.to_numpy()
    count = sim_mod.SIMULATED_BATCHES[batch] * small_sim.scale
    a = sim_mod.solve_intercepts(eta[candidate], prov[candidate], count * sim_mod.province_batch_shares(batch))
    expected = np.where(candidate, 1 / (1 + np.exp(-(a[prov] + eta))), 0.0)
    truth = small_sim.truth[small_sim.truth["year"] == year].reset_index(drop=True)
    assert truth["firm_id"].equals(rows["firm_id"])
    np.testing.assert_allclose(truth["p_designation"], expected, atol=1e-9)


def test_batches_2026_and_2027_follow_the_2026_rules(calib_sim):
    """Designated firms of the new batches meet the 2026 criteria several times as often as the
    rest of their pool, and the pool of fiscal 2025 holds firms with a score of 50-59."""
    from lgml import criteria

    for batch in (2026, 2027):
        won = calib_sim.events.loc[calib_sim.events["batch_year"] == batch, "firm_id"]
        judged = criteria.assess(calib_sim.panel, batch)
        in_pool = judged["firm_id"].isin(calib_sim.panel.loc[(calib_sim.panel["year"] == batch - 1)
                                                             & calib_sim.panel["srdi_provincial"], "firm_id"])
        designated = judged["firm_id"].isin(won)
        assert designated.sum() == len(won) > 0
        assert judged.loc[designated, "eligible"].mean() > 3 * judged.loc[in_pool & ~designated, "eligible"].mean()
        failed = judged["n_criteria"] - judged["n_met"]
        assert failed[designated].mean() < failed[in_pool & ~designated].mean() - 1, batch
    pool = calib_sim.panel[(calib_sim.panel["year"] == 2025) & calib_sim.panel["srdi_provincial"]]
    scores = criteria.judged_rows(pool, 2026)["score_total"]
    assert scores.between(50, 59).mean() > 0.02
    assert (published.ASSUMED_BATCHES.keys() == {2026, 2027}) and "assumptions" in published.PUBLISHED
