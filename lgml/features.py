"""Point-in-time features: one row per (firm, application year).

A firm's fiscal year ``t`` feeds its application to batch ``t + 1``. Every feature of that row
uses only panel values of years ``<= t`` and designation events known by the end of ``t``, so
nothing from the future leaks in; only the two targets look ahead. Missing values stay missing
(LightGBM handles them).

Example:
    >>> from lgml.simulate import simulate
    >>> sim = simulate(2_000, seed=1)
    >>> table = build_features(sim.panel, sim.events)
    >>> set(FEATURE_DIMENSIONS) == set(feature_columns(table))
    True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lgml import concepts, criteria
from lgml.inputs import criteria_inputs, year_rows
from lgml.schema import CATEGORY_LEVELS, canonical_rows
from lgml.vocabulary import FEATURE_DIMENSIONS

KEYS = ("firm_id", "year", "batch_year")
TARGETS = ("designated_next", "growth_next", "review_passed")
FLAGS = ("holds_title", "in_pool", "review_due")
REVIEW_EVERY = 3  # a title is re-reviewed in batch b + 3, b + 6, ... (b: its batch)
# Inputs of the re-review model only (``task: review``), with the dimension they explain under.
REVIEW_FEATURES: dict[str, str] = {"title_years": "specialization", "review_round": "specialization"}

SIZE_BANDS = ("micro", "small", "medium", "large")

CATEGORICAL = ("province", "sector", "ownership", "size_band")
LOOKBACK = 5  # features read fiscal years t-1 .. t-5 (the long history; most read t-1 and t-2)
HISTORY = 5  # years of the long-history features


# The two ways criteria enter a model (lgml.concepts.margins; lgml.criteria.check per regime).
MARGIN_FEATURES = [f"{kind}_{name}" for name, meta in concepts.CONCEPTS.items() for kind in ("margin", "met")
                   if kind == "met" or meta["scale"] != "flag"]
PER_REGIME_FEATURES = [f"{kind}_{name}" for name in criteria.CRITERIA for kind in ("pass", "short")]
CRITERIA_FEATURES = {"margins": [*MARGIN_FEATURES, "n_failed"], "per_regime": PER_REGIME_FEATURES}

# Flags a config may add as model inputs (``extra_features``), with the dimension they explain under.
FLAG_GROUPS: dict[str, str] = {"holds_title": "specialization"}


def size_band(employees: pd.Series, revenue: pd.Series) -> pd.Series:
    """SME size band of industrial firms (工信部联企业〔2011〕300号): ``large`` only when both
    limits are exceeded (employees >= 1000 and revenue >= 400M yuan)."""
    band = np.select(
        [(employees >= 1000) & (revenue >= 400e6), (employees >= 300) & (revenue >= 20e6),
         (employees >= 20) & (revenue >= 3e6)],
        ["large", "medium", "small"], default="micro")
    return pd.Series(pd.Categorical(band, categories=SIZE_BANDS), index=employees.index)


def _lag(panel: pd.DataFrame, cols: list[str], pos: np.ndarray) -> pd.DataFrame:
    """Values of ``cols`` at row positions ``pos`` (the same firm's year ``t - k``, from
    :func:`lgml.inputs.year_rows`; -1 gives NaN), aligned to ``panel``'s rows."""
    values = {c: panel[c].to_numpy(dtype=float, na_value=np.nan) for c in cols}
    return pd.DataFrame({c: np.where(pos >= 0, v[pos], np.nan) for c, v in values.items()}, index=panel.index)


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    return (num / den.where(den > 0)).astype(float)


