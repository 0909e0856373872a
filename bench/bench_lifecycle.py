"""Lifecycle benchmark: designation within three batches, and the re-review of title holders.

Usage: python bench/bench_lifecycle.py [--firms 30000 200000] [--seeds 0 1 2] [--threads 1]
                                       [--out-json FILE]

For each panel size (``--firms``) and seed (``--seeds``; the panel's seed is the model's), one
simulated panel and three models trained on it through
:func:`lgml.modeling.train.train_from_config`, as ``lgml train --no-track`` does (bundles in a
temporary folder):

- ``h1``: ``configs/designation.yaml``, designation in the next batch: train on batches up to
  2023, calibrate on 2024, test on 2025.
- ``h3``: ``configs/designation_h3.yaml`` (``horizon: 3``), designation in one of the next three
  batches, with the same information (batches up to 2024 known): windows starting up to 2021,
  calibrated on 2022 (window 2022-2024), tested on 2025 (window 2025-2027).
- ``review``: ``configs/review.yaml`` (``configs/review_200k.yaml`` from 100,000 firms: larger
  leaves; ``task: review``), a holder due for re-review in batch
  t+1 keeps its title: train on reviews up to 2024, calibrate on 2025 (the latest published
  review level), test on 2026-2027 (the reviews under the 2026 rules).

Figures:

- Horizon, on the same rows: the h3 model's test rows (candidates at fiscal 2024, target
  designated in 2025, 2026 or 2027). AUC and PR-AUC of the h3 model's probability beside the
  h1 model's probability scored on those rows as a proxy (the next-batch chance used as a
  three-batch ranking), and the simulator's one-batch truth ``p_designation`` as the same kind
  of proxy. There is NO oracle for a horizon above 1: the simulator's truth is the one-batch
  probability. The h3 model's ECE on those rows, and the h1 model's own next-batch AUC on 2025
  (with the oracle's) from its ``evaluation.json``.
- Review, on the review test rows (``evaluation.json``, ``populations.all``): AUC, PR-AUC and
  ECE of the model, the rule check, the cohort's published pass rate and the oracle
  (``p_review_pass``), and the gap oracle AUC - model AUC.

One table per figure (rows: firms x seed, then the mean per size); the last line gives the
means over seeds per size as ``key=value``. ``--out-json`` writes every figure (rewritten after
each panel, temporary file + rename). Run it with ``PYTHONPATH`` set to the checkout: an editable
install of another worktree would otherwise supply lgml (the script names the folder lgml comes
from, and warns when it is not this checkout's). Progress with timings goes to stderr (a 200,000-firm
panel: about 2-3 minutes to simulate and about 10 minutes per model on one thread).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lgml
from lgml.config import TrainConfig
from lgml.features import build_features, candidate_mask, designated_within
from lgml.modeling.bundle import load_bundle
from lgml.modeling.dataset import Source
from lgml.modeling.evaluate import binary_metrics
from lgml.modeling.train import train_from_config
from lgml.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"h1": ROOT / "configs/designation.yaml", "h3": ROOT / "configs/designation_h3.yaml",
           "review": ROOT / "configs/review.yaml"}
REVIEW_LARGE = ROOT / "configs/review_200k.yaml"  # panels of 100,000 firms or more (larger leaves)
H3_TEST_BATCH = 2025  # first batch of the h3 test window; the rows are candidates at fiscal 2024
REVIEW_SCORERS = ("model", "rules", "cohort", "logistic", "oracle")
NAN = float("nan")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def size_label(firms: int) -> str:
    return f"{firms // 1000}k" if firms % 1000 == 0 else str(firms)


def configured(path: Path, firms: int, seed: int, threads: int, folder: Path) -> TrainConfig:
    """The config at ``path`` on the simulated panel (``firms``, ``seed``), model seed ``seed``,
    MLflow off, bundle in ``folder``."""
    raw = TrainConfig.from_file(path).to_dict()
    raw["name"] = f"{raw['name']}-{firms}-{seed}"
    raw["seed"] = seed
    raw["data"]["simulate"] = {"firms": firms, "seed": seed}
    raw["lightgbm"]["num_threads"] = threads
    raw["mlflow"]["enabled"] = False
    raw["models_dir"] = str(folder)
    return TrainConfig.model_validate(raw)


def metrics(y: np.ndarray, p: np.ndarray, rank: np.ndarray | None = None) -> dict[str, float]:
    m = binary_metrics(y, p, rank)
    return {k: m[k] for k in ("auc", "pr_auc", "ece", "mean_p", "rate", "n", "n_pos")}


def horizon_figures(source: Source, h1_path: Path, h3_path: Path, h3_eval: dict, h1_eval: dict) -> dict:
    """h3 model vs the h1 model (and the one-batch truth) as proxies, on the h3 test rows."""
    panel, events = source.panel, source.events
    scored = panel["year"].to_numpy() == H3_TEST_BATCH - 1
    table = build_features(panel, events, rows=scored)
    y = designated_within(table, events, 3).to_numpy(dtype=float)
    keep = ~np.isnan(y) & candidate_mask(table)
    rows, y = table[keep].reset_index(drop=True), y[keep]
    out: dict = {"rows": len(rows), "positives": int(y.sum())}
    for name, path in (("h3", h3_path), ("h1proxy", h1_path)):
        bundle = load_bundle(path)
        raw = bundle.predict_raw(rows)
        out[name] = metrics(y, bundle.calibrator.transform(raw), raw)
    if source.truth is not None:
        truth = source.truth[["firm_id", "year", "p_designation"]].astype({"firm_id": rows["firm_id"].dtype})
        p1 = rows[["firm_id", "year"]].merge(truth, on=["firm_id", "year"], how="left")["p_designation"].to_numpy(float)
        have = ~np.isnan(p1)
        out["truth1proxy"] = metrics(y[have], p1[have])
    # The evaluation's own figures on its test rows: the same rows, unless the core picks others.
    own = h3_eval["populations"]["all"]["model"]
    out["h3_eval_auc"], out["h3_eval_rows"] = own["auc"], h3_eval.get("n_rows")
    if out["h3_eval_rows"] != out["rows"] or abs(own["auc"] - out["h3"]["auc"]) > 1e-9:
        progress(f"WARNING h3 rows/AUC here ({out['rows']}, {out['h3']['auc']:.6f}) differ from its "
                 f"evaluation.json ({out['h3_eval_rows']}, {own['auc']:.6f})")
    h1_all = h1_eval["populations"]["all"]
    out["h1_next"] = {"auc": h1_all["model"]["auc"], "pr_auc": h1_all["model"]["pr_auc"],
                      "ece": h1_all["model"]["ece"],
                      "oracle_auc": h1_all.get("oracle", {}).get("auc", NAN)}
    return out


def review_figures(evaluation: dict) -> dict:
    every = evaluation["populations"]["all"]
    out = {name: {k: every[name].get(k, NAN) for k in ("auc", "pr_auc", "ece", "mean_p", "rate", "n")}
           for name in REVIEW_SCORERS if name in every}
    out["gap"] = out.get("oracle", {}).get("auc", NAN) - out["model"]["auc"]
    out["beats_rules"] = bool(out["model"]["auc"] > out.get("rules", {}).get("auc", NAN))
    out["test_batches"] = evaluation.get("test_batches")
    return out


def one_panel(firms: int, seed: int, threads: int, folder: Path) -> dict:
    start = time.perf_counter()
    progress(f"firms={firms} seed={seed}: simulating")
    sim = simulate(firms, seed=seed)
    source = Source(sim.panel, sim.events, sim.truth)
    del sim
    run: dict = {"firms": firms, "seed": seed, "seconds": {"simulate": time.perf_counter() - start}}
    progress(f"firms={firms} seed={seed}: simulated {len(source.panel):,} firm-years, "
             f"{len(source.events):,} designations in {run['seconds']['simulate']:.0f} s")
    results = {}
    for key, path in CONFIGS.items():
        if key == "review" and firms >= 100_000:
            path = REVIEW_LARGE
        config = configured(path, firms, seed, threads, folder)
        t0 = time.perf_counter()
        progress(f"firms={firms} seed={seed}: training {key} ({config.name})")
        results[key] = train_from_config(config, source=source, overwrite=True)
        run["seconds"][key] = time.perf_counter() - t0
        m = results[key].evaluation["populations"]["all"]["model"]
        progress(f"firms={firms} seed={seed}: {key} done in {run['seconds'][key]:.0f} s "
                 f"({results[key].fit.best_iteration} rounds; test AUC {m['auc']:.4f}, ECE {m['ece']:.4f})")
    t0 = time.perf_counter()
    run["horizon"] = horizon_figures(source, results["h1"].bundle_path, results["h3"].bundle_path,
                                     results["h3"].evaluation, results["h1"].evaluation)
    run["seconds"]["horizon_scoring"] = time.perf_counter() - t0
    run["review"] = review_figures(results["review"].evaluation)
    run["seconds"]["total"] = time.perf_counter() - start
    progress(f"firms={firms} seed={seed}: done in {run['seconds']['total']:.0f} s")
    return run


# --- tables ----------------------------------------------------------------------------------

HORIZON_COLS = (("rows", "{:>7}", lambda r: r["horizon"]["rows"]),
                ("pos", "{:>6}", lambda r: r["horizon"]["positives"]),
                ("h3 AUC", "{:>7.4f}", lambda r: r["horizon"]["h3"]["auc"]),
                ("h1p AUC", "{:>7.4f}", lambda r: r["horizon"]["h1proxy"]["auc"]),
                ("tr1 AUC", "{:>7.4f}", lambda r: r["horizon"].get("truth1proxy", {}).get("auc", NAN)),
                ("h3 PR", "{:>7.4f}", lambda r: r["horizon"]["h3"]["pr_auc"]),
                ("h1p PR", "{:>7.4f}", lambda r: r["horizon"]["h1proxy"]["pr_auc"]),
                ("tr1 PR", "{:>7.4f}", lambda r: r["horizon"].get("truth1proxy", {}).get("pr_auc", NAN)),
                ("h3 ECE", "{:>7.4f}", lambda r: r["horizon"]["h3"]["ece"]),
                ("h3 mean", "{:>6.3f}", lambda r: r["horizon"]["h3"]["mean_p"]),
                ("rate", "{:>6.3f}", lambda r: r["horizon"]["h3"]["rate"]),
                ("h1 AUC25", "{:>8.4f}", lambda r: r["horizon"]["h1_next"]["auc"]),
                ("orc AUC25", "{:>9.4f}", lambda r: r["horizon"]["h1_next"]["oracle_auc"]))


def _review_col(scorer: str, key: str):
    return lambda r: r["review"].get(scorer, {}).get(key, NAN)


REVIEW_COLS = (("rows", "{:>6}", lambda r: r["review"]["model"]["n"]),
               ("kept", "{:>6.3f}", lambda r: r["review"]["model"]["rate"]),
               *((f"{label} AUC", "{:>9.4f}", _review_col(s, "auc"))
                 for s, label in (("model", "model"), ("rules", "rules"), ("cohort", "cohort"), ("oracle", "oracle"))),
               ("gap", "{:>7.4f}", lambda r: r["review"]["gap"]),
               *((f"{label} PR", "{:>8.4f}", _review_col(s, "pr_auc"))
                 for s, label in (("model", "model"), ("rules", "rules"), ("cohort", "cohort"), ("oracle", "oracle"))),
               *((f"{label} ECE", "{:>9.4f}", _review_col(s, "ece"))
                 for s, label in (("model", "model"), ("rules", "rules"), ("cohort", "cohort"), ("oracle", "oracle"))))


def fmean(values) -> float:
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return statistics.fmean(values) if values else NAN


def print_table(title: str, columns, runs: list[dict], sizes: list[int]) -> None:
    print(f"\n{title}")
    widths = [max(len(name), len(fmt.format(0.0 if "f}" in fmt else 0))) for name, fmt, _ in columns]
    print(f"{'firms':>7} {'seed':>5} " + " ".join(f"{name:>{w}}" for (name, _, _), w in zip(columns, widths)))

    def cell(fmt: str, value, w: int) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"{'-':>{w}}"
        if "f}" not in fmt:
            return f"{value:>{w}.0f}" if isinstance(value, float) else f"{value:>{w}}"
        return f"{fmt.format(value):>{w}}"

    for r in runs:
        print(f"{r['firms']:>7} {r['seed']:>5} " + " ".join(cell(fmt, get(r), w) for (_, fmt, get), w in zip(columns, widths)))
    for firms in sizes:
        mine = [r for r in runs if r["firms"] == firms]
        if mine:
            print(f"{firms:>7} {'mean':>5} " + " ".join(cell(fmt, fmean(get(r) for r in mine), w)
                                                        for (_, fmt, get), w in zip(columns, widths)))


def key_values(runs: list[dict], sizes: list[int]) -> dict[str, str]:
    out: dict[str, str] = {}
    for firms in sizes:
        mine = [r for r in runs if r["firms"] == firms]
        if not mine:
            continue
        s = size_label(firms)
        rv = [r["review"] for r in mine]
        hz = [r["horizon"] for r in mine]
        figures = {
            f"review_auc_gap_{s}": fmean(v["gap"] for v in rv),
            f"review_auc_{s}": fmean(v["model"]["auc"] for v in rv),
            f"review_oracle_auc_{s}": fmean(v.get("oracle", {}).get("auc", NAN) for v in rv),
            f"review_rules_auc_{s}": fmean(v.get("rules", {}).get("auc", NAN) for v in rv),
            f"review_cohort_auc_{s}": fmean(v.get("cohort", {}).get("auc", NAN) for v in rv),
            f"review_ece_{s}": fmean(v["model"]["ece"] for v in rv),
            f"review_prauc_{s}": fmean(v["model"]["pr_auc"] for v in rv),
            f"h3_auc_{s}": fmean(h["h3"]["auc"] for h in hz),
            f"h1proxy_auc_{s}": fmean(h["h1proxy"]["auc"] for h in hz),
            f"truth1proxy_auc_{s}": fmean(h.get("truth1proxy", {}).get("auc", NAN) for h in hz),
            f"h3_prauc_{s}": fmean(h["h3"]["pr_auc"] for h in hz),
            f"h1proxy_prauc_{s}": fmean(h["h1proxy"]["pr_auc"] for h in hz),
            f"h3_ece_{s}": fmean(h["h3"]["ece"] for h in hz),
            f"h1_auc_2025_{s}": fmean(h["h1_next"]["auc"] for h in hz),
        }
        out.update({k: f"{v:.4f}" for k, v in figures.items()})
        out[f"review_beats_rules_{s}"] = f"{sum(v['beats_rules'] for v in rv)}/{len(rv)}"
        out[f"seeds_{s}"] = str(len(mine))
    return out


def lgml_source() -> str:
    """The folder lgml is imported from; warns when it is not this checkout's (an editable
    install of another worktree wins over the checkout unless ``PYTHONPATH`` names it)."""
    where = Path(lgml.__file__).resolve().parent
    if where != ROOT / "lgml":
        progress(f"WARNING: lgml is imported from {where}, not from this checkout ({ROOT / 'lgml'}); "
                 f"run with PYTHONPATH={ROOT} to bench this checkout's code")
    return str(where)


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1, allow_nan=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firms", type=int, nargs="+", default=[30_000, 200_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="LightGBM threads.")
    parser.add_argument("--out-json", type=Path, default=None, help="Write every figure here as JSON.")
    args = parser.parse_args()

    runs: list[dict] = []
    source = lgml_source()
    progress(f"lgml {getattr(lgml, '__version__', '?')} from {source}")
    note = ("no oracle for horizon 3: the simulator's truth is the one-batch probability; "
            "h1p = the h1 model's next-batch probability and tr1 = the one-batch truth p_designation, "
            "both used as three-batch proxies on the h3 test rows")
    with tempfile.TemporaryDirectory(prefix="lgml-bench-lifecycle-") as tmp:
        for firms in args.firms:
            for seed in args.seeds:
                run = one_panel(firms, seed, args.threads, Path(tmp))
                runs.append(run)
                h, v = run["horizon"], run["review"]
                print(f"firms={firms} seed={seed}: h3 AUC {h['h3']['auc']:.4f} vs h1 proxy {h['h1proxy']['auc']:.4f}, "
                      f"PR-AUC {h['h3']['pr_auc']:.4f} vs {h['h1proxy']['pr_auc']:.4f}; review AUC "
                      f"{v['model']['auc']:.4f} (oracle {v.get('oracle', {}).get('auc', NAN):.4f}, rules "
                      f"{v.get('rules', {}).get('auc', NAN):.4f}), ECE {v['model']['ece']:.4f}; "
                      f"{run['seconds']['total']:.0f} s", flush=True)
                if args.out_json is not None:
                    write_json(args.out_json, {"note": note, "firms": args.firms, "seeds": args.seeds,
                                               "lgml": source, "complete": False, "runs": runs,
                                               "key_values": key_values(runs, args.firms)})

    print_table("Horizon: candidates at fiscal 2024, target designated in batch 2025, 2026 or 2027 "
                "(h3 test rows)", HORIZON_COLS, runs, args.firms)
    print("  No oracle for horizon 3: the simulator's truth is the one-batch probability.\n"
          "  h1p: the h1 model's next-batch probability, tr1: the one-batch truth p_designation, both\n"
          "  used as three-batch proxies on these rows; h3 mean / rate: mean probability / share\n"
          "  designated within 3 batches; h1 AUC25 / orc AUC25: the h1 model's own next-batch AUC on\n"
          "  batch 2025 and the oracle's.")
    print_table("Review: holders due for re-review in batches 2026-2027 (populations.all)", REVIEW_COLS,
                runs, args.firms)
    print("  gap = oracle AUC - model AUC; cohort = the cohort's published pass rate; kept = share passing")
    kv = key_values(runs, args.firms)
    if args.out_json is not None:
        write_json(args.out_json, {"note": note, "firms": args.firms, "seeds": args.seeds, "lgml": source,
                                   "complete": True,
                                   "runs": runs, "key_values": kv})
    print(" ".join(f"{k}={v}" for k, v in kv.items()), flush=True)


if __name__ == "__main__":
    main()
