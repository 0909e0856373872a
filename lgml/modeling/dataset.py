"""The modelling dataset: load the panel a config names, build features, pick the task's rows
and split them by batch (application) year (the out-of-time split). Model-input encoding lives
in :mod:`lgml.modeling.matrix`.

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

    panel = validate.load_panel(data.panel, units=data.units, encoding=data.encoding, sheet=data.sheet)
    events = validate.load_events(data.events, panel=panel, encoding=data.encoding, sheet=data.sheet)
    truth = io.read_table(data.truth, encoding=data.encoding, sheet=data.sheet) if data.truth is not None else None
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


def model_data(source: Source, config: TrainConfig) -> ModelData:
    """Features, task rows and split for ``config``.

    Raises:
        SplitError: A set is empty or (designation) has a single class.
    """
    from lgml.features import build_features, feature_columns

    table = build_features(source.panel, source.events)
    rows = task_rows(table, config.task, source.truth)
    sets = split_rows(rows, config.split)
    if config.task == "designation":
        for name, frame in sets.items():
            if frame["target"].nunique() < 2:
                raise SplitError(f"split '{name}' has a single class ({frame['target'].iloc[0]:.0f} only)")
    features = feature_columns(table, config.criteria_features) + list(config.extra_features)
    return ModelData(config.task, features, sets, data_hash(source))
