"""Peers benchmark: lgml beside XGBoost, CatBoost, sklearn HistGradientBoosting and the linear
baseline, on the identical feature rows and out-of-time split, for designation and growth.

Usage: python bench/bench_peers.py [--firms 30000] [--seed 0] [--tasks designation,growth]
                                   [--threads 2]

The peers need the optional bench extra: ``pip install -e ".[bench]"`` (xgboost, catboost;
HistGradientBoosting comes with scikit-learn, and must be >= 1.7 for its ``X_val``).

What it does:

- Simulates one panel (``--firms``, ``--seed``) and trains lgml exactly as ``lgml train`` does,
  through :func:`lgml.modeling.train.train_from_config`, with ``configs/designation.yaml`` and
  ``configs/growth.yaml`` (MLflow off, bundle in a temporary folder, ``lightgbm.num_threads`` =
  ``--threads``). lgml's test predictions come from the written bundle.
- Every peer gets the rows and features of :func:`lgml.modeling.dataset.model_data` for the same
  config (train / valid / test batches), minus any feature entirely missing in the training
  batches (HistGradientBoosting rejects such a column; the others get the same columns). Each
  stops early on the validation batch (AUC for designation, squared error for growth) with the
  config's round budget, patience and learning rate; tree size and regularisation follow the
  config where the peer has an equivalent (``PEER_SHAPE``). Peers train on every training row,
  unweighted (lgml subsamples easy negatives, weighting the kept ones up, and adds province
  level rounds fitted on the validation batch: both are part of lgml).
  Categoricals: XGBoost native (pandas category, ``enable_categorical``, hist); CatBoost
  ``cat_features`` as strings (missing -> "missing"); HistGradientBoosting
  ``categorical_features="from_dtype"``; the linear baseline is lgml's ``LinearBaseline``
  (logistic / ridge on clipped, imputed, standardised numeric features plus one-hot
  categoricals, fitted on the training batches, no early stopping).
- Designation probabilities of every peer and of the logistic baseline are calibrated like
  lgml's: ``make_calibrator(config.calibration)`` fitted on the scorer's validation log-odds.
  AUC, PR-AUC and top-k rank by the uncalibrated score (as lgml's own evaluation does), ECE uses
  the calibrated probability. The rule check (rules) is lgml's ``RuleBaseline``.
- Oracle: the simulated truth (``p_designation``, ``expected_growth``).

Metrics on the test batch, for ``pool`` (holders of provincial SRDI status) and ``all``
candidates (designation rows exclude current title holders): AUC, PR-AUC, ECE (15
equal-frequency bins) and top-k precision within province (per province x batch, k = its
actual designations, pooled: total hits / total designations), by ``lgml.modeling.evaluate``;
growth: R², R² within years (each test batch's mean removed from actual and predicted),
Spearman, level error (mean predicted - mean actual) and, for lgml, the coverage of its p10-p90
interval. For growth every scorer learns growth relative to its year (the year's mean removed,
as lgml does) and gets lgml's level for the test year (the mean of the three fiscal years
before it). ``fit_s``: training wall time on
``--threads`` threads -- for lgml LightGBM's Dataset construction, boosting and level rounds
(growth's p10/p90 interval models excluded); for a peer its input encoding and fit.

The last line prints ``lgml_pool_auc=… best_peer_pool_auc=… oracle_pool_auc=… lgml_pr_ratio=…
lgml_r2_within_ratio=…`` (best peer among xgboost, catboost, hgb; pr ratio = lgml pool PR-AUC /
oracle pool PR-AUC; r2 ratio = lgml R² within / oracle R² within, all candidates).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lgml.config import TrainConfig
from lgml.modeling import evaluate, level
from lgml.modeling.baselines import LinearBaseline, RuleBaseline
from lgml.modeling.bundle import load_bundle
from lgml.modeling.calibrate import make_calibrator
from lgml.modeling.dataset import Source, load_source, model_data
from lgml.modeling.matrix import feature_levels, model_frame
from lgml.modeling.train import train_from_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"designation": ROOT / "configs/designation.yaml", "growth": ROOT / "configs/growth.yaml"}
PEERS = ("xgboost", "catboost", "hgb")
INSTALL = 'pip install -e ".[bench]"'


# --- inputs --------------------------------------------------------------------------------

def load_config(task: str, firms: int, seed: int, threads: int, models_dir: Path) -> TrainConfig:
    """The task's lgml config with the panel size and seed, threads, MLflow off, temp models_dir."""
    raw = TrainConfig.from_file(CONFIGS[task]).to_dict()
    raw["data"]["simulate"] = {"firms": firms, "seed": seed}
    raw["lightgbm"]["num_threads"] = threads
    raw["mlflow"]["enabled"] = False
    raw["models_dir"] = str(models_dir)
    return TrainConfig.model_validate(raw)


