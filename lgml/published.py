"""The published statistics the simulated panel is calibrated to (``data/published.json``), and
how a simulated panel compares with them.

Example:
    >>> from lgml.simulate import simulate
    >>> report = calibration_report(simulate(20_000, seed=0))  # doctest: +SKIP
    >>> bool(report["within"].all())  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lgml.schema import PROVINCES

if TYPE_CHECKING:
    from lgml.simulate import Simulation

PUBLISHED = json.loads(resources.files("lgml").joinpath("data/published.json").read_text(encoding="utf-8"))
BATCHES = {int(k): v for k, v in PUBLISHED["batch_counts"].items()}  # published batch sizes
# Assumed sizes of the batches after the last published one (PUBLISHED["assumptions"]).
ASSUMED_BATCHES = {int(k): v for k, v in PUBLISHED["assumptions"]["batch_counts"].items()}
UNIVERSE = PUBLISHED["universe_innovative_smes"]


def latest_review_pass_rate() -> tuple[float, str]:
    """The most recent published re-review pass rate and a line saying which review it is."""
    rates = {tuple(int(y) for y in key.split("->")): float(v) for key, v in PUBLISHED["review_pass_rate"].items()}
    year = max(review for _, review in rates)
    rate = max(v for (_, review), v in rates.items() if review == year)
    return rate, f"the latest published re-review pass rate ({year} review, {rate:.0%})"


def titles_held(events: pd.DataFrame, year: int) -> pd.Series:
    """Firm ids holding a valid Little Giant title at the end of ``year``."""
    valid = (events["batch_year"] <= year) & ~(events["revoked_year"] <= year)
    return events.loc[valid, "firm_id"].drop_duplicates()


def oracle_scores(sim: Simulation) -> dict[str, float]:
    """AUC of the true probability for next-batch designation (batches 2019-2025) over all
    candidate firm-years and within the provincial SRDI pool; R² of the true expected growth over
    firm-years with a next year, as is (``growth_r2``) and within each year (``growth_r2_within``:
    each year's mean removed from both, so the year's macro shock, unknowable at t, drops out)."""
    from sklearn.metrics import r2_score, roc_auc_score

    key = ["firm_id", "year"]
    rows = sim.panel[key + ["srdi_provincial", "revenue"]].merge(sim.truth, on=key)
    won = sim.events.assign(year=sim.events["batch_year"] - 1, designated=True)[key + ["designated"]]
    rows = rows.merge(won, on=key, how="left")
    rows["designated"] = rows["designated"].fillna(False).astype(bool)
    batch_rows = rows[(rows["year"] + 1).isin(BATCHES) & (rows["p_designation"] > 0)]
    pool = batch_rows[batch_rows["srdi_provincial"]]
    nxt = rows[key + ["revenue"]].assign(year=rows["year"] - 1).rename(columns={"revenue": "revenue_next"})
    growth = rows.merge(nxt, on=key)
    growth = growth[(growth["revenue"] > 0) & (growth["revenue_next"] > 0)]
    actual = np.log(growth["revenue_next"] / growth["revenue"])
    return {
        "auc_all": float(roc_auc_score(batch_rows["designated"], batch_rows["p_designation"])),
        "auc_pool": float(roc_auc_score(pool["designated"], pool["p_designation"])),
        "growth_r2": float(r2_score(actual, growth["expected_growth"])),
        "growth_r2_within": float(r2_score(actual - actual.groupby(growth["year"]).transform("mean"),
                                           growth["expected_growth"]
                                           - growth["expected_growth"].groupby(growth["year"]).transform("mean"))),
    }


def calibration_report(sim: Simulation) -> pd.DataFrame:
    """Each calibration target beside the simulated value.

    Returns:
        One row per target: ``target`` (name), ``published`` (the published figure as text),
        ``simulated`` (float), ``low``/``high`` (the accepted band) and ``ok``. Count targets
        are scaled by ``sim.scale``; their bands widen by three Poisson standard deviations on
        small panels.
    """
    rows: list[tuple[str, str, float, float, float]] = []
    ev, panel, scale = sim.events, sim.panel, sim.scale

    def count_row(name: str, published: float, simulated: float, rel: float = 0.12) -> None:
        want = published * scale
        slack = max(rel * want, 3 * np.sqrt(want))
        rows.append((name, f"{published:,.0f} x {scale:.3f} = {want:,.1f}", simulated, want - slack, want + slack))

    per_batch = ev["batch_year"].value_counts()
    for batch, count in BATCHES.items():
        count_row(f"designated in batch {batch}", count, float(per_batch.get(batch, 0)))
    count_row("cumulative designated, batches 2019-2021", PUBLISHED["cumulative_designated"]["2021"],
              float(ev["batch_year"].le(2021).sum()))
    count_row("valid titles at end-2024", PUBLISHED["valid_little_giants"]["2024"], float(len(titles_held(ev, 2024))))
    for year, pool in PUBLISHED["provincial_srdi_pool"].items():
        count_row(f"provincial SRDI pool {year}", pool, float(panel.loc[panel["year"] == int(year) - 0, "srdi_provincial"].sum()), 0.15)

    for key, rate in PUBLISHED["review_pass_rate"].items():
        batch, year = (int(x) for x in key.split("->"))
        due = ev[ev["batch_year"] == batch]
        if year - batch == 6:  # second review: those that passed the first
            due = due[~(due["revoked_year"] < year)]
        passed = float((~(due["revoked_year"] == year)).mean()) if len(due) else np.nan
        slack = max(0.06, 3 * np.sqrt(rate * (1 - rate) / max(len(due), 1)))
        rows.append((f"re-review pass rate, batch {batch} in {year}", f"{rate:.0%}", passed, rate - slack, rate + slack))

    firm = panel.drop_duplicates("firm_id").set_index("firm_id")
    prov = ev["firm_id"].map(firm["province"]).astype(object)
    top6 = float(prov.isin(PUBLISHED["top6_provinces"]).mean())
    rows.append(("share of designations in the six leading provinces", "> 60%", top6, 0.60, 1.0))
    official = pd.Series(PUBLISHED["province_counts_batches_1_2"], dtype=float)
    official /= official.sum()
    early = prov[ev["batch_year"] <= 2020].value_counts(normalize=True).reindex(official.index, fill_value=0)
    tvd = float((early - official).abs().sum() / 2)
    n_early = int((ev["batch_year"] <= 2020).sum())
    rows.append(("province shares of batches 1-2: distance to official table (TVD)", "0",
                 tvd, 0.0, max(0.08, 3 / np.sqrt(max(n_early, 1)))))
    early3 = ev.loc[ev["batch_year"] <= 2021, "firm_id"].map(firm["province"]).astype(object)
    region = early3.map(lambda p: PROVINCES[p][2]).value_counts(normalize=True)
    for name, share in PUBLISHED["region_share_2021"].items():
        slack = max(0.07, 3 * np.sqrt(share * (1 - share) / max(len(early3), 1)))
        rows.append((f"{name} share of batches 2019-2021", f"{share:.0%}", float(region.get(name, 0)),
                     share - slack, share + slack))

    held = panel[(panel["year"] == 2024) & panel["firm_id"].isin(titles_held(ev, 2024))]
    d = PUBLISHED["designated_2024"]
    rd = held.dropna(subset=["rd_expense"])
    rows += [
        ("designated 2024: R&D intensity (sum R&D / sum revenue)", f"~{d['rd_intensity']:.0%}",
         float(rd["rd_expense"].sum() / rd["revenue"].sum()), 0.05, 0.09),
        ("designated 2024: mean R&D spend, M yuan", f"> {d['rd_expense_min'] / 1e6:.0f}",
         float(rd["rd_expense"].mean() / 1e6), d["rd_expense_min"] / 1e6, 60.0),
        ("designated 2024: mean invention patents", f"~{d['invention_patents']}",
         float(held["invention_patents"].mean()), 15.0, 30.0),
        ("designated 2024: share in national high-tech zones", f"~{d['hightech_zone_share']:.0%}",
         float(held["in_hightech_zone"].mean()), 0.32, 0.48),
        ("designated 2024: share private", f"> {d['private_share_min']:.0%}",
         float((held["ownership"].astype(object) == "private").mean()), 0.80, 1.0),
        ("designated 2024: share manufacturing (13-43)", "65-88%",
         float(held["sector"].astype(object).between("13", "43").mean()), 0.60, 0.90),
        ("designated 2024: share research & technical services (73-75)", f"~{d['research_services_share']:.0%}",
         float(held["sector"].astype(object).isin(["73", "74", "75"]).mean()), 0.12, 0.28),
    ]
    others = panel[(panel["year"] == 2024) & ~panel["firm_id"].isin(ev["firm_id"])]
    rows += [
        ("non-designated 2024: median R&D intensity", "ordinary SMEs, 1-4%",
         float((others["rd_expense"] / others["revenue"]).median()), 0.01, 0.04),
        ("non-designated 2024: median revenue, M yuan", "ordinary SMEs, 10-100",
         float(others["revenue"].median() / 1e6), 10.0, 100.0),
    ]
    scores = oracle_scores(sim)
    rows += [
        ("oracle AUC within the SRDI pool", "0.85-0.93 (real-data model: 0.896)", scores["auc_pool"], 0.85, 0.93),
        ("oracle AUC over all candidate firm-years", "report (>= pool)", scores["auc_all"], 0.85, 1.0),
        ("oracle growth R²", "0.20-0.45", scores["growth_r2"], 0.20, 0.45),
    ]
    out = pd.DataFrame(rows, columns=["target", "published", "simulated", "low", "high"])
    out["ok"] = out["simulated"].between(out["low"], out["high"])
    return out
