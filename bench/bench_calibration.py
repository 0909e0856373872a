"""Calibration benchmark: which calibrator to use for the designation probability.

Usage: python bench/bench_calibration.py [--firms 20000,30000] [--seeds 0,1,2] [--threads 2]

For each simulated panel (``--firms`` x ``--seeds``) it trains the designation model of
``configs/designation.yaml`` once (MLflow off, bundle in a temporary folder), takes its raw
log-odds on the validation batch (where calibrators are fitted, as in training) and on the
held-out test batch, and fits every calibrator (``spline``, ``isotonic``, ``platt``) on the same
validation rows. On the test batch it prints, per calibrator:

- ``ece``: expected calibration error (:func:`lgml.modeling.evaluate.expected_calibration_error`);
- ``log_loss``: mean negative log-likelihood of the designations;
- ``distinct``: distinct probabilities among test rows / distinct raw scores (1 = the ranking by
  probability keeps every distinction the model makes; isotonic's plateaus make it small).

The last line gives the means over all panels as ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from lgml.config import TrainConfig
from lgml.modeling.bundle import load_bundle
from lgml.modeling.calibrate import make_calibrator
from lgml.modeling.dataset import load_source, model_data
from lgml.modeling.evaluate import expected_calibration_error
from lgml.modeling.train import train_from_config

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("spline", "isotonic", "platt")


def config_for(firms: int, seed: int, threads: int, models_dir: Path) -> TrainConfig:
    """``configs/designation.yaml`` on a panel of ``firms`` and ``seed``, untracked."""
    raw = TrainConfig.from_file(ROOT / "configs/designation.yaml").to_dict()
    raw["data"]["simulate"] = {"firms": firms, "seed": seed}
    raw["lightgbm"]["num_threads"] = threads
    raw["mlflow"]["enabled"] = False
    raw["models_dir"] = str(models_dir)
    return TrainConfig.model_validate(raw)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def one_panel(firms: int, seed: int, threads: int) -> list[dict]:
    """Every calibrator's test figures on one simulated panel."""
    with tempfile.TemporaryDirectory() as folder:
        config = config_for(firms, seed, threads, Path(folder))
        source = load_source(config.data)
        bundle = load_bundle(train_from_config(config, source=source).bundle_path)
        data = model_data(source, config)
    valid, test = data.sets["valid"], data.sets["test"]
    raw_valid, raw_test = bundle.predict_raw(valid), bundle.predict_raw(test)
    y_valid, y_test = valid["target"].to_numpy(dtype=float), test["target"].to_numpy(dtype=float)
    rows = []
    for method in METHODS:
        p = make_calibrator(method).fit(raw_valid, y_valid).transform(raw_test)
        rows.append({"firms": firms, "seed": seed, "method": method,
                     "ece": expected_calibration_error(y_test, p), "log_loss": log_loss(y_test, p),
                     "distinct": len(np.unique(p)) / len(np.unique(raw_test))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firms", default="20000,30000", help="comma-separated panel sizes")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated simulation seeds")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for firms in (int(f) for f in args.firms.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            rows += one_panel(firms, seed, args.threads)
            print(pd.DataFrame(rows[-len(METHODS):]).to_string(index=False, float_format="%.5f"), flush=True)
    table = pd.DataFrame(rows)
    means = table.groupby("method", sort=False)[["ece", "log_loss", "distinct"]].agg(["mean", "std"])
    print("\nmean (std) over panels:")
    print(means.to_string(float_format="%.5f"))
    m = table.groupby("method")[["ece", "log_loss", "distinct"]].mean()
    print(" ".join(f"{method}_{k}={m.loc[method, k]:.5f}" for method in METHODS for k in ("ece", "log_loss", "distinct")))


if __name__ == "__main__":
    main()