def require_peers() -> None:
    missing = [m for m in ("xgboost", "catboost") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"missing peer librar{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)}: "
                         f"install the bench extra with `{INSTALL}`")


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


# --- peers: each fit(...) -> (raw valid, raw test, rounds); raw = log-odds or log growth --------

def peer_shape(config: TrainConfig) -> dict:
    """Budget and tree shape shared by the peers, from the lgml config."""
    g = config.lightgbm
    return {"lr": g.learning_rate, "rounds": g.num_boost_round, "patience": g.early_stopping_rounds,
            "leaves": g.num_leaves, "min_leaf": g.min_child_samples, "l2": g.lambda_l2,
            "rows": g.bagging_fraction, "cols": g.feature_fraction, "seed": config.seed}


def fit_xgboost(task, X, y, s, threads):
    import xgboost as xgb

    cls = xgb.XGBClassifier if task == "designation" else xgb.XGBRegressor
    model = cls(n_estimators=s["rounds"], learning_rate=s["lr"], tree_method="hist", enable_categorical=True,
                grow_policy="lossguide", max_leaves=s["leaves"], max_depth=0, reg_lambda=s["l2"],
                subsample=s["rows"], colsample_bytree=s["cols"], early_stopping_rounds=s["patience"],
                eval_metric="auc" if task == "designation" else "rmse", n_jobs=threads, random_state=s["seed"])
    model.fit(X["train"], y["train"], eval_set=[(X["valid"], y["valid"])], verbose=False)
    kind = {"output_margin": True} if task == "designation" else {}
    return (*(model.predict(X[k], **kind) for k in ("valid", "test")), model.best_iteration + 1)


def fit_catboost(task, X, y, s, threads):
    import catboost as cb

    cats = [c for c in X["train"].columns if isinstance(X["train"][c].dtype, pd.CategoricalDtype)]

    def strings(frame):
        return frame.assign(**{c: frame[c].astype(object).where(frame[c].notna(), "missing").astype(str)
                               for c in cats})

    X = {k: strings(v) for k, v in X.items()}
    cls, metric = (cb.CatBoostClassifier, "AUC") if task == "designation" else (cb.CatBoostRegressor, "RMSE")
    model = cls(iterations=s["rounds"], learning_rate=s["lr"], depth=max(1, math.ceil(math.log2(s["leaves"]))),
                l2_leaf_reg=s["l2"], rsm=s["cols"], eval_metric=metric, od_type="Iter", od_wait=s["patience"],
                use_best_model=True, random_seed=s["seed"], thread_count=threads, verbose=False,
                allow_writing_files=False)
    model.fit(X["train"], y["train"], cat_features=cats, eval_set=(X["valid"], y["valid"]))
    raw = (model.predict(X[k], prediction_type="RawFormulaVal") for k in ("valid", "test"))
    return (*raw, model.get_best_iteration() + 1)


