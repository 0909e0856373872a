"""LightGBM fitting: designation (binary, log-odds) and growth (regression on log growth,
plus optional 10%/90% quantile models), with early stopping on the validation batches.

Inputs are cast by :func:`lgml.modeling.matrix.model_frame` (columns ordered by name, categoricals
with fixed levels) before any Dataset is built, so training and scoring always agree.

Example:
    >>> fit = fit_model(data, config, feature_levels(data.features))  # doctest: +SKIP
    >>> fit.booster.predict(X, raw_score=True)  # log-odds, shape (n,)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lgml.config import BINARY_TASKS, LightGBMConfig, TrainConfig
from lgml.modeling.dataset import ModelData
from lgml.modeling.matrix import model_frame

log = logging.getLogger(__name__)

QUANTILES = {"p10": 0.1, "p90": 0.9}


@dataclass
class FitResult:
    """A trained model and how it was trained.

    Attributes:
        booster: Point model (log-odds for designation, log growth for growth).
        params: LightGBM parameters used.
        best_iteration: Boosting rounds of the point model kept after early stopping (the
            booster also holds ``level_adjust.rounds`` further trees when levels are adjusted).
        quantile_boosters: Growth only: ``{"p10": Booster, "p90": Booster}`` (may be empty).
        tuning: Optuna trials summary (empty without tuning).
        seconds: Wall time per stage: ``datasets`` (casting and binning), ``tuning``, ``fit``
            (boosting the point model), ``level_adjust``, ``quantiles``; ``total`` is their sum.
    """

    booster: Any
    params: dict
    best_iteration: int
    quantile_boosters: dict[str, Any] = field(default_factory=dict)
    tuning: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def sample_weights(rows: pd.DataFrame, lgbm: LightGBMConfig, task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows kept for training and their weights.

    Designation negatives outside the provincial pool are nearly all easy; keeping a seeded
    share ``lgbm.negative_rate`` of them with weight ``1 / rate`` leaves the expected loss (and
    so the probabilities) unchanged while cutting training time.

    Returns:
        (keep mask of shape (n,), weights of shape (n_kept,)).
    """
    n = len(rows)
    weight = np.ones(n)
    keep = np.ones(n, bool)
    if task in BINARY_TASKS and lgbm.negative_rate < 1:
        easy = (rows["target"].to_numpy() == 0) & ~rows["in_pool"].to_numpy(dtype=bool)
        drawn = np.random.default_rng(seed).random(n) < lgbm.negative_rate
        keep = ~easy | drawn
        weight = np.where(easy, 1.0 / lgbm.negative_rate, 1.0)
    return keep, weight[keep]


def class_balance(y: np.ndarray) -> float:
    """Negatives per positive (LightGBM ``scale_pos_weight``)."""
    pos = float(np.sum(y == 1))
    return float(np.sum(y == 0)) / max(pos, 1.0)


def lgb_params(config: TrainConfig, features: list[str], y_train: np.ndarray, overrides: dict | None = None) -> dict:
    """LightGBM parameters: the config's, the seed, monotone constraints by feature name and
    the class weighting chosen in ``lightgbm.imbalance``."""
    params = config.lightgbm.params(config.task, config.seed)
    params.update(overrides or {})
    if config.monotone:
        params["monotone_constraints"] = [int(config.monotone.get(f, 0)) for f in features]
        params["monotone_constraints_method"] = "advanced"
    if config.task in BINARY_TASKS:
        if config.lightgbm.imbalance == "is_unbalance":
            params["is_unbalance"] = True
        elif config.lightgbm.imbalance == "scale_pos_weight":
            params["scale_pos_weight"] = class_balance(y_train)
    return params


def dataset_params(config: TrainConfig) -> dict:
    """Parameters fixed when a Dataset is binned (they cannot change afterwards)."""
    return {"max_bin": config.lightgbm.max_bin, "verbosity": -1, "seed": config.seed,
            # Tuning and level rounds change min_child_samples on the same binned data.
            "feature_pre_filter": False}


