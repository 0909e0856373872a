"""Title holders in ``lgml explain --review-model``: the risk of losing the title at its re-review.

A Little Giant title of batch b is re-reviewed every three years (batches b+3, b+6, ...). A
holder whose re-review falls in batch t+1 (``review_due`` of its fiscal year t) is explained
with the review model in place of the designation model: the probability of passing the
re-review (``p_review_pass``: calibrated, and levelled to the model's pass rate as ``lgml score``
levels it), the SHAP drivers of that probability, the criteria checklist
of the regime in force at the review (the same check as a designation in batch t+1, so the
criteria it would fail at the review) and the what-if: the smallest changes that lift the
probability of passing to the target (:func:`lgml.explain.whatif.counterfactual` with the review
model). A holder not due for re-review gets a plain statement of its title and next review.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

REVIEW_EVERY = 3  # years between re-reviews of a title


def review_scores(review: Any, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The review model on the rows of a feature table due for re-review in batch t+1, each
    review levelled to the model's pass rate as ``lgml score`` levels it
    (:func:`lgml.score.core.level_reviews`, over the due rows of ``table``).

    Returns:
        ``(due, probability, raw, shift)``: the ``review_due`` flags; for the due rows the
        probability of passing (calibrated, then levelled), the model's log-odds and the
        levelling shift in log-odds (0 where none); NaN for every other row. Shape (n_rows,)
        each.
    """
    from lgml.modeling.calibrate import logit
    from lgml.score.core import level_reviews

    due = pd.array(table["review_due"], dtype="boolean").fillna(False).to_numpy(dtype=bool) \
        if "review_due" in table.columns else np.zeros(len(table), dtype=bool)
    probability, raw, shift = np.full(len(table), np.nan), np.full(len(table), np.nan), np.full(len(table), np.nan)
    if due.any():
        raw[due] = review.predict_raw(table[due])
        calibrated = review.calibrator.transform(raw[due])
        rows = pd.DataFrame({"batch_year": table["batch_year"].to_numpy()[due], "p_review_pass": calibrated,
                             "review_round": pd.to_numeric(table["review_round"], errors="coerce").to_numpy()[due]})
        probability[due] = level_reviews(rows, review)[0]["p_review_pass"].to_numpy(dtype=float)
        shift[due] = logit(probability[due]) - logit(calibrated)
    return due, probability, raw, shift


