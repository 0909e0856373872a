"""Streamed reads and scoring's work files: a table read chunk by chunk (:func:`open_source`,
:func:`iter_chunks`), and the Parquet part files that ``lgml score`` passes through a hidden work
folder beside its output (:func:`work_dir`, :class:`PartFiles`).

Whole tables are read and written by :mod:`lgml.io`, whose formats, encodings, header detection
and temporary-file naming this module shares.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lgml import exports
from lgml.io import (PARQUET_SUFFIXES, PART_NAME, InputError, _csv_sep, _csv_top, _table_kind, detect_encoding,
                     read_export, sweep_stale, temp_prefix)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Streaming: a table read chunk by chunk


@dataclass(frozen=True)
class TableSource:
    """A panel file or folder opened for streaming.

    Attributes:
        path: As given.
        kind: ``parquet``, ``csv`` or ``xlsx`` (an Excel sheet is read whole into :attr:`table`).
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
    skip: int = 0  # CSV title rows above the header row

    def loaded(self) -> TableSource:
        """This Parquet source read into memory, or itself when its files cannot be joined
        into one table (they are then read file by file, each in its own schema)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.table is not None or self.kind != "parquet":
            return self
        try:
            tables = [pq.read_table(f) for f in self.files]
            table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        except (OSError, ValueError, pa.ArrowException):
            return self
        return dataclasses.replace(self, table=table)

    def released(self) -> TableSource:
        """This source streamed from its files again (the table held in memory let go; an
        Excel sheet cannot be streamed and is kept)."""
        return self if self.kind == "xlsx" else dataclasses.replace(self, table=None)

    @property
    def sep(self) -> str:
        return _csv_sep(self.path)


def open_source(path: str | os.PathLike, encoding: str | None = None, sheet: str | int | None = None) -> TableSource:
    """Open a CSV file, a Parquet file or a folder of Parquet files for :func:`iter_chunks`;
    an ``.xlsx`` sheet is read whole (:func:`read_export`).

    CSV is decoded as UTF-8 then GB18030 (:func:`detect_encoding`) unless ``encoding`` is
    given; the whole file is checked before any chunk is used. Title rows above a CSV header
    are skipped as :func:`read_export` does.

    Raises:
        InputError: Missing path, unknown format, undecodable file, no Parquet files, a Parquet
            input without rows or with a repeated column name.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if _table_kind(path) == "parquet":
        files = tuple(sorted(p for p in path.rglob("*") if p.suffix.lower() in PARQUET_SUFFIXES)) \
            if path.is_dir() else (path,)
        if not files:
            raise InputError(f"{path}: no .parquet files in the folder")
        try:
            metas = [pq.ParquetFile(f).metadata for f in files]
            headers = tuple(pq.ParquetFile(files[0]).schema_arrow.names)
        except Exception as exc:  # pyarrow raises many types; give one clear message
            raise InputError(f"{path}: cannot read as Parquet ({exc})") from exc
        repeated = sorted({h for h in headers if headers.count(h) > 1})
        if repeated:
            raise InputError(f"{path}: column(s) {', '.join(map(repr, repeated))} appear more than once; "
                             "every column needs its own name")
        rows = sum(m.num_rows for m in metas)
        if rows == 0:
            raise InputError(f"{path}: the panel has no rows")
        return TableSource(path, "parquet", files, headers, rows=rows)
    if _table_kind(path) == "xlsx":
        import pyarrow as pa

        frame, notes = read_export(path, encoding, sheet)
        for note in notes:
            log.info("%s: %s", path, note.text)
        table = pa.Table.from_pandas(frame.set_axis([str(h) for h in frame.columns], axis=1), preserve_index=False)
        return TableSource(path, "xlsx", (path,), tuple(table.column_names), rows=table.num_rows, table=table)
    enc = encoding or detect_encoding(path)
    skip = exports.header_row(_csv_top(path, enc))
    try:
        headers = tuple(pd.read_csv(path, sep=_csv_sep(path), dtype=str, encoding=enc, nrows=0, skiprows=skip).columns)
    except LookupError as exc:
        raise InputError(f"{path}: unknown encoding {enc!r}") from exc
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: cannot read the CSV header ({exc})") from exc
    return TableSource(path, "csv", (path,), headers, encoding=enc, skip=skip)


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
        InputError: A malformed CSV line or unreadable Parquet file.
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
                raise InputError(f"{file}: cannot read as Parquet ({exc})") from exc
        return
    usecols = list(columns) if columns else None
    try:
        with pd.read_csv(source.path, sep=source.sep, dtype=str, encoding=source.encoding, keep_default_na=True,
                         usecols=usecols, chunksize=chunk_rows, skiprows=source.skip) as reader:
            for chunk in reader:
                yield pa.Table.from_pandas(chunk, preserve_index=False)
    except pd.errors.ParserError as exc:
        raise InputError(f"{source.path}: malformed CSV ({exc})") from exc


