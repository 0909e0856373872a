"""The embedded default: a simulated firm-year panel calibrated to published statistics.

The data are synthetic, names and credit codes included: every ``firm_name`` starts with
``[模拟]`` and the ``credit_code`` values are well-formed random codes (:mod:`lgml.firm_names`).
They follow the official process described in the README: SMEs
evolve year by year; provinces grant provincial SRDI status (the candidate pool) to firms that
meet its hard conditions and 100-point score; MIIT designates Little Giants in yearly batches
among firms meeting the criteria of the regime in force (with a small leak for alternative
routes), with per-(batch, province) intercepts solved so that expected counts match the
published batch sizes scaled to the simulated universe; titles are re-reviewed after three
years at the published pass rates; designation lifts later growth.

The true designation probability and the true expected growth of every firm-year depend only
on values observed in the panel and the events up to that year, so they are the Bayes-optimal
predictors and their scores are genuine ceilings for any model.

Example:
    >>> sim = simulate(2_000, seed=1)
    >>> sorted(sim.truth.columns)
    ['expected_growth', 'firm_id', 'p_designation', 'p_review_pass', 'year']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lgml import criteria
from lgml.firm_names import synthetic_identities
from lgml.inputs import criteria_inputs
from lgml.published import ASSUMED_BATCHES, BATCHES, PUBLISHED, UNIVERSE
from lgml.schema import PANEL_COLUMNS, PROVINCE_LEVELS, PROVINCES, dtype_of

FIRST_YEAR, LAST_YEAR = 2016, 2026
# Batches drawn: the published ones (2019-2025), then the assumed sizes of batches 2026-2027,
# the first two under the 2026 rules.
SIMULATED_BATCHES = {**BATCHES, **ASSUMED_BATCHES}


@dataclass(frozen=True)
class Simulation:
    """A simulated panel.

    Attributes:
        panel: Firm-years in the input contract, fiscal years 2016-2026.
        events: Designations ``firm_id, batch_year, revoked_year`` for batches 2019-2027.
        truth: ``firm_id, year, p_designation, expected_growth, p_review_pass``: the true
            probability of being designated in batch ``year + 1`` (0 for firms holding the title
            and for years with no following batch), the true expected
            ``log(revenue[t+1] / revenue[t])`` and, for title holders re-reviewed in batch
            ``year + 1``, the true probability of keeping the title (NaN for everyone else).
        n_firms: Firms simulated.
        seed: Random seed.
    """

    panel: pd.DataFrame
    events: pd.DataFrame
    truth: pd.DataFrame
    n_firms: int
    seed: int

    @property
    def scale(self) -> float:
        """Simulated firms per firm of the real universe of innovative SMEs."""
        return self.n_firms / UNIVERSE


# --- Mechanism parameters (one place; tuned against calibration_report) --------------------

# Share of the universe holding provincial SRDI status by fiscal year: 40,000+ in 2021 and
# 140,000+ at end-2024 out of roughly 500,000 innovative SMEs; 2025-2026 from the assumed pool
# sizes of PUBLISHED["assumptions"].
POOL_SHARE = {2016: 0.015, 2017: 0.02, 2018: 0.03, 2019: 0.045, 2020: 0.06, 2021: 0.085,
              2022: 0.14, 2023: 0.21, 2024: 0.285,
              **{int(y): n / UNIVERSE for y, n in PUBLISHED["assumptions"]["provincial_srdi_pool"].items()}}
SRDI_TERM = 3  # years a provincial SRDI title lasts before renewal
SRDI_RENEW = 0.9  # renewal rate of still-eligible holders

# Province shares of later batches: Jiangsu, Guangdong and Zhejiang from published batch 5 and 7
# figures, the others of the six leading provinces from the 2025 stock; the remaining share is
# spread in proportion to the official batch 1-2 table.
LEADING_SHARES = {
    2021: {"Jiangsu": .10, "Guangdong": .10, "Zhejiang": .09, "Shandong": .07, "Beijing": .06, "Shanghai": .05},
    2022: {"Jiangsu": .14, "Guangdong": .13, "Zhejiang": .12, "Shandong": .07, "Beijing": .07, "Shanghai": .06},
    2023: {"Jiangsu": .218, "Guangdong": .18, "Zhejiang": .105, "Shandong": .07, "Beijing": .065, "Shanghai": .055},
    2024: {"Jiangsu": .22, "Guangdong": .19, "Zhejiang": .11, "Shandong": .07, "Beijing": .065, "Shanghai": .055},
    2025: {"Jiangsu": .232, "Guangdong": .198, "Zhejiang": .114, "Shandong": .07, "Beijing": .065, "Shanghai": .055},
}
LEADING_SHARES[2026] = LEADING_SHARES[2027] = LEADING_SHARES[2025]

# Designation log-odds among candidates (beyond the per-(batch, province) intercept).
DESIGNATION_BETA = {
    "rd_intensity": 0.6,  # per log(rd_intensity / 5%), clipped at +-2
    "class1_ip": 0.55,  # per log1p(class1_ip)
    "niche_share": 0.45,  # per log(share / 5%), clipped at +-2.5
    "foundation_field": 0.6,
    "strategic_industry": 0.4,
    "key_customers": 0.35,  # per log1p(key_customers)
    "hightech_zone": 0.55,
    "score": 0.25,  # per 10 points of the provincial score above 70
    "revenue": 0.55,  # per log(revenue / 100M yuan), clipped at +-2
    "state_owned": -0.5,
    "srdi_2018_regime": 1.6,  # batches 2019-2021: provinces recommended mostly their SRDI firms
}
LEAK_LOGODDS = -1.8  # a candidate failing one hard criterion (alternative routes, appeals)
LEAK_PER_EXTRA_FAIL = -1.1
NON_POOL_LOGODDS = -2.5  # further penalty outside the provincial pool (2022+ requires it)

# Growth: g[t+1] = f(observed up to t) + MACRO_SHOCK[t] + N(0, GROWTH_NOISE^2).
GROWTH_NOISE = 0.16
# The business cycle's shock to every firm's growth from t to t+1. Realised growth has it; the
# truth (expected growth given what is observable at t) does not: nobody knows next year's shock
# at t. The shocks average about zero, so the truth is the expectation over them.
MACRO_SHOCK = {2016: 0.03, 2017: 0.05, 2018: 0.0, 2019: -0.1, 2020: 0.08, 2021: -0.03,
               2022: 0.02, 2023: -0.02, 2024: 0.0}
TITLE_GROWTH_LIFT = 0.07  # designation raises later growth (DiD studies on listed firms)

SECTOR_WEIGHTS = {
    "34": 9, "35": 8, "38": 7, "39": 7, "33": 5, "36": 4, "27": 3, "26": 4, "29": 3, "40": 2.5,
    "30": 3, "32": 1.5, "31": 1, "13": 1, "14": 1, "17": 1.5, "18": 1, "22": 1, "23": 1, "25": .5,
    "28": .5, "37": 1.5, "41": .5, "42": .3, "43": .2, "15": .5, "19": .5, "20": .5, "21": .5, "24": .5,
    "73": 3, "74": 5, "75": 5, "65": 8, "64": 2, "51": 5, "52": 2, "48": 2, "44": 1, "72": 2,
    "01": 1, "06": .5, "10": .5, "59": 1, "78": 1,
}
HIGH_TECH_MANUFACTURING = ("27", "35", "37", "38", "39", "40")


# --- Helpers -------------------------------------------------------------------------------

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def solve_intercepts(eta: np.ndarray, group: np.ndarray, targets: np.ndarray, max_p: float = 0.95) -> np.ndarray:
    """Per-group intercepts ``a`` such that ``sum(sigmoid(a[g] + eta))`` over each group's rows
    equals ``targets[g]`` (bisection, vectorised over groups).

    Args:
        eta: Log-odds of shape (n,) without the intercept.
        group: Group index of each row, ints in ``0..len(targets)-1``.
        targets: Expected count wanted per group; capped below the group's size.
        max_p: Targets are capped at ``max_p`` times the group size.

    Returns:
        Intercepts of shape (len(targets),); groups with no rows or a zero target get -30.
    """
    n_groups = len(targets)
    size = np.bincount(group, minlength=n_groups)
    want = np.minimum(targets, max_p * size)
    lo, hi = np.full(n_groups, -30.0), np.full(n_groups, 30.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        got = np.bincount(group, weights=_sigmoid(mid[group] + eta), minlength=n_groups)
        too_many = got > want
        hi = np.where(too_many, mid, hi)
        lo = np.where(too_many, lo, mid)
    out = (lo + hi) / 2
    return np.where((size == 0) | (want <= 0), -30.0, out)


def province_batch_shares(batch: int) -> np.ndarray:
    """Target share of batch ``batch``'s designations in each province (PROVINCE_LEVELS order)."""
    base = np.array([PUBLISHED["province_counts_batches_1_2"].get(p, 0) for p in PROVINCE_LEVELS], float)
    base /= base.sum()
    leading = LEADING_SHARES.get(batch)
    if leading is None:  # batches 1-2: the official table
        return base
    shares = base.copy()
    idx = [PROVINCE_LEVELS.index(p) for p in leading]
    rest = np.ones(len(base), bool)
    rest[idx] = False
    shares[rest] = base[rest] / base[rest].sum() * (1 - sum(leading.values()))
    shares[idx] = list(leading.values())
    return shares


