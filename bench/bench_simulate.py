"""Time and peak memory of simulating the embedded default, and its calibration.

Usage: python bench/bench_simulate.py [--firms 100000] [--seed 0]
The last line prints key=value pairs.
"""

import argparse
import resource
import time

import pandas as pd

from lgml.published import calibration_report, oracle_scores
from lgml.simulate import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--firms", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    sim = simulate(args.firms, seed=args.seed)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = calibration_report(sim)
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        print(report.to_string(index=False))
    scores = oracle_scores(sim)
    print(f"firms={args.firms} firm_years={len(sim.panel)} simulate_s={seconds:.1f} peak_rss_mb={peak_mb:.0f} "
          f"targets_ok={int(report['ok'].sum())}/{len(report)} oracle_auc_pool={scores['auc_pool']:.4f} "
          f"oracle_auc_all={scores['auc_all']:.4f} oracle_growth_r2={scores['growth_r2']:.4f}")


if __name__ == "__main__":
    main()
