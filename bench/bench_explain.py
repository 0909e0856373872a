"""Explanation speed: exact contributions for 100,000 rows, one firm's full report, and the
counterfactual search.

Usage: python bench/bench_explain.py [--model models/lgml-designation] [--firms 20000] [--rows 100000]

Without --model (or when the folder is absent) a model is trained first (not timed) on the
simulated default with the training API and the config defaults.
The last line prints key=value pairs: shap_100k_s (contributions of --rows rows, after the
once-per-model setup shown as shap_setup_s on the line before), reasons_100k_s
(top-3 reasons of those rows), firm_report_s (mean over 5 firms: features, contributions,
reasons, criteria, counterfactual, figures and HTML), counterfactual_s (mean over 10 firms below
the target).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lgml.explain.contributions import contributions, fast_contributions
from lgml.explain.firm import explain_positions
from lgml.explain.reasons import top_reasons
from lgml.explain.whatif import counterfactual
from lgml.features import build_features, context_tables, feature_rows
from lgml.modeling.bundle import load_bundle
from lgml.report.firm import render_firms
from lgml.simulate import simulate


def stand_in_model(sim, folder: Path) -> Path:
    """A designation bundle trained with the training API and the config defaults (LightGBM
    with early stopping, isotonic calibration on the validation batch)."""
    from lgml.config import TrainConfig
    from lgml.features import categorical_levels
    from lgml.vocabulary import FEATURE_DIMENSIONS
    from lgml.modeling.bundle import save_bundle
    from lgml.modeling.calibrate import make_calibrator
    from lgml.modeling.dataset import Source, model_data
    from lgml.modeling.matrix import model_frame
    from lgml.modeling.fit import fit_model

    config = TrainConfig.from_yaml("task: designation\nname: bench-explain\ndata: {simulate: {firms: 20000}}\n"
                                   "split: {train_until: 2022, valid: [2023], test: [2024, 2025]}\n"
                                   "mlflow: {enabled: false}\n")
    levels = categorical_levels()
    data = model_data(Source(sim.panel, sim.events, sim.truth), config)
    fit = fit_model(data, config, levels)
    valid = data.sets["valid"]
    raw = fit.booster.predict(model_frame(valid, data.features, levels), raw_score=True)
    calibrator = make_calibrator(config.calibration).fit(raw, valid["target"].to_numpy())
    meta = {"task": "designation", "features": data.features, "categorical_levels": levels,
            "feature_groups": {f: FEATURE_DIMENSIONS[f] for f in data.features}}
    return save_bundle(folder / "bench-explain", booster=fit.booster, calibrator=calibrator, metadata=meta,
                       evaluation={}, config=config, plots={})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/lgml-designation"))
    parser.add_argument("--firms", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sim = simulate(args.firms, seed=args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-explain-"))
    model = args.model if (args.model / "model.txt").is_file() else stand_in_model(sim, tmp)
    bundle = load_bundle(model)
    context = bundle.context
    context = context if context is not None else context_tables(sim.panel, sim.events)
    table = build_features(sim.panel, sim.events, context)
    rows = table.sample(n=min(args.rows, len(table)), random_state=args.seed)

    start = time.perf_counter()  # once per model and process: flatten the trees, tabulate the leaves
    fast_contributions(bundle.booster, bundle.prepare(rows.head(64)))
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    contrib, _ = contributions(bundle, rows)
    shap_s = time.perf_counter() - start
    start = time.perf_counter()
    top_reasons(contrib, rows, k=3)
    reasons_s = time.perf_counter() - start

    year = int(sim.panel["year"].max()) - 1
    scored = table[(table["year"] == year) & ~table["holds_title"]]
    prob = bundle.predict(scored)
    order = np.argsort(-prob)
    firms = scored["firm_id"].to_numpy()[order[: max(1, len(order) // 20): max(1, len(order) // 100)]][:5]
    timings = []
    for firm in firms:
        start = time.perf_counter()
        province = sim.panel.loc[sim.panel["firm_id"] == firm, "province"].astype(str).iloc[-1]
        own = sim.panel[sim.panel["province"].astype(str) == province]
        year_rows = feature_rows(own, events=sim.events, context=context, year=year)
        p = bundle.predict(year_rows)
        pos = int(np.flatnonzero(year_rows["firm_id"].to_numpy() == firm)[0])
        data = explain_positions(bundle, sim.panel, year_rows, p, [pos], events=sim.events, context=context)
        render_firms(data, "html")
        timings.append(time.perf_counter() - start)
    report_s = float(np.mean(timings))

    below = scored["firm_id"].to_numpy()[order][len(order) // 50:][:: max(1, len(order) // 200)][:10]
    cf_times = []
    for firm in below:
        start = time.perf_counter()
        counterfactual(bundle, sim.panel, firm, year, events=sim.events, context=context)
        cf_times.append(time.perf_counter() - start)
    print(f"model={model} trees={bundle.booster.num_trees()} rows={len(rows)} features={len(bundle.features)} "
          f"shap_setup_s={setup_s:.1f} load_average={os.getloadavg()[0]:.1f}")
    print(f"shap_100k_s={shap_s:.1f} reasons_100k_s={reasons_s:.1f} firm_report_s={report_s:.2f} "
          f"counterfactual_s={float(np.mean(cf_times)):.2f}")


if __name__ == "__main__":
    main()
