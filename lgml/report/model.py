"""The model report as a model card: the headline in words (the top 100 of the latest held-out
batch, beside the rule check and the oracle), the gains chart, calibration, metrics by province
and sector on the held-out batches only, drift (PSI against the training reference, with a
verdict) and provenance; below them the technical detail (evaluation against baselines and the
oracle, quality gates, ROC/PR curves, global importance).

This module only assembles the report: metrics come from :mod:`lgml.modeling.evaluate` and
:mod:`lgml.modeling.gains`, drift from :mod:`lgml.modeling.drift`, evaluation figures from
:mod:`lgml.modeling.plots`, the plain-language parts from :mod:`lgml.report.card`, stored plots
and the training drift reference from the bundle (:mod:`lgml.modeling.bundle`).
:func:`model_report` works on frames; :func:`build_model_report` is ``lgml report``: it loads
the data files (through :mod:`lgml.validate`) and calls it.

Drift: the candidates of the latest batch in the data against the reference profile of the
training rows that ``lgml train`` stores in the bundle (``bundle.reference``); a reference panel
passed in replaces it, and for a bundle stored without one the data's own rows of the training
batches stand in.
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


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
            for r in frame.to_dict("records")]


def _drift_rows(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The candidate rows drift is measured on: those of the latest batch year in the data (the
    batch the model would score next), with a note saying which."""
    if "batch_year" not in rows.columns or rows["batch_year"].isna().all():
        return rows, f"all {len(rows):,} candidate rows of the data"
    latest = int(rows["batch_year"].max())
    take = rows[rows["batch_year"] == latest]
    return take, f"the {len(take):,} candidates for batch {latest} (the latest batch in the data)"


def _rebuilt_reference(bundle: Any, rows: pd.DataFrame) -> tuple[dict[str, Any] | None, str]:
    """For a bundle stored without a training reference: the profile of the data's own rows of
    the last training batch, or None when the data hold none."""
    from lgml.modeling.drift import reference_profile

    train = [int(b) for b in (bundle.metadata.get("batches") or {}).get("train", [])]
    if not train or "batch_year" not in rows.columns:
        return None, ""
    take = rows[rows["batch_year"] == max(train)]
    if take.empty:
        return None, ""
    return ({**reference_profile(take, bundle.features), "batch_year": max(train)},
            f"the data's own {len(take):,} candidate rows of the last training batch {max(train)} "
            "(the bundle stores no training reference)")


def _rule_change(bundle: Any, reference: Mapping[str, Any], current: pd.DataFrame) -> tuple[list[str], str]:
    """The features measuring the criteria, and what changed in the rules, when the rows compared
    are judged under other rules than the reference's; ``([], "")`` when the rules are the same."""
    from lgml.criteria import regime_for
    from lgml.features import MARGIN_FEATURES, PER_REGIME_FEATURES

    train = [int(b) for b in (bundle.metadata.get("batches") or {}).get("train", [])]
    ref_batch = reference.get("batch_year") or (max(train) if train else None)
    if ref_batch is None or "batch_year" not in current.columns or current["batch_year"].isna().all():
        return [], ""
    batch = int(current["batch_year"].max())
    old, new = regime_for(int(ref_batch)), regime_for(batch)
    if old == new:
        return [], ""
    ruled = {*MARGIN_FEATURES, *PER_REGIME_FEATURES, "n_failed", "n_met", "share_met", "eligible"}
    return ([f for f in bundle.features if f in ruled],
            f"batch {batch} is judged under the {new} rules, the reference batch {ref_batch} under the {old} rules")


