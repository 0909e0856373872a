import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml import features as F
from lgml.cli import app
from lgml.concepts import NOT_REQUIRED
from lgml.schema import PROVINCE_LEVELS
from lgml.vocabulary import DIMENSIONS, FEATURE_DIMENSIONS


@pytest.fixture(scope="module")
def table(small_sim):
    return F.build_features(small_sim.panel, small_sim.events)


def test_one_row_per_firm_year_with_keys(table, small_sim):
    assert len(table) == len(small_sim.panel)
    assert not table.duplicated(["firm_id", "year"]).any()
    assert (table["batch_year"] == table["year"] + 1).all()


def test_group_map_covers_every_feature(table):
    margins, per_regime = F.feature_columns(table), F.feature_columns(table, "per_regime")
    assert set(margins) | set(per_regime) == set(FEATURE_DIMENSIONS)
    assert set(margins) ^ set(per_regime) == {*F.MARGIN_FEATURES, "n_failed", *F.PER_REGIME_FEATURES}
    assert set(FEATURE_DIMENSIONS.values()) <= set(DIMENSIONS)
    # Every model input is a feature with a group; keys, flags and targets are not.
    others = set(table.columns) - set(FEATURE_DIMENSIONS)
    assert others == {*F.KEYS, *F.FLAGS, *F.TARGETS, *F.REVIEW_FEATURES}
    with pytest.raises(ValueError, match="criteria_features"):
        F.feature_columns(table, "both")


def test_no_model_feature_is_entirely_missing_in_any_labelled_batch(table):
    features = F.feature_columns(table)
    labelled = table.dropna(subset=["designated_next"])
    assert set(labelled["batch_year"]) == set(range(2019, 2028))
    for batch, rows in labelled.groupby("batch_year"):
        empty = [f for f in features if rows[f].isna().all()]
        assert not empty, (batch, empty)
    # The per-regime set, by construction, leaves each regime's criteria empty in the others.
    rows_2026 = labelled[labelled["batch_year"] == 2026]
    assert rows_2026["pass_rd_band"].isna().all() and labelled.loc[labelled["batch_year"] < 2026, "pass_revenue"].isna().all()


def test_margins_follow_the_regime_of_each_rows_batch(table):
    rows = table[table["year"].isin([2024, 2025])]
    old, new = rows[rows["batch_year"] == 2025], rows[rows["batch_year"] == 2026]
    # The 2026 rules ask for revenue >= 50M and a development score; the 2022 rules do not.
    assert (old["margin_revenue"] == NOT_REQUIRED).all() and (old["met_revenue"] == 1).all()
    assert (new["margin_revenue"] < NOT_REQUIRED).all()
    np.testing.assert_allclose(new["margin_revenue"], np.log(new["revenue"] / 50e6), atol=1e-12)
    np.testing.assert_allclose(new["margin_development_score"], new["score_total"] - 60)
    np.testing.assert_allclose(old["margin_mb_share"].dropna(), old["mb_share"].dropna() - 0.70, atol=1e-12)
    np.testing.assert_allclose(new["margin_mb_share"].dropna(), new["mb_share"].dropna() - 0.90, atol=1e-12)
    assert (rows["n_failed"] + rows["n_met"] == np.where(rows["batch_year"] == 2026, 12, 13)).all()


def test_categorical_levels_are_fixed(table):
    assert list(table["province"].cat.categories) == list(PROVINCE_LEVELS)
    for name, levels in F.categorical_levels().items():
        assert list(table[name].cat.categories) == levels


def test_targets_follow_events(table, small_sim):
    ev = small_sim.events
    first = ev.sort_values("batch_year").iloc[0]
    row = table[(table["firm_id"] == first["firm_id"]) & (table["batch_year"] == first["batch_year"])]
    assert row["designated_next"].item() == 1.0
    # After designation the firm holds the title: flagged, no designation label, growth kept.
    later = table[(table["firm_id"] == first["firm_id"]) & (table["year"] == first["batch_year"])]
    assert later["holds_title"].item() and np.isnan(later["designated_next"].item())
    assert table.loc[table["holds_title"], "growth_next"].notna().any()
    labelled = table.dropna(subset=["designated_next"])
    assert labelled["batch_year"].between(2019, 2027).all()
    assert labelled["designated_next"].sum() <= len(ev)