def _datasets(data: ModelData, config: TrainConfig, levels: dict[str, list[str]]):
    import lightgbm as lgb

    train, valid = data.sets["train"], data.sets["valid"]
    keep, weight = sample_weights(train, config.lightgbm, config.task, config.seed)
    kept = train[keep]
    X_train = model_frame(kept, data.features, levels)
    dtrain = lgb.Dataset(X_train, kept["target"].to_numpy(float), weight=weight,
                         categorical_feature=[c for c in data.features if c in levels],
                         params=dataset_params(config), free_raw_data=False)
    dvalid = lgb.Dataset(model_frame(valid, data.features, levels), valid["target"].to_numpy(float),
                         reference=dtrain, params=dataset_params(config), free_raw_data=False)
    return dtrain, dvalid, kept["target"].to_numpy()


def _boost(params: dict, dtrain, dvalid, rounds: int, patience: int):
    import lightgbm as lgb

    return lgb.train(params, dtrain, num_boost_round=rounds, valid_sets=[dvalid], valid_names=["valid"],
                     callbacks=[lgb.early_stopping(patience, first_metric_only=True, verbose=False)])


def fit_model(data: ModelData, config: TrainConfig, levels: dict[str, list[str]]) -> FitResult:
    """Train the point model (after optional Optuna tuning) and, for growth, the quantile models.

    Args:
        data: Split task rows.
        config: Training config (parameters, seed, monotone constraints, tuning).
        levels: Category levels of the categorical features.

    Returns:
        :class:`FitResult`; the booster keeps only the best iteration.
    """
    start = time.perf_counter()
    dtrain, dvalid, y_train = _datasets(data, config, levels)
    dtrain.construct()
    dvalid.construct()
    seconds: dict[str, float] = {"datasets": time.perf_counter() - start}
    tuning: dict = {}
    overrides: dict = {}
    if config.tuning.n_trials > 0:
        start = time.perf_counter()
        overrides, tuning = tune(config, data.features, dtrain, dvalid, y_train)
        seconds["tuning"] = time.perf_counter() - start
    params = lgb_params(config, data.features, y_train, overrides)
    start = time.perf_counter()
    booster = _boost(params, dtrain, dvalid, config.lightgbm.num_boost_round, config.lightgbm.early_stopping_rounds)
    booster = booster.model_from_string(booster.model_to_string(num_iteration=booster.best_iteration))
    seconds["fit"] = time.perf_counter() - start
    best_iteration = booster.current_iteration()
    log.info("trained %s: %d rounds in %.1fs", config.task, best_iteration, seconds["fit"])
    if config.level_adjust.by is not None:
        start = time.perf_counter()
        booster = adjust_levels(booster, dvalid, config, data.features, levels, params)
        seconds["level_adjust"] = time.perf_counter() - start
    quantiles = {}
    if config.task == "growth" and config.intervals.enabled:
        start = time.perf_counter()
        quantiles = fit_quantiles(params, row_subset(dtrain, config.intervals.row_rate, config),
                                  dvalid, config.lightgbm)
        seconds["quantiles"] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())
    return FitResult(booster, params, best_iteration, quantiles, tuning, seconds)


def level_params(config: TrainConfig, features: list[str], base: dict, n_levels: int) -> dict:
    """Parameters of the level-adjustment rounds, from the point model's ``base`` parameters
    (objective and class weighting included): every feature but ``level_adjust.by`` gets a
    zero split-gain multiplier (``feature_contri``), so the extra trees split only on it."""
    adjust = config.level_adjust
    keep = ("objective", "metric", "seed", "deterministic", "force_row_wise", "num_threads", "verbosity",
            "max_bin", "is_unbalance", "scale_pos_weight")
    return {**{k: base[k] for k in keep if k in base},
            "learning_rate": adjust.learning_rate, "num_leaves": 31, "min_child_samples": adjust.min_child_samples,
            # One-vs-rest splits: each split isolates a level, shrunk by lambda_l2. (Many-vs-many
            # splits skip levels whose hessian sum is below cat_smooth: most levels at ~1% rates.)
            "lambda_l2": adjust.lambda_l2, "max_cat_to_onehot": n_levels + 1,
            "feature_fraction": 1.0, "bagging_freq": 0,
            "feature_contri": [1.0 if f == adjust.by else 0.0 for f in features]}


