"""The growth level kept apart from relative growth: year levels, the recent-years default,
a given macro level, and how the growth bundle, its evaluation and scoring use them."""

import math

import numpy as np
import pandas as pd
import pytest

from lgml.modeling.bundle import load_bundle
from lgml.modeling.level import LevelError, growth_level, relative_growth, year_levels

LEVELS = {2018: 0.12, 2019: 0.02, 2020: 0.06, 2021: 0.10}


def test_year_levels_are_cross_section_means_of_known_growth():
    years = np.array([2020, 2020, 2020, 2021, 2021])
    growth = np.array([0.1, 0.3, np.nan, -0.2, 0.0])
    assert year_levels(years, growth) == pytest.approx({2020: 0.2, 2021: -0.1})


def test_relative_growth_removes_each_rows_year_mean():
    rel = relative_growth(np.array([2018, 2021]), np.array([0.2, 0.0]), LEVELS)
    np.testing.assert_allclose(rel, [0.2 - 0.12, -0.10])
    with pytest.raises(LevelError, match="2030"):
        relative_growth(np.array([2030]), np.array([0.1]), LEVELS)


def test_recent_level_uses_only_years_before_the_predicted_one():
    level, source = growth_level(np.array([2021, 2022, 2022]), LEVELS, recent_years=2)
    # fiscal 2021: its own level (0.10) is unknown then -> mean of 2019, 2020; 2022 -> 2020, 2021
    np.testing.assert_allclose(level, [0.04, 0.08, 0.08])
    assert source == "recent: mean growth of fiscal years 2019-2020; 2020-2021"
    one, _ = growth_level(np.array([2022]), LEVELS, recent_years=1)
    assert one[0] == pytest.approx(0.10)


def test_years_before_every_level_take_the_earliest_and_say_so():
    level, source = growth_level(np.array([2015]), LEVELS, recent_years=2)
    assert level[0] == pytest.approx(0.07)
    assert "earliest known, for fiscal 2015" in source
    with pytest.raises(LevelError, match="give macro_growth"):
        growth_level(np.array([2022]), {}, recent_years=3)


def test_given_macro_growth_is_a_rate_added_as_log_growth():
    level, source = growth_level(np.array([2022, 2030]), LEVELS, macro_growth=0.05)
    np.testing.assert_allclose(level, math.log(1.05))
    assert source.startswith("given: macro_growth 0.05")
    for bad in (-1.0, -3.0, float("nan"), float("inf")):
        with pytest.raises(LevelError, match="above -1"):
            growth_level(np.array([2022]), LEVELS, macro_growth=bad)


def test_growth_bundle_learns_relative_growth_and_adds_the_level(growth_dir, table):
    bundle = load_bundle(growth_dir)
    stored = bundle.metadata["growth_level"]
    levels = {int(y): v for y, v in stored["levels"].items()}
    assert stored["recent_years"] == 3 and stored["macro_growth"] is None
    rows = table[table["year"] == 2024].head(50)
    raw = bundle.predict_raw(rows)
    expected = np.mean([levels[y] for y in (2021, 2022, 2023)])
    np.testing.assert_allclose(bundle.predict(rows), raw + expected)
    # the booster's output is relative: centred near 0 where the level is far from it
    assert abs(np.mean(bundle.predict_raw(table[table["growth_next"].notna()]))) < 0.02
    given = bundle.predict(rows, macro_growth=0.02)
    np.testing.assert_allclose(given, raw + math.log1p(0.02))
    lo_hi = bundle.predict_interval(rows, macro_growth=0.02)
    lo_hi_default = bundle.predict_interval(rows)
    np.testing.assert_allclose(lo_hi - lo_hi_default, math.log1p(0.02) - expected)
    together = bundle.predict_growth(rows, macro_growth=0.02)
    np.testing.assert_array_equal(together["growth"], given)
    np.testing.assert_array_equal(np.column_stack([together["growth_p10"], together["growth_p90"]]), lo_hi)
    assert together["growth_level_source"].startswith("given: macro_growth 0.02")
    # without a year (a pyfunc request) rows are taken as the year after the last level
    shift, source = bundle.growth_level(rows.drop(columns="year"))
    last = max(levels)
    assert shift[0] == pytest.approx(np.mean([levels[y] for y in range(last - 2, last + 1)]))
    assert f"{last - 2}-{last}" in source