class _Shifted:
    """A calibrator whose probabilities are moved by one constant in log-odds."""

    def __init__(self, base: Any, shift: float):
        self._base, self.shift = base, float(shift)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        from lgml.modeling.calibrate import logit

        p = self._base.transform(raw)
        return p if self.shift == 0 else 1.0 / (1.0 + np.exp(-(logit(p) + self.shift)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


class Levelled:
    """A review bundle whose calibrated probabilities carry one review's levelling shift, so
    that the drivers' probability points and the what-if search see the probability ``lgml
    score`` gives; everything else is the bundle's own."""

    def __init__(self, bundle: Any, shift: float):
        self._bundle = bundle
        self.calibrator = _Shifted(bundle.calibrator, shift)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bundle, name)


def title_of(events: pd.DataFrame | None, firm_id: str, year: int) -> int | None:
    """The batch of the title the firm holds at the end of fiscal year ``year`` (designated in
    batch ``<= year`` and not revoked by ``year``; the latest such), or None."""
    if events is None:
        return None
    mine = events[events["firm_id"].astype(str) == str(firm_id)]
    revoked = pd.to_numeric(mine["revoked_year"], errors="coerce")
    held = mine[(mine["batch_year"] <= year) & ~(revoked <= year)]
    return int(held["batch_year"].max()) if len(held) else None


def review_schedule(title_batch: int, batch_year: int) -> dict[str, Any]:
    """Where a title of batch ``title_batch`` stands at batch ``batch_year``: ``due`` (re-reviewed
    in that batch), ``next_review`` (the first re-review batch ``b + 3k >= batch_year``, k >= 1)
    and ``review_round`` (k).

    >>> review_schedule(2019, 2025)
    {'title_batch': 2019, 'due': True, 'next_review': 2025, 'review_round': 2}
    >>> review_schedule(2021, 2025)
    {'title_batch': 2021, 'due': False, 'next_review': 2027, 'review_round': 2}
    """
    k = max(1, -(-(batch_year - title_batch) // REVIEW_EVERY))
    nxt = title_batch + REVIEW_EVERY * k
    return {"title_batch": int(title_batch), "due": nxt == batch_year, "next_review": int(nxt), "review_round": int(k)}


def not_due_statement(firm_id: str, schedule: dict[str, Any], batch_year: int) -> str:
    """One plain sentence for a holder whose title is not re-reviewed in ``batch_year``."""
    return (f"Firm {firm_id} holds the Little Giant title from batch {schedule['title_batch']}; its next re-review "
            f"is in batch {schedule['next_review']} (review {schedule['review_round']}), not in batch {batch_year}: "
            "the review model has nothing to say about it for this batch.")


def review_explanation(review: Any, panel: pd.DataFrame, table: pd.DataFrame, pos: int, scored: tuple, *,
                       events: pd.DataFrame, context: pd.DataFrame | None, target: float, k: int,
                       notes: Sequence[str] = ()) -> dict[str, Any]:
    """The explanation of a holder due for re-review in batch t+1: :func:`firm_explanation` with
    the review model in place of the designation model.

    Args:
        review: Review bundle.
        panel: Canonical panel.
        table: Feature rows of the firm's fiscal year.
        pos: The firm's row in ``table`` (``review_due`` True).
        scored: :func:`review_scores` of ``table``.
        events, context, target, k, notes: As :func:`lgml.explain.firm.explain_positions`.

    Returns:
        The :func:`firm_explanation` dict (its ``probability`` is the probability of passing the
        re-review, levelled as ``lgml score`` levels it; peers, percentile and rank are among
        the province's holders due for re-review) with ``kind`` ``"review"`` and ``review``:
        ``due``, ``level_shift`` (the levelling, log-odds), ``title_batch``,
        ``review_batch``, ``review_round``, ``p_review_pass``, ``regime`` (the rules in force
        at the review), ``failing`` (labels of the criteria it fails on the data given) and
        ``statement``.
    """
    from lgml import criteria
    from lgml.explain.firm import firm_explanation, province_rank
    from lgml.explain.whatif import firm_window

    due, probability, raw, shift = scored
    row = table.iloc[[pos]]
    firm_id, year = str(row["firm_id"].iloc[0]), int(row["year"].iloc[0])
    provinces = table["province"].astype(str).to_numpy()
    same = due & (provinces == provinces[pos])
    levelled = Levelled(review, shift[pos] if np.isfinite(shift[pos]) else 0.0)
    data = firm_explanation(levelled, row, firm_window(panel, firm_id, year), peers=probability[same],
                            rank=province_rank(raw[pos], raw[same]), events=events, context=context,
                            target=target, k=k)
    batch = year + 1
    title = _title_batch(row, events, firm_id, year)
    schedule = review_schedule(title, batch) if title is not None else {"title_batch": None, "review_round": None}
    regime = criteria.regime_for(batch)
    failing = [c["label_en"] for c in data["criteria"] if c["status"] == "fail"]
    verdict = (f"fails {len(failing)} of the {len(data['criteria'])} criteria it is held to: {', '.join(failing)}"
               if failing else f"meets the {len(data['criteria'])} criteria on the data given")
    data["kind"] = "review"
    data["review"] = {
        "due": True, "level_shift": levelled.calibrator.shift, "title_batch": schedule["title_batch"],
        "review_batch": batch,
        "review_round": schedule["review_round"], "p_review_pass": data["probability"],
        "regime": f"{regime} rules ({criteria.RULES[regime]['source']})", "failing": failing,
        "statement": (f"Holds the Little Giant title from batch {schedule['title_batch']}; it is re-reviewed in "
                      f"batch {batch}, judged on fiscal year {year} under the {regime} rules: probability of "
                      f"keeping the title {100 * data['probability']:.1f}%; {verdict}."),
    }
    data["data_quality"].extend(notes)
    return data


def not_due_note(data: dict[str, Any], table: pd.DataFrame, pos: int, events: pd.DataFrame | None) -> dict[str, Any]:
    """``data`` (a designation explanation of a title holder not due for re-review) with the
    plain ``review`` statement of its title and next re-review."""
    row = table.iloc[[pos]]
    firm_id, year = str(row["firm_id"].iloc[0]), int(row["year"].iloc[0])
    title = _title_batch(row, events, firm_id, year)
    if title is None:
        return data
    schedule = review_schedule(title, year + 1)
    data["review"] = {**schedule, "due": False, "review_batch": year + 1, "p_review_pass": None,
                      "statement": not_due_statement(firm_id, schedule, year + 1)}
    return data


def _title_batch(row: pd.DataFrame, events: pd.DataFrame | None, firm_id: str, year: int) -> int | None:
    """The title's batch: ``batch_year - title_years`` of the feature row, else from the events."""
    if "title_years" in row.columns and pd.notna(row["title_years"].iloc[0]):
        return int(round(float(row["batch_year"].iloc[0]) - float(row["title_years"].iloc[0])))
    return title_of(events, firm_id, year)
