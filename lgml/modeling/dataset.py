"""Modelling data: load the panel a config names, build features, pick the task's rows and
split them by batch (application) year.

A firm-year belongs to exactly one batch year, so splitting by batch year never puts a
firm-year in two sets. Designation rows are the candidates with a known label
(``designated_next`` not NaN); growth rows are those with a next year (``growth_next`` not NaN).

Example:
    >>> from lgml.config import SplitConfig
    >>> t = pd.DataFrame({"batch_year": [2020, 2023, 2024, 2026]})
    >>> assign_split(t, SplitConfig(train_until=2022, valid=[2023], test=[2024])).tolist()
    ['train', 'valid', 'test', None]
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lgml.config import DataConfig, SplitConfig, TrainConfig

log = logging.getLogger(__name__)

TARGET = {"designation": "designated_next", "growth": "growth_next"}
ORACLE = {"designation": "p_designation", "growth": "expected_growth"}
SETS = ("train", "valid", "test")


class SplitError(ValueError):
    """The configured split leaves a set empty or with a single class."""


@dataclass(frozen=True)
class Source:
    """Raw inputs: the canonical panel, designation events and (optional) truth."""

    panel: pd.DataFrame
    events: pd.DataFrame
    truth: pd.DataFrame | None


@dataclass(frozen=True)
class ModelData:
    """The task's rows, split.

    Attributes:
        task: ``designation`` or ``growth``.
        features: Model input columns, in model order.
        sets: ``train``/``valid``/``test`` -> rows of the feature table (keys, features, flags,
            ``target`` and, when truth is known, ``oracle``), each a new frame.
        data_hash: sha256 of the panel and events the rows were built from.
    """

    task: str
    features: list[str]
    sets: dict[str, pd.DataFrame]
    data_hash: str

    @property
    def has_oracle(self) -> bool:
        return "oracle" in self.sets["test"].columns


def load_source(data: DataConfig) -> Source:
    """Simulate or read the panel, events and truth a config names.

    Raises:
        lgml.validate.ContractError, lgml.io.InputError: Files break the input contract.
    """
    if data.simulate is not None:
        from lgml.simulate import simulate

        sim = simulate(data.simulate.firms, seed=data.simulate.seed)
        return Source(sim.panel, sim.events, sim.truth)
    from lgml import io, validate

    panel = validate.load_panel(data.panel, units=data.units, encoding=data.encoding)
    events = validate.load_events(data.events, panel=panel, encoding=data.encoding)
    truth = io.read_table(data.truth, encoding=data.encoding) if data.truth is not None else None
    return Source(panel, events, truth)


def data_hash(source: Source) -> str:
    """sha256 over the panel's and events' values (row order and index excluded)."""
    digest = hashlib.sha256()
    for frame in (source.panel, source.events):
        ordered = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)
        digest.update(",".join(map(str, ordered.columns)).encode())
        digest.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def assign_split(table: pd.DataFrame, split: SplitConfig) -> pd.Series:
    """Set name (``train``, ``valid``, ``test``) of each row by its ``batch_year``; None for
    batch years in no set (before ``train_from``, or after ``train_until`` but in neither list)."""
    batch = table["batch_year"].to_numpy()
    first = batch.min(initial=split.train_until) if split.train_from is None else split.train_from
    names = np.select([(batch >= first) & (batch <= split.train_until), np.isin(batch, split.valid),
                       np.isin(batch, split.test)], ["train", "valid", "test"], default="")
    return pd.Series(names, index=table.index, dtype=object).replace("", None)


def task_rows(table: pd.DataFrame, task: str, truth: pd.DataFrame | None = None) -> pd.DataFrame:
    """Labelled rows of ``task`` with the target renamed ``target`` and, when ``truth`` is
    given, the true probability / expected growth as ``oracle``."""
    rows = table[table[TARGET[task]].notna()].rename(columns={TARGET[task]: "target"})
    if truth is not None:
        oracle = truth[["firm_id", "year", ORACLE[task]]].rename(columns={ORACLE[task]: "oracle"})
        rows = rows.merge(oracle.astype({"firm_id": rows["firm_id"].dtype}), on=["firm_id", "year"],
                          how="left", validate="one_to_one")
        if rows["oracle"].isna().any():
            log.warning("truth lacks %d of %d rows; oracle metrics use the rows it covers",
                        int(rows["oracle"].isna().sum()), len(rows))
    return rows.reset_index(drop=True)


def split_rows(rows: pd.DataFrame, split: SplitConfig) -> dict[str, pd.DataFrame]:
    """``train``/``valid``/``test`` frames of ``rows`` by batch year.

    Raises:
        SplitError: A set is empty.
    """
    which = assign_split(rows, split)
    sets = {name: rows[which == name].reset_index(drop=True) for name in SETS}
    for name, frame in sets.items():
        if frame.empty:
            years = sorted(rows["batch_year"].unique().tolist())
            raise SplitError(f"split '{name}' has no labelled rows; batch years with labels: {years}")
    return sets


def feature_list(table: pd.DataFrame) -> list[str]:
    """Model input columns: every feature of the table, in :data:`FEATURE_GROUPS` order."""
    from lgml.features import feature_columns

    return feature_columns(table)


def model_data(source: Source, config: TrainConfig) -> ModelData:
    """Features, task rows and split for ``config``.

    Raises:
        SplitError: A set is empty or (designation) has a single class.
    """
    from lgml.features import build_features

    table = build_features(source.panel, source.events)
    rows = task_rows(table, config.task, source.truth)
    sets = split_rows(rows, config.split)
    if config.task == "designation":
        for name, frame in sets.items():
            if frame["target"].nunique() < 2:
                raise SplitError(f"split '{name}' has a single class ({frame['target'].iloc[0]:.0f} only)")
    return ModelData(config.task, feature_list(table) + list(config.extra_features), sets, data_hash(source))


def model_frame(table: pd.DataFrame, features: list[str], levels: dict[str, list[str]]) -> pd.DataFrame:
    """LightGBM input: ``features`` in order, categoricals cast to the fixed ``levels``,
    everything else as float.

    Args:
        table: DataFrame of shape (n_rows, >= n_features).
        features: Column names in model order.
        levels: Category levels per categorical feature.

    Returns:
        A new DataFrame of shape (n_rows, n_features).

    Raises:
        lgml.modeling.bundle.BundleInputError: Missing columns, unseen category levels (with
            counts) or non-numeric values; nothing is silently turned into NaN.
    """
    from lgml.modeling.bundle import BundleInputError

    problems: list[str] = []
    missing = [c for c in features if c not in table.columns]
    if missing:
        problems.append(f"missing column(s) ({len(missing)}): {', '.join(missing)}")
    columns: dict[str, pd.Series] = {}
    for name in (c for c in features if c not in missing):
        col = table[name]
        if name in levels:
            columns[name], problem = _as_category(col, levels[name])
        else:
            columns[name], problem = _as_float(col)
        if problem:
            problems.append(f"{name}: {problem}")
    if problems:
        raise BundleInputError("table does not fit the model:\n  " + "\n  ".join(problems))
    return pd.DataFrame(columns, index=table.index)[features]


def lightgbm_matrix(X: pd.DataFrame, pandas_categorical: list[list[Any]] | None) -> np.ndarray:
    """The row-major float matrix LightGBM predicts from, as its own pandas conversion builds
    it: categoricals as codes of the model's levels (``booster.pandas_categorical``, missing
    -> NaN), everything else as float64. Row-major matters: LightGBM's own conversion yields a
    column-major array, which it predicts from about 20% more slowly.

    Args:
        X: Model input frame of shape (n_rows, n_features) (:func:`model_frame` output).
        pandas_categorical: Category lists of the categorical columns, in column order.

    Returns:
        C-contiguous float64 array of shape (n_rows, n_features).
    """
    levels = iter(pandas_categorical or [])
    out = np.empty(X.shape, dtype=np.float64)
    for j, name in enumerate(X.columns):
        col = X[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = pd.Categorical(col, categories=next(levels)).codes.astype(np.float64)
            codes[codes < 0] = np.nan
            out[:, j] = codes
        else:
            out[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _as_category(col: pd.Series, levels: list[str]) -> tuple[pd.Series, str | None]:
    values = col.astype(object).where(col.notna(), None)
    codes = pd.Index(levels).get_indexer(values)
    cast = pd.Series(pd.Categorical.from_codes(codes, categories=levels), index=col.index, name=col.name)
    unseen = values[(codes < 0) & values.notna().to_numpy()]
    if unseen.empty:
        return cast, None
    counts = unseen.astype(str).value_counts()
    shown = ", ".join(f"{k!r} x{v}" for k, v in counts.head(10).items())
    more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
    return cast, f"{len(unseen)} row(s) with unseen level(s) {shown}{more}"


def _as_float(col: pd.Series) -> tuple[pd.Series, str | None]:
    try:
        return col.astype(float), None
    except (TypeError, ValueError):
        bad = pd.to_numeric(col, errors="coerce").isna() & col.notna()
        examples = ", ".join(repr(v) for v in col[bad].astype(str).unique()[:5])
        return col, f"{int(bad.sum())} row(s) not numeric (e.g. {examples})"


def class_balance(y: np.ndarray) -> float:
    """Negatives per positive (LightGBM ``scale_pos_weight``)."""
    pos = float(np.sum(y == 1))
    return float(np.sum(y == 0)) / max(pos, 1.0)