def model_report(bundle: Any, data: pd.DataFrame | None = None, *, reference: Mapping[str, Any] | None = None,
                 data_note: str = "", reference_note: str = "", data_info: Mapping[str, Any] | None = None,
                 sample: int = 4_000, seed: int = 0) -> dict[str, Any]:
    """Everything the model card shows.

    Args:
        bundle: Designation bundle.
        data: Feature table to compute importance, held-out metrics and drift on (rows holding
            a title are left out); None for a card of the bundle alone.
        reference: Drift reference profile (:func:`lgml.modeling.drift.reference_profile`);
            default the bundle's (``bundle.reference``), else one rebuilt from the data's rows
            of the training batches.
        data_note, reference_note: Where ``data`` and ``reference`` came from, shown as is.
        data_info: Extra provenance of ``data`` (e.g. ``data_hash``).
        sample: Rows used for contributions (importance plots).
        seed: Seed of that sample.

    Returns:
        JSON-ready dict: ``model``, ``evaluation`` (raw), ``headline`` (the sentence and its
        numbers, or None), ``gains`` (table rows), ``held_out`` (years and label),
        ``calibration`` (ECE and where it was measured), ``by_province`` / ``by_sector``
        (held-out rows with names), ``comparison`` and ``gates`` (human-titled evaluation),
        ``importance`` / ``group_importance`` (mean |log-odds|), ``drift`` (PSI rows or None)
        and ``drift_verdict``, ``provenance``, notes, and ``images`` (data URIs; left out of
        JSON).
    """
    from lgml.explain.contributions import contributions
    from lgml.explain.firm import model_info
    from lgml.modeling import plots
    from lgml.modeling.drift import drift_verdict, psi_table
    from lgml.modeling.evaluate import expected_calibration_error, metrics_by
    from lgml.modeling.gains import gains_by_batch
    from lgml.report import card, figures
    from lgml.vocabulary import feature_label, group_label

    groups = bundle.metadata.get("feature_groups") or None
    evaluation = bundle.evaluation or {}
    tests = card.test_batches(bundle.metadata, evaluation)
    stored = bundle.stored_plots()
    report: dict[str, Any] = {
        "model": model_info(bundle), "horizon": bundle.horizon, "evaluation": evaluation, "images": {}, "data_note": data_note,
        "reference_note": reference_note, "headline": None, "gains": [], "gains_source": "",
        "held_out": card.held_out(tests),
        "calibration": {"ece": (((evaluation.get("populations") or {}).get("all") or {}).get("model") or {}).get("ece"),
                        "source": "the test batches at training"},
        "by_province": card.evaluation_group_rows(evaluation, "by_province"),
        "by_sector": card.evaluation_group_rows(evaluation, "by_sector"),
        "comparison": card.comparison_tables(evaluation), "gates": card.gate_rows(evaluation),
        "calibration_method": (evaluation.get("calibration") or {}),
        "plots": [{"name": n.replace("_", " "), "uri": figures.png_uri(png)} for n, png in stored.items()
                  if n != "calibration"],
        "importance": [], "group_importance": [], "drift": None, "drift_verdict": None,
        "n_sample": 0, "n_labelled": 0, "drift_rows_note": "",
        "group_labels": {g: group_label(g) for g in (*FEATURE_DIMENSIONS.values(), "other")},
        "provenance": {"model": card.model_provenance(bundle), "data": []},
    }
    if "calibration" in stored:
        report["images"]["calibration"] = figures.png_uri(stored["calibration"])
    gains = evaluation.get("gains") or {}
    if gains:
        report["headline"] = card.headline(gains, horizon=bundle.horizon)
        report["gains_source"] = "the bundle's evaluation (computed at training)"
    reference = reference if reference is not None else bundle.reference
    if data is None:
        _add_gains(report, gains, figures)
        if reference is None:
            report["drift_note"] = ("No drift: the bundle stores no training reference profile (reference.json), "
                                    "none was passed in, and there is no data to compare.")
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
    seen = card.seen_batches(bundle.metadata)
    held = labelled[~labelled["batch_year"].isin(seen)] if seen and "batch_year" in labelled else labelled.iloc[:0]
    report["n_labelled"] = len(held)
    report["provenance"]["data"] = card.data_provenance(
        {"source": data_note, **card.data_facts(data, rows, labelled), **(data_info or {})},
        bundle.metadata.get("data_hash"))
    if len(held) and held["designated_next"].nunique() == 2:
        years = sorted(int(y) for y in held["batch_year"].unique())
        report["held_out"] = card.held_out(years)
        y = held["designated_next"].to_numpy(dtype=float)
        p = bundle.predict(held)
        report["calibration"] = {"ece": expected_calibration_error(y, p), "source": "the held-out rows of the data"}
        report["images"]["calibration"] = figures.to_data_uri(plots.calibration_figure(y, {"model": p}))
        report["images"]["roc_pr"] = figures.to_data_uri(plots.roc_pr_figure(y, {"model": p}, "held-out batches"))
        report["by_province"] = card.group_rows(metrics_by(held, y, p, "province"), "province")
        report["by_sector"] = card.group_rows(metrics_by(held, y, p, "sector"), "sector")
        if not gains:
            from lgml.modeling.baselines import RuleBaseline

            frame = pd.DataFrame({"batch_year": held["batch_year"].to_numpy(), "target": y})
            gains = gains_by_batch(frame, {"model": bundle.predict_raw(held), "rules": RuleBaseline().score(held)})
            report["headline"] = card.headline(gains, horizon=bundle.horizon)
            report["gains_source"] = "the held-out rows of the data (the bundle records no gains)"
    _add_gains(report, gains, figures)

    if reference is None:
        reference, report["reference_note"] = _rebuilt_reference(bundle, rows)
    if reference is None:
        report["drift_note"] = ("No drift: the bundle stores no training reference profile (reference.json), none "
                                "was passed in, and the data hold no rows of the training batches to rebuild one.")
        return report
    if not report["reference_note"] and reference.get("batch_year"):
        report["reference_note"] = (f"the profile of the {int(reference.get('n_rows', 0)):,} candidates of batch "
                                    f"{reference['batch_year']}, the last batch the model learned from, stored in "
                                    "the bundle at training")
    current, report["drift_rows_note"] = _drift_rows(rows)
    drift = psi_table(reference, current, groups)
    drift.insert(1, "label", [labels.get(f, feature_label(f)) for f in drift["feature"]])
    report["drift"] = _records(drift)
    ruled, change = _rule_change(bundle, reference, current)
    report["drift_verdict"] = drift_verdict(drift, labels, rule_features=ruled, rules_note=change)
    report["images"]["psi"] = figures.psi_bars(list(zip(drift["feature"], drift["psi"])), labels)
    return report


