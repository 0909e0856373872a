"""The model report: evaluation against baselines and the oracle, calibration and ROC/PR curves,
global importance (beeswarm and per dimension), metrics by province and sector, and drift (PSI).

Everything here works on frames and dicts; reading files is left to the command line.

Drift reference: a bundle may carry a reference profile of its training features (the format of
:func:`reference_profile`, as ``reference.json`` in the bundle folder or ``metadata["reference"]``);
otherwise PSI is computed against a reference table the caller passes in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lgml.features import CATEGORICAL, FEATURE_GROUPS

log = logging.getLogger(__name__)

PSI_BINS = 10
PSI_EPS = 1e-4
PSI_MODERATE, PSI_MAJOR = 0.10, 0.25
MIN_POSITIVES_FOR_AUC = 5


# ------------------------------------------------------------------------------------------------
# Evaluation tables, whatever their nesting
# ------------------------------------------------------------------------------------------------


def _scalar(x: Any) -> bool:
    return x is None or isinstance(x, (int, float, str, bool))


def evaluation_tables(evaluation: Mapping[str, Any], title: str = "evaluation") -> list[dict[str, Any]]:
    """Flatten an evaluation dict into display tables.

    A dict whose values are all dicts of scalars becomes one matrix (rows = its keys, e.g.
    model / baselines / oracle; columns = the metric names); a dict of scalars becomes a
    two-column table; other nesting is walked recursively.

    Returns:
        List of ``{"title", "columns", "rows"}`` with rows as lists of display strings.
    """
    tables: list[dict[str, Any]] = []
    evaluation = {k: v for k, v in evaluation.items() if k not in GROUPED_KEYS}
    scalars = {k: (", ".join(map(str, v)) if isinstance(v, list) and all(_scalar(x) for x in v) else v)
               for k, v in evaluation.items() if _scalar(v) or (isinstance(v, list) and all(_scalar(x) for x in v))}
    nested = {k: v for k, v in evaluation.items() if isinstance(v, Mapping)}
    lists = {k: v for k, v in evaluation.items()
             if isinstance(v, list) and v and all(isinstance(r, Mapping) for r in v)}
    if scalars:
        tables.append({"title": title, "columns": ["metric", "value"],
                       "rows": [[k, _show(v)] for k, v in scalars.items()]})
    matrix = {k: v for k, v in nested.items() if v and all(_scalar(x) for x in v.values())}
    if len(matrix) >= 2:
        cols = list(dict.fromkeys(c for v in matrix.values() for c in v))
        tables.append({"title": title + " (compared)", "columns": ["", *cols],
                       "rows": [[k, *(_show(v.get(c)) for c in cols)] for k, v in matrix.items()]})
    else:
        for k, v in matrix.items():
            tables.append({"title": f"{title} / {k}", "columns": ["metric", "value"],
                           "rows": [[m, _show(x)] for m, x in v.items()]})
    for k, v in nested.items():
        if k not in matrix:
            tables.extend(evaluation_tables(v, f"{title} / {k}"))
    for k, rows in lists.items():
        cols = list(dict.fromkeys(c for r in rows for c in r))
        tables.append({"title": f"{title} / {k}", "columns": cols,
                       "rows": [[_show(r.get(c)) for c in cols] for r in rows[:200]]})
    return tables


# Evaluation entries drawn elsewhere: per-group metrics get their own tables, curves are plots.
GROUPED_KEYS = ("by_province", "by_sector", "calibration_curve")
EVALUATION_GROUP_ROWS = 40  # largest groups shown


def evaluation_groups(evaluation: Mapping[str, Any], key: str, scorer: str = "model") -> list[dict[str, Any]]:
    """Rows of a per-group evaluation entry (``by_province`` / ``by_sector``): the level, its
    counts and ``scorer``'s metrics, largest groups first."""
    rows = []
    for level, entry in (evaluation.get(key) or {}).items():
        if not isinstance(entry, Mapping):
            continue
        row = {"level": str(level), **{k: v for k, v in entry.items() if _scalar(v)}}
        metrics = entry.get(scorer)
        if isinstance(metrics, Mapping):
            row.update({k: v for k, v in metrics.items() if _scalar(v) and k != "n"})
        rows.append(row)
    return sorted(rows, key=lambda r: -(r.get("n") or 0))