# --- The simulation -----------------------------------------------------------------------

class _Firms:
    """Latent and observed state of every simulated firm (arrays of shape (n,))."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n = n
        self.rng = rng
        self.ids = np.array([f"F{i:0{len(str(n))}d}" for i in range(n)], dtype=object)
        prov_w = np.array([PUBLISHED["province_counts_batches_1_2"].get(p, 0) + 8 for p in PROVINCE_LEVELS], float)
        self.province = rng.choice(len(PROVINCE_LEVELS), size=n, p=prov_w / prov_w.sum())
        codes = list(SECTOR_WEIGHTS)
        sw = np.array(list(SECTOR_WEIGHTS.values()))
        self.sector = np.array(codes)[rng.choice(len(codes), size=n, p=sw / sw.sum())]
        mfg = (self.sector >= "13") & (self.sector <= "43")
        research = np.isin(self.sector, ("73", "74", "75"))
        software = np.isin(self.sector, ("64", "65"))
        self.mfg, self.research = mfg, research
        # Latent innovativeness: drives R&D, patents, institutions; never enters the true
        # probability except through observed values.
        self.z = rng.normal(0, 1, n) + 0.2 * research + 0.2 * software + 0.2 * np.isin(self.sector, HIGH_TECH_MANUFACTURING)
        self.chain = rng.normal(0, 1, n) + 0.3 * mfg
        age = np.clip(rng.lognormal(np.log(11), 0.55, n), 1, 45).astype(int)
        self.founded = (FIRST_YEAR - age).astype(int)
        entrants = rng.random(n) < 0.08
        self.founded[entrants] = rng.integers(FIRST_YEAR + 1, 2024, entrants.sum())
        self.niche_start = self.founded + rng.geometric(0.35, n) - 1
        own = rng.choice(4, size=n, p=[0.86, 0.07, 0.05, 0.02])
        self.ownership = np.array(["private", "state", "foreign", "other"], dtype=object)[own]
        self.ownership_missing = rng.random(n) < 0.03
        self.hightech = rng.random(n) < _sigmoid(-1.5 + 0.45 * self.z)
        self.foundation = rng.random(n) < np.where(mfg, 0.32, np.where(research, 0.12, np.where(software, 0.08, 0.03)))
        self.strategic = rng.random(n) < np.where(mfg, 0.33, np.where(research | software, 0.45, 0.08))
        # Financial state.
        self.log_rev = rng.normal(np.log(3.2e7) + 0.02 * (age - 11), 1.15, n)
        self.log_rev[entrants] = rng.normal(np.log(6e6), 0.8, entrants.sum())
        self.growth = np.full(n, np.nan)  # last observed log growth
        self.mb_share = np.clip(1 - rng.beta(1.4, 10, n), 0.3, 1.0)
        self.margin_mu = rng.normal(0.06, 0.05, n)
        self.turnover = rng.lognormal(np.log(0.85), 0.35, n)
        self.debt_mu = np.clip(rng.beta(4, 5, n) + 0.05 * (own == 1), 0.03, 0.95)
        self.rev_per_emp = rng.lognormal(np.log(np.where(mfg, 7.5e5, 5.5e5)), 0.45)
        self.log_rd = -3.55 + 0.4 * self.z + 0.2 * research + rng.normal(0, 0.3, n)
        self.rd_staff_share = np.clip(0.07 + 0.05 * self.z + 0.15 * research + 0.1 * software + rng.normal(0, 0.03, n), 0.005, 0.9)
        self.niche_log_share = rng.normal(np.log(0.022), 1.0, n) + 0.25 * self.z
        self.own_brand = rng.random(n) < _sigmoid(-0.3 + 0.5 * self.z)
        self.certified = rng.random(n) < 0.55
        self.digital = 1 + rng.binomial(2, np.clip(0.35 + 0.1 * self.z, 0.05, 0.95))
        self.inst_score = self.z + 0.4 * (self.log_rev - np.log(5e7)) + rng.normal(0, 0.5, n)
        self.cust_mu = -0.4 + 0.45 * self.chain
        rd0 = np.exp(self.log_rev + self.log_rd)
        self.inv = rng.poisson(np.clip(0.35 * (rd0 / 1e6) ** 0.8 * np.exp(0.3 * self.z) * np.minimum(age, 8) / 3, 0, 500))
        self.other_class1 = rng.poisson(np.where(np.isin(self.sector, ("27", "01", "13", "14")), 0.8, 0.1))
        self.class2 = rng.poisson(np.exp(1.3 + 0.3 * self.z + 0.35 * (self.log_rev - np.log(3e7))))
        # Reporting habits: some firms never report some optional fields.
        self.miss_rd = rng.random(n)
        self.miss_equity = rng.random(n) < 0.25
        self.miss_share = rng.random(n)
        self.miss_digital = rng.random(n) < 0.18
        self.miss_rd_staff = rng.random(n) < 0.08
        # Title state.
        self.srdi_until = np.full(n, -1)  # last fiscal year of the current provincial SRDI title
        self.title_batch = np.full(n, -1)  # batch year of the current Little Giant title, -1 if none
        self.next_review = np.full(n, -1)

    def evolve(self, year: int) -> None:
        """Advance latent characteristics from ``year - 1`` to ``year`` (not revenue)."""
        rng, n = self.rng, self.n
        holder = self.title_batch > 0
        self.log_rd += 0.015 + 0.03 * holder + rng.normal(0, 0.12, n) - 0.08 * (self.log_rd - (-3.55 + 0.4 * self.z))
        self.niche_log_share += rng.normal(0, 0.12, n) + 0.3 * np.nan_to_num(self.growth)
        self.own_brand |= rng.random(n) < 0.04
        self.certified |= rng.random(n) < 0.07
        self.digital = np.minimum(5, self.digital + (rng.random(n) < 0.14))
        self.inst_score += 0.07 + 0.15 * holder
        self.mb_share = np.clip(self.mb_share + rng.normal(0, 0.015, n), 0.3, 1.0)
        # Patent stocks: grants follow R&D spending; some patents lapse each year.
        alive = self.founded < year
        rd = np.exp(self.log_rev + self.log_rd)
        grants = rng.poisson(np.clip(0.19 * (rd / 1e6) ** 0.75 * np.exp(0.3 * self.z), 0, 300))
        self.inv = np.where(alive, self.inv - rng.binomial(self.inv, 0.05) + grants, self.inv)
        self.class2 = np.where(alive, self.class2 + rng.poisson(np.clip(0.8 + 0.6 * (rd / 1e6) ** 0.5, 0, 100)), self.class2)

    def observe(self, year: int) -> pd.DataFrame:
        """The contract row of every firm alive in ``year`` (founded_year <= year)."""
        rng, n = self.rng, self.n
        alive = self.founded <= year
        revenue = np.round(np.exp(self.log_rev), -2)
        rd = np.exp(self.log_rev + np.minimum(self.log_rd + rng.normal(0, 0.1, n), np.log(0.6)))
        pool_prev = self.srdi_until >= year - 1
        rd_missing = self.miss_rd < np.where(pool_prev, 0.03, 0.16)
        share_missing = self.miss_share < np.where(pool_prev, 0.06, 0.3)
        employees = np.maximum(3, np.round(revenue / self.rev_per_emp * np.exp(rng.normal(0, 0.05, n)))).astype(np.int64)
        rd_staff = np.minimum(employees, np.round(employees * self.rd_staff_share)).astype(float)
        assets = np.maximum(revenue / self.turnover * np.exp(rng.normal(0, 0.05, n)), 1e5)
        debt = np.clip(self.debt_mu + rng.normal(0, 0.04, n), 0.01, 0.98)
        margin = np.clip(self.margin_mu + rng.normal(0, 0.035, n), -0.6, 0.5)
        equity_p = 0.03 + 0.04 * (self.z > 1) + 0.05 * (self.title_batch > 0) + 0.03 * pool_prev
        equity = np.where(rng.random(n) < equity_p, np.round(rng.lognormal(np.log(2.5e7), 1.0, n), -4), 0.0)
        inst = np.digitize(self.inst_score, [0.4, 1.5, 2.6])
        customers = rng.poisson(np.exp(self.cust_mu + 0.3 * (self.log_rev - np.log(5e7))).clip(0, 50))
        frame = {
            "firm_id": self.ids,
            "year": np.full(n, year),
            "province": np.array(PROVINCE_LEVELS)[self.province],
            "sector": self.sector,
            "founded_year": self.founded,
            "in_hightech_zone": self.hightech,
            "ownership": np.where(self.ownership_missing, None, self.ownership),
            "employees": employees,
            "rd_staff": np.where(self.miss_rd_staff, np.nan, rd_staff),
            "revenue": revenue,
            "main_business_revenue": np.round(revenue * self.mb_share, -2),
            "net_profit": np.round(revenue * margin, -2),
            "total_assets": np.round(assets, -2),
            "total_liabilities": np.round(assets * debt, -2),
            "rd_expense": np.where(rd_missing, np.nan, np.round(rd, -2)),
            "equity_financing": np.where(self.miss_equity, np.nan, equity),
            "invention_patents": self.inv,
            "class1_ip": self.inv + self.other_class1,
            "class2_ip": self.class2,
            "niche_years": np.maximum(0, year - self.niche_start),
            "niche_market_share": np.where(share_missing, np.nan, np.clip(np.exp(self.niche_log_share), 1e-4, 0.8).round(4)),
            "own_brand": self.own_brand,
            "quality_certified": self.certified,
            "digital_level": np.where(self.miss_digital, np.nan, self.digital.astype(float)),
            "rd_institution": np.array(["none", "municipal", "provincial", "national"])[inst],
            "key_customers": customers,
            "foundation_field": self.foundation,
            "strategic_industry": self.strategic,
            "srdi_provincial": np.zeros(n, bool),  # set by grant_srdi
            "firm_name": self.names,
            "credit_code": self.codes,
        }
        out = pd.DataFrame(frame)[alive].reset_index(drop=True)
        return out.astype({c.name: dtype_of(c) for c in PANEL_COLUMNS})

    def alive_index(self, year: int) -> np.ndarray:
        """Indices of the firms observed in ``year``, in panel row order."""
        return np.flatnonzero(self.founded <= year)


def _window_inputs(history: list[pd.DataFrame]) -> pd.DataFrame:
    """Criteria inputs of the last year in ``history`` (its last three frames), beside that
    year's observed values."""
    window = pd.concat(history[-3:], ignore_index=True)
    inputs = criteria_inputs(window)
    last = window["year"].to_numpy() == window["year"].max()
    inputs = inputs[last].reset_index(drop=True)
    current = history[-1].reset_index(drop=True)
    return pd.concat([inputs, current.drop(columns=[c for c in current.columns if c in inputs])], axis=1)


