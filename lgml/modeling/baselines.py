"""Baselines the model must beat: the rule check and a regularised linear model.

Example:
    >>> rules = RuleBaseline().fit(valid_table, valid_y)  # doctest: +SKIP
    >>> p = rules.predict_proba(test_table)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lgml.config import BINARY_TASKS
from lgml.modeling.calibrate import PlattCalibrator

MAX_LINEAR_ROWS = 300_000  # a linear baseline gains nothing from more rows; keeps fits fast


class RuleBaseline:
    """The rule check as a scorer: :func:`lgml.criteria.rule_rank_score` (criteria met, then the
    100-point score) ranks; a Platt fit of that score turns it into probabilities.

    Attributes:
        platt_: Platt calibrator on the rule score.
    """

    def score(self, table: pd.DataFrame) -> np.ndarray:
        """Rule score of shape (n,) (higher = more criteria met)."""
        from lgml.criteria import rule_rank_score

        return rule_rank_score(table).to_numpy(dtype=float)

    def fit(self, table: pd.DataFrame, y: np.ndarray) -> RuleBaseline:
        """Fit the probability mapping on labelled rows (the validation batches)."""
        self.platt_ = PlattCalibrator().fit(self.score(table), y)
        return self

    def predict_proba(self, table: pd.DataFrame) -> np.ndarray:
        """Probability of designation, shape (n,)."""
        return self.platt_.transform(self.score(table))


class LinearBaseline:
    """Logistic (designation) or ridge (growth) regression on standardised numeric features
    with missing-value indicators and median imputation, plus one-hot categoricals. Numeric
    features are first clipped to their training 0.5% and 99.5% quantiles so that a few
    extreme ratios do not dominate a linear fit.

    Args:
        task: ``designation`` or ``growth``.
        numeric: Numeric feature names.
        categorical: Categorical feature name -> levels.
        random_state: Seed for subsampling training rows above :data:`MAX_LINEAR_ROWS`.

    Attributes:
        lower_: Per-feature clipping bounds (training 0.5% quantiles), Series.
        upper_: Per-feature clipping bounds (training 99.5% quantiles), Series.
        pipeline_: Fitted sklearn pipeline.
    """

    def __init__(self, task: str, numeric: list[str], categorical: dict[str, list[str]], random_state: int = 0):
        self.task = task
        self.numeric = numeric
        self.categorical = categorical
        self.random_state = random_state

    def _pipeline(self):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        cats = list(self.categorical)
        prep = ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                                  StandardScaler()), self.numeric),
            ("cat", OneHotEncoder(categories=[self.categorical[c] for c in cats], handle_unknown="ignore"), cats),
        ])
        model = (LogisticRegression(C=1.0, max_iter=500) if self.task in BINARY_TASKS else Ridge(alpha=1.0))
        return make_pipeline(prep, model)

    def _frame(self, table: pd.DataFrame) -> pd.DataFrame:
        num = table[self.numeric].astype(float).clip(self.lower_, self.upper_, axis=1)
        cats = {c: table[c].astype(object).where(table[c].notna(), "missing").astype(str) for c in self.categorical}
        return pd.concat([num, pd.DataFrame(cats, index=table.index)], axis=1)

    def fit(self, table: pd.DataFrame, y: np.ndarray) -> LinearBaseline:
        """Fit on training rows (a seeded subsample of at most :data:`MAX_LINEAR_ROWS`)."""
        y = np.asarray(y, float)
        if len(table) > MAX_LINEAR_ROWS:
            rng = np.random.default_rng(self.random_state)
            take = np.sort(rng.choice(len(table), MAX_LINEAR_ROWS, replace=False))
            table, y = table.iloc[take], y[take]
        num = table[self.numeric].astype(float)
        self.lower_, self.upper_ = num.quantile(0.005), num.quantile(0.995)
        self.pipeline_ = self._pipeline().fit(self._frame(table), y)
        return self

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Probability of designation or predicted log growth, shape (n,)."""
        X = self._frame(table)
        if self.task in BINARY_TASKS:
            return self.pipeline_.predict_proba(X)[:, 1]
        return self.pipeline_.predict(X)


def cohort_pass_rate(table: pd.DataFrame) -> np.ndarray:
    """The re-review baseline of published figures alone: each review row gets the published
    pass rate of its cohort's review (batch 2019 in 2022 57.3%, 2020 in 2023 68.1%, 2021 in 2024
    82.9%, the 2025 review 87%), and reviews without a published rate the latest one published.

    Args:
        table: Review rows with ``batch_year`` (the review's batch year) and ``title_years``
            (years since the title's batch).

    Returns:
        Probabilities of passing, shape (n,).
    """
    from lgml.published import PUBLISHED

    rates = {tuple(int(y) for y in key.split("->")): float(v) for key, v in PUBLISHED["review_pass_rate"].items()}
    latest = rates[max(rates, key=lambda k: (k[1], k[0]))]
    review = table["batch_year"].to_numpy(dtype="int64")
    cohort = review - table["title_years"].to_numpy(dtype=float)
    return np.array([rates.get((int(c), int(r)), latest) if np.isfinite(c) else latest
                     for c, r in zip(cohort, review)], dtype=float)
