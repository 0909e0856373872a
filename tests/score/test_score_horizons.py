"""Several designation horizons scored together: the isotonic repair across horizons (on
hand-made probabilities), the probability_h columns, and the errors of the model options."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml.cli import app
from lgml.score import ScoreError, score_file
from lgml.score.horizons import isotonic_rows, repair_horizons

runner = CliRunner()


def pav(y: list[float]) -> list[float]:
    """Pool-adjacent-violators with equal weights, written out plainly (the reference)."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in y:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    return [s / c for s, c in blocks for _ in range(c)]


def test_repair_pools_violations_and_leaves_ordered_firms_exactly():
    values = np.array([
        [0.10, 0.20, 0.30],   # in order: untouched
        [0.30, 0.20, 0.50],   # h1 > h2: both become 0.25
        [0.10, 0.40, 0.20],   # h2 > h3: both become 0.30
        [0.60, 0.30, 0.30],   # h1 above two equal values: all three pooled to 0.40
        [0.20, 0.20, 0.20],   # equal values are in order
        [0.50, 0.10, 0.30],   # h1 > h2 < h3, h1 > h3: pooled to 0.30
        [np.nan, np.nan, np.nan],  # a title holder
    ])
    fixed = repair_horizons(values)
    expected = [[0.1, 0.2, 0.3], [0.25, 0.25, 0.5], [0.1, 0.3, 0.3], [0.4, 0.4, 0.4], [0.2, 0.2, 0.2],
                [0.3, 0.3, 0.3]]
    np.testing.assert_allclose(fixed.values[:6], expected, atol=1e-12)
    assert np.isnan(fixed.values[6]).all()
    assert fixed.repaired == 4
    assert fixed.largest_violation == pytest.approx(0.4)  # 0.5 at h1 against 0.1 at h2
    # Firms in order keep their exact values (not sums re-divided).
    assert fixed.values[0].tolist() == [0.10, 0.20, 0.30] and fixed.values[4].tolist() == [0.2, 0.2, 0.2]


def test_isotonic_rows_equals_pool_adjacent_violators_and_least_squares():
    rng = np.random.default_rng(3)
    values = np.round(rng.uniform(0, 1, size=(400, 3)), 1)  # rounding makes many equal values
    two = rng.uniform(0, 1, size=(50, 2))
    for y in (values, two):
        fit = isotonic_rows(y)
        np.testing.assert_allclose(fit, [pav(list(r)) for r in y], atol=1e-12)
        assert (np.diff(fit, axis=1) >= -1e-12).all()
    # Least squares among monotone rows: no monotone grid point of a violated row fits better.
    y = np.array([0.7, 0.2, 0.4])
    best = ((isotonic_rows(y[None])[0] - y) ** 2).sum()
    grid = np.linspace(0, 1, 41)
    for a in grid:
        for b in grid[grid >= a]:
            for c in grid[grid >= b]:
                assert ((np.array([a, b, c]) - y) ** 2).sum() >= best - 1e-12


def test_repair_reports_nothing_when_every_firm_is_in_order():
    fixed = repair_horizons(np.array([[0.1, 0.1], [0.2, 0.9]]))
    assert (fixed.repaired, fixed.largest_violation) == (0, 0.0)


@pytest.fixture(scope="module")
def horizon3(models, edit_bundle, tmp_path_factory):
    """The session's designation model relabelled as a horizon-3 model (same predictions)."""
    def relabel(meta):
        meta["horizon"] = 3
    return edit_bundle(models["designation"], tmp_path_factory.mktemp("h3") / "bundle", relabel)


def test_two_horizons_add_probability_columns(models, data, horizon3, reference, tmp_path):
    result = score_file([models["designation"], horizon3], data["parquet"], tmp_path / "s.parquet",
                        events=data["events"], growth_model=models["growth"])
    scores = pd.read_parquet(tmp_path / "s.parquet")
    assert result.horizons == (1, 3) and result.repaired == 0 and result.largest_violation == 0.0
    assert {"probability_h1", "probability_h3"} <= set(scores.columns) and "probability_h2" not in scores.columns
    assert scores["horizon"].eq(1).all() and scores["horizon"].dtype == "int64"
    # Same model twice: nothing to repair, probability is the primary's as scored alone.
    np.testing.assert_array_equal(scores["probability_h1"], scores["probability"])
    np.testing.assert_array_equal(scores["probability_h3"], scores["probability"])
    pd.testing.assert_series_equal(scores["probability"], reference["probability"])
    holders = scores["holds_title"].astype(bool)
    assert holders.any() and scores.loc[holders, ["probability_h1", "probability_h3"]].isna().all().all()
    assert scores["horizon_models"].str.match(r"^h1 test-designation .+; h3 test-designation ").all()


def test_horizon_is_the_primary_models(models, data, horizon3, tmp_path):
    score_file(horizon3, data["parquet"], tmp_path / "s.parquet", events=data["events"])
    scores = pd.read_parquet(tmp_path / "s.parquet")
    assert scores["horizon"].eq(3).all() and "probability_h3" not in scores.columns


def test_model_option_errors(models, data, tmp_path):
    out = tmp_path / "s.parquet"
    with pytest.raises(ScoreError, match="--model is given twice for horizon 1"):
        score_file([models["designation"], models["designation"]], data["parquet"], out)
    with pytest.raises(ScoreError, match="--model needs a designation model; .* is a growth model"):
        score_file([models["designation"], models["growth"]], data["parquet"], out)
    with pytest.raises(ScoreError, match="--review-model needs --events"):
        score_file(models["designation"], data["parquet"], out, review_model=models["designation"])
    with pytest.raises(ScoreError, match="--review-model needs a review model; .* is a designation model"):
        score_file(models["designation"], data["parquet"], out, events=data["events"],
                   review_model=models["designation"])
    with pytest.raises(ScoreError, match="--expected-designations .* give a single --model"):
        score_file([models["designation"], models["designation"]], data["parquet"], out, expected_designations=5)
    assert not out.exists()
    result = runner.invoke(app, ["score", "--model", str(models["designation"]), "--model", str(models["designation"]),
                                 "--input", str(data["parquet"]), "--output", str(out)])
    assert result.exit_code == 1 and "given twice for horizon 1" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["score", "--model", str(models["designation"]), "--input", str(data["parquet"]),
                                 "--output", str(out), "--review-model", str(models["designation"])])
    assert result.exit_code == 1 and "--review-model needs --events" in result.output
