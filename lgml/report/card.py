"""The model card's plain-language parts: the headline in words, the gains table, per-province
and per-sector tables of the held-out batches with their names, the evaluation in human-titled
tables, and the provenance of the data and the model.

Pure functions of the bundle's evaluation and metadata and of frames; :mod:`lgml.report.model`
assembles them with the figures into the report dict.

Example:
    >>> year_span([2024, 2025])
    '2024–2025'
    >>> held_out_label([2025])
    'held-out batch 2025 (the model never saw it)'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lgml import schema

SCORER_NAMES = {"model": "this model", "rules": "rule check", "logistic": "logistic regression",
                "linear": "linear regression", "oracle": "oracle (true probabilities)"}
POPULATION_NAMES = {"all": "every candidate", "pool": "candidates holding provincial SRDI status (the pool)"}
METRIC_NAMES = {"auc": "AUC", "pr_auc": "PR-AUC", "topk_precision": "top-k hit rate", "brier": "Brier",
                "log_loss": "log loss", "ece": "ECE", "mean_p": "mean predicted", "rate": "observed rate",
                "n": "rows", "n_pos": "designations", "n_missing": "rows without a score"}
GATE_NAMES = {"auc_all >= auc_min": "AUC (every candidate) at least", "ece_all <= ece_max": "ECE at most",
              "auc_all model > rules": "AUC beats the rule check (every candidate)",
              "auc_pool model > rules": "AUC beats the rule check (the pool)",
              "r2_all >= r2_min": "R² at least", "r2_all model > linear": "R² beats the linear model",
              "r2_pool model > linear": "R² beats the linear model (the pool)"}


def year_span(years: Sequence[int]) -> str:
    """``2024–2025`` for a run of years, ``2025`` for one, ``2021, 2023`` otherwise."""
    years = sorted({int(y) for y in years})
    if not years:
        return ""
    if len(years) == 1:
        return str(years[0])
    if years == list(range(years[0], years[-1] + 1)):
        return f"{years[0]}–{years[-1]}"
    return ", ".join(map(str, years))


def held_out_label(years: Sequence[int]) -> str:
    """How a table of held-out batches is labelled."""
    many = len(set(years)) > 1
    return f"held-out batch{'es' if many else ''} {year_span(years)} (the model never saw {'these' if many else 'it'})"


def held_out(years: Sequence[int]) -> dict[str, Any]:
    """``years``, their ``label`` (:func:`held_out_label`) and ``what`` (``batch 2025`` /
    ``batches 2024–2025``)."""
    years = sorted({int(y) for y in years})
    return {"years": years, "label": held_out_label(years),
            "what": f"batch{'es' if len(years) > 1 else ''} {year_span(years)}"}


def seen_batches(metadata: Mapping[str, Any]) -> set[int]:
    """Batch years the model learned from: its training and validation (early stopping and
    calibration) batches."""
    batches = metadata.get("batches") or {}
    return {int(b) for key in ("train", "valid") for b in batches.get(key, [])}


def test_batches(metadata: Mapping[str, Any], evaluation: Mapping[str, Any]) -> list[int]:
    """The bundle's test batches (held out at training)."""
    years = (metadata.get("batches") or {}).get("test") or evaluation.get("test_batches") or []
    return sorted(int(y) for y in years)


# ------------------------------------------------------------------------------------------------
# Headline and gains
# ------------------------------------------------------------------------------------------------