def fit_hgb(task, X, y, s, threads):
    """Early stopping on the validation batch (``X_val``); HGB keeps the patience rounds, so the
    predictions are taken at the best validation score's iteration (staged predictions)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    cls, scoring = ((HistGradientBoostingClassifier, "roc_auc") if task == "designation"
                    else (HistGradientBoostingRegressor, "loss"))
    model = cls(learning_rate=s["lr"], max_iter=s["rounds"], max_leaf_nodes=s["leaves"], min_samples_leaf=s["min_leaf"],
                l2_regularization=s["l2"], max_features=s["cols"], categorical_features="from_dtype",
                early_stopping=True, scoring=scoring, n_iter_no_change=s["patience"], random_state=s["seed"])
    with threadpool_limits(threads):
        model.fit(X["train"], y["train"], X_val=X["valid"], y_val=y["valid"])
        best = max(1, int(np.argmax(model.validation_score_)))  # index 0 = before the first tree
        staged = model.staged_decision_function if task == "designation" else model.staged_predict
        raw = [next(p for i, p in enumerate(staged(X[k]), 1) if i == best) for k in ("valid", "test")]
    return (*(np.ravel(r) for r in raw), best)


PEER_FITS = {"xgboost": fit_xgboost, "catboost": fit_catboost, "hgb": fit_hgb}


# --- scorers ---------------------------------------------------------------------------------

def score_all(config: TrainConfig, source: Source, threads: int) -> tuple[pd.DataFrame, dict, dict]:
    """Test rows and every scorer's test output ``{name: {"p", optional "rank", "fit_s", "rounds"}}``."""
    data = model_data(source, config)
    sets = data.sets
    task = config.task
    levels = feature_levels(data.features)
    empty = [f for f in data.features if sets["train"][f].isna().all()]
    usable = [f for f in data.features if f not in empty]
    y = {k: v["target"].to_numpy(float) for k, v in sets.items()}
    shift = 0.0
    if task == "growth":  # every scorer learns growth relative to its year and gets lgml's level
        years = {k: v["year"].to_numpy() for k, v in sets.items()}
        year_means = level.year_levels(np.concatenate(list(years.values())), np.concatenate(list(y.values())))
        y = {k: level.relative_growth(years[k], y[k], year_means) for k in sets}
        shift = level.growth_level(years["test"], year_means, recent_years=config.level_years,
                                   macro_growth=config.macro_growth)[0]
    scores: dict[str, dict] = {}

    def add(name: str, raw_valid, raw_test, fit_s: float, rounds=None) -> None:
        entry = {"fit_s": fit_s, "rounds": rounds}
        if task == "designation":
            cal = make_calibrator(config.calibration).fit(raw_valid, y["valid"])
            entry.update(p=cal.transform(raw_test), rank=np.asarray(raw_test, float))
        else:
            entry["p"] = np.asarray(raw_test, float) + shift
        scores[name] = entry

    start = time.perf_counter()
    result = train_from_config(config, source=source)
    wall = time.perf_counter() - start
    bundle = load_bundle(result.bundle_path)
    lgml_s = sum(v for k, v in result.fit.seconds.items() if k not in ("total", "quantiles"))
    scores["lgml"] = {"p": bundle.predict(sets["test"]), "fit_s": lgml_s, "rounds": result.fit.best_iteration}
    if task == "designation":
        scores["lgml"]["rank"] = bundle.predict_raw(sets["test"])
    elif bundle.quantile_boosters:
        scores["lgml"]["interval"] = bundle.predict_interval(sets["test"])
    print(f"\n{task}: {', '.join(f'{k} {len(v):,} rows' for k, v in sets.items())}; {len(data.features)} features"
          f"; lgml wall {wall:.1f} s")
    if empty:
        print(f"peers drop {len(empty)} features all missing in train: {', '.join(empty)}")

    X = {k: model_frame(v, usable, levels) for k, v in sets.items()}
    shape = peer_shape(config)
    for name, fit in PEER_FITS.items():
        start = time.perf_counter()
        raw_valid, raw_test, rounds = fit(task, X, y, shape, threads)
        add(name, raw_valid, raw_test, time.perf_counter() - start, rounds)

    numeric = [f for f in data.features if f not in levels]
    start = time.perf_counter()
    linear = LinearBaseline(task, numeric, levels, random_state=config.seed).fit(sets["train"], y["train"])
    fit_s = time.perf_counter() - start
    if task == "designation":
        add("logistic", logit(linear.predict(sets["valid"])), logit(linear.predict(sets["test"])), fit_s)
        rules = RuleBaseline().fit(sets["valid"], y["valid"])
        scores["rules"] = {"p": rules.predict_proba(sets["test"]), "rank": rules.score(sets["test"])}
    else:
        add("linear", None, linear.predict(sets["test"]), fit_s)
    if "oracle" in sets["test"].columns:
        scores["oracle"] = {"p": sets["test"]["oracle"].to_numpy(float)}
    return sets["test"], scores, result.evaluation


# --- metrics ---------------------------------------------------------------------------------

def growth_metrics(y: np.ndarray, pred: np.ndarray, year: np.ndarray, interval=None) -> dict:
    """R², R² within years, Spearman, level error and (with a p10/p90 ``interval``) its
    coverage, by :func:`lgml.modeling.evaluate.regression_metrics`; coverage NaN without one."""
    m = evaluate.regression_metrics(y, pred, year=year, interval=interval)
    return {k: m.get(k, float("nan")) for k in ("r2", "r2_within", "spearman", "level_error", "coverage")}


