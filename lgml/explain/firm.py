"""One firm, everything a reader needs; orchestration of `lgml explain`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lgml import criteria
from lgml.explain.contributions import (
    contributions,
    group_contributions,
    probability_points,
)
from lgml.explain.reasons import criterion_phrases, reason_matrix, reason_units
from lgml.explain.whatif import counterfactual
from lgml.features import candidate_mask, feature_rows
from lgml.inputs import criteria_inputs
from lgml.io import InputError
from lgml.modeling.bundle import BundleInputError
from lgml.validate import ContractError
from lgml.vocabulary import feature_label, group_label

# ------------------------------------------------------------------------------------------------
# One firm, everything a reader needs
# ------------------------------------------------------------------------------------------------

# Contract columns that may be blank, with what a blank costs.
_NULLABLE_EFFECTS = {
    "rd_expense": "R&D rules and the R&D part of the score cannot be shown",
    "rd_staff": "R&D staff share (equity route, score) cannot be shown",
    "equity_financing": "counted as no new equity",
    "niche_market_share": "niche market share rule cannot be shown",
    "digital_level": "digital level (information systems rule, score) cannot be shown",
    "ownership": "ownership treated as unknown",
}


def criteria_checklist(firm_rows: pd.DataFrame, year: int) -> list[dict[str, Any]]:
    """Every Little Giant criterion of batch ``year + 1`` for one firm, judged on fiscal year
    ``year`` (with ``year - 1`` and ``year - 2`` for two-year rules).

    Args:
        firm_rows: The firm's panel rows (contract columns, money in yuan).
        year: Fiscal year judged.

    Returns:
        One dict per criterion in rule order: ``criterion``, ``dimension``, ``dimension_label``
        (bilingual), ``label_en``, ``label_zh``, ``status`` (``pass``, ``fail`` or ``missing``),
        ``shortfall`` (criterion units, see :data:`lgml.criteria.CRITERIA`; None when passed or
        unknown) and ``text`` (:func:`lgml.explain.reasons.criterion_phrases`).
    """
    batch = year + 1
    inputs = criteria_inputs(firm_rows)
    inputs = pd.concat([inputs, criteria.srdi_score(inputs)], axis=1)
    row = inputs[inputs["year"] == year]
    if row.empty:
        raise ValueError(f"no row for fiscal year {year}")
    judged = pd.concat([row, criteria.check(row, batch)], axis=1)
    out = []
    for name in criteria.RULES[criteria.regime_for(batch)]["criteria"]:
        meta = criteria.CRITERIA[name]
        short = float(judged[f"short_{name}"].iloc[0])
        passed = bool(judged[f"pass_{name}"].iloc[0])
        status = "pass" if passed else ("missing" if np.isnan(short) else "fail")
        out.append({"criterion": name, "dimension": meta["dimension"],
                    "dimension_label": group_label(meta["dimension"]),
                    "label_en": meta["label_en"], "label_zh": meta["label_zh"], "status": status,
                    "shortfall": None if passed or np.isnan(short) else short,
                    "text": criterion_phrases(name, judged, batch)[0]})
    return out


def eligibility(checklist: list[dict[str, Any]], batch_year: int) -> dict[str, Any]:
    """The firm's standing on the criteria in three states, from :func:`criteria_checklist`:
    ``meets`` (every criterion passes), ``fails`` (at least one criterion fails on the data
    given) or ``unknown`` (none fails, but some cannot be shown for missing data).

    Returns:
        Dict with ``state``, ``badge`` (short label), ``caption`` (one sentence: for ``fails``
        which criteria, for ``unknown`` which values are missing and the answer either way),
        ``failed`` and ``missing`` (criterion names).
    """
    failed = [c for c in checklist if c["status"] == "fail"]
    missing = [c for c in checklist if c["status"] == "missing"]
    n = len(checklist)
    names = lambda items: ", ".join(c["label_en"] for c in items)  # noqa: E731
    if failed:
        state, badge = "fails", f"fails {len(failed)} of {n}"
        caption = f"fails {len(failed)} of the {n} Little Giant criteria of batch {batch_year}: {names(failed)}"
        if missing:
            caption += f" (and cannot show {names(missing)}: data missing)"
    elif missing:
        state, badge = "unknown", "cannot tell"
        them = "it is" if len(missing) == 1 else "all of them are"
        caption = (f"cannot tell: meets the other {n - len(missing)} criteria of batch {batch_year}, but "
                   f"{names(missing)} cannot be shown (data missing); eligible if {them} met, not eligible otherwise")
    else:
        state, badge = "meets", "eligible"
        caption = f"meets every one of the {n} Little Giant criteria of batch {batch_year}"
    return {"state": state, "badge": badge, "caption": caption,
            "failed": [c["criterion"] for c in failed], "missing": [c["criterion"] for c in missing]}


def data_quality(firm_rows: pd.DataFrame, feature_row: pd.Series, year: int, features: Sequence[str]) -> list[str]:
    """Plain notes on what is missing for one firm: blank contract fields of ``year``, absent
    prior years, features the model sees as missing."""
    notes = []
    last = firm_rows[firm_rows["year"] == year].iloc[0]
    for col, effect in _NULLABLE_EFFECTS.items():
        if col in last.index and pd.isna(last[col]):
            notes.append(f"{col} is blank in {year}: {effect}")
    have = set(firm_rows["year"].astype(int))
    absent = [y for y in (year - 1, year - 2) if y not in have]
    if absent:
        notes.append(f"no row for {', '.join(map(str, absent))}: two-year rules (R&D in each of 2 years, "
                     "2-year growth) cannot be shown")
    missing = [f for f in features if f in feature_row.index and pd.isna(feature_row[f])
               and not f.startswith(("pass_", "short_"))]
    if missing:
        shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        notes.append(f"{len(missing)} model input(s) missing (the model treats them as unknown): {shown}")
    return notes


def model_info(bundle: Any) -> dict[str, Any]:
    """Name, version and provenance of a bundle, for report footers."""
    meta = bundle.metadata
    return {
        "name": bundle.name, "task": bundle.task, "version": bundle.version,
        "model_sha256": (meta.get("model_sha256") or "")[:12], "git_commit": meta.get("git_commit"),
        "trained_at": meta.get("trained_at") or meta.get("created_at"), "path": str(bundle.path),
        "n_features": len(bundle.features), "calibration": getattr(bundle.calibrator, "method", None),
    }


def growth_prediction(growth_bundle: Any, table: pd.DataFrame) -> dict[str, Any]:
    """Expected revenue growth of the next year for the rows of ``table`` (one row), from a
    growth bundle: ``log_growth`` (log ratio), ``growth_pct`` (percent) and, when the bundle
    has quantile models, the 10%-90% interval in percent; ``level_source``: where the year's
    growth level came from."""
    pred = growth_bundle.predict_growth(table)
    value = float(pred["growth"][0])
    out: dict[str, Any] = {"log_growth": value, "growth_pct": 100 * math.expm1(value),
                           "level_source": pred["growth_level_source"]}
    if "growth_p10" in pred:
        lo, hi = float(pred["growth_p10"][0]), float(pred["growth_p90"][0])
        out.update(p10_pct=100 * math.expm1(lo), p90_pct=100 * math.expm1(hi))
    return out


def province_percentile(probability: float, peers: np.ndarray) -> float:
    """Percent of ``peers`` (probabilities of the firms of the same province and year) scoring
    at or below ``probability``; NaN without peers."""
    peers = np.asarray(peers, dtype=float)
    peers = peers[~np.isnan(peers)]
    if not len(peers):
        return float("nan")
    return float(100.0 * np.mean(peers <= probability + 1e-12))


def province_rank(score: float, peer_scores: np.ndarray, is_peer: bool = True) -> dict[str, int]:
    """The firm's place among its province's candidates, ties kept as ties.

    Args:
        score: The firm's model score (log-odds; it orders firms as ``lgml score``'s ranks do).
        peer_scores: Scores of the province's candidates of the same year, the firm included
            when it is a candidate.
        is_peer: Whether ``peer_scores`` includes the firm itself.

    Returns:
        ``{"rank": 1 + number of candidates scoring higher, "tied": other candidates with
        exactly the same score, "of": number of candidates}``.

    >>> province_rank(0.5, np.array([0.9, 0.5, 0.5, 0.1]))
    {'rank': 2, 'tied': 1, 'of': 4}
    """
    peer_scores = np.asarray(peer_scores, dtype=float)
    peer_scores = peer_scores[~np.isnan(peer_scores)]
    return {"rank": int(np.sum(peer_scores > score)) + 1,
            "tied": max(int(np.sum(peer_scores == score)) - int(is_peer), 0), "of": len(peer_scores)}


def _identity(firm_rows: pd.DataFrame) -> dict[str, str | None]:
    """The firm's name and unified social credit code from its latest panel row, when the panel
    carries them."""
    out: dict[str, str | None] = {}
    for col in ("firm_name", "credit_code"):
        values = firm_rows[col].dropna() if col in firm_rows.columns else pd.Series(dtype=object)
        values = values[values.astype(str).str.strip() != ""]
        out[col] = str(values.iloc[-1]).strip() if len(values) else None
    return out


def firm_explanation(bundle: Any, feature_row: pd.DataFrame, firm_rows: pd.DataFrame, *,
                     peers: np.ndarray | None = None, rank: dict[str, int] | None = None,
                     events: pd.DataFrame | None = None,
                     context: pd.DataFrame | None = None, growth_bundle: Any = None, target: float = 0.5,
                     k: int = 10, counterfactual_on: bool = True) -> dict[str, Any]:
    """Everything the per-firm report shows, as plain JSON-compatible data.

    Args:
        bundle: Designation bundle.
        feature_row: The firm's feature row (a one-row feature table).
        firm_rows: The firm's panel rows (fiscal years up to the row's ``year``).
        peers: Probabilities of the candidates of the same province and year (for the percentile).
        rank: The firm's rank among those candidates (:func:`province_rank`), or None.
        events: Designation events (for the counterfactual's title history).
        context: Province/sector records the features were built with.
        growth_bundle: Optional growth bundle.
        target: Counterfactual target probability (0-1).
        k: Reasons listed.
        counterfactual_on: Search for a counterfactual.

    Returns:
        Dict with ``firm_id``, ``year``, ``batch_year``, ``province``, ``sector``,
        ``probability`` (0-1), ``raw_score`` and ``base_value`` (log-odds), ``base_probability``,
        ``percentile_in_province``, ``n_peers``, ``rank_in_province`` (:func:`province_rank`, or
        None), ``firm_name`` and ``credit_code`` (None when the panel has none), ``contributions`` (feature -> log-odds),
        ``contributions_pp`` (feature -> probability points), ``groups`` / ``groups_pp``,
        ``group_labels``, ``reasons`` (list of dicts: ``feature``, ``text``, ``log_odds``, ``pp``),
        ``criteria`` (:func:`criteria_checklist`), ``eligibility`` (:func:`eligibility`: meets,
        fails or cannot tell), ``eligible`` (every criterion met on the data given: the model
        feature), ``counterfactual``, ``growth``,
        ``data_quality``, ``model``, ``kind`` (``review`` for a review bundle, else
        ``designation``) and ``review`` (None here; see :mod:`lgml.explain.review`).
    """
    row = feature_row.iloc[[0]]
    contrib, base = contributions(bundle, row)
    raw = float(base[0] + contrib.iloc[0].sum())
    calibrate = bundle.calibrator.transform
    prob = float(calibrate(np.array([raw]))[0])
    points = probability_points(contrib, base, calibrate)
    groups = group_contributions(contrib, bundle.metadata.get("feature_groups") or None)
    groups_pp = group_contributions(points, bundle.metadata.get("feature_groups") or None)
    units, phrases, values = reason_matrix(contrib, row, k)
    members = reason_units(bundle.features, int(row["batch_year"].iloc[0]))
    reasons = [{"unit": u, "features": members[u], "text": p, "log_odds": float(v),
                "pp": float(points.iloc[0][members[u]].sum())}
               for u, p, v in zip(units[0], phrases[0], values[0]) if u]
    firm_id, year = str(row["firm_id"].iloc[0]), int(row["year"].iloc[0])
    cf = None
    if counterfactual_on:
        cf = counterfactual(bundle, firm_rows, firm_id, year, events=events, context=context, target=target,
                            feature_row=row).to_dict()
    peers = np.asarray([] if peers is None else peers, dtype=float)
    series = contrib.iloc[0]
    checklist = criteria_checklist(firm_rows, year)
    return {
        "firm_id": firm_id, "year": year, "batch_year": year + 1,
        "province": str(row["province"].iloc[0]), "sector": str(row["sector"].iloc[0]),
        "probability": prob, "raw_score": raw, "base_value": float(base[0]),
        "base_probability": float(calibrate(base[:1])[0]),
        "percentile_in_province": province_percentile(prob, peers), "n_peers": int(np.sum(~np.isnan(peers))),
        "rank_in_province": rank,
        **_identity(firm_rows),
        "contributions": {f: float(v) for f, v in series.items()},
        "contributions_pp": {f: float(v) for f, v in points.iloc[0].items()},
        "feature_values": {f: _jsonable_value(row[f].iloc[0]) for f in bundle.features if f in row.columns},
        "feature_labels": {f: feature_label(f) for f in bundle.features},
        "groups": {g: float(v) for g, v in groups.iloc[0].items()},
        "groups_pp": {g: float(v) for g, v in groups_pp.iloc[0].items()},
        "group_labels": {g: group_label(g) for g in groups.columns},
        "reasons": reasons,
        "criteria": checklist,
        "eligibility": eligibility(checklist, year + 1),
        "eligible": bool(row["eligible"].iloc[0] >= 0.5) if "eligible" in row.columns else None,
        "counterfactual": cf,
        "growth": growth_prediction(growth_bundle, row) if growth_bundle is not None else None,
        "data_quality": data_quality(firm_rows, row.iloc[0], year, bundle.features),
        "model": model_info(bundle),
        "kind": "review" if bundle.task == "review" else "designation", "review": None,
    }


def _jsonable_value(x: Any) -> Any:
    if x is None or (not isinstance(x, str) and pd.isna(x)):
        return None
    if isinstance(x, (np.integer, np.floating, float, int)):
        return float(x)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    return str(x)


# ------------------------------------------------------------------------------------------------
# Orchestration for the command line: score a year, pick firms, explain them
# ------------------------------------------------------------------------------------------------


def latest_year(panel: pd.DataFrame, firm_id: str | None = None) -> int:
    """The last fiscal year of the panel (or of one firm).

    Raises:
        ValueError: The firm is not in the panel.
    """
    rows = panel if firm_id is None else panel[panel["firm_id"] == str(firm_id)]
    if rows.empty:
        raise ValueError(f"firm {firm_id!r} is not in the input")
    return int(rows["year"].max())


def top_per_province(table: pd.DataFrame, score: np.ndarray, n: int) -> dict[str, list[int]]:
    """Positions (into ``table``) of the ``n`` candidates of each province with the highest
    ``score`` (probability or log-odds), provinces in name order; firms holding a valid title
    are not candidates."""
    frame = pd.DataFrame({"province": table["province"].astype(str).to_numpy(), "p": score,
                          "pos": np.arange(len(table))})
    frame = frame[candidate_mask(table)]
    frame = frame.sort_values(["province", "p"], ascending=[True, False], kind="stable")
    return {prov: grp["pos"].head(n).tolist() for prov, grp in frame.groupby("province", sort=True)}


def explain_positions(bundle: Any, panel: pd.DataFrame, table: pd.DataFrame, probability: np.ndarray,
                      positions: Sequence[int], *, scores: np.ndarray | None = None, events: pd.DataFrame | None = None,
                      context: pd.DataFrame | None = None, growth_bundle: Any = None, target: float = 0.5,
                      k: int = 10, notes: Sequence[str] = (),
                      progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """:func:`firm_explanation` for the rows ``positions`` of a scored year table.

    Args:
        bundle: Designation bundle.
        panel: Canonical panel (for each firm's rows and the counterfactual).
        table: Feature rows of one fiscal year (:func:`lgml.features.feature_rows`).
        probability: Calibrated probabilities of ``table``'s rows, shape (n_rows,).
        positions: Rows to explain.
        scores: Model scores (log-odds) of ``table``'s rows, shape (n_rows,), for each firm's
            rank in its province; None: no rank.
        events, context, growth_bundle, target, k: See :func:`firm_explanation`.
        notes: Data-quality notes added to every firm (e.g. about the context used).
        progress: Called with 1 after each firm.

    Returns:
        One explanation dict per position, in order.
    """
    candidates = candidate_mask(table)
    provinces = table["province"].astype(str).to_numpy()
    year = int(table["year"].iloc[0]) if len(table) else 0
    by_firm = panel[panel["year"].between(year - 2, year)].groupby("firm_id", sort=False)
    out = []
    for pos in positions:
        row = table.iloc[[pos]]
        firm_id = str(row["firm_id"].iloc[0])
        same = candidates & (provinces == provinces[pos])
        rank = None if scores is None else province_rank(scores[pos], scores[same], is_peer=bool(candidates[pos]))
        data = firm_explanation(bundle, row, by_firm.get_group(firm_id), peers=probability[same], rank=rank,
                                events=events, context=context,
                                growth_bundle=growth_bundle, target=target, k=k)
        if not candidates[pos]:
            data["data_quality"].insert(0, "the firm holds a valid Little Giant title, so it is not a candidate "
                                           "for this batch; the percentile compares it with the candidates")
        data["data_quality"].extend(notes)
        out.append(data)
        if progress is not None:
            progress(1)
    return out



class ExplainError(ValueError):
    """A request ``lgml explain`` cannot serve (bad options, unknown firm, empty year)."""


# Every error a user of ``lgml explain`` can cause; the CLI prints these without a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (ExplainError, BundleInputError, ContractError, InputError, FileExistsError)


@dataclass(frozen=True)
class Explained:
    """The rendered document of :func:`explain_firms` and what it holds.

    Attributes:
        text: The document (HTML, Markdown or JSON).
        explanations: One :func:`firm_explanation` dict per firm, in document order.
    """

    text: str
    explanations: list[dict[str, Any]]


Progress = Callable[[str, int, "int | None"], None]  # (stage, done, total), as lgml.score's


def explain_firms(bundle: Any, panel: pd.DataFrame, *, firms: Sequence[str] = (), top: int | None = None,
                  per_province: bool = False, year: int | None = None, events: pd.DataFrame | None = None,
                  growth_bundle: Any = None, target: float = 0.5, k: int = 8, fmt: str = "html",
                  review_bundle: Any = None, progress: Progress | None = None) -> Explained:
    """Explain the requested firms of a panel and render them as one document.

    The feature rows of each fiscal year are built once, with :func:`lgml.features.feature_rows`
    (as ``lgml score`` builds them), so a firm gets the same features and probability from both.

    Args:
        bundle: Designation bundle.
        panel: Canonical panel (contract columns, money in yuan).
        firms: Firm IDs to explain (one section per firm), or empty with ``top``.
        top: Explain the ``top`` most likely candidates (of each province with ``per_province``).
        per_province: With ``top``: per province.
        year: Fiscal year judged (application to batch ``year + 1``); default each firm's latest
            (with ``top``: the panel's latest).
        events: Designation events, or None.
        growth_bundle: Optional growth bundle.
        target: Counterfactual target probability (0-1).
        k: Reasons listed per firm.
        fmt: ``html``, ``md`` or ``json``.
        review_bundle: Optional review bundle (with ``firms``; needs ``events``): a listed firm
            holding a title re-reviewed in batch ``year + 1`` is explained with it instead
            (probability of passing the re-review, its drivers, the criteria it would fail,
            what would have to change to reach ``target``; :mod:`lgml.explain.review`); a
            holder not due gets a plain statement of its title and next re-review.
        progress: Called as ``progress(stage, done, total)``.

    Returns:
        :class:`Explained`.

    Raises:
        ExplainError: Neither or both of ``firms`` and ``top``; an unknown firm; no row to judge;
            a review model with ``top``, without events or of another task.
        lgml.modeling.bundle.BundleInputError: The panel cannot be scored by the bundle.
    """
    from lgml.report.firm import render_firms

    if bool(firms) == bool(top):
        raise ExplainError("give either --firm ID or --top N")
    if per_province and not top:
        raise ExplainError("--per-province needs --top N")
    if bundle.task != "designation":
        raise ExplainError(f"the model is a {bundle.task} model; --model needs a designation model "
                           "(growth goes in --growth-model, review in --review-model)")
    _check_review(review_bundle, events, top)
    context, notes = bundle.context, []
    if context is None:
        from lgml.features import context_tables

        context = context_tables(panel, events)
        notes.append("the model bundle holds no province/sector records; they were computed from the input")
    options = dict(events=events, context=context, growth_bundle=growth_bundle, target=target, k=k, notes=notes)
    tick = (lambda stage, done, total: None) if progress is None else progress
    if firms:
        explanations = _explain_listed(bundle, panel, list(firms), year, options, tick, review_bundle)
        return Explained(render_firms(explanations, fmt), explanations)
    fy = year if year is not None else latest_year(panel)
    tick(f"Scoring fiscal year {fy}", 0, None)
    table = feature_rows(panel, events=events, context=context, year=fy)
    if table.empty:
        raise ExplainError(f"no firm has a row for fiscal year {fy}")
    raw = bundle.predict_raw(table)
    prob = bundle.calibrator.transform(raw)
    picks = top_per_province(table, raw, top) if per_province else {"": _top_candidates(table, raw, top)}
    positions = [p for idx in picks.values() for p in idx]
    done = iter(range(1, 2 * len(positions) + 1))
    explanations = explain_positions(bundle, panel, table, prob, positions, scores=raw, **options,
                                     progress=lambda n: tick("Explaining firms", next(done), len(positions)))
    title = f"Most likely Little Giants of batch {fy + 1}: top {top}" + (" per province" if per_province else "")
    text = render_firms(explanations, fmt, sections=_sections(table, picks), title=title,
                        progress=lambda n: tick("Drawing figures", next(done) - len(positions), len(positions)))
    return Explained(text, explanations)


def _check_review(review_bundle: Any, events: pd.DataFrame | None, top: int | None) -> None:
    if review_bundle is None:
        return
    if review_bundle.task != "review":
        raise ExplainError(f"--review-model needs a review model; {review_bundle.path} is a {review_bundle.task} model")
    if events is None:
        raise ExplainError("--review-model needs --events: without designation events no firm is known to hold a title")
    if top:
        raise ExplainError("--review-model explains listed title holders: give --firm ID, not --top")


def _explain_listed(bundle: Any, panel: pd.DataFrame, firms: list[str], year: int | None, options: dict[str, Any],
                    tick: Progress, review: Any = None) -> list[dict[str, Any]]:
    """Explanations of the listed firms, in order; each fiscal year's feature rows built and
    scored once (by the review model too, when given)."""
    from lgml.explain import review as rv

    known = set(panel["firm_id"].astype(str))
    missing = [f for f in firms if f not in known]
    if missing:
        raise ExplainError(f"firm(s) not in the input: {', '.join(missing)}")
    scored: dict[int, tuple[pd.DataFrame, np.ndarray, np.ndarray]] = {}
    out = []
    for i, fid in enumerate(firms):
        fy = year if year is not None else latest_year(panel, fid)
        if fy not in scored:
            tick(f"Scoring fiscal year {fy}", 0, None)
            table = feature_rows(panel, events=options["events"], context=options["context"], year=fy)
            raw = bundle.predict_raw(table)
            scored[fy] = table, bundle.calibrator.transform(raw), raw, rv.review_scores(review, table) if review else None
        table, prob, raw, reviewed = scored[fy]
        pos = np.flatnonzero(table["firm_id"].astype(str).to_numpy() == fid)
        if not len(pos):
            raise ExplainError(f"firm {fid} has no row for fiscal year {fy}")
        if reviewed is not None and reviewed[0][pos[0]]:
            out.append(rv.review_explanation(review, panel, table, int(pos[0]), reviewed, events=options["events"],
                                             context=options["context"], target=options["target"], k=options["k"],
                                             notes=options["notes"]))
        else:
            out += explain_positions(bundle, panel, table, prob, [int(pos[0])], scores=raw, **options)
            if review is not None and not candidate_mask(table)[pos[0]]:
                rv.not_due_note(out[-1], table, int(pos[0]), options["events"])
        tick("Explaining firms", i + 1, len(firms))
    return out


def _top_candidates(table: pd.DataFrame, score: np.ndarray, n: int) -> list[int]:
    """Positions of the ``n`` candidates with the highest ``score``, highest first."""
    cand = candidate_mask(table)
    return np.flatnonzero(cand)[np.argsort(-score[cand], kind="stable")][:n].tolist()


def _sections(table: pd.DataFrame, picks: dict[str, list[int]]) -> list[tuple[str, list[int]]]:
    """Document sections of :func:`explain_firms`' top mode: a heading per province (or one),
    with the indexes of its explanations."""
    counts = table.loc[candidate_mask(table), "province"].astype(str).value_counts()
    sections, start = [], 0
    for prov, idx in picks.items():
        heading = (f"{prov}: top {len(idx)} of {int(counts.get(prov, 0)):,} candidate firms" if prov
                   else f"Top {len(idx)} of {int(counts.sum()):,} candidate firms")
        sections.append((heading, list(range(start, start + len(idx)))))
        start += len(idx)
    return sections


def explain_file(bundle: Any, input: str | os.PathLike, out: str | os.PathLike, *, events: str | os.PathLike | None = None,
                 units: str | None = None, encoding: str | None = None, overwrite: bool = False,
                 sheet: str | int | None = None, **options: Any) -> Explained:
    """``lgml explain``: read a panel (and events), explain firms, write the document.

    Args:
        bundle: Designation bundle (:func:`lgml.modeling.bundle.open_bundle`).
        input: Panel file (CSV or Parquet).
        out: Document to write (replaced atomically).
        events: Designation events file, or None.
        units: Money units overriding the input's headers (``yuan`` or ``wan``), or None.
        encoding: Forced CSV encoding.
        sheet: Sheet of an ``.xlsx`` input (name or position).
        overwrite: Replace an existing ``out``.
        **options: Passed to :func:`explain_firms` (``firms``, ``top``, ``fmt`` ...).

    Returns:
        :class:`Explained`.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is false (checked before any work).
        lgml.validate.ContractError, lgml.io.InputError: The input cannot be read.
        ExplainError, lgml.modeling.bundle.BundleInputError: See :func:`explain_firms`.
    """
    from lgml import io, validate

    io.refuse_existing(out, overwrite)
    io.refuse_same(out, input, events)
    panel = validate.load_panel(input, units=units, encoding=encoding, sheet=sheet)
    history = validate.load_events(events, panel=panel, encoding=encoding, sheet=sheet) if events is not None else None
    result = explain_firms(bundle, panel, events=history, **options)
    with io.atomic_path(out, overwrite=True) as tmp:
        tmp.write_text(result.text, encoding="utf-8")
    return result
