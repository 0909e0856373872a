"""``lgml train`` as one function: config in, model bundle and evaluation out.

Steps: load (simulate or read) -> features -> split (:mod:`lgml.modeling.dataset`) -> fit
(:mod:`lgml.modeling.fit`) -> calibrate on the validation batches -> baselines -> evaluate on the
test batches -> plots -> drift reference of the training rows -> save the bundle.

Example:
    >>> from lgml.config import TrainConfig
    >>> result = train_from_config(TrainConfig.from_file("configs/designation.yaml"))  # doctest: +SKIP
    >>> result.evaluation["populations"]["pool"]["model"]["auc"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from lgml.config import BINARY_TASKS, TrainConfig
from lgml.features import context_tables
from lgml.io import InputError, refuse_existing
from lgml.modeling import baselines, calibrate, evaluate, level, plots
from lgml.modeling.bundle import save_bundle
from lgml.modeling.dataset import ModelData, Source, load_source, model_data
from lgml.modeling.drift import last_batch_reference
from lgml.modeling.fit import FitResult, fit_model
from lgml.modeling.matrix import feature_levels, model_frame

log = logging.getLogger(__name__)

TARGET_DOC = {
    "designation": "probability of designation in the next batch (batch_year); raw output in log-odds",
    "review": "probability that a title holder keeps its title at the re-review of batch_year (t + 1); raw output "
              "in log-odds",
    "growth": "log(revenue[t+1] / revenue[t]), revenue in yuan: the year's level (growth_level) plus the "
              "firm's growth relative to its year (the booster's output)",
}


ROWS_SCORED = {
    "designation": "candidates: firms holding no title at the end of fiscal year t",
    "growth": "every firm-year with a next year",
    "review": "title holders whose title comes to its 3-yearly re-review in batch t + 1 (needs the events)",
}


@dataclass
class TrainResult:
    """Outcome of :func:`train_from_config`.

    Attributes:
        bundle_path: The written bundle folder.
        evaluation: Contents of ``evaluation.json``.
        fit: The trained models.
        seconds: Wall time per step.
    """

    bundle_path: Path
    evaluation: dict
    fit: FitResult
    seconds: dict[str, float]


def predict_model(fit: FitResult, frame: pd.DataFrame, task: str) -> np.ndarray:
    """Raw point predictions: log-odds (designation) or log growth (growth), shape (n,)."""
    if task in BINARY_TASKS:
        return fit.booster.predict(frame, raw_score=True)
    return fit.booster.predict(frame)


def score_test(data: ModelData, config: TrainConfig, fit: FitResult, calibrator, levels: dict,
               growth_levels: dict[int, float] | None = None) -> dict:
    """Every scorer's predictions on the test rows: ``{name: {"p": ..., optional "rank": ...}}``;
    the growth model's also ``p10``/``p90`` when it has quantile models. The growth model's
    relative predictions get the level :func:`lgml.modeling.level.growth_level` forms for each
    test year from ``growth_levels`` (or the config's ``macro_growth``)."""
    train, valid, test = (data.sets[k] for k in ("train", "valid", "test"))
    raw = predict_model(fit, model_frame(test, data.features, levels), config.task)
    numeric = [f for f in data.features if f not in levels]
    linear = baselines.LinearBaseline(config.task, numeric, levels, random_state=config.seed)
    y_train = train["target"].to_numpy()
    if config.task == "growth":  # the same split into level and relative growth as the model
        y_train = level.relative_growth(train["year"].to_numpy(), y_train, growth_levels or {})
    linear.fit(train, y_train)
    scores: dict[str, dict[str, np.ndarray]] = {}
    if config.task in BINARY_TASKS:
        rules = baselines.RuleBaseline().fit(valid, valid["target"].to_numpy())
        scores["model"] = {"p": calibrator.transform(raw), "rank": raw}
        scores["rules"] = {"p": rules.predict_proba(test), "rank": rules.score(test)}
        if config.task == "review":
            scores["cohort"] = {"p": baselines.cohort_pass_rate(test)}
        scores["logistic"] = {"p": linear.predict(test)}
    else:
        shift, _ = levels_of_test(test, config, growth_levels or {})
        scores["model"] = {"p": raw + shift}
        if fit.quantile_boosters:
            frame = model_frame(test, data.features, levels)
            lo, hi = (fit.quantile_boosters[q].predict(frame) for q in ("p10", "p90"))
            scores["model"].update(p10=np.minimum(lo, hi) + shift, p90=np.maximum(lo, hi) + shift)
        scores["linear"] = {"p": linear.predict(test) + shift}
    if "oracle" in test.columns:
        scores["oracle"] = {"p": test["oracle"].to_numpy(dtype=float)}
    return scores


def levels_of_test(test: pd.DataFrame, config: TrainConfig, growth_levels: dict[int, float]) -> tuple[np.ndarray, str]:
    """The growth level of each test row, and its source (see :mod:`lgml.modeling.level`)."""
    return level.growth_level(test["year"].to_numpy(), growth_levels, recent_years=config.level_years,
                              macro_growth=config.macro_growth)


def relative_data(data: ModelData, growth_levels: dict[int, float]) -> ModelData:
    """``data`` with every growth target made relative to its year's mean (the model's target)."""
    sets = {k: v.assign(target=level.relative_growth(v["year"].to_numpy(), v["target"].to_numpy(), growth_levels))
            for k, v in data.sets.items()}
    return replace(data, sets=sets)


def growth_level_metadata(data: ModelData, config: TrainConfig, growth_levels: dict[int, float]) -> dict:
    """``metadata.json``'s ``growth_level``: the known year levels, how scoring forms a level, and
    what the test batches used."""
    test = data.sets["test"]
    shift, source = levels_of_test(test, config, growth_levels)
    return {"levels": {str(y): v for y, v in growth_levels.items()}, "recent_years": config.level_years,
            "macro_growth": config.macro_growth, "test_source": source,
            "test_level": float(np.mean(shift)), "test_actual": float(test["target"].mean())}


def metadata_for(data: ModelData, config: TrainConfig, fit: FitResult, levels: dict, calibrator,
                 growth_level: dict | None = None) -> dict:
    """The ``metadata.json`` content known at training time (the bundle adds hashes and versions)."""
    from datetime import datetime, timezone

    from lgml.features import FLAG_GROUPS, REVIEW_FEATURES
    from lgml.vocabulary import FEATURE_DIMENSIONS

    target = TARGET_DOC[config.task]
    if config.horizon > 1:
        target = (f"probability of designation in one of the next {config.horizon} batches (batch_year .. "
                  f"batch_year + {config.horizon - 1}); raw output in log-odds")
    return {
        "task": config.task,
        "horizon": config.horizon,
        "purged_rows": data.purged,
        "name": config.name,
        "target": target,
        "features": data.features,
        "dtypes": {f: "category" if f in levels else "float64" for f in data.features},
        "categorical_levels": levels,
        "feature_groups": {f: {**FEATURE_DIMENSIONS, **FLAG_GROUPS, **REVIEW_FEATURES}[f] for f in data.features},
        "monotone": dict(config.monotone),
        "calibration": calibrator.method if calibrator is not None else None,
        "data_hash": data.data_hash,
        "seed": config.seed,
        "split": config.split.model_dump(),
        "batches": {k: sorted(int(b) for b in v["batch_year"].unique()) for k, v in data.sets.items()},
        "criteria_features": config.criteria_features,
        "rows": {k: int(len(v)) for k, v in data.sets.items()},
        "positives": ({k: int(v["target"].sum()) for k, v in data.sets.items()}
                      if config.task in BINARY_TASKS else None),
        "rows_scored": ROWS_SCORED[config.task],
        "best_iteration": fit.best_iteration,
        "n_trees": fit.booster.num_trees(),
        "level_adjust": config.level_adjust.model_dump() if config.level_adjust.by else None,
        "growth_level": growth_level,
        "lightgbm_params": fit.params,
        "quantile_models": sorted(fit.quantile_boosters),
        "tuning": fit.tuning,
        "train_seconds": fit.seconds,
        "trained_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _calibration_summary(test: pd.DataFrame, raw_p: np.ndarray, cal_p: np.ndarray, method: str) -> dict:
    y = test["target"].to_numpy()
    return {"method": method, "fitted_on": "valid",
            "test_ece_uncalibrated": evaluate.expected_calibration_error(y, raw_p),
            "test_ece_calibrated": evaluate.expected_calibration_error(y, cal_p)}


def _figures(task: str, test: pd.DataFrame, scores: dict) -> dict:
    y = test["target"].to_numpy()
    if task == "growth":
        return {"growth": plots.growth_figure(y, {k: v["p"] for k, v in scores.items()})}
    probs = {k: v["p"] for k, v in scores.items()}
    ranks = {k: v.get("rank", v["p"]) for k, v in scores.items()}
    return {"calibration": plots.calibration_figure(y, probs), "roc": plots.roc_figure(y, ranks),
            "pr": plots.pr_figure(y, ranks)}


def train_from_config(config: TrainConfig, *, overwrite: bool = False,
                      on_step: Callable[[str], None] | None = None, source: Source | None = None) -> TrainResult:
    """Train, calibrate, evaluate and save the bundle ``config.models_dir / config.name``.

    Args:
        config: Training config.
        overwrite: Replace an existing bundle.
        on_step: Called with a short description as each step starts (progress display).
        source: Already loaded inputs to use instead of ``config.data`` (e.g. one simulated
            panel shared by several configs).

    Raises:
        FileExistsError: The bundle exists and ``overwrite`` is false (checked first).
        lgml.io.InputError: ``models_dir`` (or a folder above it) is a file (checked first).
    """
    target = refuse_existing(config.bundle_dir, overwrite)
    for folder in (config.models_dir, *config.models_dir.parents):
        if folder.exists() and not folder.is_dir():
            raise InputError(f"models_dir {config.models_dir}: {folder} is a file, not a folder")
    seconds: dict[str, float] = {}
    clock = [time.perf_counter(), None]

    def step(name: str) -> None:
        now = time.perf_counter()
        if clock[1] is not None:
            seconds[clock[1]] = now - clock[0]
        clock[:] = [now, name]
        log.info("%s", name)
        if on_step is not None:
            on_step(name)

    step("load data")
    source = load_source(config.data) if source is None else source
    step("build features")
    data = model_data(source, config)
    levels = feature_levels(data.features)
    growth_levels, growth_meta = None, None
    if config.task == "growth":  # the model learns growth relative to its year; the level is added back
        growth_levels = level.year_levels(*(np.concatenate([s[c].to_numpy() for s in data.sets.values()])
                                            for c in ("year", "target")))
        growth_meta = growth_level_metadata(data, config, growth_levels)
        log.info("growth level of the test batches: %s", growth_meta["test_source"])
    step("train LightGBM")
    fit = fit_model(relative_data(data, growth_levels) if growth_levels else data, config, levels)
    step("calibrate")
    calibrator = None
    if config.task in BINARY_TASKS:
        valid = data.sets["valid"]
        raw_valid = fit.booster.predict(model_frame(valid, data.features, levels), raw_score=True)
        calibrator = calibrate.make_calibrator(config.calibration).fit(raw_valid, valid["target"].to_numpy())
    step("baselines and evaluation")
    scores = score_test(data, config, fit, calibrator, levels, growth_levels)
    test = data.sets["test"]
    report = evaluate.evaluate(config.task, test, scores, config.gates)
    report["horizon"] = config.horizon
    if growth_meta is not None:
        report["growth_level"] = {k: growth_meta[k] for k in ("test_source", "test_level", "test_actual")}
    if calibrator is not None:
        report["calibration"] = _calibration_summary(test, calibrate.sigmoid(scores["model"]["rank"]),
                                                     scores["model"]["p"], calibrator.method)
    report["train_seconds"] = fit.seconds
    step("plots")
    figures = _figures(config.task, test, scores)
    step("save bundle")
    path = save_bundle(target, booster=fit.booster, calibrator=calibrator,
                       metadata=metadata_for(data, config, fit, levels, calibrator, growth_meta),
                       evaluation=report,
                       config=config, plots=figures, quantile_boosters=fit.quantile_boosters,
                       context=context_tables(source.panel, source.events),
                       reference=last_batch_reference(data.sets["train"], data.features), overwrite=overwrite)
    plots.close(figures)
    step("done")
    return TrainResult(path, report, fit, seconds)
