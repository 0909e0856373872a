"""The streamed passes of ``lgml score``: a panel of any size, at most one chunk (plus one
bucket) in memory at a time. All file access goes through :mod:`lgml.io`.

A firm-year's features read its own fiscal year t and the two before (t-1, t-2), and those
rows may sit anywhere in the input, hence the passes:

0. **keys** (:func:`key_pass`): stream only ``firm_id`` and ``year`` and find each firm's
   scored year (its latest fiscal year, or ``year`` when given).
1. **window** (:func:`spill_pass`): stream every column chunk by chunk, keep the rows of the
   scored year and the two before, check them against the input contract and spill them by
   ``hash(firm_id)`` into K bucket files, so that all rows of a firm share a bucket. Rows
   outside the window are read but neither checked nor kept.

Small inputs skip the files: a Parquet input of up to ``ONE_PASS_FACTOR * IN_MEMORY_ROWS``
rows scored for its latest years is read once instead of once per pass (:func:`open_input`),
and a window of up to ``IN_MEMORY_ROWS`` rows stays in memory as a single bucket
(:func:`holds_in_memory`). The buckets are then scored by :mod:`lgml.score.engines`.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lgml import exports, streaming
from lgml.features import LOOKBACK
from lgml.schema import PANEL_COLUMNS, PANEL_NAMES, canonical_rows
from lgml.schema import Problem
from lgml.exports import Note
from lgml.validate import ContractError, conform_panel_notes

DEFAULT_CHUNK_ROWS = 200_000
MAX_BUCKETS = 256  # bucket files open at once while spilling
MIN_BUCKET_ROWS = 50_000
MIN_FLUSH_ROWS = 100_000  # spilled rows buffered before writing (about 30 MB)
IN_MEMORY_ROWS = 1_000_000  # window rows (about 300 MB) held in memory instead of bucket files
ONE_PASS_FACTOR = 2  # Parquet inputs up to this many times IN_MEMORY_ROWS are read into memory once
SPILL_COMPRESSION = "lz4"  # bucket files are read once, soon: speed over size


def release_memory() -> None:
    """Hand memory Arrow's allocator keeps for reuse back to the system, so that the peak of
    one pass does not stay resident through the next ones."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def open_input(path: str | os.PathLike, encoding: str | None, *, engine: str, year: int | None,
               sheet: str | int | None = None) -> streaming.TableSource:
    """The input opened for the passes (:func:`lgml.streaming.open_source`); a small Parquet input
    scored in this process for its latest years is read into memory once rather than once
    per pass (with ``year``, the streamed passes skip row groups outside the window instead).

    Raises:
        lgml.io.InputError: Missing path, unknown format, undecodable file, no Parquet files.
    """
    source = streaming.open_source(path, encoding, sheet)
    if (engine == "local" and year is None and source.rows is not None
            and source.rows <= ONE_PASS_FACTOR * IN_MEMORY_ROWS):
        return source.loaded()
    return source


def holds_in_memory(window_rows: int, engine: str) -> bool:
    """Whether a window of ``window_rows`` rows stays in memory as one bucket scored in this
    process; larger ones are spilled to bucket files of about ``chunk_rows`` rows."""
    return engine == "local" and 0 < window_rows <= IN_MEMORY_ROWS


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
            from lgml.parsing import parse

            # The contract's own reading: "2023年", "2023-12-31" and thousands separators too.
            years = parse(pd.Series(year.to_pandas(), dtype="str"), PANEL_COLUMNS[1])[0]
            year = pa.chunked_array([pa.array(years.to_numpy(dtype="float64", na_value=np.nan), from_pandas=True)])
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


def key_pass(source: streaming.TableSource, keys: tuple[str | None, str | None], year: int | None, chunk_rows: int,
             progress: Callable[[int], None] | None = None) -> KeyIndex | None:
    """Pass 0: the :class:`KeyIndex` of ``source``, or None when a key column is missing (pass
    1's contract check reports it).

    Args:
        source: From :func:`open_input`.
        keys: :func:`key_headers` of the source.
        year: Fiscal year to score; None for each firm's latest.
        chunk_rows: Rows read at a time.
        progress: Called with the rows read so far.
    """
    if None in keys:
        return None
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0])

    # Two key columns of an input held in memory are small: one chunk.
    rows = max(source.table.num_rows, 1) if source.table is not None else chunk_rows
    key_chunks = (raw_keys(c, *keys) for c in streaming.iter_chunks(source, rows, columns=keys))
    return build_key_index(key_chunks, year, advance)


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
        self._files = streaming.PartFiles(folder, self.schema, SPILL_COMPRESSION) if folder is not None else None
        self._held: list[pd.DataFrame] = []
        self._buffers: dict[int, list[Any]] = {}
        self._buffered = 0

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
        """Write each bucket's buffered rows as one row group of its file."""
        import pyarrow as pa

        for b, parts in sorted(self._buffers.items()):
            self._files.append(b, pa.concat_tables(parts))
        self._buffers, self._buffered = {}, 0

    def close(self) -> list[Path] | list[pd.DataFrame]:
        """Flush and close every file; the bucket files written (or the frames held), in
        bucket order."""
        if self._files is None:
            held, self._held = self._held, []
            return [pd.concat(held, ignore_index=True)] if held else []
        try:
            self.flush()
        finally:
            files = self._files.close()
        return files


