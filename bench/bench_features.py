"""Feature-building time on about 1,000,000 firm-years, and the rule baseline's AUC.

Usage: python bench/bench_features.py [--firms 103000]
Simulates the panel (not timed), times build_features, then scores the rule check
(criteria met, then the 100-point score) on the simulated 2024-2025 batches, overall and
within the provincial SRDI pool. The last line prints key=value pairs.
"""

import argparse
import time

from sklearn.metrics import roc_auc_score

from lgml.criteria import rule_rank_score
from lgml.features import build_features
from lgml.simulate import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--firms", type=int, default=103_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sim = simulate(args.firms, seed=args.seed)
    start = time.perf_counter()
    table = build_features(sim.panel, sim.events)
    seconds = time.perf_counter() - start
    test = table[table["batch_year"].isin([2024, 2025])].dropna(subset=["designated_next"])
    pool = test[test["in_pool"]]
    auc_all = roc_auc_score(test["designated_next"], rule_rank_score(test))
    auc_pool = roc_auc_score(pool["designated_next"], rule_rank_score(pool))
    truth = test.merge(sim.truth, on=["firm_id", "year"])
    oracle_all = roc_auc_score(truth["designated_next"], truth["p_designation"])
    truth_pool = truth[truth["in_pool"]]
    oracle_pool = roc_auc_score(truth_pool["designated_next"], truth_pool["p_designation"])
    print(f"firm_years={len(sim.panel)} features={table.shape[1]} features_s={seconds:.1f} "
          f"rule_auc_all={auc_all:.4f} rule_auc_pool={auc_pool:.4f} "
          f"oracle_auc_all={oracle_all:.4f} oracle_auc_pool={oracle_pool:.4f}")


if __name__ == "__main__":
    main()
