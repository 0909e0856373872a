"""Score firms with a trained model bundle: one row per firm, streamed from a panel of any size.

A firm-year's features read its own fiscal year t and the two before (t-1, t-2), and those
rows may sit anywhere in the input. :func:`score_file` therefore works in passes over files,
holding at most one chunk of the input (plus one bucket) in memory at a time. Small inputs skip
the files: a Parquet input of up to ``ONE_PASS_FACTOR * IN_MEMORY_ROWS`` rows scored for its
latest years is read once instead of once per pass, and a window of up to ``IN_MEMORY_ROWS``
rows stays in memory as a single bucket.

0. **keys**: stream only ``firm_id`` and ``year`` and find each firm's scored year (its latest
   fiscal year, or ``year`` when given).
1. **window**: stream every column chunk by chunk (Parquet row groups, CSV ``chunksize``), keep
   the rows of the scored year and the two before, check them against the input contract and
   spill them by ``hash(firm_id)`` into K bucket files, so that all rows of a firm share a
   bucket. Rows outside the window are read but neither checked nor kept.
2. **score**: per bucket, :func:`score_rows` builds the features of the scored rows with
   :func:`lgml.features.build_features` (the two earlier years only supply lags; the bundle's
   province/sector context) and predicts them. The same function runs in-process
   (``engine="local"``) or on Dask workers (``engine="dask"``), which load the bundle from its
   folder.
3. **rank**: the scored rows (one per firm) are ranked within province and nationally and
   written to the output through a temporary file renamed on success, so an interrupted run
   leaves no partial output.

Probabilities are calibrated probabilities of designation in batch t + 1; growth is the
expected log revenue growth ``log(revenue[t+1] / revenue[t])``; contributions are in log-odds.

Example:
    >>> result = score_file("models/lgml-designation", "panel.parquet", "scores.parquet")  # doctest: +SKIP
    >>> result.summary.head()  # doctest: +SKIP
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import functools
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lgml import io
from lgml.modeling.bundle import open_bundle
from lgml.features import LOOKBACK, feature_rows
from lgml.schema import PANEL_COLUMNS, PANEL_NAMES, canonical_rows, dtype_of
from lgml.schema import Problem
from lgml.validate import ContractError, conform_panel

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 200_000
THRESHOLDS = (0.5, 0.2, 0.1)
MAX_BUCKETS = 256  # bucket files open at once while spilling
MIN_BUCKET_ROWS = 50_000
OUTPUT_SUFFIXES = (".parquet", ".pq", ".csv")
WRITE_ROWS = 100_000  # rows per output row group / CSV block
GROUP_PREFIX = "shap_"
MIN_FLUSH_ROWS = 100_000  # spilled rows buffered before writing (about 30 MB)
IN_MEMORY_ROWS = 1_000_000  # window rows (about 300 MB) held in memory instead of bucket files
ONE_PASS_FACTOR = 2  # Parquet inputs up to this many times IN_MEMORY_ROWS are read into memory once
SPILL_COMPRESSION = "lz4"  # bucket files are read once, soon: speed over size


class ScoreError(ValueError):
    """Scoring cannot start or finish: wrong options, a model of the wrong task or that cannot
    be loaded, no firm to score."""


Progress = Callable[[str, int, "int | None"], None]
"""``progress(stage, done, total)``: stage ``keys``/``read`` (rows), ``score`` (buckets) or
``write`` (rows); ``total`` None when unknown."""


# ---------------------------------------------------------------------------------------------
# Models


@functools.lru_cache(maxsize=4)
def _bundle_at(path: str, sha256: str):
    """A bundle loaded once per process (Dask workers load from the folder, never a pickle),
    checked to be the model the client loaded."""
    from lgml.modeling.bundle import BundleError, load_bundle

    bundle = load_bundle(path)
    if bundle.metadata.get("model_sha256") != sha256:
        raise BundleError(f"{path} changed while scoring (model sha256 {bundle.metadata.get('model_sha256')}, "
                          f"expected {sha256})")
    return bundle


def history_notice(bundle: Any, events: pd.DataFrame | None, source: str | None = None) -> str:
    """One line saying which designation history the scores saw.

    With ``events``: their source, batch span and count. Without: that title holders are
    unknown, and which history the bundle's training data held, as far as its metadata says
    (the batches it was trained and tested on, its data hash).
    """
    if events is not None:
        span = _span(events["batch_year"]) if len(events) else "none"
        return f"events {source or 'given'}: batches {span}, {len(events):,} designations"
    meta = bundle.metadata
    known = []
    split = meta.get("split") or {}
    batches = [*(split.get("valid") or []), *(split.get("test") or [])]
    if batches:
        known.append(f"labels of batches up to {max(batches)}")
    if meta.get("data_hash"):
        known.append(f"data sha256 {str(meta['data_hash'])[:12]}")
    trained = ", ".join(known) if known else "not recorded in the bundle"
    return f"none given: title holders unknown, history features assume none (training data: {trained})"


def _span(years: Sequence[Any] | pd.Series) -> str:
    years = [int(y) for y in pd.Series(years).dropna()]
    if not years:
        return "none"
    return f"{min(years)}-{max(years)}" if min(years) != max(years) else str(min(years))


# ---------------------------------------------------------------------------------------------
# Scoring whole firms (pure; runs in-process or on Dask workers)


def score_rows(panel: pd.DataFrame, bundle: Any, *, growth: Any = None, events: pd.DataFrame | None = None,
               context: pd.DataFrame | None = None, year: int | None = None, explain: bool = False) -> pd.DataFrame:
    """Score whole firms: features of each firm's scored year, then predictions.

    Title holders (known from ``events``) get no designation probability: they are not
    candidates for the next batch. They are still scored for growth.

    Args:
        panel: Contract rows of whole firms, shape (n_rows, n_columns); see :func:`feature_rows`.
        bundle: Designation bundle (``lgml.modeling.bundle.Bundle``).
        growth: Optional growth bundle.
        events: Designation events; None when no history is known (``holds_title`` is then NA).
        context: Province/sector records; None uses the bundle's own (or, for bundles without
            one, the records of ``panel`` itself, which then depend on the rows scored together).
        year: Fiscal year to score; None scores each firm's latest year.
        explain: Add grouped contributions (``shap_<dimension>``, log-odds) and ``reasons``.

    Returns:
        DataFrame with one row per scored firm: ``firm_id``, ``year`` (fiscal year t),
        ``batch_year`` (t + 1), ``province``, ``holds_title``, ``probability`` (calibrated,
        0-1; NaN for title holders), ``growth`` (expected log growth) and ``growth_p10``/
        ``growth_p90`` with a growth bundle (with quantile models), then the explanation
        columns. Unranked: see :func:`rank_scores`.

    Raises:
        lgml.modeling.bundle.BundleInputError: The features do not fit the model (missing
            columns, unseen category levels, with counts).
    """
    context = bundle.context if context is None else context
    table = feature_rows(panel, events=events, context=context, year=year)
    return predict_rows(table, bundle, growth=growth, history_known=events is not None, explain=explain)


def predict_rows(table: pd.DataFrame, bundle: Any, *, growth: Any = None, history_known: bool = True,
                 explain: bool = False) -> pd.DataFrame:
    """Predictions for feature rows (the second half of :func:`score_rows`).

    Args:
        table: Feature rows of the scored years, shape (n_firms, n_columns).
        bundle: Designation bundle.
        growth: Optional growth bundle.
        history_known: Whether the features saw designation events (else ``holds_title`` is NA
            and every firm is a candidate).
        explain: Add the explanation columns.

    Returns:
        See :func:`score_rows`.
    """
    holders = table["holds_title"].to_numpy(dtype=bool) if history_known else np.zeros(len(table), bool)
    flag = pd.array(holders, dtype="boolean")
    out = pd.DataFrame({
        "firm_id": table["firm_id"].astype("str"), "year": table["year"].astype("int64"),
        "batch_year": table["batch_year"].astype("int64"), "province": table["province"].astype("str"),
        "holds_title": flag if history_known else pd.array([pd.NA] * len(table), dtype="boolean"),
    })
    candidates = table[~holders]
    probability = np.full(len(table), np.nan)
    matrix = np.empty((0, len(bundle.features)))
    raw = np.empty(0)
    if len(candidates):
        matrix = bundle.model_matrix(candidates)
        raw = bundle.raw_from_matrix(matrix)
        probability[~holders] = bundle.calibrator.transform(raw)
    out["probability"] = probability
    if growth is not None:
        out = out.assign(**_growth_columns(growth, table))
    if explain:
        out = out.assign(**_explain_columns(bundle, candidates, ~holders, len(table), raw, matrix))
    return out


def _growth_columns(growth: Any, table: pd.DataFrame) -> dict[str, np.ndarray]:
    cols = {"growth": np.asarray(growth.predict(table), dtype=float) if len(table) else np.empty(0)}
    if getattr(growth, "quantile_boosters", None):
        interval = growth.predict_interval(table) if len(table) else np.empty((0, 2))
        cols.update(growth_p10=interval[:, 0], growth_p90=interval[:, 1])
    return cols


def _explain_columns(bundle: Any, candidates: pd.DataFrame, where: np.ndarray, n: int,
                     raw: np.ndarray, matrix: np.ndarray) -> dict[str, Any]:
    """``shap_<dimension>`` (log-odds summed per criterion dimension) and ``reasons`` (top 3)
    for the candidate rows, NaN/empty for the others."""
    from lgml.explain.contributions import contributions, group_contributions
    from lgml.explain.reasons import top_reasons

    groups_map = bundle.metadata.get("feature_groups") or None
    if len(candidates):
        contrib, _ = contributions(bundle, candidates, raw=raw, matrix=matrix)
        groups = group_contributions(contrib, groups_map)
        reasons = top_reasons(contrib, candidates, k=3).to_numpy(dtype=object)
    else:
        groups = group_contributions(pd.DataFrame(columns=bundle.features, dtype=float), groups_map)
        reasons = np.empty(0, dtype=object)
    cols: dict[str, Any] = {}
    for name in groups.columns:
        values = np.full(n, np.nan)
        values[where] = groups[name].to_numpy(dtype=float)
        cols[f"{GROUP_PREFIX}{name}"] = values
    text = np.full(n, None, dtype=object)
    text[where] = reasons
    cols["reasons"] = pd.array(text, dtype="str")
    return cols


def rank_scores(scored: pd.DataFrame) -> pd.DataFrame:
    """Add ranks and percentiles of ``probability`` among candidates, nationally and within
    province.

    Ranks: 1 = most likely; ties share the best rank. Percentile: percent of the candidates of
    the same scope scoring at or below the firm (the top firm has 100). Title holders (no
    probability) get neither.

    Args:
        scored: Output of :func:`score_rows`, any number of rows, any order. Not modified.

    Returns:
        A new frame with ``rank_national``, ``percentile_national``, ``rank_province`` and
        ``percentile_province`` (ranks as nullable integers).
    """
    p = scored["probability"]
    by = scored.groupby("province", sort=False)["probability"]
    return scored.assign(
        rank_national=p.rank(ascending=False, method="min").astype("Int64"),
        percentile_national=100.0 * p.rank(method="max", pct=True),
        rank_province=by.rank(ascending=False, method="min").astype("Int64"),
        percentile_province=100.0 * by.rank(method="max", pct=True),
    )


def province_summary(scored: pd.DataFrame, thresholds: Sequence[float] = THRESHOLDS) -> pd.DataFrame:
    """Per province (and a final ``All`` row): firms scored, title holders, candidates,
    expected designations (sum of probabilities), candidates at or above each threshold, the
    highest probability and, with growth scores, the mean expected log growth.

    Args:
        scored: Scored rows (``province``, ``probability``, ``holds_title``, maybe ``growth``).
        thresholds: Probability thresholds counted.

    Returns:
        DataFrame, one row per province sorted by expected designations (descending), then ``All``.
    """
    frame = pd.DataFrame({"province": scored["province"].astype("str"), "p": scored["probability"],
                          "holder": scored["holds_title"].fillna(False).astype(bool)})
    aggs = {"firms": ("p", "size"), "title_holders": ("holder", "sum"), "candidates": ("p", "count"),
            "expected_designations": ("p", "sum")}
    for t in thresholds:
        frame[f"p>={t:g}"] = frame["p"] >= t
        aggs[f"p>={t:g}"] = (f"p>={t:g}", "sum")
    aggs["max_probability"] = ("p", "max")
    if "growth" in scored.columns:
        frame["growth"] = scored["growth"].to_numpy()
        aggs["mean_growth"] = ("growth", "mean")
    per = frame.groupby("province").agg(**aggs).reset_index()
    per = per.sort_values(["expected_designations", "province"], ascending=[False, True], kind="stable")
    total = frame.assign(province="All").groupby("province").agg(**aggs).reset_index()
    out = pd.concat([per, total], ignore_index=True)
    counts = ["firms", "title_holders", "candidates", *(f"p>={t:g}" for t in thresholds)]
    return out.astype({c: "int64" for c in counts})


def score_panel(panel: pd.DataFrame, bundle: Any, *, growth: Any = None, events: pd.DataFrame | None = None,
                context: pd.DataFrame | None = None, year: int | None = None,
                explain: bool = False) -> pd.DataFrame:
    """Score a canonical panel held in memory (see :func:`score_rows`) and rank the firms.

    Example:
        >>> scores = score_panel(sim.panel, bundle, events=sim.events)  # doctest: +SKIP
    """
    scored = score_rows(panel, bundle, growth=growth, events=events, context=context, year=year, explain=explain)
    return _finish(rank_scores(scored), bundle, growth, history_notice(bundle, events))


def _finish(ranked: pd.DataFrame, bundle: Any, growth: Any, history: str) -> pd.DataFrame:
    """Identity columns and the output column order; rows by national rank, then firm."""
    extra = {"model": bundle.name, "model_version": bundle.version}
    if growth is not None:
        extra.update(growth_model=growth.name, growth_model_version=growth.version)
    extra["designation_history"] = history
    front = ["firm_id", "year", "batch_year", "province", "holds_title", "probability", "rank_national",
             "percentile_national", "rank_province", "percentile_province"]
    rest = [c for c in ranked.columns if c not in front]
    out = ranked[front + rest].assign(**{k: pd.array([v] * len(ranked), dtype="str") for k, v in extra.items()})
    order = np.lexsort((out["firm_id"].to_numpy(dtype=object),
                        out["rank_national"].to_numpy(dtype="float64", na_value=np.inf)))
    return out.iloc[order].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Reading tables in chunks


@dataclass(frozen=True)
class TableSource:
    """A panel file or folder opened for streaming.

    Attributes:
        path: As given.
        kind: ``parquet`` or ``csv``.
        files: Parquet files (a folder's ``*.parquet``/``*.pq`` files in name order); the CSV file.
        headers: Column headers as in the file.
        encoding: CSV encoding (detected unless given); None for Parquet.
        rows: Number of rows (Parquet metadata); None for CSV.
        table: The whole input as an Arrow table once :meth:`loaded` (small Parquet inputs are
            read once instead of once per pass); None while streamed from the files.
    """

    path: Path
    kind: str
    files: tuple[Path, ...]
    headers: tuple[str, ...]
    encoding: str | None = None
    rows: int | None = None
    table: Any = None

    def loaded(self) -> TableSource:
        """This Parquet source read into memory, or itself when its files cannot be joined
        into one table (they are then read file by file, each in its own schema)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            tables = [pq.read_table(f) for f in self.files]
            table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        except (OSError, ValueError, pa.ArrowException):
            return self
        return dataclasses.replace(self, table=table)

    @property
    def sep(self) -> str:
        return "\t" if self.path.suffix.lower() == ".tsv" else ","


def open_source(path: str | os.PathLike, encoding: str | None = None) -> TableSource:
    """Open a CSV file, a Parquet file or a folder of Parquet files for :func:`iter_chunks`.

    CSV is decoded as UTF-8 then GB18030 (as :func:`lgml.io.read_table`) unless ``encoding``
    is given; the whole file is checked before any chunk is used.

    Raises:
        lgml.io.InputError: Missing path, unknown format, undecodable file, no Parquet files.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise io.InputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".parquet", ".pq"):
        files = tuple(sorted(p for p in path.rglob("*") if p.suffix.lower() in (".parquet", ".pq"))) \
            if path.is_dir() else (path,)
        if not files:
            raise io.InputError(f"{path}: no .parquet files in the folder")
        try:
            metas = [pq.ParquetFile(f).metadata for f in files]
            headers = tuple(pq.ParquetFile(files[0]).schema_arrow.names)
        except Exception as exc:  # pyarrow raises many types; give one clear message
            raise io.InputError(f"{path}: cannot read as Parquet ({exc})") from exc
        return TableSource(path, "parquet", files, headers, rows=sum(m.num_rows for m in metas))
    if suffix in (".csv", ".txt", ".tsv"):
        enc = encoding or _detect_encoding(path)
        sep = "\t" if suffix == ".tsv" else ","
        try:
            headers = tuple(pd.read_csv(path, sep=sep, dtype=str, encoding=enc, nrows=0).columns)
        except LookupError as exc:
            raise io.InputError(f"{path}: unknown encoding {enc!r}") from exc
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise io.InputError(f"{path}: cannot read the CSV header ({exc})") from exc
        return TableSource(path, "csv", (path,), headers, encoding=enc)
    raise io.InputError(f"{path}: unknown table format {suffix!r} (use .csv or .parquet)")


def _may_hold_years(group: Any, header: str, first: float, last: float) -> bool:
    """False only when a row group's statistics show every year outside ``first..last`` (and
    none missing: rows with unreadable keys must reach the contract check)."""
    for i in range(group.num_columns):
        column = group.column(i)
        if column.path_in_schema != header:
            continue
        stats = column.statistics
        if (stats is None or not stats.has_min_max or not isinstance(stats.min, (int, float))
                or stats.null_count):
            return True
        return not (stats.max < first or stats.min > last)
    return True


def _detect_encoding(path: Path, block: int = 1 << 20) -> str:
    """The first of :data:`lgml.io.CSV_ENCODINGS` that decodes the whole file."""
    for enc in io.CSV_ENCODINGS:
        decoder = codecs.getincrementaldecoder(enc)()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(block), b""):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
            return enc
        except UnicodeDecodeError:
            continue
    raise io.InputError(f"{path}: cannot decode the file as {' and '.join(io.CSV_ENCODINGS)}; "
                        "pass the encoding explicitly")


def iter_chunks(source: TableSource, chunk_rows: int, columns: Sequence[str] | None = None,
                years: tuple[str, float, float] | None = None) -> Iterator[Any]:
    """Yield the table as Arrow tables of at most ``chunk_rows`` rows (CSV as text, Parquet
    typed as stored).

    Args:
        source: From :func:`open_source`.
        chunk_rows: Rows per chunk.
        columns: Headers to read; all when None.
        years: ``(year header, first, last)``: Parquet row groups whose year statistics lie
            wholly outside ``first..last`` are skipped (panels exported year by year).

    Raises:
        lgml.io.InputError: A malformed CSV line or unreadable Parquet file.
    """
    import pyarrow as pa

    if source.table is not None:
        table = source.table.select(list(columns)) if columns else source.table
        for start in range(0, table.num_rows, chunk_rows):
            yield table.slice(start, chunk_rows)
        return
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        for file in source.files:
            try:
                handle = pq.ParquetFile(file)
                # One reader per row group: a reader kept across a whole file holds on to memory.
                for group in range(handle.num_row_groups):
                    if years is not None and not _may_hold_years(handle.metadata.row_group(group), *years):
                        continue
                    for batch in handle.iter_batches(batch_size=chunk_rows, row_groups=[group],
                                                     columns=list(columns) if columns else None):
                        yield pa.Table.from_batches([batch])
            except (OSError, ValueError) as exc:
                raise io.InputError(f"{file}: cannot read as Parquet ({exc})") from exc
        return
    usecols = list(columns) if columns else None
    try:
        with pd.read_csv(source.path, sep=source.sep, dtype=str, encoding=source.encoding, keep_default_na=True,
                         usecols=usecols, chunksize=chunk_rows) as reader:
            for chunk in reader:
                yield pa.Table.from_pandas(chunk, preserve_index=False)
    except pd.errors.ParserError as exc:
        raise io.InputError(f"{source.path}: malformed CSV ({exc})") from exc


# ---------------------------------------------------------------------------------------------
# Pass 0: keys


def key_headers(headers: Sequence[str]) -> tuple[str | None, str | None]:
    """The input headers that :func:`lgml.validate.standardize` reads as ``firm_id`` and ``year``
    (the same header matching: aliases, unit suffixes, case; the first of repeated ones)."""
    from lgml.parsing import header_positions

    found = header_positions(headers, "panel")
    return tuple(headers[found[name][0]] if name in found else None for name in ("firm_id", "year"))


def raw_keys(chunk: Any, firm_header: str, year_header: str) -> Any:
    """Cheap keys of a raw chunk: ``firm_id`` as text as given, ``year`` as a float (null when
    not a plain number).

    Only used to pick rows: passes 0 and 1 key rows the same way, and rows are bucketed by
    their checked ``firm_id``. Variants of one firm's id (``" F1"`` and ``"F1"``) each keep
    their own last three years, which together cover the firm's window.

    Args:
        chunk: Arrow table of raw input columns.

    Returns:
        Arrow table ``firm_id`` (string), ``year`` (float64), one row per row of ``chunk``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    firm = chunk.column(firm_header)
    if pa.types.is_dictionary(firm.type):
        firm = firm.cast(firm.type.value_type)
    firm = firm.cast(pa.string())
    year = chunk.column(year_header)
    if pa.types.is_dictionary(year.type):
        year = year.cast(year.type.value_type)
    if pa.types.is_integer(year.type) or pa.types.is_floating(year.type):
        year = year.cast(pa.float64())
    else:
        try:
            year = pc.cast(pc.utf8_trim_whitespace(year.cast(pa.string())), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = pd.Series(year.to_pandas(), dtype="str").str.strip()
            year = pa.chunked_array([pa.array(pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64"),
                                              from_pandas=True)])
    return pa.table({"firm_id": firm, "year": year})


@dataclass(frozen=True)
class KeyIndex:
    """What pass 0 learnt about the firms (keyed by :func:`raw_keys`).

    Attributes:
        latest: Arrow table ``firm_id``, ``year``: each firm's latest fiscal year.
        year: The requested fiscal year, or None to score each firm's latest.
        window_rows: Rows in the scored windows (an upper bound when ``year`` is None).
        scored_firms: Firms with a row in the scored year.
    """

    latest: Any
    year: int | None
    window_rows: int
    scored_firms: int

    @property
    def firms(self) -> int:
        return self.latest.num_rows

    @functools.cached_property
    def years(self) -> tuple[float, float]:
        """First and last fiscal year any scored window holds."""
        import pyarrow.compute as pc

        if self.year is not None:
            return float(self.year - LOOKBACK), float(self.year)
        bounds = pc.min_max(self.latest.column("year")).as_py()
        return float(bounds["min"]) - LOOKBACK, float(bounds["max"])


def _latest(tables: list[Any]) -> Any:
    import pyarrow as pa

    # Single-threaded: Arrow's threaded hash aggregation is several times slower on these keys.
    merged = pa.concat_tables(tables).group_by("firm_id", use_threads=False).aggregate([("year", "max")])
    return merged.select(["firm_id", "year_max"]).rename_columns(["firm_id", "year"])


def build_key_index(key_chunks: Iterator[Any], year: int | None,
                    progress: Callable[[int], None] | None = None) -> KeyIndex:
    """Each firm's latest year from a stream of :func:`raw_keys` chunks.

    Partial maxima are folded whenever they outgrow the running result, so memory stays
    proportional to the number of firms whatever the row order.
    """
    import pyarrow.compute as pc

    latest = None
    pending: list[Any] = []
    pending_rows = window_rows = with_year = 0
    for keys in key_chunks:
        if progress is not None:
            progress(keys.num_rows)
        keys = keys.drop_null()
        pending.append(_latest([keys]))
        pending_rows += pending[-1].num_rows
        if year is not None:
            years = keys.column("year")
            with_year += pc.sum(pc.equal(years, float(year))).as_py() or 0
            in_window = pc.and_(pc.greater_equal(years, float(year - LOOKBACK)), pc.less_equal(years, float(year)))
            window_rows += pc.sum(in_window).as_py() or 0
        if pending_rows > max(latest.num_rows if latest is not None else 0, 1_000_000):
            latest, pending, pending_rows = _latest(([latest] if latest is not None else []) + pending), [], 0
    latest = _latest(([latest] if latest is not None else []) + pending) if pending or latest is None else latest
    if year is None:
        return KeyIndex(latest, None, (LOOKBACK + 1) * latest.num_rows, latest.num_rows)
    return KeyIndex(latest, year, window_rows, with_year)


def window_mask(keys: Any, index: KeyIndex) -> np.ndarray:
    """Rows of a chunk to keep: those in their firm's scored window (``t-2 .. t``), plus rows
    whose keys are unreadable (kept so that the contract check reports them).

    Args:
        keys: :func:`raw_keys` of the chunk.
        index: From :func:`build_key_index`.

    Returns:
        Boolean array, one per row.
    """
    import pyarrow.compute as pc

    year = keys.column("year").to_numpy()
    unreadable = np.isnan(year) | keys.column("firm_id").is_null().to_numpy(zero_copy_only=False)
    if index.year is not None:
        return unreadable | ((year <= index.year) & (year >= index.year - LOOKBACK))
    first, last = index.years
    keep = unreadable | ((year >= first) & (year <= last))  # a cheap bound before the look-up
    candidates = np.flatnonzero(keep & ~unreadable)
    where = pc.index_in(keys.column("firm_id").take(candidates), value_set=index.latest.column("firm_id"))
    target = index.latest.column("year").take(where).to_numpy()
    keep[candidates] = (year[candidates] <= target) & (year[candidates] >= target - LOOKBACK)
    return keep


# ---------------------------------------------------------------------------------------------
# Pass 1: window rows, checked and spilled into buckets


def bucket_of(firm_ids: pd.Series, n_buckets: int) -> np.ndarray:
    """Bucket number of each firm: a stable hash of ``firm_id`` modulo ``n_buckets``."""
    hashed = pd.util.hash_array(firm_ids.to_numpy(dtype=object))
    return (hashed % np.uint64(n_buckets)).astype(np.int64)


def spill_schema():
    """Arrow schema of the bucket files: the contract's canonical dtypes."""
    import pyarrow as pa

    kinds = {"string": pa.string(), "float": pa.float64(), "bool": pa.bool_(),
             "category": pa.dictionary(pa.int32(), pa.string())}
    fields = []
    for col in PANEL_COLUMNS:
        if col.kind == "int":
            fields.append(pa.field(col.name, pa.float64() if col.nullable else pa.int64()))
        else:
            fields.append(pa.field(col.name, kinds[col.kind]))
    return pa.schema(fields)


def merge_problems(problems: Sequence[Problem]) -> list[Problem]:
    """One problem per (column, rule) across chunks: counts summed, the first five examples."""
    merged: dict[tuple[str, str, str], Problem] = {}
    for p in problems:
        key = (p.table, p.column, p.rule)
        if key in merged:
            old = merged[key]
            merged[key] = Problem(p.table, p.column, p.rule, old.count + p.count, (old.examples + p.examples)[:5])
        else:
            merged[key] = p
    order = {c.name: i for i, c in enumerate(PANEL_COLUMNS)}
    return sorted(merged.values(), key=lambda p: order.get(p.column, len(order)))


class BucketWriter:
    """K Parquet files in ``folder``, one per bucket, filled chunk by chunk; or, with
    ``folder=None``, one bucket held in memory as a DataFrame (small inputs scored in this
    process).

    Rows are buffered (as Arrow) until ``flush_rows`` are held, then each bucket's rows are
    written as one row group, so that many small chunks do not make many tiny row groups.
    """

    def __init__(self, folder: Path | None, n_buckets: int, flush_rows: int):
        if folder is None and n_buckets != 1:
            raise ValueError(f"a bucket held in memory is the only one, not one of {n_buckets}")
        self.folder = folder
        self.n_buckets = n_buckets
        self.flush_rows = flush_rows
        self.schema = spill_schema()
        self._writers: dict[int, Any] = {}
        self._held: list[pd.DataFrame] = []
        self._buffers: dict[int, list[Any]] = {}
        self._buffered = 0

    def path(self, bucket: int) -> Path:
        return self.folder / f"bucket-{bucket:04d}.parquet"

    def write(self, frame: pd.DataFrame) -> None:
        """Add contract rows (canonical dtypes) to their buckets."""
        import pyarrow as pa

        if self.folder is None:
            self._held.append(frame)
            return
        buckets = bucket_of(frame["firm_id"], self.n_buckets)
        order = np.argsort(buckets, kind="stable")
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False).take(order)
        edges = np.searchsorted(buckets[order], np.arange(self.n_buckets + 1))
        for b in np.flatnonzero(np.diff(edges)):
            self._buffers.setdefault(int(b), []).append(table.slice(edges[b], edges[b + 1] - edges[b]))
        self._buffered += len(frame)
        if self._buffered >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for b, parts in sorted(self._buffers.items()):
            if b not in self._writers:
                self._writers[b] = pq.ParquetWriter(self.path(b), self.schema, compression=SPILL_COMPRESSION)
            self._writers[b].write_table(pa.concat_tables(parts))
        self._buffers, self._buffered = {}, 0

    def close(self) -> list[Path] | list[pd.DataFrame]:
        """Flush and close every file; the bucket files written (or the frames held), in
        bucket order."""
        try:
            self.flush()
        finally:
            for writer in self._writers.values():
                writer.close()
        if self.folder is None:
            held, self._held = self._held, []
            return [pd.concat(held, ignore_index=True)] if held else []
        return [self.path(b) for b in sorted(self._writers)]


