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
def two_horizons(models, data, horizon3_dir, tmp_path_factory):
    """Scores of the horizon-1 (primary) and horizon-3 models, and each model's own
    probabilities of the same firms scored alone."""
    folder = tmp_path_factory.mktemp("horizons")
    result = score_file([models["designation"], horizon3_dir], data["parquet"], folder / "s.parquet",
                        events=data["events"], growth_model=models["growth"])
    alone = {}
    for h, path in ((1, models["designation"]), (3, horizon3_dir)):
        score_file(path, data["parquet"], folder / f"h{h}.parquet", events=data["events"])
        alone[h] = pd.read_parquet(folder / f"h{h}.parquet").set_index("firm_id")["probability"]
    return result, pd.read_parquet(folder / "s.parquet"), alone


def test_two_horizons_are_repaired_into_order(two_horizons):
    result, scores, alone = two_horizons
    assert {"probability_h1", "probability_h3"} <= set(scores.columns) and "probability_h2" not in scores.columns
    assert scores["horizon"].eq(1).all() and scores["horizon"].dtype == "int64"
    # The expected repair, from the two models scored alone and the plain PAV above.
    firms = scores["firm_id"]
    raw = np.column_stack([alone[1].reindex(firms), alone[3].reindex(firms)])
    candidates = ~np.isnan(raw).any(axis=1)
    violated = candidates & (raw[:, 0] > raw[:, 1])
    assert 0 < violated.sum() < candidates.sum()  # some firms out of order, not all
    assert result.repaired == violated.sum()
    assert result.largest_violation == pytest.approx(np.max(raw[violated, 0] - raw[violated, 1]))
    want = np.array([pav(list(r)) if c else list(r) for r, c in zip(raw, candidates)])
    np.testing.assert_allclose(scores[["probability_h1", "probability_h3"]].to_numpy(), want, rtol=1e-12)
    np.testing.assert_array_equal(scores["probability"], scores["probability_h1"])
    assert (scores.loc[candidates, "probability_h1"] <= scores.loc[candidates, "probability_h3"]).all()
    # Firms in order keep their own model's probability exactly.
    np.testing.assert_array_equal(scores.loc[candidates & ~violated, "probability_h3"], raw[candidates & ~violated, 1])
    holders = scores["holds_title"].astype(bool).to_numpy()
    assert holders.any() and scores.loc[holders, ["probability_h1", "probability_h3"]].isna().all().all()
    assert scores["horizon_models"].str.match(r"^h1 test-designation .+; h3 test-designation-h3 ").all()
    # Ranks follow the repaired probability.
    top = scores.sort_values("rank_national").dropna(subset=["rank_national"])
    assert top["probability"].is_monotonic_decreasing


def test_cli_reports_the_repair(models, data, horizon3_dir, two_horizons, tmp_path):
    result = runner.invoke(app, ["score", "--model", str(horizon3_dir), "--model", str(models["designation"]),
                                 "--input", str(data["parquet"]), "--output", str(tmp_path / "s.parquet"),
                                 "--events", str(data["events"])])
    assert result.exit_code == 0, result.output
    repaired = two_horizons[0].repaired
    assert f"Horizons: {repaired:,} firms repaired to p_h1 <= p_h3 by isotonic regression" in result.output
    scores = pd.read_parquet(tmp_path / "s.parquet")
    # The primary is the horizon-3 model now: its repaired column is the probability.
    assert scores["horizon"].eq(3).all()
    np.testing.assert_array_equal(scores["probability"], scores["probability_h3"])


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
