"""Scoring throughput against raw LightGBM prediction, and peak memory on a 10,000,000-row panel.

Usage: python bench/bench_score.py [--firms 100000] [--big-rows 10000000] [--explain-firms N]

1. Trains a designation model of exactly ``--rounds`` trees (31 leaves), or with ``--config``
   one through the training API as ``lgml train`` would (not timed).
2. score_ratio: scores a simulated panel of ``--firms`` firms (about 10 fiscal years each)
   end to end in this process -- read Parquet, find each firm's latest year, check the
   contract, build features (three years per firm), predict, rank, write Parquet -- and
   divides its throughput (scored rows per second, one row per firm) by the throughput of
   ``Booster.predict`` on the very same scored rows already in memory as a float matrix.
   (Scoring predicts with lgml's compiled predictor, whose rate is printed too.)
   No events are given, so every scored row is predicted.
3. explain_ratio: the same with ``--explain`` (exact TreeSHAP grouped by dimension, top three
   reasons as text), on the same panel unless ``--explain-firms`` picks its first N firms.
4. peak_rss_mb: ``lgml score`` in a subprocess on a ``--big-rows`` panel (the simulated panel
   replicated under new firm ids, written row group by row group, never all in memory), its
   peak resident memory (the kernel's high-water mark of the child, and psutil samples of
   its process tree).

Timings are the best of ``--repeat`` runs (other processes share the machine). The last line
prints ``score_ratio=… explain_ratio=… peak_rss_mb=…``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from lgml.config import TrainConfig
from lgml.features import feature_rows
from lgml.kernels import forest
from lgml.modeling.bundle import load_bundle
from lgml.modeling.train import train_from_config
from lgml.score import DEFAULT_CHUNK_ROWS, score_file
from lgml.simulate import simulate

ROW_GROUP = 100_000
CONFIG = """
task: designation
name: bench-designation
seed: 0
data: {{simulate: {{firms: {firms}, seed: 0}}}}
split: {{train_until: 2023, valid: [2024], test: [2025]}}
lightgbm: {{num_boost_round: {rounds}, learning_rate: 0.05, num_leaves: 31, min_child_samples: 100}}
mlflow: {{enabled: false}}
models_dir: '{models}'
"""


def train_fixed(folder: Path, firms: int, rounds: int) -> Path:
    """A designation bundle of exactly ``rounds`` trees (the training API keeps only the best
    iteration, which makes model size, and so predict time, depend on early stopping)."""
    import lightgbm as lgb

    from lgml.features import build_features, categorical_levels, context_tables, feature_columns
    from lgml.vocabulary import FEATURE_DIMENSIONS
    from lgml.modeling.bundle import save_bundle
    from lgml.modeling.calibrate import IsotonicCalibrator
    from lgml.modeling.matrix import model_frame

    config = TrainConfig.from_yaml(CONFIG.format(firms=firms, rounds=rounds, models=folder.as_posix()))
    sim = simulate(firms, seed=config.data.simulate.seed)
    table = build_features(sim.panel, sim.events)
    features, levels = feature_columns(table), categorical_levels()
    rows = table[table["designated_next"].notna()]
    train, valid = rows[rows["batch_year"] <= 2023], rows[rows["batch_year"] == 2024]
    params = config.lightgbm.params("designation", config.seed)
    booster = lgb.train(params, lgb.Dataset(model_frame(train, features, levels), train["designated_next"]),
                        num_boost_round=rounds)
    raw = booster.predict(model_frame(valid, features, levels), raw_score=True)
    calibrator = IsotonicCalibrator().fit(raw, valid["designated_next"].to_numpy())
    meta = {"task": "designation", "name": config.name, "features": features, "categorical_levels": levels,
            "feature_groups": {f: FEATURE_DIMENSIONS[f] for f in features}, "split": config.split.model_dump()}
    return save_bundle(config.bundle_dir, booster=booster, calibrator=calibrator, metadata=meta, evaluation={},
                       config=config, plots={}, context=context_tables(sim.panel, sim.events))


def train_with_api(config_path: Path, folder: Path) -> Path:
    """A bundle trained by ``lgml train``'s API from a config file (tracking off)."""
    config = TrainConfig.from_file(config_path)
    config = config.model_copy(update={"models_dir": folder,
                                       "mlflow": config.mlflow.model_copy(update={"enabled": False})})
    return Path(train_from_config(config, overwrite=True).bundle_path)


def write_panel(panel: pd.DataFrame, path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(panel, preserve_index=False), path, row_group_size=ROW_GROUP)


def float_matrix(bundle, table: pd.DataFrame) -> np.ndarray:
    """The model input as LightGBM sees it: categories as codes of the stored levels, NaN missing."""
    X = bundle.prepare(table)
    cols = [X[c].cat.codes.to_numpy(dtype="float64") if isinstance(X[c].dtype, pd.CategoricalDtype)
            else X[c].to_numpy(dtype="float64") for c in X.columns]
    matrix = np.column_stack(cols)
    for i, c in enumerate(X.columns):
        if isinstance(X[c].dtype, pd.CategoricalDtype):
            matrix[matrix[:, i] < 0, i] = np.nan
    return np.ascontiguousarray(matrix)


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def raw_predict_rate(bundle, panel: pd.DataFrame, scores: pd.DataFrame, repeat: int) -> tuple[float, float]:
    """Rows per second of Booster.predict on the scored rows, checked against the scores; and
    of lgml's compiled predictor on the same matrix (checked equal)."""
    table = feature_rows(panel, context=bundle.context)
    table = table.set_index("firm_id").loc[scores["firm_id"]].reset_index()
    matrix = float_matrix(bundle, table)
    seconds, raw = best_of(repeat, lambda: bundle.booster.predict(matrix, raw_score=True))
    np.testing.assert_allclose(bundle.calibrator.transform(raw), scores["probability"].to_numpy(), rtol=1e-10)
    compiled_seconds, compiled = best_of(repeat, lambda: forest.raw_scores(bundle.booster, matrix))
    np.testing.assert_array_equal(compiled, raw)
    return len(matrix) / seconds, len(matrix) / compiled_seconds


