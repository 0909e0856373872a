"""Honest evaluation on held-out batches: the model beside its baselines and the oracle.

Scorers, each evaluated on the same test rows:

- ``model``: the trained LightGBM model (calibrated probability / predicted log growth: the
  year's level of :mod:`lgml.modeling.level` plus the relative growth the booster predicts);
- ``rules``: the rule check (:func:`lgml.criteria.rule_rank_score`): its ranking for AUC, PR-AUC
  and top-k; its probabilities from a Platt fit of that score on the validation batches;
- ``logistic`` (designation) / ``linear`` (growth): a regularised linear model on standardised
  numeric features with missing-value indicators and median imputation plus one-hot
  categoricals, fitted on the training batches (growth: on relative growth, with the model's level);
- ``oracle``: the true probability / expected growth, when a truth table is known.

Populations: ``all`` (every labelled row) and ``pool`` (rows holding provincial SRDI status).

ECE uses 15 equal-frequency bins of the predicted probability: with base rates near 1% most
equal-width bins would be empty.

Example:
    >>> y = np.array([0, 0, 1, 1]); p = np.array([0.1, 0.4, 0.35, 0.8])
    >>> round(binary_metrics(y, p)["auc"], 2)
    0.75
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lgml.config import BINARY_TASKS
from lgml.modeling.gains import GAINS_SCORERS, gains_by_batch

ECE_BINS = 15
MIN_GROUP_ROWS = 50  # smaller provinces / sectors are reported with counts only
MIN_POSITIVES_FOR_AUC = 5  # metrics_by: fewer designations give no AUC


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE: row-weighted mean |observed rate - mean probability| over equal-frequency bins.

    Args:
        y: 0/1 labels, shape (n,).
        p: Probabilities, shape (n,).
        n_bins: Number of bins (quantiles of ``p``).
    """
    curve = calibration_curve(y, p, n_bins)
    if curve.empty:
        return float("nan")
    return float(np.average((curve["observed"] - curve["predicted"]).abs(), weights=curve["n"]))