def long_history(panel: pd.DataFrame, prior: list[np.ndarray], at: np.ndarray | None = None) -> pd.DataFrame:
    """Features of a firm's longer past, from the rows of years ``t-1 .. t-HISTORY`` that the
    panel has (``prior[k-1]`` = row position of year ``t-k``, -1 when absent), for the rows at
    positions ``at`` (default: every row; the result has a fresh 0..n-1 index then too).

    - ``history_years``: how many of those years the panel holds (0 .. HISTORY);
    - ``revenue_growth_mean`` / ``revenue_growth_sd``: mean and standard deviation of the yearly
      log revenue growths ending in years ``t-HISTORY+1 .. t`` (each needs both of its years;
      the mean needs one growth, the deviation two);
    - ``rd_intensity_long``: R&D spending over revenue summed over years ``t-HISTORY+1 .. t``
      (the years present).
    """
    at = np.arange(len(panel)) if at is None else at
    prior = [p[at] for p in prior]
    revenue = panel["revenue"].to_numpy(dtype=float, na_value=np.nan)
    rd = panel["rd_expense"].to_numpy(dtype=float, na_value=np.nan)
    rev = [revenue[at]] + [np.where(p >= 0, revenue[p], np.nan) for p in prior]  # rev[k]: year t-k
    rds = [rd[at]] + [np.where(p >= 0, rd[p], np.nan) for p in prior[:HISTORY - 1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        growths = np.column_stack([np.log(np.where((a > 0) & (b > 0), a / b, np.nan))
                                   for a, b in zip(rev[:-1], rev[1:])])
        known = np.isfinite(growths).sum(axis=1)
        mean = np.where(known >= 1, np.nansum(growths, axis=1) / np.maximum(known, 1), np.nan)
        dev = growths - mean[:, None]
        sd = np.where(known >= 2, np.sqrt(np.nansum(dev ** 2, axis=1) / np.maximum(known - 1, 1)), np.nan)
        both = [np.isfinite(r) & np.isfinite(x) for r, x in zip(rev[:HISTORY], rds)]
        rd_sum = np.sum([np.where(b, x, 0.0) for b, x in zip(both, rds)], axis=0)
        rev_sum = np.sum([np.where(b, r, 0.0) for b, r in zip(both, rev[:HISTORY])], axis=0)
        intensity = np.where(rev_sum > 0, rd_sum / np.where(rev_sum > 0, rev_sum, 1.0), np.nan)
    return pd.DataFrame({
        "history_years": np.sum([p >= 0 for p in prior], axis=0).astype(float),
        "revenue_growth_mean": mean, "revenue_growth_sd": sd, "rd_intensity_long": intensity,
    })


def title_history(panel: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Per panel row, all known by the end of year t: ``holds_title`` (a valid title at the end
    of t, so not a candidate for batch t + 1), ``ever_revoked`` (lost a title by year t),
    ``title_batch`` (batch of the title held, the latest if several; NaN without one) and
    ``title_revoked`` (that title's ``revoked_year``, NaN while it stands; only used for the
    re-review target, which looks past t)."""
    ev = events[["firm_id", "batch_year", "revoked_year"]]
    rows = panel[["firm_id", "year"]].reset_index().merge(ev, on="firm_id", how="inner")
    known = rows["batch_year"] <= rows["year"]
    holds = known & ~(rows["revoked_year"] <= rows["year"])
    revoked = known & (rows["revoked_year"] <= rows["year"])
    agg = rows.assign(holds=holds, revoked=revoked).groupby("index")[["holds", "revoked"]].any()
    out = pd.DataFrame({"holds_title": False, "ever_revoked": False, "title_batch": np.nan, "title_revoked": np.nan},
                       index=panel.index)
    out.loc[agg.index, "holds_title"] = agg["holds"].to_numpy()
    out.loc[agg.index, "ever_revoked"] = agg["revoked"].to_numpy()
    held = rows[holds].sort_values(["index", "batch_year"]).drop_duplicates("index", keep="last")
    out.loc[held["index"].to_numpy(), "title_batch"] = held["batch_year"].to_numpy(dtype=float)
    out.loc[held["index"].to_numpy(), "title_revoked"] = held["revoked_year"].to_numpy(dtype=float)
    return out


def review_columns(table: pd.DataFrame, titles: pd.DataFrame, events: pd.DataFrame, has_events: bool) -> pd.DataFrame:
    """The re-review columns of each row (fiscal year t, batch t + 1):

    - ``title_years``: t + 1 minus the batch of the title held at the end of t (NaN: no title);
    - ``review_due``: that title comes to its re-review in batch t + 1 (every
      :data:`REVIEW_EVERY` years after its batch);
    - ``review_round``: 1 for the first re-review, 2 for the second ... (NaN: not due);
    - ``review_passed`` (target): 1.0 if the title survives the review of batch t + 1, 0.0 if it
      is revoked in that batch year, NaN when not due or when batch t + 1 is past the last batch
      the events cover (the outcome is not known yet).
    """
    years = (table["batch_year"].to_numpy(dtype=float) - titles["title_batch"].to_numpy(dtype=float))
    due = np.nan_to_num(years) > 0
    due &= np.nan_to_num(years) % REVIEW_EVERY == 0
    revoked = titles["title_revoked"].to_numpy(dtype=float)
    passed = np.where(revoked == table["batch_year"].to_numpy(dtype=float), 0.0, 1.0)
    known = due.copy()
    if has_events and len(events):
        known &= table["batch_year"].to_numpy() <= events["batch_year"].max()
    else:
        known[:] = False
    return pd.DataFrame({"title_years": years, "review_due": due,
                         "review_round": np.where(due, years / REVIEW_EVERY, np.nan),
                         "review_passed": np.where(known, passed, np.nan)}, index=table.index)


def context_tables(panel: pd.DataFrame, events: pd.DataFrame | None = None) -> pd.DataFrame:
    """Province and sector track records by year, as known at the end of each year.

    For each province and each sector and fiscal year t: ``designated_share`` = designations
    of batches <= t per firm of that province/sector in year t (each designation counted where
    the firm stood in the fiscal year it applied with); for provinces also ``pool_share`` = the
    share of its firms holding provincial SRDI status in year t. Training computes these from
    its own panel and stores them in the model bundle, so scoring one firm or a million gives
    the same features.

    Returns:
        DataFrame with columns ``kind`` (``province`` or ``sector``), ``level``, ``year``,
        ``designated_share``, ``pool_share`` (NaN for sectors).
    """
    events = _empty_events() if events is None else events
    applied = events[["firm_id", "batch_year"]].assign(year=events["batch_year"] - 1)
    parts = []
    for by in ("province", "sector"):
        counts = (applied.merge(panel[["firm_id", "year", by]], on=["firm_id", "year"])
                  .groupby([by, "batch_year"], observed=True).size().rename("n").reset_index())
        stats = (panel.groupby([by, "year"], observed=True)
                 .agg(firms=("firm_id", "size"), pool_share=("srdi_provincial", "mean")).reset_index())
        grid = stats[[by, "year"]].merge(counts, on=by)
        grid = grid[grid["batch_year"] <= grid["year"]]
        cum = grid.groupby([by, "year"], observed=True)["n"].sum().rename("designated").reset_index()
        stats = stats.merge(cum, on=[by, "year"], how="left").fillna({"designated": 0})
        parts.append(pd.DataFrame({
            "kind": by, "level": stats[by].astype(str), "year": stats["year"].astype("int64"),
            "designated_share": stats["designated"] / stats["firms"],
            "pool_share": stats["pool_share"].astype(float) if by == "province" else np.nan,
        }))
    return pd.concat(parts, ignore_index=True)


def _join_context(panel: pd.DataFrame, context: pd.DataFrame, by: str, col: str) -> pd.Series:
    """The ``col`` value of each row's province/sector in its year; years after the last one
    in ``context`` take that last year's value (the latest record known)."""
    ref = context[context["kind"] == by].pivot(index="year", columns="level", values=col)
    if ref.empty:
        return pd.Series(np.nan, index=panel.index)
    first, last = int(ref.index.min()), int(ref.index.max())
    table = ref.reindex(range(first, last + 1)).ffill().to_numpy(dtype=float)
    table = np.column_stack([table, np.full(len(table), np.nan)])  # level code -1 (unknown) -> NaN
    years = np.clip(panel["year"].to_numpy(dtype=np.int64), first, last) - first
    values = panel[by]
    if isinstance(values.dtype, pd.CategoricalDtype):  # map the few categories, not every row
        where = ref.columns.get_indexer(values.cat.categories.astype(str))
        codes = values.cat.codes.to_numpy()
        levels = np.where(codes >= 0, where[codes], -1)
    else:
        levels = ref.columns.get_indexer(values.astype(str))
    return pd.Series(table[years, levels], index=panel.index)


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({"firm_id": pd.Series(dtype="str"), "batch_year": pd.Series(dtype="int64"),
                         "revoked_year": pd.Series(dtype="float64")})


def _criteria_features(inputs: pd.DataFrame, batch_year: pd.Series) -> pd.DataFrame:
    """The criteria of the regime in force for each row's batch, two ways: per regime (pass
    flags and shortfalls named by criterion, NaN for criteria outside that regime) and per
    concept (margins and met flags with the same meaning under every regime, see
    :func:`lgml.concepts.margins`); plus ``srdi_eligible`` (the provincial rules of that batch),
    ``eligible``, ``n_met``, ``n_failed`` and ``share_met``."""
    parts, concept_parts, pool = [], [], []
    regimes = batch_year.map({y: criteria.regime_for(int(y)) for y in batch_year.unique()})
    for regime in regimes.unique():
        rows = regimes.index[regimes == regime]
        year = int(batch_year.loc[rows].iloc[0])
        parts.append(criteria.check(inputs.loc[rows], year))
        concept_parts.append(concepts.margins(inputs.loc[rows], year))
        pool.append(criteria.srdi_eligible(inputs.loc[rows], year))
    if not parts:  # no rows
        parts.append(pd.DataFrame(index=inputs.index, columns=["eligible", "n_met", "n_criteria"], dtype=float))
        concept_parts.append(pd.DataFrame(index=inputs.index, columns=MARGIN_FEATURES, dtype=float))
        pool.append(pd.Series(index=inputs.index, dtype=float))
    checked = pd.concat(parts).reindex(inputs.index)
    names = [c for c in FEATURE_DIMENSIONS if c.startswith(("pass_", "short_"))]
    out = checked.reindex(columns=names)
    for col in out.columns:
        if col.startswith("pass_"):
            out[col] = out[col].astype(float)  # NaN where the regime has no such criterion
    out = pd.concat([out, pd.concat(concept_parts).reindex(index=inputs.index, columns=MARGIN_FEATURES)], axis=1)
    out["srdi_eligible"] = pd.concat(pool).reindex(inputs.index).astype(float)
    out["eligible"] = checked["eligible"].astype(float)
    out["n_met"] = checked["n_met"].astype(float)
    out["n_failed"] = (checked["n_criteria"] - checked["n_met"]).astype(float)
    out["share_met"] = (checked["n_met"] / checked["n_criteria"]).astype(float)
    return out


def build_features(panel: pd.DataFrame, events: pd.DataFrame | None = None,
                   context: pd.DataFrame | None = None, *, rows: np.ndarray | None = None) -> pd.DataFrame:
    """Build the feature table from a canonical panel and designation events.

    Args:
        panel: Firm-years in the input contract (see :mod:`lgml.schema`), money in yuan.
        events: ``firm_id, batch_year, revoked_year``; ``None`` means no designation history
            is known (no firm holds the title and the targets ``designated_next`` are NaN).
        context: Province and sector records from :func:`context_tables`; by default they are
            computed from ``panel`` and ``events`` (training). Scoring passes the training
            bundle's records so that features do not depend on which firms are scored together.
        rows: Boolean mask over ``panel``'s rows (positional): build the feature rows of these
            firm-years only. The other rows still supply the lags (years t-1 .. t-5) and the
            growth target (t+1), so every selected row is identical to its row in the full
            table. Scoring uses it to skip the rows that only hold history.

    Returns:
        DataFrame of shape (n_firm_years, n_columns), the selected rows only with ``rows``:
        the keys ``firm_id``, ``year`` (fiscal year t), ``batch_year`` (t + 1); every feature of :data:`FEATURE_DIMENSIONS`; the flags
        ``holds_title`` and ``in_pool``; the targets ``designated_next`` (1.0 if designated
        in batch t + 1, NaN for title holders and for batches the events do not cover) and
        ``growth_next`` (log(revenue[t+1] / revenue[t]), NaN without a next year).
    """
    order = np.lexsort((panel["year"].to_numpy(), panel["firm_id"].to_numpy(dtype=object)))
    if rows is not None:
        rows = np.asarray(rows, dtype=bool)
        if rows.shape != (len(panel),):
            raise ValueError(f"rows must be a boolean mask of the panel's {len(panel)} rows, not shape {rows.shape}")
    panel = panel.iloc[order].reset_index(drop=True)
    has_events = events is not None
    events = events if has_events else _empty_events()
    context = context_tables(panel, events) if context is None else context
    pos_next, *prior = year_rows(panel, (-1, *range(1, HISTORY + 1)))
    pos1, pos2 = prior[:2]
    inputs = criteria_inputs(panel, prior=(pos1, pos2))
    lag1 = _lag(panel, ["class1_ip", "class2_ip", "revenue"], pos1)
    lag2 = _lag(panel, ["class1_ip", "revenue"], pos2)
    growth_next = np.log(_ratio(_lag(panel, ["revenue"], pos_next)["revenue"], panel["revenue"]).where(lambda s: s > 0))
    history = long_history(panel, prior, None if rows is None else np.flatnonzero(rows[order]))
    if rows is not None:  # the history rows have done their part
        keep = rows[order]
        panel, inputs, lag1, lag2, growth_next = (
            x[keep].reset_index(drop=True) for x in (panel, inputs, lag1, lag2, growth_next))
    batch_year = panel["year"] + 1
    out = pd.DataFrame({
        "firm_id": panel["firm_id"], "year": panel["year"], "batch_year": batch_year,
        "mb_share": inputs["mb_share"], "mb_growth_2y": inputs["mb_growth_2y"],
        "niche_years": panel["niche_years"].astype(float),
        "revenue_growth_1y": np.log(_ratio(panel["revenue"], lag1["revenue"]).where(lambda s: s > 0)),
        **{c: history[c] for c in history.columns},
        "debt_ratio": inputs["debt_ratio"], "net_margin": inputs["net_margin"],
        "asset_turnover": _ratio(panel["revenue"], panel["total_assets"]),
        "digital_level": panel["digital_level"].astype(float),
        "quality_certified": panel["quality_certified"].astype(float),
        "niche_market_share": panel["niche_market_share"].astype(float),
        "own_brand": panel["own_brand"].astype(float),
        "rd_intensity": inputs["rd_intensity"], "rd_intensity_prev": inputs["rd_intensity_prev"],
        "rd_intensity_2y": _ratio(inputs["rd_2y"], panel["revenue"] + lag1["revenue"]),
        "rd_expense": panel["rd_expense"].astype(float), "rd_2y": inputs["rd_2y"],
        "rd_staff_share": inputs["rd_staff_share"],
        "class1_ip": panel["class1_ip"].astype(float), "class2_ip": panel["class2_ip"].astype(float),
        "class1_growth_1y": panel["class1_ip"] - lag1["class1_ip"],
        "class1_growth_2y": panel["class1_ip"] - lag2["class1_ip"],
        "class2_growth_1y": panel["class2_ip"] - lag1["class2_ip"],
        "patents_per_100_employees": 100 * _ratio(panel["invention_patents"], panel["employees"]),
        # Category order is none < municipal < provincial < national (schema.RD_INSTITUTION_LEVELS).
        "rd_institution_level": panel["rd_institution"].cat.codes.astype(float).where(panel["rd_institution"].notna()),
        "equity_2y": inputs["equity_2y"],
        "foundation_field": panel["foundation_field"].astype(float),
        "strategic_industry": panel["strategic_industry"].astype(float),
        "key_customers": panel["key_customers"].astype(float),
        "province": panel["province"], "in_hightech_zone": panel["in_hightech_zone"].astype(float),
        "province_designated_share": _join_context(panel, context, "province", "designated_share"),
        "province_pool_share": _join_context(panel, context, "province", "pool_share"),
        "sector": panel["sector"], "sector_designated_share": _join_context(panel, context, "sector", "designated_share"),
        "revenue": panel["revenue"].astype(float), "employees": panel["employees"].astype(float),
        "total_assets": panel["total_assets"].astype(float),
        "firm_age": (panel["year"] - panel["founded_year"]).astype(float),
        "size_band": size_band(panel["employees"], panel["revenue"]),
        "ownership": panel["ownership"],
        "srdi_provincial": panel["srdi_provincial"].astype(float),
    })
    scores = criteria.srdi_score(inputs)
    inputs = inputs.assign(score_total=scores["score_total"])  # computed once for all the checks below
    out = out.assign(**{c: scores[c].astype(float) for c in scores.columns})
    out = pd.concat([out, _criteria_features(inputs, batch_year)], axis=1)
    titles = title_history(panel, events)
    out["ever_revoked"] = titles["ever_revoked"].astype(float)
    out["holds_title"] = titles["holds_title"]
    out["in_pool"] = panel["srdi_provincial"].astype(bool)
    out = pd.concat([out, review_columns(out, titles, events, has_events)], axis=1)
    out["designated_next"] = designated_within(out, events if has_events else None, 1)
    out["growth_next"] = growth_next
    return out[[*KEYS, *FEATURE_DIMENSIONS, *REVIEW_FEATURES, *FLAGS, *TARGETS]]


def designated_within(table: pd.DataFrame, events: pd.DataFrame | None, horizon: int = 1) -> pd.Series:
    """The horizon-``horizon`` designation target of each row (fiscal year t): 1.0 if the firm
    is designated in one of the batches t + 1 .. t + horizon, 0.0 if in none of them, NaN for
    rows that are not candidates (holding a title at the end of t) and for rows whose window
    is not wholly inside the span of batches the events cover (censored: a later designation
    could not be seen). Known by the events alone, so missing panel years inside the window
    change nothing; a title won and revoked inside the window still counts.

    Args:
        table: Rows with ``firm_id``, ``batch_year`` (t + 1) and ``holds_title``.
        events: ``firm_id, batch_year, revoked_year``; None or empty gives all NaN.
        horizon: Batches in the window (1 is ``designated_next``).

    Example:
        >>> t = pd.DataFrame({"firm_id": ["a", "a", "b"], "batch_year": [2020, 2021, 2020],
        ...                   "holds_title": [False, False, False]})
        >>> ev = pd.DataFrame({"firm_id": ["a"], "batch_year": [2022], "revoked_year": [np.nan]})
        >>> designated_within(t, ev, 2).tolist()
        [0.0, 1.0, 0.0]
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, not {horizon}")
    if events is None or events.empty:
        return pd.Series(np.nan, index=table.index)
    first = table["batch_year"].to_numpy(dtype="int64")
    pairs = (table[["firm_id"]].assign(_row=np.arange(len(table)), _first=first)
             .merge(events[["firm_id", "batch_year"]], on="firm_id", how="inner"))
    inside = (pairs["batch_year"] >= pairs["_first"]) & (pairs["batch_year"] < pairs["_first"] + horizon)
    y = np.zeros(len(table))
    y[pairs.loc[inside, "_row"].to_numpy()] = 1.0
    covered = (first >= events["batch_year"].min()) & (first + horizon - 1 <= events["batch_year"].max())
    return pd.Series(np.where(covered & candidate_mask(table), y, np.nan), index=table.index)


def candidate_mask(table: pd.DataFrame) -> np.ndarray:
    """Which rows are candidates for the next batch: every row that does not hold a valid title
    at the end of its year. Unknown holding (NA, or no ``holds_title`` column) counts as a
    candidate. Returns a bool array of shape (n_rows,)."""
    if "holds_title" not in table.columns:
        return np.ones(len(table), dtype=bool)
    holds = pd.array(table["holds_title"], dtype="boolean")
    return ~holds.fillna(False).to_numpy(dtype=bool)


def feature_columns(table: pd.DataFrame, criteria_features: str = "margins") -> list[str]:
    """Model input columns of a feature table, in FEATURE_DIMENSIONS order.

    Args:
        table: A feature table.
        criteria_features: How the criteria enter: ``"margins"`` (default: the per-concept
            margins and met flags, the same under every regime) or ``"per_regime"`` (the pass
            flags and shortfalls named by each regime's criteria, missing outside it).
    """
    if criteria_features not in CRITERIA_FEATURES:
        raise ValueError(f"criteria_features must be one of {', '.join(CRITERIA_FEATURES)}, not {criteria_features!r}")
    other = {f for name, names in CRITERIA_FEATURES.items() if name != criteria_features for f in names}
    return [c for c in FEATURE_DIMENSIONS if c in table.columns and c not in other]


def categorical_levels() -> dict[str, list[str]]:
    """Fixed category levels of the categorical features, owned here so that training and
    scoring always agree."""
    levels = {name: list(CATEGORY_LEVELS[name]) for name in ("province", "sector", "ownership")}
    levels["size_band"] = list(SIZE_BANDS)
    return levels


def scoring_window(panel: pd.DataFrame, year: int | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows features need: each scored firm's scored year ``t`` (its latest, or ``year``
    for firms with a row in it) and the years ``t-1 .. t-LOOKBACK``; and the mask of the scored
    rows among them."""
    years = panel["year"].to_numpy()
    if year is not None:
        firms = panel["firm_id"].to_numpy()[years == year]
        window = panel[(years <= year) & (years >= year - LOOKBACK) & panel["firm_id"].isin(firms).to_numpy()]
        return window, window["year"].to_numpy() == year
    target = panel.groupby("firm_id", sort=False)["year"].transform("max").to_numpy()
    keep = years >= target - LOOKBACK
    return panel[keep], years[keep] == target[keep]


def feature_rows(panel: pd.DataFrame, *, events: pd.DataFrame | None = None,
                 context: pd.DataFrame | None = None, year: int | None = None) -> pd.DataFrame:
    """Feature rows of each firm's scored year.

    Args:
        panel: Contract rows of whole firms (at least every row of a firm's window), any order;
            shape (n_rows, n_columns).
        events: Designation events; None when no history is known.
        context: Province/sector records (see :func:`lgml.features.context_tables`).
        year: Fiscal year to score; None scores each firm's latest year.

    Returns:
        :func:`lgml.features.build_features` rows of the scored years only, one per firm (none
        for a firm without a row in ``year``), index reset.
    """
    window, scored = scoring_window(canonical_rows(panel), year)
    return build_features(window, events, context, rows=scored)