def headline(gains: Mapping[str, Mapping[str, Any]], batch: str | int | None = None,
             horizon: int = 1) -> dict[str, Any] | None:
    """The headline of one batch's gains (:func:`lgml.modeling.gains.gains_by_batch`): the
    latest batch by default. For a horizon-h model the batch is the first of its window
    (``batch`` .. ``batch + horizon - 1``) and "designated" means designated within it.

    Returns:
        None without gains; else ``batch``, ``k``, ``n``, ``n_pos``, ``model``, ``rules``,
        ``oracle`` (designations in each scorer's top k; None when absent), ``random``
        (expected by chance) and ``text`` (the sentence).
    """
    if not gains:
        return None
    key = str(batch) if batch is not None else sorted(gains, key=int)[-1]
    g = gains[key]
    k, top = g["k"], g["top_k"]
    out = {"batch": int(key), "k": k, "n": g["n"], "n_pos": g["n_pos"], "model": top.get("model"),
           "rules": top.get("rules"), "oracle": top.get("oracle"),
           "random": k * g["n_pos"] / g["n"] if g["n"] else float("nan")}
    window = f"batch {key}" if horizon == 1 else f"batches {key}-{int(key) + horizon - 1}"
    text = (f"Of the {k} firms ranked highest for {window}, {out['model']} were designated"
            + ("" if horizon == 1 else " within them"))
    if out["rules"] is not None:
        text += f"; the rule check's top {k} held {out['rules']}"
    if out["oracle"] is not None:
        text += f" (the best possible, by the simulator's true probabilities, {out['oracle']})"
    out["text"] = text + "."
    out["context"] = (f"{window[0].upper()}{window[1:]} had {g['n_pos']:,} designations among {g['n']:,} candidates: {k} firms "
                      f"picked at random would hold about {out['random']:.1f}.")
    return out


