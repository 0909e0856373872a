"""Fixtures of the explain tests: a hand-built firm failing only the R&D rule."""

from __future__ import annotations

import pandas as pd
import pytest

from lgml import criteria
from lgml.inputs import criteria_inputs

HAND_BUILT = {
    "firm_id": "HAND-RD", "year": [2018, 2019, 2020, 2021, 2022, 2023], "province": "Jiangsu", "sector": "35",
    "founded_year": 2005,
    "in_hightech_zone": True, "ownership": "private", "employees": 300, "rd_staff": 60.0,
    "revenue": [100e6, 115e6, 130e6, 150e6, 170e6, 200e6],
    "main_business_revenue": [90e6, 103.5e6, 117e6, 135e6, 153e6, 180e6],
    "net_profit": [12e6, 13.8e6, 15.6e6, 18e6, 20.4e6, 24e6], "total_assets": 320e6, "total_liabilities": 120e6,
    "rd_expense": [2e6, 2.3e6, 2.6e6, 3e6, 3.4e6, 4e6],  # 2% of revenue: the R&D rule needs 3% at revenue >= 100M
    "equity_financing": 0.0, "invention_patents": 15, "class1_ip": [6, 9, 11, 14, 17, 20], "class2_ip": 30,
    "niche_years": [5, 6, 7, 8, 9, 10], "niche_market_share": 0.15, "own_brand": True, "quality_certified": True,
    "digital_level": 4.0, "rd_institution": "provincial", "key_customers": 5, "foundation_field": True,
    "strategic_industry": True, "srdi_provincial": True,
    "firm_name": "[模拟]江苏手工研发样例有限公司", "credit_code": "91320500MA1HANDRD7",
}


@pytest.fixture(scope="session")
def rd_only_firm(small_sim) -> tuple[pd.DataFrame, str]:
    """A hand-built firm with six years on record, strong on everything but R&D (2% of revenue
    in 2018-2023), in the contract's dtypes; for batch 2024 it fails the R&D rule and nothing else."""
    n = len(HAND_BUILT["year"])
    template = small_sim.panel.iloc[:n].reset_index(drop=True)
    columns = {}
    for name, dtype in template.dtypes.items():
        value = HAND_BUILT[name]
        values = value if isinstance(value, list) else [value] * n
        columns[name] = pd.Series(values, dtype=dtype)
    panel = pd.DataFrame(columns)[list(template.columns)]
    inputs = criteria_inputs(panel)
    checked = criteria.check(inputs[inputs["year"] == 2023], 2024)
    failed = [c.removeprefix("pass_") for c in checked.columns if c.startswith("pass_") and not checked[c].iloc[0]]
    assert failed == ["rd_band"]
    return panel, "HAND-RD"


@pytest.fixture(scope="session")
def review_dir(small_sim, tmp_path_factory):
    """The session's tiny review bundle (tests/score/review_training.py; trained once for both folders)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "score" / "review_training.py"
    spec = importlib.util.spec_from_file_location("review_training", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.review_model(small_sim, tmp_path_factory)