def calibration_curve(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> pd.DataFrame:
    """Reliability table over equal-frequency bins of ``p``.

    Returns:
        DataFrame with one row per non-empty bin: ``predicted`` (mean probability),
        ``observed`` (rate of positives), ``n`` (rows).
    """
    order = np.argsort(p, kind="stable")
    bins = np.empty(len(p), dtype=int)
    bins[order] = np.minimum(np.arange(len(p)) * n_bins // max(len(p), 1), n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "p": np.asarray(p, float), "y": np.asarray(y, float)})
    out = frame.groupby("bin").agg(predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size"))
    return out.reset_index(drop=True)


def topk_precision(y: np.ndarray, score: np.ndarray, groups: pd.DataFrame) -> float:
    """Precision of each group's top ``k`` rows, ``k`` = that group's actual number of positives
    (groups: province x batch), pooled over groups (total hits / total k). Ties are broken by
    row order.

    Args:
        y: 0/1 labels, shape (n,).
        score: Any score where higher means more likely, shape (n,).
        groups: DataFrame of shape (n, n_keys) whose rows define the groups.
    """
    frame = groups.reset_index(drop=True).assign(_y=np.asarray(y, float), _s=np.asarray(score, float))
    keys = list(groups.columns)
    frame["_rank"] = frame.groupby(keys, observed=True)["_s"].rank(method="first", ascending=False)
    frame["_k"] = frame.groupby(keys, observed=True)["_y"].transform("sum")
    total = frame["_y"].sum()
    if total == 0:
        return float("nan")
    return float(frame.loc[frame["_rank"] <= frame["_k"], "_y"].sum() / total)


def binary_metrics(y: np.ndarray, p: np.ndarray, rank: np.ndarray | None = None,
                   groups: pd.DataFrame | None = None) -> dict[str, float]:
    """Designation metrics of probabilities ``p`` (and an optional separate ranking score).

    Args:
        y: 0/1 labels, shape (n,).
        p: Probabilities, shape (n,); None-free. Used for Brier, log loss and ECE, and for
            ranking unless ``rank`` is given.
        rank: Optional ranking score of shape (n,) for AUC, PR-AUC and top-k.
        groups: Province x batch keys for top-k precision, shape (n, 2).

    Returns:
        ``auc, pr_auc, brier, log_loss, ece, topk_precision, mean_p, rate, n, n_pos``.
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, float)
    p = np.clip(np.asarray(p, float), 1e-7, 1 - 1e-7)
    s = p if rank is None else np.asarray(rank, float)
    both = 0 < y.sum() < len(y)
    return {
        "auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, s)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "topk_precision": topk_precision(y, s, groups) if groups is not None else float("nan"),
        "mean_p": float(p.mean()),
        "rate": float(y.mean()),
        "n": int(len(y)),
        "n_pos": int(y.sum()),
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray, year: np.ndarray | None = None,
                       interval: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    """Growth metrics of predicted vs actual log growth, arrays of shape (n,).

    Returns:
        ``r2``, ``rmse``, ``mae``, ``spearman``, ``level_error`` (mean predicted minus mean
        actual: the year's growth level missed) and ``n``; with ``year`` also ``r2_within`` (R²
        after removing each year's mean from both actual and predicted: how well firms are told
        apart within a year, whatever the year's level); with ``interval`` (p10, p90) also
        ``coverage`` (share of actual values inside it; 0.8 when the interval is right).
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y, pred = np.asarray(y, float), np.asarray(pred, float)
    out = {
        "r2": float(r2_score(y, pred)),
        "rmse": float(np.sqrt(mean_squared_error(y, pred))),
        "mae": float(mean_absolute_error(y, pred)),
        "spearman": float(spearmanr(y, pred).statistic),
        "level_error": float(pred.mean() - y.mean()),
        "n": int(len(y)),
    }
    if year is not None:
        def within(x: np.ndarray) -> np.ndarray:
            return x - pd.Series(x).groupby(np.asarray(year)).transform("mean").to_numpy()

        out["r2_within"] = float(r2_score(within(y), within(pred)))
    if interval is not None:
        lo, hi = (np.asarray(b, float) for b in interval)
        out["coverage"] = float(np.mean((y >= lo) & (y <= hi)))
    return out


def _scorer_metrics(task: str, test: pd.DataFrame, scores: Mapping[str, dict[str, np.ndarray]],
                    mask: np.ndarray) -> dict[str, dict]:
    out = {}
    for name, score in scores.items():
        ok = mask & ~np.isnan(score["p"])
        if task in BINARY_TASKS:
            rank = score.get("rank")
            out[name] = binary_metrics(test["target"].to_numpy()[ok], score["p"][ok],
                                       None if rank is None else rank[ok], test.loc[ok, ["province", "batch_year"]])
        else:
            interval = (score["p10"][ok], score["p90"][ok]) if "p10" in score else None
            out[name] = regression_metrics(test["target"].to_numpy()[ok], score["p"][ok],
                                           test["batch_year"].to_numpy()[ok], interval)
        if ok.sum() < mask.sum():
            out[name]["n_missing"] = int(mask.sum() - ok.sum())
    return out


def by_group(task: str, test: pd.DataFrame, scores: Mapping[str, dict[str, np.ndarray]], by: str) -> dict[str, dict]:
    """Per-level metrics of each scorer over ``by`` (``province`` or ``sector``); levels with
    fewer than :data:`MIN_GROUP_ROWS` rows (or a single class) get counts only."""
    out: dict[str, dict] = {}
    values = test[by].astype(object).to_numpy()
    for level in pd.unique(values):
        mask = values == level
        entry: dict = {"n": int(mask.sum())}
        if task in BINARY_TASKS:
            entry["n_pos"] = int(test["target"].to_numpy()[mask].sum())
            usable = mask.sum() >= MIN_GROUP_ROWS and 0 < entry["n_pos"] < mask.sum()
        else:
            usable = mask.sum() >= MIN_GROUP_ROWS
        if usable:
            entry.update(_scorer_metrics(task, test, scores, mask))
        out[str(level)] = entry
    return dict(sorted(out.items()))


def metrics_by(table: pd.DataFrame, y: np.ndarray, p: np.ndarray, by: str, min_rows: int = 1) -> pd.DataFrame:
    """Designation metrics of one probability per level of ``by`` (province or sector), as a
    flat table for reports on any labelled rows. (:func:`by_group` is the ``evaluation.json``
    entry: every scorer's full metrics on the test batches.)

    Args:
        table: Rows with a ``by`` column, shape (n, >= 1).
        y: 0/1 labels, shape (n,).
        p: Probabilities, shape (n,).
        by: Grouping column.
        min_rows: Levels with fewer rows are left out.

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


def gate_checks(task: str, populations: dict, gates) -> dict:
    """Check the config's gates (:class:`lgml.config.GatesConfig`) on the test metrics.

    Returns:
        ``{"passed": bool, "checks": [{"name", "value", "threshold", "passed"}]}``.
    """
    checks = []
    model_all = populations["all"]["model"]

    def add(name: str, value: float, threshold: float, ok: bool) -> None:
        checks.append({"name": name, "value": value, "threshold": threshold, "passed": bool(ok)})

    if task in BINARY_TASKS:
        if gates.auc_min is not None:
            add("auc_all >= auc_min", model_all["auc"], gates.auc_min, model_all["auc"] >= gates.auc_min)
        if gates.ece_max is not None:
            add("ece_all <= ece_max", model_all["ece"], gates.ece_max, model_all["ece"] <= gates.ece_max)
        if gates.beat_rules:
            for pop in ("all", "pool"):
                m, r = populations[pop]["model"]["auc"], populations[pop]["rules"]["auc"]
                add(f"auc_{pop} model > rules", m, r, m > r)
    else:
        if gates.r2_min is not None:
            add("r2_all >= r2_min", model_all["r2"], gates.r2_min, model_all["r2"] >= gates.r2_min)
        if gates.beat_rules:
            for pop in ("all", "pool"):
                m, r = populations[pop]["model"]["r2"], populations[pop]["linear"]["r2"]
                add(f"r2_{pop} model > linear", m, r, m > r)
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def evaluate(task: str, test: pd.DataFrame, scores: Mapping[str, dict[str, np.ndarray]], gates) -> dict:
    """The evaluation report written to ``evaluation.json``.

    Args:
        task: ``designation`` or ``growth``.
        test: Test rows with ``target``, ``in_pool``, ``province``, ``sector``, ``batch_year``.
        scores: Scorer name -> ``{"p": probabilities or growth predictions of shape (n,),
            optional "rank": ranking score of shape (n,)}``; NaN marks rows a scorer lacks.
        gates: :class:`lgml.config.GatesConfig`.

    Returns:
        ``{"task", "n_rows", "test_batches", "populations": {"all"|"pool": {scorer: metrics}},
        "by_province", "by_sector", "calibration_curve", "gains", "gates"}``; ``gains``
        (designation) is :func:`lgml.modeling.gains.gains_by_batch` of the model, the rule
        check and the oracle, each batch ranked by the scorer's ranking score.
    """
    everyone = np.ones(len(test), bool)
    pool = test["in_pool"].to_numpy(dtype=bool)
    populations = {"all": _scorer_metrics(task, test, scores, everyone),
                   "pool": _scorer_metrics(task, test, scores, pool)}
    report = {
        "task": task,
        "n_rows": int(len(test)),
        "test_batches": sorted(int(b) for b in test["batch_year"].unique()),
        "populations": populations,
        "by_province": by_group(task, test, {"model": scores["model"]}, "province"),
        "by_sector": by_group(task, test, {"model": scores["model"]}, "sector"),
    }
    if task in BINARY_TASKS:
        y = test["target"].to_numpy()
        report["calibration_curve"] = {name: calibration_curve(y[~np.isnan(s["p"])], s["p"][~np.isnan(s["p"])])
                                       .to_dict(orient="list") for name, s in scores.items()}
        report["ece_bins"] = f"{ECE_BINS} equal-frequency"
    if task == "designation":
        report["gains"] = gains_by_batch(test, {name: s.get("rank", s["p"]) for name, s in scores.items()
                                                if name in GAINS_SCORERS})
    report["gates"] = gate_checks(task, populations, gates)
    return report
