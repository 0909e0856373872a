"""Pass 2 of ``lgml score``: score the buckets in this process or on Dask workers.

A bucket holds every window row of its firms (see :mod:`lgml.score.stream`), so it is scored
alone by :class:`ScoringJob` -- features, then :func:`lgml.score.core.predict_rows`. The job is
small and picklable: Dask workers get bundle paths and load the bundles themselves
(:func:`bundle_at`), never boosters. Part files are written and read through :mod:`lgml.io`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lgml import streaming
from lgml.features import feature_rows
from lgml.schema import PANEL_COLUMNS, canonical_rows, dtype_of
from lgml.score.core import predict_rows, with_identity
from lgml.score.stream import duplicate_problems, read_bucket, release_memory
from lgml.validate import ContractError

ENGINES = ("local", "dask")


@functools.lru_cache(maxsize=8)
def bundle_at(path: str, sha256: str):
    """A bundle loaded once per process (Dask workers load from the folder, never a pickle),
    checked to be the model the client loaded.

    Raises:
        lgml.modeling.bundle.BundleError: The folder's model is not the one of ``sha256``.
    """
    from lgml.modeling.bundle import BundleError, load_bundle

    bundle = load_bundle(path)
    if bundle.metadata.get("model_sha256") != sha256:
        raise BundleError(f"{path} changed while scoring (model sha256 {bundle.metadata.get('model_sha256')}, "
                          f"expected {sha256})")
    return bundle


def bundle_identity(bundle: Any) -> tuple[str, str]:
    """``(folder, model sha256)``: what :func:`bundle_at` needs to load ``bundle`` again."""
    return str(bundle.path), str(bundle.metadata.get("model_sha256"))


@dataclass(frozen=True)
class Loaded:
    """The bundles as loaded in this process (never shipped to Dask workers).

    Attributes:
        bundle: The primary designation bundle.
        growth: The growth bundle or None.
        review: The review bundle or None.
        others: Designation bundles of the other horizons.
    """

    bundle: Any
    growth: Any = None
    review: Any = None
    others: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ScoringJob:
    """Everything a bucket's scoring needs besides its rows; small and picklable, so that Dask
    workers get paths (and load the bundles themselves), never boosters.

    Attributes:
        model: Designation bundle folder and model sha256.
        growth: Growth bundle folder and model sha256, or None.
        events: Designation events, or None.
        context: Province/sector records the features use.
        year: Fiscal year scored, or None for each firm's latest.
        explain: Add the explanation columns.
        source: The input, named in error messages.
        macro_growth: The growth level given for the growth model, or None (its default).
        review: Review bundle folder and model sha256, or None.
        others: Folder and model sha256 of each designation bundle of another horizon.
    """

    model: tuple[str, str]
    growth: tuple[str, str] | None
    events: pd.DataFrame | None
    context: pd.DataFrame | None
    year: int | None
    explain: bool
    source: str
    macro_growth: float | None = None
    review: tuple[str, str] | None = None
    others: tuple[tuple[str, str], ...] = ()

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Check a bucket's keys (its rows came from different chunks) and build the feature
        rows of its scored years."""
        problems = duplicate_problems(frame)
        if problems:
            raise ContractError(problems, self.source)
        return feature_rows(frame, events=self.events, context=self.context, year=self.year)

    def loaded(self) -> Loaded:
        """Every bundle of the job, loaded from its folder once per process (:func:`bundle_at`)."""
        return Loaded(bundle_at(*self.model), bundle_at(*self.growth) if self.growth is not None else None,
                      bundle_at(*self.review) if self.review is not None else None,
                      tuple(bundle_at(*other) for other in self.others))

    def predict(self, table: pd.DataFrame, models: Loaded | None = None) -> pd.DataFrame:
        """:func:`predict_rows`; without ``models`` the bundles are loaded from their folders,
        once per process."""
        models = models if models is not None else self.loaded()
        return predict_rows(table, models.bundle, growth=models.growth, history_known=self.events is not None,
                            explain=self.explain, macro_growth=self.macro_growth, review=models.review,
                            others=models.others)

    def score(self, frame: pd.DataFrame, models: Loaded | None = None) -> pd.DataFrame:
        """Features then predictions of one bucket (see :func:`lgml.score.core.score_rows`)."""
        return with_identity(self.predict(self.features(frame), models), frame)


def score_local(buckets: Sequence[Path] | Sequence[pd.DataFrame], out: Path | None, job: ScoringJob, models: Loaded,
                progress: Callable[[int], None] | None = None) -> list[pd.DataFrame]:
    """Score bucket after bucket in this process: one scored part file per bucket in ``out``,
    or, with ``out=None``, the scored parts returned."""
    parts = []
    for i, bucket in enumerate(buckets):
        release_memory()
        scored = job.score(read_bucket(bucket), models)
        if out is None:
            parts.append(scored)
        else:
            streaming.write_part(scored, out, i)
        if progress is not None:
            progress(i + 1)
    return parts


def _score_partition(frame: pd.DataFrame, job: ScoringJob) -> pd.DataFrame:
    return job.score(canonical_rows(frame))


@contextlib.contextmanager
def dask_client(scheduler: str | None) -> Iterator[Any]:
    """A Dask client on ``scheduler`` (``tcp://host:8786``), or on a LocalCluster of two
    single-threaded worker processes, closed on exit."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


def score_dask(buckets: Sequence[Path], out: Path, job: ScoringJob, models: Loaded, scheduler: str | None) -> None:
    """Score the buckets as the partitions of a Dask dataframe, one partition per bucket file.

    Category levels are fixed (the contract's) before any partition is scored, and workers
    load the bundles from their folders: only paths, events and context are shipped. The
    output's schema comes from scoring one firm here.
    """
    sample = read_bucket(buckets[0])
    meta = job.score(sample[sample["firm_id"] == sample["firm_id"].iloc[0]], models).iloc[:0]
    with dask_client(scheduler):
        ddf = streaming.dask_parts(buckets)
        if ddf.npartitions != len(buckets):  # a firm's rows must stay in one partition
            raise RuntimeError(f"dask split {len(buckets)} bucket files into {ddf.npartitions} partitions")
        ddf = ddf.astype({c.name: dtype_of(c) for c in PANEL_COLUMNS if c.kind == "category"})
        scored = ddf.map_partitions(_score_partition, job, meta=meta, align_dataframes=False)
        streaming.write_dask_parts(scored, out)


def score_buckets(engine: str, buckets: Sequence[Path] | Sequence[pd.DataFrame], work: Path, job: ScoringJob,
                  models: Loaded, *, scheduler: str | None = None,
                  progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Pass 2 on ``engine``: every bucket scored, the scored rows (one per firm) as one frame.

    Args:
        engine: ``local`` (this process) or ``dask``.
        buckets: Bucket files, or (local engine only) one bucket held in memory.
        work: The work folder; scored parts go to ``work/scored``.
        job: What every bucket's scoring needs besides its rows.
        models: The bundles, as loaded here.
        scheduler: Dask scheduler address; None starts a LocalCluster.
        progress: Called with the buckets scored so far.

    Returns:
        Unranked scored rows, in bucket order.
    """
    report = progress or (lambda n: None)
    parts = streaming.new_folder(work / "scored")
    report(0)
    if engine == "dask":
        score_dask(buckets, parts, job, models, scheduler)
        report(len(buckets))
        return streaming.read_parts(parts)
    in_memory = not isinstance(buckets[0], Path)
    held = score_local(buckets, None if in_memory else parts, job, models, progress=report)
    return pd.concat(held, ignore_index=True) if in_memory else streaming.read_parts(parts)