def _grant_srdi(firms: _Firms, inputs: pd.DataFrame, year: int, idx: np.ndarray) -> np.ndarray:
    """Provincial SRDI status in ``year``: holders keep it for SRDI_TERM years; eligible
    firms are granted it at the rate that brings the pool to POOL_SHARE[year]. The status of
    ``year`` is the pool of batch ``year + 1``, recognised under that batch's provincial rules."""
    rng = firms.rng
    eligible = criteria.srdi_eligible(inputs, year + 1).to_numpy()
    holding = firms.srdi_until[idx] >= year
    expiring = firms.srdi_until[idx] == year - 1
    renewed = expiring & eligible & (rng.random(len(idx)) < SRDI_RENEW)
    target = POOL_SHARE[year] * firms.n
    candidates = eligible & ~holding & ~renewed
    need = max(target - holding.sum() - renewed.sum(), 0)
    # Provinces differ in how actively they cultivate SRDI firms (their own 15 points).
    prov_boost = np.array([1.3 if p in LEADING_SHARES[2025] else 1.0 for p in PROVINCE_LEVELS])[firms.province[idx]]
    rate = need / max((prov_boost * candidates).sum(), 1)
    granted = candidates & (rng.random(len(idx)) < np.minimum(1, rate * prov_boost))
    new_until = np.where(granted | renewed, year + SRDI_TERM - 1, firms.srdi_until[idx])
    firms.srdi_until[idx] = new_until
    return new_until >= year


