"""Tests of lgml.explain.whatif: the counterfactual search and its actions."""

from __future__ import annotations

import pytest

from lgml.explain import whatif as ex
from lgml.explain.whatif import firm_window
from lgml.features import build_features


def test_counterfactual_for_the_rd_firm_raises_rd(bundle, rd_only_firm, context):
    panel, firm_id = rd_only_firm
    result = ex.counterfactual(bundle, panel, firm_id, 2023, context=context, target=0.99)
    assert result.reached, result.message
    assert [c.action for c in result.changes] == ["rd_intensity"], result.message
    assert result.changes[0].after == pytest.approx(0.03)
    assert result.eligible_after and not result.eligible_before
    assert result.probability_after > result.probability_before


def test_counterfactual_rebuilds_dependent_features(bundle, rd_only_firm):
    panel, firm_id = rd_only_firm
    rows = firm_window(panel, firm_id, 2023)
    change, edit = ex.PROPOSERS["rd_intensity"](rows)[0]
    edited = build_features(edit(rows), None)
    last = edited[edited["year"] == 2023].iloc[0]
    assert last["rd_intensity"] == pytest.approx(0.03)
    assert last["rd_intensity_prev"] == pytest.approx(0.03)
    assert last["pass_rd_band"] == 1.0 and last["short_rd_band"] == 0.0


def test_counterfactual_says_plainly_when_nothing_is_feasible(bundle, small_sim, table, context):
    row = table[(table["year"] == 2023) & ~table["holds_title"]].sort_values("score_total").iloc[0]
    result = ex.counterfactual(bundle, small_sim.panel, row["firm_id"], 2023, events=small_sim.events,
                               context=context, target=0.999, goal="probability", max_changes=1)
    assert not result.reached
    assert result.message.startswith("No feasible change")


def test_counterfactual_never_touches_immutable_inputs():
    names = {a.feature for a in ex.ACTIONS}
    assert not names & {"province", "sector", "firm_age", "in_hightech_zone", "ownership", "size_band"}
    assert [a.name for a in ex.allowed_actions({"debt_ratio": 1})] == [a.name for a in ex.ACTIONS
                                                                       if a.name != "debt_ratio"]
