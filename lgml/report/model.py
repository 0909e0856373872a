"""The model report: evaluation against baselines and the oracle, calibration and ROC/PR curves,
global importance (beeswarm and per dimension), metrics by province and sector, and drift (PSI).

This module only assembles the report: metrics come from :mod:`lgml.modeling.evaluate`, drift
from :mod:`lgml.modeling.drift`, evaluation figures from :mod:`lgml.modeling.plots`, stored
plots and the training drift reference from the bundle (:mod:`lgml.modeling.bundle`).
:func:`model_report` works on frames; :func:`build_model_report` is ``lgml report``: it loads
the data files (through :mod:`lgml.validate`) and calls it.

Drift reference: a bundle trained by ``lgml train`` carries the reference profile of its
training rows (``bundle.reference``); a reference panel passed in replaces it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from lgml.features import candidate_mask
from lgml.vocabulary import FEATURE_DIMENSIONS
from lgml.report import environment, now, to_json

log = logging.getLogger(__name__)

SIMULATED_REPORT_FIRMS = 4_000  # firms simulated when a report on the embedded default gets no data


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
# Global importance
# ------------------------------------------------------------------------------------------------


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
    by_group = by_group[by_group.index.isin(set((groups or FEATURE_DIMENSIONS).values()) | {"other"})]
    return by_feature, by_group.sort_values(ascending=False)


# ------------------------------------------------------------------------------------------------
# The whole report
# ------------------------------------------------------------------------------------------------


def bundle_plots(bundle: Any) -> list[dict[str, str]]:
    """The evaluation plots stored in the bundle (``plots/*.png``) as data URIs."""
    from lgml.report.figures import png_uri

    return [{"name": name.replace("_", " "), "uri": png_uri(png)} for name, png in bundle.stored_plots().items()]


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
        reference: Drift reference profile (:func:`lgml.modeling.drift.reference_profile`);
            default the bundle's (``bundle.reference``).
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
    from lgml.modeling import plots
    from lgml.modeling.drift import psi_table
    from lgml.modeling.evaluate import metrics_by
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
        "group_labels": {g: group_label(g) for g in (*FEATURE_DIMENSIONS.values(), "other")},
    }
    reference = reference if reference is not None else bundle.reference
    if reference is None:
        report["drift_note"] = ("No drift reference: the bundle stores no training reference profile "
                                "(reference.json) and none was passed in.")
    if data is None:
        return report
    rows = data[candidate_mask(data)].reset_index(drop=True)
    take = rows.sample(n=min(sample, len(rows)), random_state=seed) if len(rows) > sample else rows
    contrib, _ = contributions(bundle, take)
    by_feature, by_group = global_importance(contrib, groups)
    labels = {f: feature_label(f) for f in contrib.columns}
    report["n_sample"] = len(take)
    report["importance"] = [{"feature": f, "label": labels[f], "group": (groups or FEATURE_DIMENSIONS).get(f, "other"),
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
        report["images"]["roc_pr"] = figures.to_data_uri(plots.roc_pr_figure(y, {"model": p}))
        report["images"]["calibration"] = figures.to_data_uri(plots.calibration_figure(y, {"model": p}))
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


def report_features(bundle: Any, panel: str | os.PathLike, events: str | os.PathLike | None = None, *,
                    units: str | None = None, encoding: str | None = None,
                    sheet: str | int | None = None) -> pd.DataFrame:
    """Feature table of a panel file (and its events file) for the report, built with the
    bundle's province/sector records (else those of the panel itself).

    Raises:
        lgml.validate.ContractError, lgml.io.InputError: A file breaks the input contract.
    """
    from lgml import validate
    from lgml.features import build_features, context_tables

    rows = validate.load_panel(panel, units=units, encoding=encoding, sheet=sheet)
    history = validate.load_events(events, panel=rows, encoding=encoding, sheet=sheet) if events is not None else None
    context = bundle.context if bundle.context is not None else context_tables(rows, history)
    return build_features(rows, history, context)


def simulated_sample(bundle: Any, firms: int = SIMULATED_REPORT_FIRMS) -> tuple[pd.DataFrame | None, str]:
    """For a bundle trained on the simulated default: features of a fresh simulated sample (at
    most ``firms`` firms, the training config's seed) and a note saying so; ``(None, "")``
    for a bundle trained on files."""
    from lgml.features import build_features
    from lgml.simulate import simulate

    src = bundle.config.data.simulate
    if src is None:
        return None, ""
    firms = min(src.firms, firms)
    sim = simulate(firms, seed=src.seed)
    note = (f"a fresh simulated sample of {firms:,} firms (seed {src.seed}) of the embedded default the "
            "model was trained on")
    return build_features(sim.panel, sim.events, bundle.context), note


def build_model_report(bundle: Any, data: str | os.PathLike | None = None, *, events: str | os.PathLike | None = None,
                       reference: str | os.PathLike | None = None,
                       reference_events: str | os.PathLike | None = None, units: str | None = None,
                       encoding: str | None = None, sheet: str | int | None = None, sample: int = 4_000,
                       on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``lgml report``: the :func:`model_report` of a bundle on a panel file.

    Args:
        bundle: Designation bundle.
        data: Panel to evaluate and check for drift; None describes a model trained on the
            simulated default on a fresh simulated sample (:func:`simulated_sample`), or the
            bundle alone.
        events: Designation events of ``data``.
        reference: Panel to measure drift against (its candidate rows); None uses the
            bundle's training reference.
        reference_events: Events of ``reference``.
        units, encoding, sheet: How the panel files are read (see :func:`lgml.validate.read_panel`).
        sample: Rows used for contributions (importance plots).
        on_step: Called with a short description as each step starts (progress display).

    Returns:
        The :func:`model_report` dict.

    Raises:
        lgml.validate.ContractError, lgml.io.InputError: A file breaks the input contract.
        lgml.modeling.bundle.BundleInputError: The data do not fit the model.
    """
    from lgml.modeling.drift import reference_profile

    step = on_step or (lambda name: None)
    step("Building features")
    if data is not None:
        table = report_features(bundle, data, events, units=units, encoding=encoding, sheet=sheet)
        note = f"{data}" + (f" with events {events}" if events is not None else "")
    else:
        table, note = simulated_sample(bundle)
    profile, profile_note = None, ""
    if reference is not None:
        ref_table = report_features(bundle, reference, reference_events, units=units, encoding=encoding, sheet=sheet)
        profile = reference_profile(ref_table[candidate_mask(ref_table)], bundle.features)
        profile_note = f"{reference}"
    step("Computing contributions and metrics")
    return model_report(bundle, table, reference=profile, data_note=note, reference_note=profile_note,
                        sample=sample, seed=bundle.config.seed)


def render_model(report: dict[str, Any], fmt: str = "html") -> str:
    """Render a model report (see :func:`lgml.report.model.model_report`)."""
    if fmt == "json":
        return to_json({k: v for k, v in report.items() if k != "images"})
    if fmt != "html":
        raise ValueError(f"the model report is written as html or json, not {fmt!r}")
    return environment().get_template("model.html.j2").render(r=report, generated=now())