def _add_gains(report: dict[str, Any], gains: Mapping[str, Any], figures: Any) -> None:
    """The gains table and chart of the headline batch."""
    head = report["headline"]
    if not head:
        return
    from lgml.report.card import gains_rows

    g = gains[str(head["batch"])]
    report["gains"] = gains_rows(g)
    report["images"]["gains"] = figures.gains_chart(g["curve"], head["batch"])


def report_features(bundle: Any, panel: str | os.PathLike, events: str | os.PathLike | None = None, *,
                    units: str | None = None, encoding: str | None = None,
                    sheet: str | int | None = None) -> tuple[pd.DataFrame, str | None]:
    """Feature table of a panel file (and its events file) for the report, built with the
    bundle's province/sector records (else those of the panel itself), and the sha256 of the
    panel and events as training computes it (None without events).

    Raises:
        lgml.validate.ContractError, lgml.io.InputError: A file breaks the input contract.
    """
    from lgml import validate
    from lgml.features import build_features, context_tables
    from lgml.modeling.dataset import Source, data_hash

    rows = validate.load_panel(panel, units=units, encoding=encoding, sheet=sheet)
    history = validate.load_events(events, panel=rows, encoding=encoding, sheet=sheet) if events is not None else None
    context = bundle.context if bundle.context is not None else context_tables(rows, history)
    digest = data_hash(Source(rows, history, None)) if history is not None else None
    return with_horizon_target(build_features(rows, history, context), history, bundle.horizon), digest


def with_horizon_target(table: pd.DataFrame, events: pd.DataFrame | None, horizon: int) -> pd.DataFrame:
    """``table`` whose ``designated_next`` is the target of a horizon-``horizon`` model
    (designated in one of the next ``horizon`` batches, :func:`lgml.features.designated_within`),
    so that the card's held-out metrics measure what the model predicts."""
    from lgml.features import designated_within

    if horizon == 1:
        return table
    return table.assign(designated_next=designated_within(table, events, horizon).to_numpy())


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
    return with_horizon_target(build_features(sim.panel, sim.events, bundle.context), sim.events, bundle.horizon), note


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
    info: dict[str, Any] = {}
    if data is not None:
        table, info["data_hash"] = report_features(bundle, data, events, units=units, encoding=encoding, sheet=sheet)
        note = f"{data}" + (f" with events {events}" if events is not None else "")
    else:
        table, note = simulated_sample(bundle)
    profile, profile_note = None, ""
    if reference is not None:
        ref_table, _ = report_features(bundle, reference, reference_events, units=units, encoding=encoding,
                                       sheet=sheet)
        profile = reference_profile(ref_table[candidate_mask(ref_table)], bundle.features)
        profile_note = f"{reference}"
    step("Computing contributions and metrics")
    return model_report(bundle, table, reference=profile, data_note=note, reference_note=profile_note,
                        data_info=info, sample=sample, seed=bundle.config.seed)


def render_model(report: dict[str, Any], fmt: str = "html") -> str:
    """Render a model report (see :func:`lgml.report.model.model_report`)."""
    if fmt == "json":
        return to_json({k: v for k, v in report.items() if k != "images"})
    if fmt not in ("html", "md"):
        raise ValueError(f"the model report is written as html, md or json, not {fmt!r}")
    template = environment(markdown=fmt == "md").get_template(f"model.{fmt}.j2")
    return template.render(r=report, generated=now())
