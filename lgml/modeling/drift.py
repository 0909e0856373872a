"""Drift: how far a feature table has moved from the training rows, by the population stability
index (PSI) of each feature.

At training, the profile of the rows of the last training batch (:func:`last_batch_reference`)
is stored in the bundle
(``reference.json``, see :mod:`lgml.modeling.bundle`); :func:`psi_table` later compares any
feature table against it.

Example:
    >>> t = pd.DataFrame({"x": np.arange(100.0)})
    >>> float(psi_table(reference_profile(t, ["x"]), t)["psi"].iloc[0])
    0.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lgml.features import CATEGORICAL
from lgml.vocabulary import FEATURE_DIMENSIONS

PSI_BINS = 10
PSI_EPS = 1e-4
PSI_MODERATE, PSI_MAJOR = 0.10, 0.25




def reference_profile(table: pd.DataFrame, features: Sequence[str], bins: int = PSI_BINS) -> dict[str, Any]:
    """A compact, JSON-ready profile of a feature table to compute drift against later.

    Numeric features: quantile bin edges (at most ``bins`` bins, unique edges) with the share of
    non-missing rows per bin and the missing share. Categorical features: the share of each level
    and the missing share.

    Args:
        table: Feature table of shape (n_rows, >= n_features).
        features: Features to profile.
        bins: Quantile bins per numeric feature.

    Returns:
        ``{"n_rows": int, "numeric": {f: {"edges", "fractions", "missing"}},
        "categorical": {f: {"levels": {level: share}, "missing"}}}``; shares are fractions of
        all rows, so each feature's shares sum to 1.
    """
    n = len(table)
    out: dict[str, Any] = {"n_rows": int(n), "numeric": {}, "categorical": {}}
    for f in features:
        if f not in table.columns:
            continue
        col = table[f]
        if f in CATEGORICAL or isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object:
            s = col.astype(object).where(col.notna(), None)
            counts = s.dropna().astype(str).value_counts()
            out["categorical"][f] = {"levels": {k: float(v) / max(n, 1) for k, v in counts.items()},
                                     "missing": float(s.isna().mean()) if n else 0.0}
            continue
        x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
        ok = x[~np.isnan(x)]
        edges = np.unique(np.quantile(ok, np.linspace(0, 1, bins + 1)[1:-1])) if len(ok) else np.array([])
        counts = np.bincount(np.searchsorted(edges, ok, side="right"), minlength=len(edges) + 1)
        out["numeric"][f] = {"edges": edges.tolist(), "fractions": (counts / max(n, 1)).tolist(),
                             "missing": float(np.isnan(x).mean()) if n else 0.0}
    return out


def last_batch_reference(table: pd.DataFrame, features: Sequence[str]) -> dict[str, Any]:
    """:func:`reference_profile` of the rows of the latest batch of ``table`` (the most recent
    rows a model learned from: years earlier in a long panel would make every trending feature
    look drifted), with that ``batch_year`` recorded; all rows when there is no batch year."""
    if "batch_year" not in table.columns or table["batch_year"].isna().all():
        return reference_profile(table, features)
    last = int(table["batch_year"].max())
    return {**reference_profile(table[table["batch_year"] == last], features), "batch_year": last}


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    ref = np.maximum(np.asarray(ref, dtype=float), PSI_EPS)
    cur = np.maximum(np.asarray(cur, dtype=float), PSI_EPS)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi_table(reference: Mapping[str, Any], table: pd.DataFrame,
              groups: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Population stability index of every profiled feature: current ``table`` vs ``reference``.

    PSI = sum over bins of (cur - ref) * ln(cur / ref), shares floored at 1e-4; bins are the
    reference's quantile bins plus a missing bin (numeric) or its levels, any unseen level and
    a missing bin (categorical). Below 0.1 stable, 0.1-0.25 moderate shift, above 0.25 major.

    Args:
        reference: Output of :func:`reference_profile`.
        table: Current feature table.
        groups: Feature -> dimension (default :data:`lgml.vocabulary.FEATURE_DIMENSIONS`).

    Returns:
        DataFrame with ``feature``, ``group``, ``psi``, ``level`` (stable / moderate / major),
        largest PSI first.
    """
    groups = FEATURE_DIMENSIONS if groups is None else groups
    n = max(len(table), 1)
    rows = []
    for f, prof in reference.get("numeric", {}).items():
        if f not in table.columns:
            continue
        x = pd.to_numeric(table[f], errors="coerce").to_numpy(dtype=float)
        ok = x[~np.isnan(x)]
        edges = np.asarray(prof["edges"], dtype=float)
        counts = np.bincount(np.searchsorted(edges, ok, side="right"), minlength=len(edges) + 1) / n
        rows.append((f, _psi([*prof["fractions"], prof["missing"]], [*counts, np.isnan(x).mean()])))
    for f, prof in reference.get("categorical", {}).items():
        if f not in table.columns:
            continue
        s = table[f].astype(object).where(table[f].notna(), None)
        counts = s.dropna().astype(str).value_counts() / n
        levels = list(prof["levels"])
        unseen = float(counts.drop(labels=[lv for lv in levels if lv in counts.index]).sum())
        ref = [prof["levels"][lv] for lv in levels] + [0.0, prof["missing"]]
        cur = [float(counts.get(lv, 0.0)) for lv in levels] + [unseen, float(s.isna().mean())]
        rows.append((f, _psi(ref, cur)))
    out = pd.DataFrame(rows, columns=["feature", "psi"])
    out.insert(1, "group", [groups.get(f, "other") for f in out["feature"]])
    out["level"] = np.select([out["psi"] >= PSI_MAJOR, out["psi"] >= PSI_MODERATE], ["major", "moderate"], "stable")
    return out.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def drift_verdict(drift: pd.DataFrame, labels: Mapping[str, str] | None = None, named: int = 5,
                  rule_features: Sequence[str] = (), rules_note: str = "") -> dict[str, str]:
    """One plain-language verdict on a :func:`psi_table`.

    Args:
        drift: Output of :func:`psi_table` (largest PSI first).
        labels: Feature -> display name (default the feature names).
        named: Features named in the sentence at most.
        rule_features: Features that measure the criteria of the rules in force, when the rules
            of the compared rows differ from the reference's: they move with the rules by
            construction, so they are named apart and left out of the verdict's level.
        rules_note: What changed in the rules (e.g. "batch 2027 is judged under the 2026
            rules, the reference batch 2024 under the 2022 rules"), said with them.

    Returns:
        ``{"level": "stable" | "moderate" | "major" | "none", "text": one or two sentences}``.

    Example:
        >>> drift_verdict(pd.DataFrame({"feature": ["x"], "psi": [0.02], "level": ["stable"]}))["text"]
        'Stable: no feature moved more than 0.1 PSI (largest: x, 0.02).'
    """
    if drift.empty:
        return {"level": "none", "text": "No feature could be compared with the reference."}
    labels = labels or {}
    name = lambda f: labels.get(f, f)  # noqa: E731

    def listed(rows: pd.DataFrame) -> str:
        shown = ", ".join(f"{name(f)} ({p:.2f})" for f, p in zip(rows["feature"][:named], rows["psi"][:named]))
        return shown + (f" and {len(rows) - named} more" if len(rows) > named else "")

    ruled = drift["feature"].isin(list(rule_features))
    moved = drift[ruled & (drift["psi"] >= PSI_MODERATE)]
    rules = ""
    if len(moved):
        rules = (f" Set apart: {rules_note + ', so ' if rules_note else ''}{len(moved)} feature"
                 f"{'s' if len(moved) > 1 else ''} measuring the criteria moved with the rules, as they are built "
                 f"to ({listed(moved)}); how well the model carries over to new rules is what its regime "
                 "benchmark measures, not drift.")
    drift = drift[~ruled]
    if drift.empty:
        return {"level": "none", "text": "No feature outside the criteria could be compared with the reference." + rules}
    major, moderate = drift[drift["psi"] >= PSI_MAJOR], drift[drift["psi"] >= PSI_MODERATE]
    if len(major):
        return {"level": "major", "text": f"Major shift in {len(major)} feature{'s' if len(major) > 1 else ''} "
                f"(PSI above {PSI_MAJOR}): {listed(major)}. The data no longer look like the training data: "
                "retrain before relying on the scores." + rules}
    if len(moderate):
        return {"level": "moderate", "text": f"Moderate shift in {len(moderate)} feature"
                f"{'s' if len(moderate) > 1 else ''} (PSI {PSI_MODERATE}-{PSI_MAJOR}): {listed(moderate)}. "
                "Re-check these before relying on the scores." + rules}
    top = drift.iloc[0]
    return {"level": "stable", "text": f"Stable: no feature moved more than {PSI_MODERATE} PSI "
            f"(largest: {name(top['feature'])}, {top['psi']:.2f})." + rules}