def test_growth_target_is_next_log_revenue_ratio(table, small_sim):
    panel = small_sim.panel.set_index(["firm_id", "year"])["revenue"]
    row = table.dropna(subset=["growth_next"]).iloc[7]
    expected = np.log(panel[(row["firm_id"], row["year"] + 1)] / panel[(row["firm_id"], row["year"])])
    assert row["growth_next"] == pytest.approx(expected)


def test_no_events_means_no_history_and_no_label(small_sim):
    table = F.build_features(small_sim.panel.head(2000))
    assert table["designated_next"].isna().all()
    assert not table["holds_title"].any()
    assert (table["province_designated_share"] == 0).all()


def test_does_not_modify_inputs(small_sim):
    panel, events = small_sim.panel.copy(deep=True), small_sim.events.copy(deep=True)
    F.build_features(panel, events)
    pd.testing.assert_frame_equal(panel, small_sim.panel)
    pd.testing.assert_frame_equal(events, small_sim.events)


@pytest.mark.parametrize("t", [2019, 2022, 2025])
def test_future_data_never_changes_a_years_features(small_sim, t):
    """Changing or deleting any data after year t leaves every feature of year <= t unchanged."""
    panel, events = small_sim.panel, small_sim.events
    base = F.build_features(panel, events)
    rng = np.random.default_rng(t)
    future = panel["year"] > t
    changed = panel.copy()
    for col in ("revenue", "main_business_revenue", "rd_expense", "total_assets", "net_profit"):
        changed.loc[future, col] = changed.loc[future, col] * rng.uniform(0.5, 2.0, future.sum())
    changed.loc[future, "province"] = "Tibet"
    changed.loc[future, "srdi_provincial"] = ~changed.loc[future, "srdi_provincial"]
    changed = changed.drop(changed.index[future & (rng.random(len(panel)) < 0.3)])
    ev = events[events["batch_year"] <= t].copy()
    ev.loc[ev["revoked_year"] > t, "revoked_year"] = t + 5  # a later revocation, not yet known at t
    ev = pd.concat([ev, pd.DataFrame({"firm_id": panel["firm_id"].unique()[:50], "batch_year": t + 1,
                                      "revoked_year": np.nan})], ignore_index=True)
    after = F.build_features(changed, ev)
    cols = [c for c in base.columns if c not in F.TARGETS]
    keep = lambda df: df[df["year"] <= t][cols].sort_values(["firm_id", "year"]).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(keep(base), keep(after))