def _show(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:,.4f}" if abs(x) < 1000 else f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


# ------------------------------------------------------------------------------------------------
# Drift: population stability index
# ------------------------------------------------------------------------------------------------


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
        groups: Feature -> dimension (default :data:`lgml.features.FEATURE_GROUPS`).

    Returns:
        DataFrame with ``feature``, ``group``, ``psi``, ``level`` (stable / moderate / major),
        largest PSI first.
    """
    groups = FEATURE_GROUPS if groups is None else groups
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


def bundle_reference(bundle: Any) -> dict[str, Any] | None:
    """The reference profile stored with a bundle (``reference.json`` or
    ``metadata["reference"]``), or None."""
    path = bundle.path / "reference.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    ref = bundle.metadata.get("reference")
    return ref if isinstance(ref, Mapping) and ("numeric" in ref or "categorical" in ref) else None


# ------------------------------------------------------------------------------------------------
# Metrics by group and global importance
# ------------------------------------------------------------------------------------------------


def metrics_by(table: pd.DataFrame, y: np.ndarray, p: np.ndarray, by: str, min_rows: int = 1) -> pd.DataFrame:
    """Designation metrics per level of ``by`` (province or sector).

    Returns:
        DataFrame with ``by``, ``n``, ``designated``, ``observed_rate`` and ``mean_predicted``
        (both 0-1), ``auc`` (NaN with fewer than 5 designations or no negatives) and ``brier``,
        most rows first.
    """
    from sklearn.metrics import roc_auc_score

    frame = pd.DataFrame({by: table[by].astype(str).to_numpy(), "y": np.asarray(y, float), "p": np.asarray(p, float)})
    rows = []
    for level, grp in frame.groupby(by, sort=False):
        if len(grp) < min_rows:
            continue
        pos = int(grp["y"].sum())
        auc = (roc_auc_score(grp["y"], grp["p"]) if pos >= MIN_POSITIVES_FOR_AUC and pos < len(grp) else np.nan)
        rows.append({by: level, "n": len(grp), "designated": pos, "observed_rate": grp["y"].mean(),
                     "mean_predicted": grp["p"].mean(), "auc": auc,
                     "brier": float(np.mean((grp["p"] - grp["y"]) ** 2))})
    out = pd.DataFrame(rows, columns=[by, "n", "designated", "observed_rate", "mean_predicted", "auc", "brier"])
    return out.sort_values(["n", by], ascending=[False, True], kind="stable").reset_index(drop=True)


def global_importance(contrib: pd.DataFrame, groups: Mapping[str, str] | None = None) -> tuple[pd.Series, pd.Series]:
    """Mean |contribution| per feature and per dimension (log-odds).

    The dimension importance is the mean of the absolute *summed* contribution of the group's
    features, so opposing features within a dimension offset each other as they do in a firm's
    explanation.

    Returns:
        ``(by_feature, by_group)``, each sorted largest first.
    """
    from lgml.explain.contributions import group_contributions

    by_feature = contrib.abs().mean().sort_values(ascending=False)
    by_group = group_contributions(contrib, groups).abs().mean()
    by_group = by_group[by_group.index.isin(set((groups or FEATURE_GROUPS).values()) | {"other"})]
    return by_feature, by_group.sort_values(ascending=False)


# ------------------------------------------------------------------------------------------------
# The whole report
# ------------------------------------------------------------------------------------------------


def bundle_plots(bundle: Any) -> list[dict[str, str]]:
    """The evaluation plots stored in the bundle (``plots/*.png``) as data URIs."""
    from lgml.report.figures import png_uri

    folder = bundle.path / "plots"
    if not folder.is_dir():
        return []
    return [{"name": p.stem.replace("_", " "), "uri": png_uri(p.read_bytes())} for p in sorted(folder.glob("*.png"))]


def _display_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Column names and display strings of a list of flat dicts."""
    columns = list(dict.fromkeys(c for r in rows for c in r))
    return {"columns": columns, "rows": [[_show(r.get(c)) for c in columns] for r in rows]}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
            for r in frame.to_dict("records")]


def model_report(bundle: Any, data: pd.DataFrame | None = None, *, reference: Mapping[str, Any] | None = None,
                 data_note: str = "", reference_note: str = "", sample: int = 4_000, seed: int = 0) -> dict[str, Any]:
    """Everything the model report shows.

    Args:
        bundle: Designation bundle.
        data: Feature table to compute importance, metrics by group and drift on (rows
            holding a title are left out); None for a report of the bundle alone.
        reference: Drift reference profile (:func:`reference_profile`); default the bundle's.
        data_note, reference_note: Where ``data`` and ``reference`` came from, shown as is.
        sample: Rows used for contributions (importance plots).
        seed: Seed of that sample.

    Returns:
        JSON-ready dict: ``model``, ``evaluation`` (raw), ``evaluation_tables``, ``plots``,
        ``importance`` / ``group_importance`` (mean |log-odds|), ``by_province``, ``by_sector``,
        ``drift`` (PSI rows or None), notes, and ``images`` (data URIs; left out of JSON).
    """
    from lgml import schema
    from lgml.explain.contributions import contributions
    from lgml.vocabulary import group_label
    from lgml.explain.firm import model_info
    from lgml.vocabulary import feature_label
    from lgml.report import figures

    groups = bundle.metadata.get("feature_groups") or None
    report: dict[str, Any] = {
        "model": model_info(bundle), "evaluation": bundle.evaluation,
        "evaluation_tables": evaluation_tables(bundle.evaluation) if bundle.evaluation else [],
        "evaluation_by": {key: _display_rows(evaluation_groups(bundle.evaluation, key)[:EVALUATION_GROUP_ROWS])
                          for key in ("by_province", "by_sector") if bundle.evaluation.get(key)},
        "plots": bundle_plots(bundle), "images": {}, "data_note": data_note, "reference_note": reference_note,
        "importance": [], "group_importance": [], "by_province": [], "by_sector": [], "drift": None,
        "n_sample": 0, "n_labelled": 0,
        "group_labels": {g: group_label(g) for g in (*FEATURE_GROUPS.values(), "other")},
    }
    reference = reference if reference is not None else bundle_reference(bundle)
    if reference is None:
        report["drift_note"] = ("No drift reference: the bundle stores no training reference profile "
                                "(reference.json) and none was passed in.")
    if data is None:
        return report
    rows = data[~data["holds_title"].astype(bool)] if "holds_title" in data.columns else data
    rows = rows.reset_index(drop=True)
    take = rows.sample(n=min(sample, len(rows)), random_state=seed) if len(rows) > sample else rows
    contrib, _ = contributions(bundle, take)
    by_feature, by_group = global_importance(contrib, groups)
    labels = {f: feature_label(f) for f in contrib.columns}
    report["n_sample"] = len(take)
    report["importance"] = [{"feature": f, "label": labels[f], "group": (groups or FEATURE_GROUPS).get(f, "other"),
                             "mean_abs_log_odds": float(v)} for f, v in by_feature.head(25).items()]
    report["group_importance"] = [{"group": g, "label": group_label(g), "mean_abs_log_odds": float(v)}
                                  for g, v in by_group.items()]
    report["images"]["beeswarm"] = figures.beeswarm(contrib, take, labels, top=15, seed=seed)
    report["images"]["group_importance"] = figures.importance_bars(
        by_group.rename(index=group_label), {}, "mean |sum of contributions| per dimension (log-odds)")
    labelled = rows[rows["designated_next"].notna()] if "designated_next" in rows.columns else rows.iloc[:0]
    report["n_labelled"] = len(labelled)
    if len(labelled) and labelled["designated_next"].nunique() == 2:
        y = labelled["designated_next"].to_numpy(dtype=float)
        p = bundle.predict(labelled)
        report["images"]["roc_pr"] = figures.roc_pr(y, p)
        report["images"]["calibration"] = figures.calibration(y, p)
        prov = metrics_by(labelled, y, p, "province")
        prov.insert(1, "name_zh", [schema.PROVINCES.get(x, ("", x))[1] for x in prov["province"]])
        sect = metrics_by(labelled, y, p, "sector")
        sect.insert(1, "name", [schema.SECTOR_NAMES.get(x, "") for x in sect["sector"]])
        report["by_province"], report["by_sector"] = _records(prov), _records(sect.head(30))
    if reference is not None:
        drift = psi_table(reference, rows, groups)
        report["drift"] = _records(drift)
        report["images"]["psi"] = figures.psi_bars(list(zip(drift["feature"], drift["psi"])), labels)
    return report
