"""Training benchmark: designation and growth models on a 200,000-firm simulated panel.

Usage: python bench/bench_train.py [--designation configs/designation_200k.yaml]
                                   [--growth configs/growth_200k.yaml] [--cache DIR]

Simulates the panel once (both configs must name the same ``simulate`` block), trains both
models through the training API exactly as ``lgml train --no-track`` would (bundles written to a
temporary folder), prints the test metrics of model, rules, logistic/linear and oracle, and the
timings. ``train_s_*`` is LightGBM time: Dataset construction plus boosting with early stopping
(plus the p10/p90 quantile models for growth); feature building, baselines and evaluation are
reported separately. ``--cache DIR`` keeps the simulated panel as Parquet between runs.

Targets: designation AUC within 0.01 of the oracle's (pool and all), PR-AUC >= 0.9 x oracle's,
ECE <= 0.01, ahead of both baselines; growth R² >= 0.9 x oracle's; each model under 120 s.
The last line prints ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from lgml.config import TrainConfig
from lgml.modeling.dataset import Source, load_source
from lgml.modeling.train import train_from_config

ROOT = Path(__file__).resolve().parents[1]


def load_cached(config: TrainConfig, cache: Path | None) -> Source:
    """The config's simulated panel, from ``cache`` when it holds the same firms and seed."""
    if cache is None:
        return load_source(config.data)
    sim = config.data.simulate
    folder = cache / f"sim_{sim.firms}_{sim.seed}"
    names = ("panel", "events", "truth")
    if all((folder / f"{n}.parquet").exists() for n in names):
        return Source(*(pd.read_parquet(folder / f"{n}.parquet") for n in names))
    source = load_source(config.data)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        getattr(source, name).to_parquet(folder / f"{name}.parquet", index=False)
    return source


def show(evaluation: dict, keys: tuple[str, ...]) -> None:
    for pop, scorers in evaluation["populations"].items():
        for scorer, m in scorers.items():
            values = "  ".join(f"{k}={m[k]:.4f}" for k in keys if m.get(k) is not None)
            print(f"  {pop:<4} {scorer:<9} {values}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designation", type=Path, default=ROOT / "configs/designation_200k.yaml")
    parser.add_argument("--growth", type=Path, default=ROOT / "configs/growth_200k.yaml")
    parser.add_argument("--cache", type=Path, default=None, help="Folder to cache the simulated panel in.")
    args = parser.parse_args()

    configs = {task: TrainConfig.from_file(path) for task, path in (("designation", args.designation),
                                                                     ("growth", args.growth))}
    if configs["designation"].data != configs["growth"].data or configs["designation"].data.simulate is None:
        raise SystemExit("both configs must simulate the same panel")
    start = time.perf_counter()
    source = load_cached(configs["designation"], args.cache)
    sim_s = time.perf_counter() - start
    print(f"panel: {len(source.panel):,} firm-years, {len(source.events):,} designations ({sim_s:.1f} s)")

    results = {}
    with tempfile.TemporaryDirectory(prefix="lgml-bench-") as tmp:
        for task, config in configs.items():
            config = config.model_copy(update={"models_dir": Path(tmp)})
            start = time.perf_counter()
            results[task] = train_from_config(config, source=source)
            wall = time.perf_counter() - start
            r = results[task]
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in r.seconds.items())
            lgbm = ", ".join(f"{k} {v:.1f}s" for k, v in r.fit.seconds.items())
            print(f"\n{task}: {r.fit.best_iteration} rounds; wall {wall:.1f} s ({steps}); LightGBM: {lgbm}")
            keys = ("auc", "pr_auc", "ece", "brier", "topk_precision") if task == "designation" else ("r2", "rmse", "mae", "spearman")
            show(r.evaluation, keys)
            if task == "designation":
                print(f"  calibration: {r.evaluation['calibration']}")
            print(f"  gates: {'passed' if r.evaluation['gates']['passed'] else 'FAILED'}")

    d = results["designation"].evaluation["populations"]
    g = results["growth"].evaluation["populations"]
    figures = {
        "auc_model_pool": d["pool"]["model"]["auc"], "auc_oracle_pool": d["pool"]["oracle"]["auc"],
        "auc_model_all": d["all"]["model"]["auc"], "auc_oracle_all": d["all"]["oracle"]["auc"],
        "pr_auc_ratio_pool": d["pool"]["model"]["pr_auc"] / d["pool"]["oracle"]["pr_auc"],
        "ece": d["all"]["model"]["ece"],
        "auc_rules_pool": d["pool"]["rules"]["auc"], "auc_logistic_pool": d["pool"]["logistic"]["auc"],
        "growth_r2_model": g["all"]["model"]["r2"], "growth_r2_oracle": g["all"]["oracle"]["r2"],
        "train_s_designation": results["designation"].fit.seconds["total"],
        "train_s_growth": results["growth"].fit.seconds["total"],
    }
    print(" ".join(f"{k}={v:.4f}" if "train_s" not in k else f"{k}={v:.1f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