def kept_chunks(source: TableSource, index: KeyIndex | None, keys: tuple[str | None, str | None], chunk_rows: int,
                progress: Callable[[int], None] | None = None) -> Iterator[Any]:
    """Stream ``source`` and yield its window rows (all rows when ``index`` is None) as Arrow
    tables of about ``chunk_rows`` rows, however few rows each input chunk keeps."""
    import pyarrow as pa

    held: list[Any] = []
    held_rows = rows = 0
    years = (keys[1], *index.years) if index is not None else None
    for chunk in iter_chunks(source, chunk_rows, years=years):
        rows += chunk.num_rows
        if index is not None:
            chunk = chunk.filter(window_mask(raw_keys(chunk, *keys), index))
        if chunk.num_rows:
            held.append(chunk)
            held_rows += chunk.num_rows
        if held_rows >= chunk_rows:
            yield pa.concat_tables(held, promote_options="permissive")
            held, held_rows = [], 0
        if progress is not None:
            progress(rows)
    if held:
        yield pa.concat_tables(held, promote_options="permissive")


def spill_window(chunks: Iterator[Any], writer: BucketWriter, *, units: str, source: str) -> None:
    """Check each chunk of window rows against the contract and spill it into ``writer``'s
    buckets.

    Raises:
        ContractError: Every problem of the rows, merged across chunks (at once when a column
            is missing or misnamed: every chunk would repeat it).
    """
    problems: list[Problem] = []
    for chunk in chunks:
        release_memory()
        try:
            frame = conform_panel(chunk.to_pandas(), units, source=source, sort=False)  # features sort
        except ContractError as exc:
            if any(not p.examples for p in exc.problems):
                raise ContractError(merge_problems(problems + exc.problems), source) from None
            problems += exc.problems
        else:
            if not problems:
                writer.write(frame[list(PANEL_NAMES)])
    if problems:
        raise ContractError(merge_problems(problems), source)