def designation_logodds(inputs: pd.DataFrame, checked: pd.DataFrame, batch: int) -> np.ndarray:
    """Log-odds of designation in ``batch`` before the (batch, province) intercept.

    A function of observed values only (missing values enter as fixed levels), so the
    resulting probability is the Bayes-optimal predictor given the panel.
    """
    b = DESIGNATION_BETA
    f = lambda c: inputs[c].to_numpy(dtype=float, na_value=np.nan)  # noqa: E731
    rd_int = np.nan_to_num(f("rd_intensity"), nan=0.01)
    share = np.nan_to_num(f("niche_market_share"), nan=0.01)
    revenue = np.maximum(f("revenue"), 1e5)
    eta = (
        b["rd_intensity"] * np.clip(np.log(np.maximum(rd_int, 1e-4) / 0.05), -2, 2)
        + b["class1_ip"] * np.log1p(f("class1_ip"))
        + b["niche_share"] * np.clip(np.log(np.maximum(share, 1e-4) / 0.05), -2.5, 2.5)
        + b["foundation_field"] * f("foundation_field")
        + b["strategic_industry"] * f("strategic_industry")
        + b["key_customers"] * np.log1p(f("key_customers"))
        + b["hightech_zone"] * f("in_hightech_zone")
        + b["score"] * (f("score_total") - 70) / 10
        + b["revenue"] * np.clip(np.log(revenue / 1e8), -2, 2)
        + b["state_owned"] * (inputs["ownership"].astype(object) == "state").to_numpy()
    )
    pool = inputs["srdi_provincial"].to_numpy(dtype=bool)
    n_fail = (checked["n_criteria"] - checked["n_met"]).to_numpy()
    leak = np.where(n_fail == 0, 0.0, LEAK_LOGODDS + LEAK_PER_EXTRA_FAIL * np.maximum(n_fail - 1, 0))
    if criteria.regime_for(batch) == "2018":
        eta = eta + b["srdi_2018_regime"] * pool
    else:
        eta = eta + np.where(pool, 0.0, NON_POOL_LOGODDS)
    return eta + leak