def kept_chunks(source: streaming.TableSource, index: KeyIndex | None, keys: tuple[str | None, str | None], chunk_rows: int,
                progress: Callable[[int], None] | None = None) -> Iterator[Any]:
    """Stream ``source`` and yield its window rows (all rows when ``index`` is None) as Arrow
    tables of about ``chunk_rows`` rows, however few rows each input chunk keeps."""
    import pyarrow as pa

    held: list[Any] = []
    held_rows = rows = 0
    years = (keys[1], *index.years) if index is not None else None
    for chunk in streaming.iter_chunks(source, chunk_rows, years=years):
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


def spill_window(chunks: Iterator[Any], writer: BucketWriter, *, units: str | None, source: str) -> list[Note]:
    """Check each chunk of window rows against the contract and spill it into ``writer``'s
    buckets; return the reading notes of the first chunk (headers, units: every chunk would
    repeat them).

    Raises:
        ContractError: Every problem of the rows, merged across chunks (at once when a column
            is missing or misnamed: every chunk would repeat it).
    """
    problems: list[Problem] = []
    told: list[Note] = []
    for number, chunk in enumerate(chunks):
        release_memory()
        raw = chunk.to_pandas()
        blank = exports.note_rows(raw)
        try:  # features sort the rows
            frame, notes = conform_panel_notes(raw[~blank] if blank.any() else raw, units, source=source, sort=False)
            told = notes if number == 0 else told
        except ContractError as exc:
            if any(not p.examples for p in exc.problems):
                raise ContractError(merge_problems(problems + exc.problems), source) from None
            problems += exc.problems
        else:
            if not problems:
                writer.write(frame[list(PANEL_NAMES)])
    if problems:
        raise ContractError(merge_problems(problems), source)
    return told


def duplicate_problems(frame: pd.DataFrame) -> list[Problem]:
    """The contract's key rule on a bucket, whose rows came from different chunks."""
    dup = frame.duplicated(["firm_id", "year"], keep=False)
    if not dup.any():
        return []
    from lgml.validate import check_panel

    return [p for p in check_panel(frame[dup.to_numpy()]) if p.rule == "must be unique"]


def n_buckets(window_rows: int, chunk_rows: int) -> int:
    """Buckets so that each holds about ``chunk_rows`` window rows, but at least
    :data:`MIN_BUCKET_ROWS` (features have a fixed cost per call), at most :data:`MAX_BUCKETS`."""
    per_bucket = max(chunk_rows, MIN_BUCKET_ROWS)
    return int(min(MAX_BUCKETS, max(1, math.ceil(window_rows / per_bucket))))


def spill_pass(source: streaming.TableSource, index: KeyIndex | None, keys: tuple[str | None, str | None],
               work: Path | None, buckets: int, chunk_rows: int, units: str | None,
               progress: Callable[[int], None] | None = None
               ) -> tuple[int, list[Path] | list[pd.DataFrame], list[Note]]:
    """Pass 1 into ``buckets`` bucket files in ``work/buckets`` (or one bucket in memory when
    ``work`` is None).

    Args:
        source: From :func:`open_input`.
        index: From :func:`key_pass`; None keeps every row (no window).
        keys: :func:`key_headers` of the source.
        work: The work folder, or None.
        buckets: Number of buckets (:func:`n_buckets`; 1 in memory).
        chunk_rows: Rows read at a time.
        units: Money units overriding the headers' (``yuan`` or ``wan``), or None.
        progress: Called with the rows read so far.

    Returns:
        The rows read, the buckets (files or frames) in bucket order, and the reading notes
        (:func:`spill_window`).

    Raises:
        ContractError: The window rows break the input contract.
    """
    folder = streaming.new_folder(work / "buckets") if work is not None else None
    writer = BucketWriter(folder, buckets, flush_rows=max(chunk_rows, MIN_FLUSH_ROWS))
    read = [0]

    def advance(rows: int) -> None:
        read[0] = rows
        if progress is not None:
            progress(rows)

    try:
        notes = spill_window(kept_chunks(source, index, keys, chunk_rows, advance), writer, units=units,
                             source=str(source.path))
    finally:
        files = writer.close()
    return read[0], files, notes


def read_bucket(bucket: Path | pd.DataFrame) -> pd.DataFrame:
    """A bucket (file, or frame held in memory) as canonical contract rows."""
    return canonical_rows(streaming.read_part(bucket) if isinstance(bucket, Path) else bucket)


def input_context(buckets: Sequence[Path] | Sequence[pd.DataFrame], events: pd.DataFrame | None) -> pd.DataFrame:
    """Fallback for bundles without context: province/sector records of the whole input (every
    row spilled, see :func:`spill_pass` without an index)."""
    from lgml.features import context_tables

    cols = ["firm_id", "year", "province", "sector", "srdi_provincial"]
    slim = pd.concat([canonical_rows(streaming.read_part(b, columns=cols) if isinstance(b, Path) else b[cols])
                      for b in buckets], ignore_index=True)
    return context_tables(slim, events)
