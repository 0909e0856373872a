"""Regime benchmark: designation across the change of rules in 2026, with the criteria as margins
(the same under every regime) beside today's per-regime criteria features.

Usage: python bench/bench_regime.py [--firms 200000] [--seeds 0,1,2] [--threads 2]
                                    [--old | --no-old]

For each seed, one simulated panel (``--firms``; fiscal years 2016-2026, batches 2019-2027,
batches 2026-2027 drawn under the 2026 rules with the assumed sizes of
``lgml/data/published.json``) and, through :func:`lgml.modeling.train.train_from_config` exactly
as ``lgml train --no-track`` does:

- ``configs/designation_2026.yaml``: train on batches <= 2024, stop early and calibrate on 2025,
  test on batch 2026 (the first of the 2026 rules), once with ``criteria_features: margins``
  (the default) and once with ``per_regime`` (the pass flags and shortfalls named by each
  regime's criteria: the feature set of the previous release, unchanged);
- with ``--old`` (default), ``configs/designation.yaml`` (test batch 2025, calibrated on 2024) in
  both ways too, so that the old batches' figures can be compared.

Printed per run: pool AUC of the model and the oracle and their gap, AUC over all candidates,
PR-AUC ratio to the oracle, ECE (15 equal-frequency bins) over all candidates and in the pool,
and the rule check of the test batch's regime. The last line gives the means over seeds as
``key=value``: ``regime_gap`` and ``per_regime_gap`` (oracle minus model pool AUC on batch
2026), ``ece_2026`` (all candidates) and ``ece_2026_max``, and with ``--old`` ``gap_2025`` and
``per_regime_gap_2025``.

Targets (issue "2026 rules and 2027"): at 200,000 firms, ``regime_gap`` <= 0.02 and below
``per_regime_gap``; ``ece_2026`` <= 0.02; ``gap_2025`` no worse than ``per_regime_gap_2025``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lgml.config import TrainConfig
from lgml.modeling.dataset import load_source
from lgml.modeling.train import train_from_config

ROOT = Path(__file__).resolve().parents[1]
MODES = ("margins", "per_regime")


def configured(path: Path, firms: int, seed: int, threads: int, mode: str, folder: Path) -> TrainConfig:
    """The config at ``path`` on a simulated panel of ``firms`` firms (``seed``), MLflow off."""
    config = TrainConfig.from_file(path)
    data = config.data.model_copy(update={"simulate": config.data.simulate.model_copy(
        update={"firms": firms, "seed": seed})})
    return config.model_copy(update={
        "data": data, "seed": seed, "criteria_features": mode, "models_dir": folder,
        "name": f"{config.name}-{mode}", "mlflow": config.mlflow.model_copy(update={"enabled": False}),
        "lightgbm": config.lightgbm.model_copy(update={"num_threads": threads})})


def figures(evaluation: dict) -> dict[str, float]:
    pool, every = evaluation["populations"]["pool"], evaluation["populations"]["all"]
    return {
        "auc_pool": pool["model"]["auc"], "oracle_pool": pool["oracle"]["auc"],
        "gap": pool["oracle"]["auc"] - pool["model"]["auc"], "auc_all": every["model"]["auc"],
        "oracle_all": every["oracle"]["auc"], "pr_ratio": pool["model"]["pr_auc"] / pool["oracle"]["pr_auc"],
        "ece": every["model"]["ece"], "ece_pool": pool["model"]["ece"], "rules_pool": pool["rules"]["auc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firms", type=int, default=200_000)
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds.")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads.")
    parser.add_argument("--old", action=argparse.BooleanOptionalAction, default=True,
                        help="Also train the test-2025 config both ways.")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    setups = {"2026": ROOT / "configs/designation_2026.yaml"}
    if args.old:
        setups["2025"] = ROOT / "configs/designation.yaml"

    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    print(f"{'seed':>4} {'test':>4} {'features':<10} {'pool AUC':>8} {'oracle':>7} {'gap':>7} {'all AUC':>8} "
          f"{'PR ratio':>8} {'ECE':>7} {'ECE pool':>8} {'rules':>6} {'time':>6}")
    with tempfile.TemporaryDirectory(prefix="lgml-bench-") as tmp:
        for seed in seeds:
            source = None
            for test, path in setups.items():
                for mode in MODES:
                    config = configured(path, args.firms, seed, args.threads, mode, Path(tmp))
                    if source is None:
                        source = load_source(config.data)
                    start = time.perf_counter()
                    result = train_from_config(config, source=source, overwrite=True)
                    f = figures(result.evaluation)
                    results.setdefault((test, mode), []).append(f)
                    print(f"{seed:>4} {test:>4} {mode:<10} {f['auc_pool']:>8.4f} {f['oracle_pool']:>7.4f} "
                          f"{f['gap']:>7.4f} {f['auc_all']:>8.4f} {f['pr_ratio']:>8.3f} {f['ece']:>7.4f} "
                          f"{f['ece_pool']:>8.4f} {f['rules_pool']:>6.3f} {time.perf_counter() - start:>5.0f}s",
                          flush=True)

    def mean(test: str, mode: str, key: str) -> float:
        return statistics.fmean(r[key] for r in results[(test, mode)])

    print("\nmeans over seeds:")
    for (test, mode), rows in results.items():
        print(f"  test {test} {mode:<10} " + "  ".join(f"{k}={mean(test, mode, k):.4f}" for k in rows[0]))
    out = {"regime_gap": mean("2026", "margins", "gap"), "per_regime_gap": mean("2026", "per_regime", "gap"),
           "ece_2026": mean("2026", "margins", "ece"),
           "ece_2026_max": max(r["ece"] for r in results[("2026", "margins")]),
           "pr_ratio_2026": mean("2026", "margins", "pr_ratio")}
    if args.old:
        out |= {"gap_2025": mean("2025", "margins", "gap"), "per_regime_gap_2025": mean("2025", "per_regime", "gap")}
    print(" ".join(f"{k}={v:.4f}" for k, v in out.items()) + f" firms={args.firms} seeds={len(seeds)}")


if __name__ == "__main__":
    main()