def adjust_levels(booster, dvalid, config: TrainConfig, features: list[str], levels: dict[str, list[str]],
                  params: dict):
    """Append up to ``level_adjust.rounds`` trees fitted on the validation batches that split
    only on ``level_adjust.by``: per-level offsets (log-odds for designation) on top of the model.
    Fewer trees are added when no split gains (too few validation rows per level).

    The booster's earlier trees are unchanged; SHAP contributions of the new trees fall on the
    ``by`` feature, so explanations stay additive.

    Raises:
        RuntimeError: A new tree splits on another feature (never expected).
    """
    import lightgbm as lgb

    by = config.level_adjust.by
    if by not in features:
        raise ValueError(f"level_adjust.by={by!r} is not a model feature")
    data = lgb.Dataset(dvalid.data, dvalid.get_label(), categorical_feature=[c for c in features if c in levels],
                       params=dataset_params(config), free_raw_data=False)
    n_before = booster.num_trees()
    adjusted = lgb.train(level_params(config, features, params, len(levels[by])), data, num_boost_round=config.level_adjust.rounds,
                         init_model=booster, keep_training_booster=False)
    used = split_features(adjusted, features, first_tree=n_before)
    if used - {by}:
        raise RuntimeError(f"level rounds split on {sorted(used - {by})}, not only on {by}")
    log.info("level adjustment by %s: %d trees", by, adjusted.num_trees() - n_before)
    return adjusted


def split_features(booster, features: list[str], first_tree: int = 0) -> set[str]:
    """Names of the features the trees from ``first_tree`` on split on."""
    used: set[str] = set()
    for tree in booster.dump_model()["tree_info"][first_tree:]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                used.add(features[node["split_feature"]])
                stack += [node["left_child"], node["right_child"]]
    return used


def row_subset(dtrain, rate: float, config: TrainConfig):
    """A Dataset of a seeded share ``rate`` of ``dtrain``'s rows, binned like ``dtrain``."""
    if rate >= 1:
        return dtrain
    take = np.sort(np.random.default_rng(config.seed).choice(dtrain.num_data(), int(rate * dtrain.num_data()),
                                                             replace=False))
    return dtrain.subset(take, params=dataset_params(config))


def fit_quantiles(params: dict, dtrain, dvalid, lgbm: LightGBMConfig) -> dict[str, Any]:
    """10% and 90% quantile models of log growth on the point model's data, with ``params``."""
    out = {}
    for name, alpha in QUANTILES.items():
        qparams = {**params, "objective": "quantile", "alpha": alpha, "metric": "quantile"}
        booster = _boost(qparams, dtrain, dvalid, lgbm.num_boost_round, lgbm.early_stopping_rounds)
        log.info("quantile model %s: %d rounds", name, booster.best_iteration)
        out[name] = booster.model_from_string(booster.model_to_string(num_iteration=booster.best_iteration))
    return out


def tune(config: TrainConfig, features: list[str], dtrain, dvalid, y_train) -> tuple[dict, dict]:
    """Optuna search (TPE, seeded from the config) of tree-shape and regularisation parameters,
    scored by the early-stopping metric on the validation batches.

    Returns:
        (best parameter overrides, summary ``{"n_trials", "best_value", "metric", "best_params"}``).
    """
    import optuna

    params = lgb_params(config, features, y_train)
    metric = params["metric"]
    higher_is_better = metric == "auc"

    def objective(trial: optuna.Trial) -> float:
        trial_params = {
            "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 20, 1000, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        }
        booster = _boost({**params, **trial_params}, dtrain, dvalid, config.lightgbm.num_boost_round,
                         config.lightgbm.early_stopping_rounds)
        return booster.best_score["valid"][metric]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if higher_is_better else "minimize",
                                sampler=optuna.samplers.TPESampler(seed=config.seed))
    study.optimize(objective, n_trials=config.tuning.n_trials, timeout=config.tuning.timeout_s)
    summary = {"n_trials": len(study.trials), "best_value": study.best_value, "metric": metric,
               "best_params": study.best_params}
    return dict(study.best_params), summary