def duplicate_problems(frame: pd.DataFrame) -> list[Problem]:
    """The contract's key rule on a bucket, whose rows came from different chunks."""
    dup = frame.duplicated(["firm_id", "year"], keep=False)
    if not dup.any():
        return []
    from lgml.validate import check_panel

    return [p for p in check_panel(frame[dup.to_numpy()]) if p.rule == "must be unique"]


# ---------------------------------------------------------------------------------------------
# Pass 2: engines


def read_bucket(bucket: Path | pd.DataFrame) -> pd.DataFrame:
    """A bucket (file, or frame held in memory) as canonical contract rows."""
    import pyarrow.parquet as pq

    return canonical_rows(pq.read_table(bucket).to_pandas() if isinstance(bucket, Path) else bucket)


def _part_path(folder: Path, i: int) -> Path:
    return folder / f"part-{i:04d}.parquet"


def _write_part(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


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
    """

    model: tuple[str, str]
    growth: tuple[str, str] | None
    events: pd.DataFrame | None
    context: pd.DataFrame | None
    year: int | None
    explain: bool
    source: str

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Check a bucket's keys (its rows came from different chunks) and build the feature
        rows of its scored years."""
        problems = duplicate_problems(frame)
        if problems:
            raise ContractError(problems, self.source)
        return feature_rows(frame, events=self.events, context=self.context, year=self.year)

    def predict(self, table: pd.DataFrame, bundle: Any = None, growth: Any = None) -> pd.DataFrame:
        """:func:`predict_rows`; bundles not given are loaded from their folders, once per process."""
        bundle = bundle if bundle is not None else _bundle_at(*self.model)
        if growth is None and self.growth is not None:
            growth = _bundle_at(*self.growth)
        return predict_rows(table, bundle, growth=growth, history_known=self.events is not None,
                            explain=self.explain)

    def score(self, frame: pd.DataFrame, bundle: Any = None, growth: Any = None) -> pd.DataFrame:
        """Features then predictions of one bucket (see :func:`score_rows`)."""
        return self.predict(self.features(frame), bundle, growth)


def score_local(buckets: Sequence[Path] | Sequence[pd.DataFrame], out: Path | None, job: ScoringJob, bundle: Any,
                growth: Any, progress: Callable[[int], None] | None = None) -> list[pd.DataFrame]:
    """Score bucket after bucket in this process: one scored part file per bucket in ``out``,
    or, with ``out=None``, the scored parts returned."""
    parts = []
    for i, bucket in enumerate(buckets):
        release_memory()
        scored = job.score(read_bucket(bucket), bundle, growth)
        if out is None:
            parts.append(scored)
        else:
            _write_part(scored, _part_path(out, i))
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


def score_dask(buckets: Sequence[Path], out: Path, job: ScoringJob, bundle: Any, growth: Any,
               scheduler: str | None) -> None:
    """Score the buckets as the partitions of a Dask dataframe, one partition per bucket file.

    Category levels are fixed (the contract's) before any partition is scored, and workers
    load the bundles from their folders: only paths, events and context are shipped. The
    output's schema comes from scoring one firm here.
    """
    import dask.dataframe as dd

    sample = read_bucket(buckets[0])
    meta = job.score(sample[sample["firm_id"] == sample["firm_id"].iloc[0]], bundle, growth).iloc[:0]
    with dask_client(scheduler):
        ddf = dd.read_parquet([str(b) for b in buckets], split_row_groups=False)
        if ddf.npartitions != len(buckets):  # a firm's rows must stay in one partition
            raise RuntimeError(f"dask split {len(buckets)} bucket files into {ddf.npartitions} partitions")
        ddf = ddf.astype({c.name: dtype_of(c) for c in PANEL_COLUMNS if c.kind == "category"})
        scored = ddf.map_partitions(_score_partition, job, meta=meta, align_dataframes=False)
        scored.to_parquet(str(out), write_index=False, name_function=lambda i: f"part-{i:04d}.parquet")


# ---------------------------------------------------------------------------------------------
# Pass 3: rank and write


def read_parts(folder: Path) -> pd.DataFrame:
    """Every scored part in ``folder`` as one frame (one row per firm)."""
    import pyarrow.parquet as pq

    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def write_output(frame: pd.DataFrame, path: Path, overwrite: bool,
                 progress: Callable[[int], None] | None = None) -> None:
    """Write ``frame`` as Parquet or CSV (UTF-8 with BOM) by extension, block by block, to a
    temporary file renamed onto ``path`` only when complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with io.atomic_path(path, overwrite=overwrite) as tmp:
        if path.suffix.lower() == ".csv":
            with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
                for start in range(0, max(len(frame), 1), WRITE_ROWS):
                    frame.iloc[start:start + WRITE_ROWS].to_csv(fh, index=False, header=start == 0)
                    if progress is not None:
                        progress(min(start + WRITE_ROWS, len(frame)))
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            with pq.ParquetWriter(tmp, table.schema) as writer:
                for start in range(0, max(len(frame), 1), WRITE_ROWS):
                    writer.write_table(table.slice(start, WRITE_ROWS))
                    if progress is not None:
                        progress(min(start + WRITE_ROWS, len(frame)))


# ---------------------------------------------------------------------------------------------
# Orchestration


@dataclass(frozen=True)
class ScoreResult:
    """What :func:`score_file` did.

    Attributes:
        output: The file written.
        rows_read: Input rows read.
        firms: Firms in the input.
        scored: Firms scored (rows written).
        skipped: Firms without a row in the requested year (not scored).
        years: Scored firms per fiscal year.
        summary: :func:`province_summary` of the scores.
        history: :func:`history_notice` line (also in the ``designation_history`` column).
        model: ``name version`` of the designation model.
        seconds: Wall time.
    """

    output: Path
    rows_read: int
    firms: int
    scored: int
    skipped: int
    years: dict[int, int]
    summary: pd.DataFrame
    history: str
    model: str
    seconds: float


def check_output_path(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an unknown output format, or an existing file without ``overwrite``.

    Raises:
        lgml.io.InputError: Unknown extension.
        FileExistsError: The file exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise io.InputError(f"{path}: unknown output format {path.suffix!r} (use .csv or .parquet)")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    return path


@contextlib.contextmanager
def work_dir(beside: Path) -> Iterator[Path]:
    """A hidden working folder beside ``beside`` (so on the same, possibly shared, file
    system), removed on exit whatever happens."""
    beside.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{beside.name}.work-", dir=beside.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def n_buckets(window_rows: int, chunk_rows: int) -> int:
    """Buckets so that each holds about ``chunk_rows`` window rows, but at least
    :data:`MIN_BUCKET_ROWS` (features have a fixed cost per call), at most :data:`MAX_BUCKETS`."""
    per_bucket = max(chunk_rows, MIN_BUCKET_ROWS)
    return int(min(MAX_BUCKETS, max(1, math.ceil(window_rows / per_bucket))))


def _check_task(bundle: Any, task: str, option: str) -> None:
    if bundle.task != task:
        raise ScoreError(f"{option} needs a {task} model; {bundle.path} is a {bundle.task} model")


def score_file(model: str | os.PathLike, input: str | os.PathLike, output: str | os.PathLike, *,
               events: str | os.PathLike | None = None, growth_model: str | os.PathLike | None = None,
               year: int | None = None, explain: bool = False, chunk_rows: int = DEFAULT_CHUNK_ROWS,
               engine: str = "local", scheduler: str | None = None, units: str = "yuan",
               encoding: str | None = None, overwrite: bool = False,
               progress: Progress | None = None) -> ScoreResult:
    """Score every firm of a panel file and write one row per firm (see the module docstring).

    Args:
        model: Designation bundle folder or MLflow URI.
        input: Panel as CSV (UTF-8 or GBK/GB18030), Parquet file or folder of Parquet files.
        output: ``.parquet`` or ``.csv`` file to write.
        events: Designation events file (``firm_id, batch_year, revoked_year``).
        growth_model: Optional growth bundle folder or MLflow URI.
        year: Fiscal year to score; None scores each firm's latest year.
        explain: Add ``shap_<dimension>`` (log-odds) and ``reasons`` columns.
        chunk_rows: Rows read at a time, and about the rows per bucket.
        engine: ``local`` (this process) or ``dask``.
        scheduler: Dask scheduler address; None starts a LocalCluster.
        units: Money units of the input: ``yuan`` or ``wan``.
        encoding: Force the CSV encoding.
        overwrite: Replace an existing output file.
        progress: Called as ``progress(stage, done, total)``.

    Returns:
        What was done, with the per-province summary.

    Raises:
        ContractError: The input (or events) break the contract.
        lgml.io.InputError: A file cannot be read.
        lgml.modeling.bundle.BundleInputError: The features do not fit the model.
        FileExistsError: ``output`` exists and ``overwrite`` is false.
        ScoreError: No firm to score, a model of the wrong task, bad options.
    """
    started = time.perf_counter()
    if engine not in ("local", "dask"):
        raise ScoreError(f"engine must be 'local' or 'dask', not {engine!r}")
    if chunk_rows < 1:
        raise ScoreError(f"chunk_rows must be >= 1, not {chunk_rows}")
    output = check_output_path(output, overwrite)
    report = progress or (lambda stage, done, total: None)
    with work_dir(output) as work:
        bundle, growth = _load_models(model, growth_model, work)
        history = _load_events(events, encoding)
        notice = history_notice(bundle, history, Path(events).name if events is not None else None)
        source = open_source(input, encoding)
        # A small Parquet input is read once rather than once per pass (with ``year``, the
        # streamed passes skip row groups outside the window instead).
        if (engine == "local" and year is None and source.rows is not None
                and source.rows <= ONE_PASS_FACTOR * IN_MEMORY_ROWS):
            source = source.loaded()
        keys = key_headers(source.headers)
        context = bundle.context
        if context is None:
            log.warning("bundle %s has no province/sector context: computing it from the whole input, so "
                        "scores depend on which firms are scored together", bundle.path)
        index = _key_pass(source, keys, year, chunk_rows, report)
        release_memory()
        # Without the bundle's context, the fallback context needs every row of the input.
        keep = index if context is not None else None
        window_rows = keep.window_rows if keep is not None else (source.rows or 0)
        # A window that fits in memory stays there and is scored in this process as one
        # bucket; larger ones are spilled to bucket files of about chunk_rows rows.
        in_memory = engine == "local" and 0 < window_rows <= IN_MEMORY_ROWS
        rows_read, buckets = _spill_pass(source, keep, keys, None if in_memory else work,
                                         1 if in_memory else n_buckets(window_rows, chunk_rows), chunk_rows,
                                         units, report)
        source = dataclasses.replace(source, table=None)  # the input held in memory is done with
        release_memory()
        job = ScoringJob(_identity(bundle), _identity(growth) if growth is not None else None, history,
                         context if context is not None else _input_context(buckets, history), year, explain,
                         str(source.path))
        if not buckets:
            raise ScoreError(f"no firm of {source.path} could be scored")
        parts = work / "scored"
        parts.mkdir()
        report("score", 0, len(buckets))
        if engine == "dask":
            score_dask(buckets, parts, job, bundle, growth, scheduler)
            report("score", len(buckets), len(buckets))
            scored = read_parts(parts)
        else:
            held = score_local(buckets, None if in_memory else parts, job, bundle, growth,
                               progress=lambda n: report("score", n, len(buckets)))
            scored = pd.concat(held, ignore_index=True) if in_memory else read_parts(parts)
        if scored.empty:
            raise ScoreError(f"no firm of {source.path} could be scored")
        final = _finish(rank_scores(scored), bundle, growth, notice)
        write_output(final, output, overwrite, progress=lambda n: report("write", n, len(final)))
    firms = index.firms if index is not None else int(final["firm_id"].nunique())
    years = {int(k): int(v) for k, v in final["year"].value_counts().sort_index().items()}
    return ScoreResult(
        output=output, rows_read=rows_read, firms=firms, scored=len(final),
        skipped=max(firms - len(final), 0) if year is not None else 0, years=years,
        summary=province_summary(final), history=notice, model=f"{bundle.name} {bundle.version}",
        seconds=time.perf_counter() - started,
    )


def release_memory() -> None:
    """Hand memory Arrow's allocator keeps for reuse back to the system, so that the peak of
    one pass does not stay resident through the next ones."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _load_models(model: str | os.PathLike, growth_model: str | os.PathLike | None, work: Path) -> tuple[Any, Any]:
    """The designation and growth bundles; MLflow models are downloaded into ``work`` (beside
    the output, so on storage that Dask workers can share)."""
    try:
        bundle = open_bundle(model, dst=work / "model")
        growth = open_bundle(growth_model, dst=work / "growth-model") if growth_model is not None else None
    except ValueError as exc:  # an MLflow location holding no lgml model
        raise ScoreError(str(exc)) from exc
    _check_task(bundle, "designation", "--model")
    if growth is not None:
        _check_task(growth, "growth", "--growth-model")
    return bundle, growth


def _load_events(events: str | os.PathLike | None, encoding: str | None) -> pd.DataFrame | None:
    if events is None:
        return None
    from lgml.validate import load_events

    return load_events(events, encoding=encoding)


def _identity(bundle: Any) -> tuple[str, str]:
    return str(bundle.path), str(bundle.metadata.get("model_sha256"))


def _key_pass(source: TableSource, keys: tuple[str | None, str | None], year: int | None, chunk_rows: int,
              report: Progress) -> KeyIndex | None:
    """Pass 0, or None when a key column is missing (pass 1's contract check reports it)."""
    if None in keys:
        return None
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        report("keys", done[0], source.rows)

    # Two key columns of an input held in memory are small: one chunk.
    rows = max(source.table.num_rows, 1) if source.table is not None else chunk_rows
    key_chunks = (raw_keys(c, *keys) for c in iter_chunks(source, rows, columns=keys))
    index = build_key_index(key_chunks, year, advance)
    if not index.scored_firms:
        what = f"a row for fiscal year {year}" if year is not None else "a readable firm_id and year"
        raise ScoreError(f"no firm in {source.path} has {what}")
    return index


def _spill_pass(source: TableSource, index: KeyIndex | None, keys: tuple[str | None, str | None],
                work: Path | None, buckets: int, chunk_rows: int, units: str,
                report: Progress) -> tuple[int, list[Path] | list[pd.DataFrame]]:
    """Pass 1 into ``work/buckets`` (or into memory when ``work`` is None): rows read and the
    buckets (files or frames)."""
    folder = None
    if work is not None:
        folder = work / "buckets"
        folder.mkdir()
    writer = BucketWriter(folder, buckets, flush_rows=max(chunk_rows, MIN_FLUSH_ROWS))
    read = [0]

    def advance(rows: int) -> None:
        read[0] = rows
        report("read", rows, source.rows)

    try:
        spill_window(kept_chunks(source, index, keys, chunk_rows, advance), writer, units=units,
                     source=str(source.path))
    finally:
        files = writer.close()
    return read[0], files


def _input_context(buckets: Sequence[Path] | Sequence[pd.DataFrame], events: pd.DataFrame | None) -> pd.DataFrame:
    """Fallback for bundles without context: province/sector records of the whole input."""
    import pyarrow.parquet as pq

    from lgml.features import context_tables

    cols = ["firm_id", "year", "province", "sector", "srdi_provincial"]
    slim = pd.concat([canonical_rows(pq.read_table(b, columns=cols).to_pandas() if isinstance(b, Path) else b[cols])
                      for b in buckets], ignore_index=True)
    return context_tables(slim, events)