def _designation_probability(firms: _Firms, inputs: pd.DataFrame, idx: np.ndarray, batch: int) -> np.ndarray:
    """True probability of designation in ``batch`` for the firms ``idx`` observed in
    ``batch - 1``; 0 for firms holding the title."""
    checked = criteria.check(inputs, batch)
    eta = designation_logodds(inputs, checked, batch)
    candidate = firms.title_batch[idx] < 0
    count = SIMULATED_BATCHES[batch] * firms.n / UNIVERSE
    targets = count * province_batch_shares(batch)
    prov = firms.province[idx]
    a = solve_intercepts(eta[candidate], prov[candidate], targets)
    return np.where(candidate, _sigmoid(a[prov] + eta), 0.0)


def expected_growth(inputs: pd.DataFrame, last_growth: np.ndarray, holder: np.ndarray) -> np.ndarray:
    """True expected log revenue growth from ``year`` to ``year + 1`` given the values observed
    up to ``year``: the year's macro shock (:data:`MACRO_SHOCK`), unknowable at ``year``, is not
    part of it."""
    f = lambda c: inputs[c].to_numpy(dtype=float, na_value=np.nan)  # noqa: E731
    rd_int = np.nan_to_num(f("rd_intensity"), nan=0.015)
    sector = inputs["sector"].astype(object).to_numpy()
    region = np.array([PROVINCES[p][2] for p in PROVINCE_LEVELS], dtype=object)[
        inputs["province"].cat.codes.to_numpy()]
    return (
        -0.085
        + 0.3 * np.clip(np.nan_to_num(last_growth), -0.6, 0.6)
        + 0.9 * np.minimum(rd_int, 0.25)
        - 0.07 * np.clip(np.log(np.maximum(f("revenue"), 1e5) / 5e7), -3, 3)
        + 0.05 * f("strategic_industry") + 0.03 * f("in_hightech_zone")
        + 0.035 * np.log1p(f("class1_ip"))
        - 0.3 * np.clip(f("debt_ratio") - 0.6, 0, None)
        + 0.6 * np.clip(np.nan_to_num(f("net_margin")), -0.3, 0.3)
        + 0.04 * np.isin(sector, HIGH_TECH_MANUFACTURING + ("65", "73"))
        - 0.05 * np.isin(sector, ("17", "18", "22", "30", "51"))
        + 0.03 * (region == "east") - 0.03 * (region == "northeast")
        + TITLE_GROWTH_LIFT * holder
    )