def gains_rows(g: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The gains table of one batch: per top share, the candidates it holds and the share of
    the batch's designations each scorer captures there."""
    return [{"share": row["share"], "rows": row["rows"], **{s: row.get(s) for s in ("model", "rules", "oracle")}}
            for row in g.get("table", [])]


# ------------------------------------------------------------------------------------------------
# Names and per-group tables
# ------------------------------------------------------------------------------------------------


def province_name(province: str) -> str:
    """Short Chinese name of a province (empty when unknown)."""
    return schema.PROVINCES.get(str(province), ("", ""))[1]


def sector_name(code: str) -> str:
    """``通用设备制造业 general equipment`` for ``34`` (empty when unknown)."""
    zh, en = schema.SECTOR_NAMES.get(str(code), ("", ""))
    return f"{zh} {en}".strip()


def group_rows(metrics: pd.DataFrame, by: str) -> list[dict[str, Any]]:
    """Rows of :func:`lgml.modeling.evaluate.metrics_by` with each level's name."""
    name = province_name if by == "province" else sector_name
    return [{"level": str(r[by]), "name": name(r[by]), "n": int(r["n"]), "designated": int(r["designated"]),
             "observed_rate": _finite(r["observed_rate"]), "mean_predicted": _finite(r["mean_predicted"]),
             "auc": _finite(r["auc"]), "brier": _finite(r["brier"])} for _, r in metrics.iterrows()]


def evaluation_group_rows(evaluation: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """The same rows from the bundle's ``evaluation.json`` entry ``by_province`` or
    ``by_sector`` (the test batches at training; groups too small for metrics have counts)."""
    name = province_name if key == "by_province" else sector_name
    rows = []
    for level, entry in (evaluation.get(key) or {}).items():
        model = entry.get("model") or {}
        n, pos = int(entry.get("n", 0)), int(entry.get("n_pos", 0))
        rows.append({"level": str(level), "name": name(level), "n": n, "designated": pos,
                     "observed_rate": pos / n if n else None, "mean_predicted": _finite(model.get("mean_p")),
                     "auc": _finite(model.get("auc")), "brier": _finite(model.get("brier"))})
    return sorted(rows, key=lambda r: (-r["n"], r["level"]))


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and np.isfinite(float(x)) else None


# ------------------------------------------------------------------------------------------------
# The evaluation in human-titled tables
# ------------------------------------------------------------------------------------------------


def comparison_tables(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One table per population: each scorer's metrics on the test batches, with plain titles
    and column names.

    Returns:
        List of ``{"title", "columns", "rows"}``; rows hold the scorer's name then numbers
        (None where absent).
    """
    tables = []
    years = year_span(evaluation.get("test_batches", []))
    for pop, scorers in (evaluation.get("populations") or {}).items():
        metrics = [m for m in METRIC_NAMES if any(m in v for v in scorers.values())]
        tables.append({
            "title": f"Test batch {years}, {POPULATION_NAMES.get(pop, pop)}: the model beside simpler methods",
            "columns": ["", *(METRIC_NAMES[m] for m in metrics)],
            "keys": metrics,
            "rows": [[SCORER_NAMES.get(s, s), *(v.get(m) for m in metrics)] for s, v in scorers.items()],
        })
    return tables


def gate_rows(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The quality gates checked at training, named plainly."""
    return [{"name": GATE_NAMES.get(c["name"], c["name"]), "value": c["value"], "threshold": c["threshold"],
             "passed": c["passed"]} for c in (evaluation.get("gates") or {}).get("checks", [])]


# ------------------------------------------------------------------------------------------------
# Provenance
# ------------------------------------------------------------------------------------------------


def model_provenance(bundle: Any) -> list[tuple[str, str]]:
    """Label/value pairs on where the model came from."""
    meta, config = bundle.metadata, bundle.config
    batches = meta.get("batches") or {}
    versions = meta.get("package_versions") or {}
    seeds = f"model {meta.get('seed', config.seed)}"
    if config.data.simulate is not None:
        seeds += f", simulated data {config.data.simulate.seed} ({config.data.simulate.firms:,} firms)"
    rows = [("name", bundle.name), ("version", str(bundle.version)),
            ("trained", meta.get("trained_at") or "not recorded (bundle saved before lgml recorded it)"),
            ("training batches", year_span(batches.get("train", []))),
            ("validation batches (early stopping, calibration)", year_span(batches.get("valid", []))),
            ("test batches (held out)", year_span(batches.get("test", []))),
            ("rows train / valid / test", " / ".join(f"{v:,}" for v in (meta.get("rows") or {}).values())),
            ("seeds", seeds),
            ("calibration", str(meta.get("calibration"))),
            ("features / trees", f"{len(bundle.features)} / {meta.get('n_trees', 'n/a')}"),
            ("model sha256", meta.get("model_sha256") or "n/a"),
            ("config hash", meta.get("config_hash") or "n/a"),
            ("training data hash", meta.get("data_hash") or "n/a"),
            ("lgml version", versions.get("lgml") or "n/a"),
            ("git commit", meta.get("git_commit") or "n/a"),
            ("folder", str(bundle.path))]
    return rows


def data_provenance(info: Mapping[str, Any], training_hash: str | None) -> list[tuple[str, str]]:
    """Label/value pairs on the data the report was computed on (``info`` from
    :func:`data_facts` plus ``source``, and ``data_hash`` when known)."""
    rows = [("source", str(info.get("source", "")))]
    for key, label in (("firm_years", "firm-years"), ("firms", "firms"), ("candidates", "candidate rows"),
                       ("labelled", "labelled candidate rows")):
        if info.get(key) is not None:
            rows.append((label, f"{info[key]:,}"))
    for key, label in (("years", "fiscal years"), ("batches", "batch years")):
        if info.get(key):
            rows.append((label, year_span(info[key])))
    if info.get("data_hash"):
        same = " (the data the model was trained on)" if info["data_hash"] == training_hash else ""
        rows.append(("data hash", info["data_hash"] + same))
    return rows


def data_facts(table: pd.DataFrame, candidates: pd.DataFrame, labelled: pd.DataFrame) -> dict[str, Any]:
    """Counts and years of a feature table, for the provenance section."""
    facts: dict[str, Any] = {"firm_years": len(table), "candidates": len(candidates), "labelled": len(labelled)}
    if "firm_id" in table.columns:
        facts["firms"] = int(table["firm_id"].nunique())
    for col, key in (("year", "years"), ("batch_year", "batches")):
        if col in table.columns:
            facts[key] = sorted(int(y) for y in pd.unique(table[col].dropna()))
    return facts