def test_growth_evaluation_reports_the_level_it_used(growth_dir):
    bundle = load_bundle(growth_dir)
    used = bundle.evaluation["growth_level"]
    levels = {int(y): v for y, v in bundle.metadata["growth_level"]["levels"].items()}
    test_year = bundle.config.split.test[0] - 1  # fiscal year of the test batch
    assert used["test_source"] == f"recent: mean growth of fiscal years {test_year - 3}-{test_year - 1}"
    assert used["test_level"] == pytest.approx(np.mean([levels[y] for y in range(test_year - 3, test_year)]))
    assert used["test_actual"] == pytest.approx(levels[test_year])
    model = bundle.evaluation["populations"]["all"]["model"]
    assert math.isfinite(model["level_error"]) and {"r2_within", "spearman", "coverage"} <= set(model)
    linear = bundle.evaluation["populations"]["all"]["linear"]
    assert {"r2", "r2_within", "level_error"} <= set(linear)


def test_growth_config_takes_macro_growth_and_level_years(tmp_path):
    from lgml.config import ConfigError, TrainConfig

    base = ("name: g\ndata: {simulate: {firms: 500}}\n"
            "split: {train_until: 2022, valid: [2023], test: [2024]}\n")
    cfg = TrainConfig.from_yaml("task: growth\nmacro_growth: 0.04\nlevel_years: 2\n" + base)
    assert cfg.macro_growth == 0.04 and cfg.level_years == 2
    with pytest.raises(ConfigError, match="macro_growth"):
        TrainConfig.from_yaml("task: designation\nmacro_growth: 0.04\n" + base)
    for bad in ("-1.5", ".inf", ".nan"):
        with pytest.raises(ConfigError, match="macro_growth"):
            TrainConfig.from_yaml(f"task: growth\nmacro_growth: {bad}\n" + base)


def test_score_reports_the_level_and_takes_macro_growth(bundle_dir, growth_dir, data_dir, tmp_path):
    from lgml.score import ScoreError, score_file

    panel = data_dir / "panel.parquet"
    default = score_file(bundle_dir, panel, tmp_path / "a.parquet", growth_model=growth_dir)
    given = score_file(bundle_dir, panel, tmp_path / "b.parquet", growth_model=growth_dir, macro_growth=0.03)
    a, b = pd.read_parquet(default.output), pd.read_parquet(given.output)
    assert default.growth_level.startswith("recent: mean growth of fiscal years")
    assert given.growth_level.startswith("given: macro_growth 0.03")
    assert (b["growth_level_source"] == given.growth_level).all()
    np.testing.assert_allclose(b["growth"] - a["growth"], math.log1p(0.03) - a["growth_level"], atol=1e-12)
    np.testing.assert_allclose(b["growth_level"], math.log1p(0.03))
    with pytest.raises(ScoreError, match="needs a growth model"):
        score_file(bundle_dir, panel, tmp_path / "c.parquet", macro_growth=0.03)
    with pytest.raises(ScoreError, match="above -1"):
        score_file(bundle_dir, panel, tmp_path / "c.parquet", growth_model=growth_dir, macro_growth=-2)
    assert not (tmp_path / "c.parquet").exists()


def test_bundles_saved_before_the_level_predict_absolute_growth(growth_dir, table):
    from dataclasses import replace

    from lgml.modeling.bundle import BundleError

    bundle = load_bundle(growth_dir)
    old = replace(bundle, metadata={k: v for k, v in bundle.metadata.items() if k != "growth_level"})
    rows = table.head(20)
    np.testing.assert_array_equal(old.predict(rows), old.predict_raw(rows))
    assert old.growth_level(rows)[1] == "none: the model predicts absolute growth"
    with pytest.raises(BundleError, match="takes no macro_growth"):
        old.predict(rows, macro_growth=0.02)


def test_firm_report_says_where_the_growth_level_came_from(bundle, growth_dir, table):
    from lgml.explain.firm import growth_prediction

    growth = load_bundle(growth_dir)
    row = table[table["year"] == 2024].head(1)
    out = growth_prediction(growth, row)
    assert out["level_source"] == "recent: mean growth of fiscal years 2021-2023"
    assert out["growth_pct"] == pytest.approx(100 * math.expm1(growth.predict(row)[0]))
