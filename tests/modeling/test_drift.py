"""Drift: the reference profile ``lgml train`` stores in the bundle and PSI against it."""

import numpy as np
import pandas as pd

from lgml.modeling.dataset import load_source, model_data
from lgml.modeling.drift import PSI_MAJOR, psi_table, reference_profile


def test_trained_bundle_carries_the_reference_of_its_last_training_batch(designation_bundle):
    b = designation_bundle
    ref = b.reference
    assert ref is not None and "reference.json" in b.metadata["sha256"]  # covered by the integrity check
    assert set(ref["numeric"]) | set(ref["categorical"]) == set(b.features)
    last = max(b.metadata["batches"]["train"])
    train = model_data(load_source(b.config.data), b.config).sets["train"]
    rows = train[train["batch_year"] == last]
    assert ref["batch_year"] == last and ref["n_rows"] == len(rows) < b.metadata["rows"]["train"]
    assert {k: v for k, v in ref.items() if k != "batch_year"} == reference_profile(rows, b.features)  # exact
    assert psi_table(ref, rows)["psi"].max() < 1e-9


def test_psi_flags_a_shifted_feature_only():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"rd_intensity": rng.gamma(2.0, 0.02, 5000), "province": rng.choice(["a", "b"], 5000)})
    ref = reference_profile(table, ["rd_intensity", "province"])
    drift = psi_table(ref, table.assign(rd_intensity=table["rd_intensity"] * 3)).set_index("feature")
    assert drift.loc["rd_intensity", "psi"] > PSI_MAJOR and drift.loc["rd_intensity", "level"] == "major"
    assert drift.loc["province", "psi"] < 1e-9 and drift.loc["province", "level"] == "stable"


def test_psi_is_zero_against_itself_and_grows_with_a_shift(bundle, candidates):
    ref = reference_profile(candidates, bundle.features)
    same = psi_table(ref, candidates)
    assert same["psi"].max() < 1e-9
    shifted = candidates.assign(rd_intensity=candidates["rd_intensity"] * 3)
    assert psi_table(ref, shifted).set_index("feature").loc["rd_intensity", "psi"] > 0.25


def test_drift_verdict_in_plain_words():
    from lgml.modeling.drift import drift_verdict

    def table(psi):
        out = pd.DataFrame({"feature": [f"f{i}" for i in range(len(psi))], "psi": psi})
        return out.assign(level=np.select([out["psi"] >= 0.25, out["psi"] >= 0.1], ["major", "moderate"], "stable"))

    stable = drift_verdict(table([0.05, 0.01]), {"f0": "R&D intensity"})
    assert stable == {"level": "stable", "text": "Stable: no feature moved more than 0.1 PSI (largest: R&D intensity, 0.05)."}
    moderate = drift_verdict(table([0.2, 0.15, 0.12, 0.01]))
    assert moderate["level"] == "moderate"
    assert moderate["text"].startswith("Moderate shift in 3 features (PSI 0.1-0.25): f0 (0.20), f1 (0.15), f2 (0.12).")
    assert "re-check" in moderate["text"].lower()
    major = drift_verdict(table([0.9, 0.3, 0.2]), named=1)
    assert major["level"] == "major" and major["text"].startswith("Major shift in 2 features (PSI above 0.25): f0 (0.90) and 1 more.")
    assert "retrain" in major["text"]
    assert drift_verdict(table([]))["level"] == "none"
