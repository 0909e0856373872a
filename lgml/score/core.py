"""Pure scoring: feature rows in, scored and ranked rows out (no files, no passes).

:func:`score_rows` builds the features of each firm's scored year with
:func:`lgml.features.feature_rows` and predicts them (:func:`predict_rows`); :func:`rank_scores`
ranks the firms; :func:`finish_scores` adds the model's identity and orders the output;
:func:`province_summary` sums up per province. :func:`score_panel` does all of it for a panel
held in memory. The streamed ``lgml score`` (:mod:`lgml.score`) runs the very same functions
bucket by bucket.

Probabilities are calibrated probabilities of designation in one of the batches t + 1 .. t + h
of the model's horizon h (batch t + 1 for h = 1); re-review probabilities (``p_review_pass``)
of keeping the title at its re-review in batch t + 1; growth is the
expected log revenue growth ``log(revenue[t+1] / revenue[t])``; contributions are in log-odds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lgml.features import candidate_mask, feature_rows
from lgml.schema import IDENTITY_COLUMNS
from lgml.score.horizons import horizon_of, probability_column

THRESHOLDS = (0.5, 0.2, 0.1)
GROUP_PREFIX = "shap_"
FRONT_COLUMNS = ("firm_id", "year", "batch_year", "province", "holds_title", "probability", "log_odds",
                 "rank_national", "percentile_national", "rank_province", "percentile_province")


def history_notice(bundle: Any, events: pd.DataFrame | None, source: str | None = None) -> str:
    """One line saying which designation history the scores saw.

    With ``events``: their source, batch span and count. Without: that title holders are
    unknown, and which history the bundle's training data held, as far as its metadata says
    (the batches it was trained and tested on, its data hash).
    """
    if events is not None:
        span = _span(events["batch_year"]) if len(events) else "none"
        return f"events {source or 'given'}: batches {span}, {len(events):,} designations"
    meta = bundle.metadata
    known = []
    split = meta.get("split") or {}
    batches = [*(split.get("valid") or []), *(split.get("test") or [])]
    if batches:
        known.append(f"labels of batches up to {max(batches)}")
    if meta.get("data_hash"):
        known.append(f"data sha256 {str(meta['data_hash'])[:12]}")
    trained = ", ".join(known) if known else "not recorded in the bundle"
    return f"none given: title holders unknown, history features assume none (training data: {trained})"


def rules_notice(bundle: Any, batch_years: Sequence[int]) -> str:
    """One line saying which rules the forecasts apply: the regime of each forecast batch, and
    the regimes of the batches the model learned from (as far as its metadata says). A model
    with per-regime criteria features that never learned a batch of a forecast's regime is
    flagged: those features are empty for it."""
    from lgml import criteria, features

    meta = bundle.metadata
    regimes: dict[str, list[int]] = {}
    for year in sorted({int(y) for y in batch_years}):
        regimes.setdefault(criteria.regime_for(year), []).append(year)
    parts = [f"batch {_span(years)} under the {regime} rules ({criteria.RULES[regime]['source']})"
             for regime, years in regimes.items()]
    learned = sorted({int(y) for k in ("train", "valid") for y in (meta.get("batches") or {}).get(k, [])})
    line = "; ".join(parts)
    if learned:
        seen = sorted({criteria.regime_for(y) for y in learned})
        line += f"; the model learned from batches {_span(learned)} ({' and '.join(seen)} rules)"
        per_regime = set(meta.get("features") or ()) & set(features.PER_REGIME_FEATURES)
        unseen = [r for r in regimes if r not in seen]
        if per_regime and unseen:
            line += (f" with per-regime criteria features, empty under the {' and '.join(unseen)} rules: "
                     "retrain with criteria_features: margins")
    return line


def _span(years: Sequence[Any] | pd.Series) -> str:
    years = [int(y) for y in pd.Series(years).dropna()]
    if not years:
        return "none"
    return f"{min(years)}-{max(years)}" if min(years) != max(years) else str(min(years))


# ---------------------------------------------------------------------------------------------
# Scoring whole firms (pure; runs in-process or on Dask workers)


def score_rows(panel: pd.DataFrame, bundle: Any, *, growth: Any = None, events: pd.DataFrame | None = None,
               context: pd.DataFrame | None = None, year: int | None = None, explain: bool = False,
               macro_growth: float | None = None, review: Any = None, others: Sequence[Any] = ()) -> pd.DataFrame:
    """Score whole firms: features of each firm's scored year, then predictions.

    Title holders (known from ``events``) get no designation probability: they are not
    candidates for the next batch. They are still scored for growth.

    Args:
        panel: Contract rows of whole firms, shape (n_rows, n_columns); see
            :func:`lgml.features.feature_rows`.
        bundle: Designation bundle (``lgml.modeling.bundle.Bundle``).
        growth: Optional growth bundle.
        events: Designation events; None when no history is known (``holds_title`` is then NA).
        context: Province/sector records; None uses the bundle's own (or, for bundles without
            one, the records of ``panel`` itself, which then depend on the rows scored together).
        year: Fiscal year to score; None scores each firm's latest year.
        explain: Add grouped contributions (``shap_<dimension>``, log-odds) and ``reasons``.
        macro_growth, review, others: See :func:`predict_rows`.

    Returns:
        DataFrame with one row per scored firm: ``firm_id``, ``year`` (fiscal year t),
        ``batch_year`` (t + 1), ``province``, ``holds_title``, ``probability`` (calibrated,
        0-1; NaN for title holders), ``log_odds`` (the model's raw score, before calibration;
        NaN for title holders), ``horizon`` (the bundle's horizon: ``probability`` is of a
        designation in one of the batches t+1 .. t+horizon), ``probability_h<h>`` with
        ``others``, ``review_due``, ``review_round`` and ``p_review_pass`` with ``review``, ``growth`` (expected
        log growth) and ``growth_p10``/``growth_p90`` with a growth bundle (with quantile
        models), then the explanation columns. Unranked: see :func:`rank_scores`.

    Raises:
        lgml.modeling.bundle.BundleInputError: The features do not fit the model (missing
            columns, unseen category levels, with counts).
    """
    context = bundle.context if context is None else context
    table = feature_rows(panel, events=events, context=context, year=year)
    out = predict_rows(table, bundle, growth=growth, history_known=events is not None, explain=explain,
                       macro_growth=macro_growth, review=review, others=others)
    return with_identity(out, panel)


def with_identity(scored: pd.DataFrame, panel: pd.DataFrame) -> pd.DataFrame:
    """``scored`` with the panel's ``firm_name`` and ``credit_code`` of each scored firm-year
    (text, missing when the panel has none), matched on ``firm_id, year``."""
    names = [c for c in IDENTITY_COLUMNS if c in panel.columns]
    if not names or scored.empty:
        return scored
    ids = (panel[["firm_id", "year", *names]].drop_duplicates(["firm_id", "year"])
           .astype({"firm_id": "str", "year": "int64", **dict.fromkeys(names, "str")}))
    return scored.merge(ids, on=["firm_id", "year"], how="left").set_axis(scored.index, axis=0)


def predict_rows(table: pd.DataFrame, bundle: Any, *, growth: Any = None, history_known: bool = True,
                 explain: bool = False, macro_growth: float | None = None, review: Any = None,
                 others: Sequence[Any] = ()) -> pd.DataFrame:
    """Predictions for feature rows (the second half of :func:`score_rows`).

    Args:
        table: Feature rows of the scored years, shape (n_firms, n_columns).
        bundle: Designation bundle (the primary one: ``probability``, ``log_odds`` and the
            explanation columns are its own).
        growth: Optional growth bundle.
        history_known: Whether the features saw designation events (else ``holds_title`` is NA
            and every firm is a candidate).
        explain: Add the explanation columns.
        macro_growth: The year's growth level to add to the growth model's relative growth (a
            rate, 0.05 = 5%); None takes the growth bundle's default (recent years).
        review: Optional review bundle: adds ``review_due`` and ``p_review_pass`` (calibrated
            probability of keeping the title at the re-review in batch t+1, for the rows with
            ``review_due`` only, NaN elsewhere; as calibrated, before :func:`level_reviews`)
            and ``review_round``. Needs ``history_known``.
        others: Designation bundles of other horizons: adds ``probability_h<h>`` for the
            primary's horizon and each of theirs (candidates only, not yet made monotone: see
            :func:`lgml.score.horizons.repair_scores`).

    Returns:
        See :func:`score_rows`.
    """
    # Without events nobody is known to hold a title: every firm is a candidate.
    where = candidate_mask(table) if history_known else np.ones(len(table), bool)
    out = pd.DataFrame({
        "firm_id": table["firm_id"].astype("str"), "year": table["year"].astype("int64"),
        "batch_year": table["batch_year"].astype("int64"), "province": table["province"].astype("str"),
        "holds_title": pd.array(~where if history_known else [pd.NA] * len(table), dtype="boolean"),
    })
    candidates = table[where]
    probability, log_odds = np.full(len(table), np.nan), np.full(len(table), np.nan)
    matrix = np.empty((0, len(bundle.features)))
    raw = np.empty(0)
    if len(candidates):
        matrix = bundle.model_matrix(candidates)
        raw = bundle.raw_from_matrix(matrix)
        probability[where] = bundle.calibrator.transform(raw)
        log_odds[where] = raw
    out["probability"] = probability
    out["log_odds"] = log_odds
    out["horizon"] = np.full(len(table), horizon_of(bundle), dtype="int64")
    if others:
        out = out.assign(**_horizon_columns(bundle, others, candidates, where, probability))
    if review is not None:
        out = out.assign(**_review_columns(review, table))
    if growth is not None:
        out = out.assign(**_growth_columns(growth, table, macro_growth))
    if explain:
        out = out.assign(**_explain_columns(bundle, candidates, where, len(table), raw, matrix))
    return out


def _horizon_columns(bundle: Any, others: Sequence[Any], candidates: pd.DataFrame, where: np.ndarray,
                     probability: np.ndarray) -> dict[str, np.ndarray]:
    """``probability_h<h>`` of the primary bundle (``probability``) and of each other horizon's
    bundle, for the candidate rows (NaN for title holders)."""
    cols = {probability_column(horizon_of(bundle)): probability.copy()}
    for other in others:
        values = np.full(len(where), np.nan)
        if len(candidates):
            values[where] = other.calibrator.transform(other.predict_raw(candidates))
        cols[probability_column(horizon_of(other))] = values
    return dict(sorted(cols.items()))


def _review_columns(review: Any, table: pd.DataFrame) -> dict[str, Any]:
    """``review_due`` (holds a title whose re-review falls in batch t+1), ``review_round`` (1 for
    the first re-review ...) and ``p_review_pass`` (calibrated, not yet levelled: see
    :func:`level_reviews`), for those rows only; NaN for every other row."""
    if "review_due" not in table.columns:
        from lgml.modeling.bundle import BundleInputError

        raise BundleInputError(f"bundle {review.path.name}: the feature rows have no review_due column")
    due = pd.array(table["review_due"], dtype="boolean").fillna(False).to_numpy(dtype=bool)
    p = np.full(len(table), np.nan)
    if due.any():
        p[due] = review.calibrator.transform(review.predict_raw(table[due]))
    rounds = np.where(due, pd.to_numeric(table["review_round"], errors="coerce").to_numpy(dtype=float), np.nan)
    return {"review_due": due, "review_round": rounds, "p_review_pass": p}


def level_reviews(scored: pd.DataFrame, review: Any) -> tuple[pd.DataFrame, str | None]:
    """Level each re-review's ``p_review_pass`` to the review bundle's pass rate, as its
    evaluation did (``metadata["pass_rate"]``; :func:`lgml.modeling.calibrate.shift_to_rate`):
    the holders of one review (same batch, same years held) get one log-odds shift so that
    their probabilities average the rate; ranks within a review do not change. A review of
    fewer than :data:`lgml.modeling.calibrate.MIN_LEVEL_ROWS` holders keeps the calibrated
    level. Bundles without a pass rate (``pass_rate: calibrated``) are left as calibrated.

    Args:
        scored: Scored rows with ``batch_year``, ``review_round`` and ``p_review_pass``.
        review: The review bundle.

    Returns:
        A new frame and one line saying what was done (None when nothing could be).
    """
    rate = (review.metadata.get("pass_rate") or {}).get("rate")
    if rate is None or not scored["p_review_pass"].notna().any():
        return scored, None
    from lgml.features import REVIEW_EVERY
    from lgml.modeling.calibrate import MIN_LEVEL_ROWS, review_cohorts, shift_to_rate

    held = pd.DataFrame({"batch_year": scored["batch_year"].to_numpy(dtype=float),
                         "title_years": REVIEW_EVERY * scored["review_round"].to_numpy(dtype=float)})
    p, shifts = shift_to_rate(scored["p_review_pass"].to_numpy(dtype=float), review_cohorts(held), float(rate))
    done = sum(v is not None for v in shifts.values())
    line = (f"levelled to the model's pass rate {float(rate):.0%} in {done} of {len(shifts)} review(s) "
            f"(one shift per review; reviews of fewer than {MIN_LEVEL_ROWS} holders keep the calibrated level)")
    return scored.assign(p_review_pass=p), line


def _growth_columns(growth: Any, table: pd.DataFrame, macro_growth: float | None) -> dict[str, Any]:
    """``growth`` (level + relative), the ``growth_p10``/``growth_p90`` interval, ``growth_level``
    (the year's level added) and ``growth_level_source`` (where the level came from)."""
    n = len(table)
    if n:
        cols = growth.predict_growth(table, macro_growth=macro_growth)
    else:
        cols = {"growth": np.empty(0), "growth_level": np.empty(0), "growth_level_source": ""}
        if getattr(growth, "quantile_boosters", None):
            cols.update(growth_p10=np.empty(0), growth_p90=np.empty(0))
    cols["growth_level_source"] = pd.array([cols["growth_level_source"]] * n, dtype="str")
    return cols


def _explain_columns(bundle: Any, candidates: pd.DataFrame, where: np.ndarray, n: int,
                     raw: np.ndarray, matrix: np.ndarray) -> dict[str, Any]:
    """``shap_<dimension>`` (log-odds summed per criterion dimension) and ``reasons`` (top 3)
    for the candidate rows, NaN/empty for the others."""
    from lgml.explain.contributions import contributions, group_contributions
    from lgml.explain.reasons import top_reasons

    groups_map = bundle.metadata.get("feature_groups") or None
    if len(candidates):
        contrib, _ = contributions(bundle, candidates, raw=raw, matrix=matrix)
        groups = group_contributions(contrib, groups_map)
        reasons = top_reasons(contrib, candidates, k=3).to_numpy(dtype=object)
    else:
        groups = group_contributions(pd.DataFrame(columns=bundle.features, dtype=float), groups_map)
        reasons = np.empty(0, dtype=object)
    cols: dict[str, Any] = {}
    for name in groups.columns:
        values = np.full(n, np.nan)
        values[where] = groups[name].to_numpy(dtype=float)
        cols[f"{GROUP_PREFIX}{name}"] = values
    text = np.full(n, None, dtype=object)
    text[where] = reasons
    cols["reasons"] = pd.array(text, dtype="str")
    return cols


def rank_scores(scored: pd.DataFrame) -> pd.DataFrame:
    """Add ranks and percentiles among candidates, nationally and within province.

    Candidates are ordered by ``probability`` and, where probabilities are equal, by the model's
    ``log_odds`` (a calibrator may map different scores to one probability; the model still
    tells them apart). Ranks: 1 = most likely; only firms equal in both share a rank (the best).
    Percentile: percent of the candidates of the same scope ordered at or below the firm (the
    top firm has 100). Title holders (no probability) get neither.

    Args:
        scored: Output of :func:`score_rows`, any number of rows, any order. Not modified.
            Without a ``log_odds`` column, ties in probability stay ties.

    Returns:
        A new frame with ``rank_national``, ``percentile_national``, ``rank_province`` and
        ``percentile_province`` (ranks as nullable integers).
    """
    order = _order_key(scored)
    by = order.groupby(scored["province"].to_numpy(), sort=False)
    return scored.assign(
        rank_national=order.rank(ascending=False, method="min").astype("Int64"),
        percentile_national=100.0 * order.rank(method="max", pct=True),
        rank_province=by.rank(ascending=False, method="min").astype("Int64"),
        percentile_province=100.0 * by.rank(method="max", pct=True),
    )


def _order_key(scored: pd.DataFrame) -> pd.Series:
    """One number per row that orders rows as (probability, log_odds) do; NaN without a
    probability."""
    p = scored["probability"].to_numpy(dtype=float)
    tie = scored["log_odds"].to_numpy(dtype=float) if "log_odds" in scored.columns else np.zeros(len(scored))
    tie = np.where(np.isnan(tie), -np.inf, tie)
    known = ~np.isnan(p)
    key = np.full(len(scored), np.nan)
    if known.any():
        pos = np.flatnonzero(known)
        sort = pos[np.lexsort((tie[pos], p[pos]))]
        pairs = np.column_stack([p[sort], tie[sort]])
        new = np.r_[True, np.any(pairs[1:] != pairs[:-1], axis=1)]
        key[sort] = np.cumsum(new)
    return pd.Series(key, index=scored.index)


def province_summary(scored: pd.DataFrame, thresholds: Sequence[float] = THRESHOLDS) -> pd.DataFrame:
    """Per province (and a final ``All`` row): firms scored, title holders, candidates,
    expected designations (sum of probabilities), candidates at or above each threshold, the
    highest probability, with growth scores the mean expected log growth and, with review
    scores (``p_review_pass``), the holders due for re-review (``review_due``) and the expected
    review failures (``expected_review_failures``, the sum of ``1 - p_review_pass``).

    Args:
        scored: Scored rows (``province``, ``probability``, ``holds_title``, maybe ``growth``,
            ``review_due`` and ``p_review_pass``).
        thresholds: Probability thresholds counted.

    Returns:
        DataFrame, one row per province sorted by expected designations (descending), then ``All``.
    """
    frame = pd.DataFrame({"province": scored["province"].astype("str"), "p": scored["probability"],
                          "holder": ~candidate_mask(scored)})
    aggs = {"firms": ("p", "size"), "title_holders": ("holder", "sum"), "candidates": ("p", "count"),
            "expected_designations": ("p", "sum")}
    for t in thresholds:
        frame[f"p>={t:g}"] = frame["p"] >= t
        aggs[f"p>={t:g}"] = (f"p>={t:g}", "sum")
    aggs["max_probability"] = ("p", "max")
    if "growth" in scored.columns:
        frame["growth"] = scored["growth"].to_numpy()
        aggs["mean_growth"] = ("growth", "mean")
    if "p_review_pass" in scored.columns:
        frame["due"] = scored["review_due"].to_numpy(dtype=bool)
        frame["fails"] = 1.0 - scored["p_review_pass"].to_numpy(dtype=float)
        aggs.update(review_due=("due", "sum"), expected_review_failures=("fails", "sum"))
    per = frame.groupby("province").agg(**aggs).reset_index()
    per = per.sort_values(["expected_designations", "province"], ascending=[False, True], kind="stable")
    total = frame.assign(province="All").groupby("province").agg(**aggs).reset_index()
    out = pd.concat([per, total], ignore_index=True)
    counts = ["firms", "title_holders", "candidates", *(f"p>={t:g}" for t in thresholds),
              *(["review_due"] if "review_due" in out.columns else [])]
    return out.astype({c: "int64" for c in counts})


def score_panel(panel: pd.DataFrame, bundle: Any, *, growth: Any = None, events: pd.DataFrame | None = None,
                context: pd.DataFrame | None = None, year: int | None = None,
                explain: bool = False, macro_growth: float | None = None, review: Any = None,
                others: Sequence[Any] = ()) -> pd.DataFrame:
    """Score a canonical panel held in memory (see :func:`score_rows`) and rank the firms.

    With ``others`` (designation bundles of other horizons), each firm's ``probability_h<h>``
    are made monotone across horizons (:func:`lgml.score.horizons.repair_scores`) and
    ``probability`` is the repaired value of ``bundle``'s horizon, before ranking. With
    ``review``, ``p_review_pass`` is levelled per review (:func:`level_reviews`).

    Example:
        >>> scores = score_panel(sim.panel, bundle, events=sim.events)  # doctest: +SKIP
    """
    scored = score_rows(panel, bundle, growth=growth, events=events, context=context, year=year, explain=explain,
                        macro_growth=macro_growth, review=review, others=others)
    if others:
        from lgml.score.horizons import repair_scores

        scored, _ = repair_scores(scored, [horizon_of(b) for b in (bundle, *others)], horizon_of(bundle))
    if review is not None:
        scored, _ = level_reviews(scored, review)
    return finish_scores(rank_scores(scored), bundle, growth, history_notice(bundle, events), review=review,
                         others=others)


def finish_scores(ranked: pd.DataFrame, bundle: Any, growth: Any, history: str, *, review: Any = None,
                  others: Sequence[Any] = ()) -> pd.DataFrame:
    """The output of scoring: identity columns added, columns in output order, rows by
    national rank, then firm.

    Args:
        ranked: Output of :func:`rank_scores`, shape (n_firms, n_columns).
        bundle: Designation bundle (its ``name`` and ``version`` fill ``model``/``model_version``).
        growth: Growth bundle or None (``growth_model``/``growth_model_version``).
        history: :func:`history_notice` line (the ``designation_history`` column).
        review: Review bundle or None (``review_model``/``review_model_version``).
        others: Designation bundles of other horizons (``horizon_models``: ``h<h> name
            version`` of every horizon, the primary's included, in horizon order).

    Returns:
        A new frame of the same rows: :data:`FRONT_COLUMNS` (with ``firm_name`` and
        ``credit_code`` after ``firm_id`` when the input gave any), the other columns, then the
        model identity columns (text).
    """
    extra = {"model": bundle.name, "model_version": bundle.version}
    if growth is not None:
        extra.update(growth_model=growth.name, growth_model_version=growth.version)
    if review is not None:
        extra.update(review_model=review.name, review_model_version=review.version)
    if others:
        every = sorted((horizon_of(b), f"{b.name} {b.version}") for b in (bundle, *others))
        extra["horizon_models"] = "; ".join(f"h{h} {who}" for h, who in every)
    extra["designation_history"] = history
    # Names and codes beside the firm ID, when the input had them.
    given = [c for c in IDENTITY_COLUMNS if c in ranked.columns and ranked[c].notna().any()]
    ranked = ranked.drop(columns=[c for c in IDENTITY_COLUMNS if c in ranked.columns and c not in given])
    front = [FRONT_COLUMNS[0], *given, *FRONT_COLUMNS[1:]]
    rest = [c for c in ranked.columns if c not in front]
    out = ranked[front + rest].assign(**{k: pd.array([v] * len(ranked), dtype="str") for k, v in extra.items()})
    order = np.lexsort((out["firm_id"].to_numpy(dtype=object),
                        out["rank_national"].to_numpy(dtype="float64", na_value=np.inf)))
    return out.iloc[order].reset_index(drop=True)