def metrics(task: str, test: pd.DataFrame, scores: dict) -> dict[str, dict[str, dict]]:
    """``{population: {scorer: metrics}}`` for ``pool`` and ``all``."""
    out: dict[str, dict[str, dict]] = {}
    y = test["target"].to_numpy(float)
    for pop, mask in (("pool", test["in_pool"].to_numpy(bool)), ("all", np.ones(len(test), bool))):
        out[pop] = {}
        for name, s in scores.items():
            ok = mask & ~np.isnan(s["p"])
            if task == "designation":
                rank = s.get("rank")
                m = evaluate.binary_metrics(y[ok], s["p"][ok], None if rank is None else rank[ok],
                                            test.loc[ok, ["province", "batch_year"]])
                out[pop][name] = {"auc": m["auc"], "pr_auc": m["pr_auc"], "ece": m["ece"], "topk": m["topk_precision"]}
            else:
                interval = s.get("interval")
                out[pop][name] = growth_metrics(y[ok], s["p"][ok], test["batch_year"].to_numpy()[ok],
                                                None if interval is None else (interval[ok, 0], interval[ok, 1]))
    return out


def table(task: str, results: dict, scores: dict, test: pd.DataFrame) -> str:
    keys = ("auc", "pr_auc", "ece", "topk") if task == "designation" else ("r2", "r2_within", "spearman", "level_error",
                                                                          "coverage")
    cols = [(pop, k) for pop in ("pool", "all") for k in keys]
    w = max(len(f"{pop}.{k}") for pop, k in cols) + 2
    head = f"{'scorer':<10}" + "".join(f"{pop + '.' + k:>{w}}" for pop, k in cols) + f"{'fit_s':>9}{'rounds':>8}"
    lines = [head, "-" * len(head)]
    for name, s in scores.items():
        row = "".join(f"{results[pop][name][k]:>{w}.4f}" for pop, k in cols)
        fit_s = f"{s['fit_s']:>9.1f}" if s.get("fit_s") is not None else f"{'-':>9}"
        rounds = f"{s['rounds']:>8d}" if s.get("rounds") is not None else f"{'-':>8}"
        lines.append(f"{name:<10}{row}{fit_s}{rounds}")
    pool = test["in_pool"].to_numpy(bool)
    y = test["target"]
    size = (f"test: {len(test):,} rows ({int(pool.sum()):,} in pool)"
            + (f", {int(y.sum()):,} designated ({int(y[pool].sum()):,} in pool)" if task == "designation" else ""))
    return "\n".join([size, *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firms", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the simulated panel.")
    parser.add_argument("--tasks", default="designation,growth")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks or set(tasks) - set(CONFIGS):
        parser.error(f"--tasks takes a comma-separated subset of {', '.join(CONFIGS)}")
    require_peers()

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="lgml-peers-") as tmp:
        configs = {t: load_config(t, args.firms, args.seed, args.threads, Path(tmp)) for t in tasks}
        start = time.perf_counter()
        source = load_source(configs[tasks[0]].data)
        print(f"panel: {args.firms:,} firms, seed {args.seed}: {len(source.panel):,} firm-years, "
              f"{len(source.events):,} designations ({time.perf_counter() - start:.1f} s); {args.threads} threads")
        for task, config in configs.items():
            test, scores, evaluation = score_all(config, source, args.threads)
            results[task] = metrics(task, test, scores)
            print(table(task, results[task], scores, test))
            own = evaluation["populations"]["pool"]["model"]["auc" if task == "designation" else "r2"]
            mine = results[task]["pool"]["lgml"]["auc" if task == "designation" else "r2"]
            if not math.isclose(own, mine, abs_tol=1e-9):
                print(f"  note: lgml's own evaluation gives {own:.6f} on the pool, the bundle's predictions {mine:.6f}")

    nan = float("nan")
    d, g = results.get("designation"), results.get("growth")
    figures = {
        "lgml_pool_auc": d["pool"]["lgml"]["auc"] if d else nan,
        "best_peer_pool_auc": max(d["pool"][p]["auc"] for p in PEERS) if d else nan,
        "oracle_pool_auc": d["pool"].get("oracle", {}).get("auc", nan) if d else nan,
        "lgml_pr_ratio": (d["pool"]["lgml"]["pr_auc"] / d["pool"]["oracle"]["pr_auc"]
                          if d and "oracle" in d["pool"] else nan),
        "lgml_r2_within_ratio": (g["all"]["lgml"]["r2_within"] / g["all"]["oracle"]["r2_within"]
                                 if g and "oracle" in g["all"] else nan),
    }
    if d:
        best = max(PEERS, key=lambda p: d["pool"][p]["auc"])
        print(f"\nbest peer on pool AUC: {best}")
    print(" ".join(f"{k}={v:.4f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