def review_probability(firms: _Firms, inputs: pd.DataFrame, idx: np.ndarray, year: int) -> np.ndarray:
    """True probability that each firm of ``idx`` passes the re-review of batch year ``year``
    (NaN for firms whose title is not due): the published pass rate of its cohort, tilted
    towards firms still meeting the criteria of the regime in force in ``year``, judged on
    the values of fiscal year ``year - 1`` (observed by the end of that year)."""
    p = np.full(len(idx), np.nan)
    due = np.flatnonzero(firms.next_review[idx] == year)
    if due.size == 0:
        return p
    checked = criteria.check(inputs.iloc[due], year)
    strength = 1.8 * checked["eligible"].to_numpy() + 0.25 * (checked["n_met"] - checked["n_criteria"]).to_numpy()
    batches = firms.title_batch[idx[due]]
    rates = {int(k.split("->")[0]): v for k, v in PUBLISHED["review_pass_rate"].items() if int(k.split("->")[1]) == year}
    for batch in np.unique(batches):
        sel = batches == batch
        rate = rates.get(int(batch), 0.87)
        a = solve_intercepts(strength[sel], np.zeros(sel.sum(), int), np.array([rate * sel.sum()]))
        p[due[sel]] = _sigmoid(a[0] + strength[sel])
    return p