def e2e_rate(bundle_dir: Path, panel_path: Path, out: Path, repeat: int, **kwargs) -> tuple[float, pd.DataFrame]:
    """Scored rows per second of score_file (read Parquet ... write Parquet)."""
    seconds, _ = best_of(repeat, lambda: score_file(bundle_dir, panel_path, out, overwrite=True, **kwargs))
    scores = pd.read_parquet(out)
    return len(scores) / seconds, scores


def write_big_panel(panel: pd.DataFrame, path: Path, rows: int) -> int:
    """``rows`` firm-years: copies of ``panel`` under new firm ids, one copy in memory at a time."""
    table = pa.Table.from_pandas(panel, preserve_index=False)
    written, copy = 0, 0
    with pq.ParquetWriter(path, table.schema) as writer:
        while written < rows:
            ids = pa.array(panel["firm_id"].to_numpy(dtype=object) + f"-{copy:03d}", type=table.schema.field("firm_id").type)
            chunk = table.set_column(table.schema.get_field_index("firm_id"), "firm_id", ids).slice(0, rows - written)
            for start in range(0, chunk.num_rows, ROW_GROUP * 2):
                writer.write_table(chunk.slice(start, ROW_GROUP * 2))
            written += chunk.num_rows
            copy += 1
    return written


def peak_memory_run(args: list[str]) -> tuple[float, float, float]:
    """Run a command; return (seconds, child high-water RSS MB, sampled process-tree peak MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampled = [0.0]

    def sample() -> None:
        parent = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [parent, *parent.children(recursive=True)]
                sampled[0] = max(sampled[0], sum(p.memory_info().rss for p in tree) / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = proc.communicate()
    thread.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{err}")
    high_water = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    return time.perf_counter() - start, high_water, sampled[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--firms", type=int, default=100_000, help="firms of the throughput panel")
    parser.add_argument("--train-firms", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=300, help="trees of the fixed benchmark model")
    parser.add_argument("--config", type=Path, default=None,
                        help="train with this training config instead (e.g. configs/designation.yaml)")
    parser.add_argument("--explain-firms", type=int, default=None, help="firms explained (default: all)")
    parser.add_argument("--big-rows", type=int, default=10_000_000, help="rows of the memory panel (0 skips)")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, args.workdir)
        return
    with tempfile.TemporaryDirectory(prefix="lgml-bench-score-") as work:  # about 1 GB of files
        run(args, Path(work))


def run(args: argparse.Namespace, work: Path) -> None:
    if args.config is not None:
        bundle_dir = train_with_api(args.config, work / "models")
    else:
        bundle_dir = train_fixed(work / "models", args.train_firms, args.rounds)
    bundle = load_bundle(bundle_dir)
    print(f"model: {bundle.booster.num_trees()} trees, {len(bundle.features)} features; context in bundle: "
          f"{bundle.context is not None}")

    sim = simulate(args.firms, seed=1)
    write_panel(sim.panel, work / "panel.parquet")
    rate, scores = e2e_rate(bundle_dir, work / "panel.parquet", work / "scores.parquet", args.repeat,
                            chunk_rows=args.chunk_rows)
    raw, compiled = raw_predict_rate(bundle, sim.panel, scores, args.repeat)
    print(f"score: {len(sim.panel):,} firm-years -> {len(scores):,} scored rows; end to end {rate:,.0f} rows/s, "
          f"raw Booster.predict {raw:,.0f} rows/s (lgml's compiled predictor, used end to end: {compiled:,.0f})")

    small, small_path = sim.panel, work / "panel.parquet"
    if args.explain_firms is not None:
        small = sim.panel[sim.panel["firm_id"].isin(sim.panel["firm_id"].drop_duplicates().head(args.explain_firms))]
        small_path = work / "small.parquet"
        write_panel(small, small_path)
    explain_rate, explained = e2e_rate(bundle_dir, small_path, work / "explained.parquet", args.repeat,
                                       explain=True)
    explain_raw, _ = raw_predict_rate(bundle, small, explained, args.repeat)
    print(f"explain: {len(explained):,} scored rows; end to end {explain_rate:,.0f} rows/s, "
          f"raw Booster.predict {explain_raw:,.0f} rows/s")

    peak = float("nan")
    if args.big_rows:
        rows = write_big_panel(sim.panel, work / "big.parquet", args.big_rows)
        command = [sys.executable, "-m", "lgml", "score", "--model", str(bundle_dir), "--input",
                   str(work / "big.parquet"), "--output", str(work / "big-scores.parquet"), "--overwrite",
                   "--chunk-rows", str(args.chunk_rows)]
        seconds, peak, sampled = peak_memory_run(command)
        scored = pq.ParquetFile(work / "big-scores.parquet").metadata.num_rows
        print(f"memory: {rows:,} firm-years -> {scored:,} scored rows in {seconds:.0f} s "
              f"({scored / seconds:,.0f} rows/s incl. start-up); peak RSS {peak:,.0f} MB "
              f"(sampled process tree {sampled:,.0f} MB)")
    print(f"score_ratio={rate / raw:.3f} explain_ratio={explain_rate / explain_raw:.4f} peak_rss_mb={peak:.0f}")


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    main()