def test_features_cli_writes_table(tmp_path, small_sim):
    panel, events = tmp_path / "panel.parquet", tmp_path / "events.parquet"
    small_sim.panel.to_parquet(panel)
    small_sim.events.to_parquet(events)
    out = tmp_path / "features.csv"
    result = CliRunner().invoke(app, ["features", str(panel), "--events", str(events), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    assert len(written) == len(small_sim.panel) and "designated_next" in written
    again = CliRunner().invoke(app, ["features", str(panel), "--out", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output


def test_one_firm_alone_equals_the_same_firm_in_the_batch(small_sim):
    """With the stored context records, features do not depend on which firms come along."""
    panel, events = small_sim.panel, small_sim.events
    context = F.context_tables(panel, events)
    full = F.build_features(panel, events, context=context)
    firm = events["firm_id"].iloc[0]
    alone = F.build_features(panel[panel["firm_id"] == firm], events[events["firm_id"] == firm], context=context)
    cols = [c for c in full.columns if c not in F.TARGETS]
    pd.testing.assert_frame_equal(full[full["firm_id"] == firm][cols].reset_index(drop=True), alone[cols])


def test_context_after_its_last_year_carries_the_latest_record(small_sim):
    panel = small_sim.panel
    context = F.context_tables(panel[panel["year"] <= 2022], small_sim.events[small_sim.events["batch_year"] <= 2022])
    table = F.build_features(panel, small_sim.events, context=context)
    row_2022 = table[(table["year"] == 2022)].groupby("province", observed=True)["province_pool_share"].first()
    row_2025 = table[(table["year"] == 2025)].groupby("province", observed=True)["province_pool_share"].first()
    pd.testing.assert_series_equal(row_2022, row_2025.reindex(row_2022.index), check_names=False)


def test_selected_rows_equal_their_rows_in_the_full_table(small_sim, table):
    """``rows`` builds only some firm-years; the others still supply lags and the growth target."""
    panel = small_sim.panel.sample(frac=1.0, random_state=2)
    rows = (panel["year"] == 2023).to_numpy() | (panel.index.to_numpy() % 7 == 0)
    picked = F.build_features(panel, small_sim.events, rows=rows)
    keys = panel.loc[rows, ["firm_id", "year"]]
    expected = table.merge(keys, on=["firm_id", "year"]).sort_values(["firm_id", "year"]).reset_index(drop=True)
    assert len(picked) == rows.sum() == len(expected)
    assert picked["class1_growth_2y"].notna().any() and picked["growth_next"].notna().any()
    pd.testing.assert_frame_equal(picked, expected)
    with pytest.raises(ValueError, match="boolean mask"):
        F.build_features(panel, small_sim.events, rows=rows[:-1])
    assert F.build_features(panel, small_sim.events, rows=np.zeros(len(panel), bool)).empty


def test_long_history_counts_years_and_averages_growth_and_rd(small_sim):
    counts = small_sim.panel["firm_id"].value_counts()
    firm = counts.index[counts >= 8][0]
    rows = small_sim.panel[small_sim.panel["firm_id"] == firm].sort_values("year").head(8).copy()
    assert (np.diff(rows["year"]) == 1).all()
    years = rows["year"].to_numpy()
    rows["revenue"] = 1e8 * np.exp(0.1 * np.arange(len(rows)) ** 1.5)
    rows["rd_expense"] = 1e6 * (1 + np.arange(len(rows)))
    gap = rows[rows["year"] != years[5]]  # the same firm with year t-2 of the last year missing
    full = F.build_features(rows).set_index("year")
    holed = F.build_features(gap).set_index("year")
    last = years[-1]
    rev = rows.set_index("year")["revenue"]
    growths = np.log(rev / rev.shift(1)).loc[last - 4:last].to_numpy()
    assert full.loc[last, "history_years"] == 5 and full.loc[years[0], "history_years"] == 0
    assert full.loc[years[2], "history_years"] == 2
    assert full.loc[last, "revenue_growth_mean"] == pytest.approx(growths.mean())
    assert full.loc[last, "revenue_growth_sd"] == pytest.approx(growths.std(ddof=1))
    rd = rows.set_index("year")["rd_expense"]
    assert full.loc[last, "rd_intensity_long"] == pytest.approx(rd.loc[last - 4:].sum() / rev.loc[last - 4:].sum())
    assert np.isnan(full.loc[years[0], "revenue_growth_mean"]) and np.isnan(full.loc[years[1], "revenue_growth_sd"])
    # a missing year drops the two growths that need it and its R&D, and is not counted
    kept = [g for y, g in zip(range(last - 4, last + 1), growths) if y not in (years[5], years[5] + 1)]
    assert holed.loc[last, "history_years"] == 4
    assert holed.loc[last, "revenue_growth_mean"] == pytest.approx(np.mean(kept))
    span = [y for y in range(last - 4, last + 1) if y != years[5]]
    assert holed.loc[last, "rd_intensity_long"] == pytest.approx(rd.loc[span].sum() / rev.loc[span].sum())