def _review(firms: _Firms, p_pass: np.ndarray, idx: np.ndarray, year: int, revoked: dict) -> None:
    """Re-review, in batch year ``year``, the titles reaching their 3-year mark: each due firm
    keeps its title with probability ``p_pass`` (:func:`review_probability`). Firms under
    review are not candidates for that year's batch."""
    due = np.flatnonzero(~np.isnan(p_pass))
    if due.size == 0:
        return
    batches = firms.title_batch[idx[due]]
    passed = np.zeros(due.size, bool)
    for batch in np.unique(batches):  # one draw per cohort, in cohort order
        sel = batches == batch
        passed[sel] = firms.rng.random(sel.sum()) < p_pass[due[sel]]
    for i in idx[due][~passed]:
        revoked[(int(i), int(firms.title_batch[i]))] = year
    firms.next_review[idx[due][passed]] = year + 3
    firms.title_batch[idx[due][~passed]] = -1
    firms.next_review[idx[due][~passed]] = -1


def simulate(n_firms: int = 20_000, seed: int = 0) -> Simulation:
    """Simulate ``n_firms`` firms over fiscal years 2016-2026 and batches 2019-2027.

    Args:
        n_firms: Firms in the simulated universe (a sample of about 500,000 innovative SMEs).
        seed: Random seed; the same seed gives identical tables.

    Returns:
        A :class:`Simulation` with the panel, the designation events and the truth.
    """
    if n_firms < 100:
        raise ValueError(f"n_firms must be at least 100, got {n_firms}")
    rng = np.random.default_rng(seed)
    firms = _Firms(n_firms, rng)
    # Names and codes from a stream of their own: every other draw is as it was without them.
    names_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    firms.names, firms.codes = synthetic_identities(np.array(PROVINCE_LEVELS)[firms.province], firms.sector, names_rng)
    history: list[pd.DataFrame] = []
    truths: list[pd.DataFrame] = []
    designations: list[tuple[int, int]] = []
    revoked: dict[tuple[int, int], int] = {}
    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        if year > FIRST_YEAR:
            firms.evolve(year)
        obs = firms.observe(year)
        idx = firms.alive_index(year)
        inputs = _window_inputs(history + [obs])
        obs["srdi_provincial"] = _grant_srdi(firms, inputs, year, idx)
        inputs["srdi_provincial"] = obs["srdi_provincial"].to_numpy()
        history.append(obs)
        inputs = pd.concat([inputs, criteria.srdi_score(inputs)], axis=1)
        batch = year + 1
        holder = firms.title_batch[idx] > 0
        if batch in SIMULATED_BATCHES:
            p = _designation_probability(firms, inputs, idx, batch)
            p_pass = review_probability(firms, inputs, idx, batch)
        else:
            p, p_pass = np.zeros(len(idx)), np.full(len(idx), np.nan)
        mu = expected_growth(inputs, firms.growth[idx], holder)
        truths.append(pd.DataFrame({"firm_id": obs["firm_id"], "year": year, "p_designation": p,
                                    "expected_growth": mu, "p_review_pass": p_pass}))
        if batch in SIMULATED_BATCHES:
            won = idx[rng.random(len(idx)) < p]
            _review(firms, p_pass, idx, batch, revoked)
            firms.title_batch[won] = batch
            firms.next_review[won] = batch + 3
            designations += [(int(i), batch) for i in won]
        # Revenue moves to next year; firms founded next year start from their entry size.
        g = mu + MACRO_SHOCK.get(year, 0.0) + rng.normal(0, GROWTH_NOISE, len(idx))
        firms.log_rev[idx] += g
        firms.growth[idx] = g
    panel = pd.concat(history, ignore_index=True)
    ids = firms.ids
    events = pd.DataFrame({
        "firm_id": [ids[i] for i, _ in designations],
        "batch_year": [b for _, b in designations],
        "revoked_year": [revoked.get(key, np.nan) for key in designations],
    }).astype({"firm_id": "str", "batch_year": "int64", "revoked_year": "float64"})
    truth = pd.concat(truths, ignore_index=True)
    return Simulation(panel=panel, events=events, truth=truth, n_firms=n_firms, seed=seed)
