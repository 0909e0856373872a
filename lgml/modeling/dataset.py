"""The modelling dataset: load the panel a config names, build features, pick the task's rows
and split them by batch (application) year (the out-of-time split). Model-input encoding lives
in :mod:`lgml.modeling.matrix`.

A firm-year belongs to exactly one batch year, so splitting by batch year never puts a
firm-year in two sets. Designation rows are the candidates with a known label
(``designated_next`` not NaN, or with ``horizon`` h > 1 :func:`lgml.features.designated_within`
over batches t+1 .. t+h); growth rows are those with a next year (``growth_next`` not NaN);
review rows are the title holders re-reviewed in batch t + 1 with a known outcome
(``review_passed`` not NaN). A horizon-h row is labelled by batches up to batch_year + h - 1, so
training and validation rows whose window reaches the first test batch are left out (purged):
the test batches stay out of time.

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

TARGET = {"designation": "designated_next", "growth": "growth_next", "review": "review_passed"}
ORACLE = {"designation": "p_designation", "growth": "expected_growth", "review": "p_review_pass"}
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
        task: ``designation``, ``growth`` or ``review``.
        features: Model input columns, in model order.
        sets: ``train``/``valid``/``test`` -> rows of the feature table (keys, features, flags,
            ``target`` and, when truth is known, ``oracle``), each a new frame.
        data_hash: sha256 of the panel and events the rows were built from.
    """

    task: str
    features: list[str]
    sets: dict[str, pd.DataFrame]
    data_hash: str
    horizon: int = 1
    purged: int = 0


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


def task_rows(table: pd.DataFrame, task: str, truth: pd.DataFrame | None = None, *,
              events: pd.DataFrame | None = None, horizon: int = 1) -> pd.DataFrame:
    """Labelled rows of ``task`` with the target renamed ``target`` and, when ``truth`` is
    given, the true probability / expected growth as ``oracle``.

    With ``horizon`` > 1 (designation) the target is :func:`lgml.features.designated_within`
    of ``events``; the simulator's truth is the one-batch probability, so such rows get no
    oracle."""
    if task == "designation" and horizon > 1:
        from lgml.features import designated_within

        table = table.assign(designated_next=designated_within(table, events, horizon).to_numpy())
    rows = table[table[TARGET[task]].notna()].rename(columns={TARGET[task]: "target"})
    if truth is not None and (task != "designation" or horizon == 1):
        if ORACLE[task] not in truth.columns:
            log.warning("truth has no %s column; no oracle for task %s", ORACLE[task], task)
            return rows.reset_index(drop=True)
        oracle = truth[["firm_id", "year", ORACLE[task]]].rename(columns={ORACLE[task]: "oracle"})
        rows = rows.merge(oracle.astype({"firm_id": rows["firm_id"].dtype}), on=["firm_id", "year"],
                          how="left", validate="one_to_one")
        if rows["oracle"].isna().any():
            log.warning("truth lacks %d of %d rows; oracle metrics use the rows it covers",
                        int(rows["oracle"].isna().sum()), len(rows))
    elif truth is not None:
        log.info("no oracle for horizon %d: the truth table holds one-batch probabilities", horizon)
    return rows.reset_index(drop=True)


def purge_overlap(sets: dict[str, pd.DataFrame], horizon: int) -> tuple[dict[str, pd.DataFrame], int]:
    """Drop the training and validation rows whose label window (batches batch_year ..
    batch_year + horizon - 1) reaches the first test batch; returns the sets and the rows
    dropped."""
    if horizon == 1:
        return sets, 0
    first_test = int(sets["test"]["batch_year"].min())
    out, dropped = dict(sets), 0
    for name in ("train", "valid"):
        frame = sets[name]
        keep = frame["batch_year"].to_numpy() + horizon - 1 < first_test
        dropped += int((~keep).sum())
        if not keep.all():
            late = sorted(int(b) for b in frame.loc[~keep, "batch_year"].unique())
            log.warning("horizon %d: %d %s rows of batch(es) %s are labelled by batches from %d on, the first "
                        "test batch, and are left out", horizon, int((~keep).sum()), name, late, first_test)
        out[name] = frame[keep].reset_index(drop=True)
    return out, dropped


def split_rows(rows: pd.DataFrame, split: SplitConfig) -> dict[str, pd.DataFrame]:
    """``train``/``valid``/``test`` frames of ``rows`` by batch year.

    Raises:
        SplitError: A set is empty.
    """
    which = assign_split(rows, split)
    sets = {name: rows[which == name].reset_index(drop=True) for name in SETS}
    check_sets(sets, rows)
    return sets


def check_sets(sets: dict[str, pd.DataFrame], rows: pd.DataFrame, horizon: int = 1) -> None:
    """Raise :class:`SplitError` naming the first empty set and the batch years with labels."""
    for name, frame in sets.items():
        if frame.empty:
            years = sorted(rows["batch_year"].unique().tolist())
            extra = (f"; with horizon {horizon} a training or validation batch must end its window "
                     f"(batch + {horizon - 1}) before the first test batch" if horizon > 1 else "")
            raise SplitError(f"split '{name}' has no labelled rows; batch years with labels: {years}{extra}")


def model_data(source: Source, config: TrainConfig) -> ModelData:
    """Features, task rows and split for ``config``.

    Raises:
        SplitError: A set is empty or (designation) has a single class.
    """
    from lgml.config import BINARY_TASKS
    from lgml.features import REVIEW_FEATURES, build_features, feature_columns

    table = build_features(source.panel, source.events)
    rows = task_rows(table, config.task, source.truth, events=source.events, horizon=config.horizon)
    sets = split_rows(rows, config.split)
    sets, purged = purge_overlap(sets, config.horizon)
    check_sets(sets, rows, config.horizon)
    if config.task in BINARY_TASKS:
        for name, frame in sets.items():
            if frame["target"].nunique() < 2:
                raise SplitError(f"split '{name}' has a single class ({frame['target'].iloc[0]:.0f} only)")
    features = feature_columns(table, config.criteria_features) + list(config.extra_features)
    if config.task == "review":
        features += list(REVIEW_FEATURES)
    return ModelData(config.task, features, sets, data_hash(source), config.horizon, purged)