# ---------------------------------------------------------------------------------------------
# Work files: a hidden folder of Parquet parts


@contextlib.contextmanager
def work_dir(beside: str | os.PathLike) -> Iterator[Path]:
    """A hidden working folder beside ``beside`` (so on the same, possibly shared, file
    system), removed on exit whatever happens."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(beside)
    folder = Path(tempfile.mkdtemp(prefix=temp_prefix(beside) + "work-", dir=beside.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def new_folder(path: Path) -> Path:
    """Create the folder ``path`` (which must not exist yet) and return it."""
    path.mkdir()
    return path


class PartFiles:
    """Numbered Parquet files in ``folder`` (``bucket-0000.parquet`` ...), all of one Arrow
    ``schema``, each opened on its first rows and filled row group by row group.

    Only this class holds their writers: every one is closed by :meth:`close`.
    """

    def __init__(self, folder: Path, schema: Any, compression: str = "snappy", stem: str = "bucket"):
        self.folder = folder
        self.schema = schema
        self.compression = compression
        self.stem = stem
        self._writers: dict[int, Any] = {}

    def path(self, number: int) -> Path:
        return self.folder / f"{self.stem}-{number:04d}.parquet"

    def append(self, number: int, table: Any) -> None:
        """Write ``table`` (Arrow, of :attr:`schema`) as the next row group of file ``number``."""
        import pyarrow.parquet as pq

        if number not in self._writers:
            self._writers[number] = pq.ParquetWriter(self.path(number), self.schema, compression=self.compression)
        self._writers[number].write_table(table)

    def close(self) -> list[Path]:
        """Close every file; the files written, in number order."""
        for writer in self._writers.values():
            writer.close()
        return [self.path(n) for n in sorted(self._writers)]


def read_part(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A Parquet work file (a bucket or a scored part) as pandas, through Arrow's own
    conversion (the dtypes it was written with)."""
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=list(columns) if columns is not None else None).to_pandas()


def write_part(frame: pd.DataFrame, folder: Path, number: int) -> Path:
    """Write ``frame`` as the scored part ``number`` of ``folder`` (see :func:`read_parts`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / PART_NAME.format(number)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def read_parts(folder: Path) -> pd.DataFrame:
    """Every scored part in ``folder`` as one frame, in part order (empty when none)."""
    files = sorted(folder.glob(PART_NAME.replace("{:04d}", "*")))
    if not files:
        return pd.DataFrame()
    return pd.concat([read_part(f) for f in files], ignore_index=True)


def dask_parts(files: Sequence[Path]) -> Any:
    """A Dask dataframe of Parquet ``files``, one partition per file (never split by row group)."""
    import dask.dataframe as dd

    return dd.read_parquet([str(f) for f in files], split_row_groups=False)


def write_dask_parts(ddf: Any, folder: Path) -> None:
    """Compute ``ddf`` partition by partition into the scored parts of ``folder``."""
    ddf.to_parquet(str(folder), write_index=False, name_function=PART_NAME.format)
