"""Reading and writing tables: CSV (UTF-8 or GBK/GB18030), Excel ``.xlsx`` (read only) and
Parquet, whole or streamed in chunks, written atomically.

Only this module, :mod:`lgml.streaming` (streamed reads and scoring's work files) and the CLI touch
files; every other module works on DataFrames (or Arrow tables).
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from lgml import exports
from lgml.exports import Note

log = logging.getLogger(__name__)

# Chinese Excel exports are usually GBK/GB18030; "utf-8-sig" also strips a BOM.
CSV_ENCODINGS = ("utf-8-sig", "gb18030")
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".txt", ".tsv")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
OUTPUT_SUFFIXES = (*PARQUET_SUFFIXES, ".csv")
WRITE_ROWS = 100_000  # rows per output row group / CSV block of a streamed write
PART_NAME = "part-{:04d}.parquet"  # scored part files, in a folder of their own
# Temporary files and folders are named ".<target>.lgml-<pid>-<random>": the tag marks them as
# lgml's own, the process id tells whether their writer still runs (see sweep_stale).
TEMP_TAG = "lgml"
RUN_STARTED = time.time()
# A text cell starting with one of these is a formula to Excel and LibreOffice (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")



class InputError(ValueError):
    """A file cannot be read as a table (missing, unknown format, undecodable)."""


def _table_kind(path: Path) -> str:
    """``parquet`` (a Parquet file or a folder), ``csv`` or ``xlsx``, for an existing ``path``.

    Raises:
        InputError: The path is missing or of an unknown type.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in XLSX_SUFFIXES:
        return "xlsx"
    if suffix == ".xls":
        raise InputError(f"{path}: the old Excel format .xls is not read; open it in Excel or WPS and save it "
                         "as .xlsx or .csv")
    raise InputError(f"{path}: unknown table format {suffix!r} (use .csv, .xlsx or .parquet)")


def _csv_sep(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def detect_encoding(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """The first of :data:`CSV_ENCODINGS` that decodes the whole file, read in blocks of
    ``block`` bytes (memory stays flat whatever the file size).

    A file that is not UTF-8 as a whole but holds lines of Chinese text in UTF-8 mixes two
    encodings (two exports pasted together): GB18030 would decode it into wrong characters, so
    it is refused, naming a line of each.

    Raises:
        InputError: No encoding of the list decodes the file, or it mixes UTF-8 and GBK.
    """
    for enc in CSV_ENCODINGS:
        decoder = codecs.getincrementaldecoder(enc)()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(block), b""):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
            if enc != CSV_ENCODINGS[0]:
                _refuse_mixed(path)
            return enc
        except UnicodeDecodeError:
            continue
    _refuse_mixed(path)
    raise InputError(f"{path}: cannot decode the file as {' and '.join(CSV_ENCODINGS)}; "
                     "pass the encoding explicitly")


def _refuse_mixed(path: str | os.PathLike) -> None:
    """Raise if some lines of ``path`` are UTF-8 with Chinese text and others are not UTF-8."""
    utf8 = other = None
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if line.isascii():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                other = other or number
            else:
                utf8 = utf8 or (number if sum("\u4e00" <= c <= "\u9fff" for c in text) >= 2 else None)
            if utf8 and other:
                raise InputError(f"{path}: mixes two text encodings: line {utf8} is UTF-8, line {other} is not "
                                 "(GBK?); save the whole file in one encoding (or pass --encoding)")


def read_table(path: str | os.PathLike, encoding: str | None = None, sheet: str | int | None = None) -> pd.DataFrame:
    """Read a CSV file, an Excel ``.xlsx`` sheet, a Parquet file or a folder of Parquet files
    (:func:`read_export` without its notes)."""
    return read_export(path, encoding, sheet)[0]


def read_export(path: str | os.PathLike, encoding: str | None = None, sheet: str | int | None = None,
                table: str = "panel") -> tuple[pd.DataFrame, list[Note]]:
    """Read a table as exported, and say what was left out.

    CSV is decoded as UTF-8 then GB18030 (a superset of GBK, see :func:`detect_encoding`)
    unless ``encoding`` is given. CSV and ``.xlsx`` cells are read as text so that codes such as
    sector "06" keep their zeros (Excel dates arrive as ``2023-12-31 00:00:00``); the contract
    casts types afterwards. In both, the header is the row among the first 20 holding the most
    recognised headers (:func:`lgml.exports.header_row`): title rows above it are skipped, and
    rows without data below it (blank, or one note cell such as ``数据来源：Wind``) are dropped.
    Columns with neither a header nor a value are dropped too.

    Args:
        path: File or folder.
        encoding: Force a CSV encoding.
        sheet: Excel sheet name or 0-based position (default: the first sheet); ignored otherwise.
        table: ``"panel"`` or ``"events"``: whose headers identify the header row.

    Returns:
        The table with its original headers, and notes on the rows left out.

    Raises:
        InputError: The path is missing, of an unknown type (``.xls`` included), cannot be
            decoded, or names an unknown sheet.
    """
    path = Path(path)
    kind = _table_kind(path)
    if kind == "parquet":
        try:
            import pyarrow.parquet as pq

            first = path if path.is_file() else min(path.rglob("*.parquet"), default=None)
            names = pq.read_schema(first).names if first is not None else []
            repeated = sorted({n for n in names if names.count(n) > 1})
            if not repeated:
                return pd.read_parquet(path), []
        except Exception as exc:  # pyarrow raises many types; give one clear message
            raise InputError(f"{path}: cannot read as Parquet ({str(exc).splitlines()[0]})") from exc
        raise InputError(f"{path}: column(s) {', '.join(map(repr, repeated))} appear more than once; "
                         "every column needs its own name")
    if kind == "xlsx":
        grid = _read_sheet(path, sheet)
        top = grid.head(exports.HEADER_SEARCH_ROWS)
        at = exports.header_row(top, table)
        df = grid.iloc[at + 1:].set_axis(_headers(grid.iloc[at]), axis=1).reset_index(drop=True)
    else:
        enc = encoding or detect_encoding(path)
        top = _csv_top(path, enc)
        at = exports.header_row(top, table)
        df = _read_csv(path, enc, skiprows=at)
    above = [" ".join(str(v) for v in row if isinstance(v, str) and v.strip())
             for row in top.iloc[:at].itertuples(index=False)]
    df = _drop_empty_columns(df)
    notes_mask = exports.note_rows(df, table)
    notes = exports.layout_text(above, df[notes_mask])
    return (df[~notes_mask].reset_index(drop=True) if notes_mask.any() else df), notes


def _headers(row: pd.Series) -> list[str]:
    return [f"Unnamed: {i}" if pd.isna(v) or not str(v).strip() else str(v) for i, v in enumerate(row)]


def _drop_empty_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without the columns that have neither a header nor a value (Excel's padding)."""
    unnamed = [str(h).startswith("Unnamed: ") for h in df.columns]
    empty = [u and df.iloc[:, i].isna().all() for i, u in enumerate(unnamed)]
    return df.iloc[:, [i for i, e in enumerate(empty) if not e]] if any(empty) else df


def _read_csv(path: Path, enc: str, skiprows: int = 0) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=_csv_sep(path), dtype=str, encoding=enc, keep_default_na=True,
                           skiprows=skiprows)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot decode the file as {enc}; pass the encoding explicitly") from exc
    except LookupError as exc:
        raise InputError(f"{path}: unknown encoding {enc!r}") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: malformed CSV ({exc})") from exc


def _csv_top(path: Path, enc: str) -> pd.DataFrame:
    """The first rows of a CSV file as a ragged grid of text (title rows have fewer cells)."""
    import csv
    import itertools

    try:
        with open(path, encoding=enc, newline="") as fh:
            rows = list(itertools.islice(csv.reader(fh, delimiter=_csv_sep(path)), exports.HEADER_SEARCH_ROWS))
    except LookupError as exc:
        raise InputError(f"{path}: unknown encoding {enc!r}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the CSV header ({exc})") from exc
    width = max((len(r) for r in rows), default=0)
    return pd.DataFrame([r + [None] * (width - len(r)) for r in rows], dtype=object)


def sheet_names(path: str | os.PathLike) -> list[str]:
    """The sheet names of an ``.xlsx`` workbook, in order."""
    try:
        with pd.ExcelFile(path, engine="openpyxl") as book:
            return [str(n) for n in book.sheet_names]
    except Exception as exc:  # zipfile, openpyxl and XML errors: one clear message
        raise InputError(f"{path}: cannot read as an .xlsx workbook ({exc})") from exc


def _read_sheet(path: Path, sheet: str | int | None) -> pd.DataFrame:
    """A whole sheet as a grid of text (no header), chosen by name or 0-based position."""
    names = sheet_names(path)
    if sheet is None:
        chosen = names[0]
    elif str(sheet) in names:
        chosen = str(sheet)
    elif str(sheet).strip().isdigit() and int(sheet) < len(names):
        chosen = names[int(sheet)]
    else:
        raise InputError(f"{path}: no sheet {sheet!r}; the sheets are {', '.join(map(repr, names))} "
                         f"(pass --sheet NAME or a position 0..{len(names) - 1})")
    try:
        return pd.read_excel(path, sheet_name=chosen, header=None, dtype=str, engine="openpyxl")
    except Exception as exc:
        raise InputError(f"{path}: cannot read sheet {chosen!r} ({exc})") from exc


def temp_prefix(target: Path) -> str:
    """The name prefix of this process's temporary files and folders beside ``target``."""
    return f".{target.name}.{TEMP_TAG}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def sweep_stale(target: Path) -> list[Path]:
    """Remove what an earlier, killed lgml run left beside ``target``: temporary files and folders
    named by :func:`temp_prefix` whose process no longer runs and that are older than this run.

    Nothing else is touched: not another tool's files, not a running lgml's work. Removal
    failures are ignored (the next run tries again).

    Returns:
        The paths removed.
    """
    removed = []
    for entry in target.parent.glob(f".{target.name}.{TEMP_TAG}-*"):
        try:
            pid = int(entry.name[len(target.name) + len(TEMP_TAG) + 3:].split("-", 1)[0])
            if _alive(pid) or entry.lstat().st_mtime >= RUN_STARTED:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except (ValueError, OSError):
            continue
        log.info("removed %s, left by an interrupted run", entry)
        removed.append(entry)
    return removed


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell that a spreadsheet would run as a formula (starting with
    ``= + - @``, a tab or a carriage return) prefixed with an apostrophe, as OWASP recommends for
    CSV files opened in Excel. Numbers are never changed. A copy when anything changes."""
    out = frame
    for col in frame.columns:
        values = frame[col]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)
                or isinstance(values.dtype, pd.CategoricalDtype)):
            continue
        text = values.astype("string")
        risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).to_numpy(dtype=bool)
        if risky.any():
            out = out.copy() if out is frame else out
            out[col] = values.astype(object).where(~risky, "'" + text.astype(object))
    return out


def refuse_same(output: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """Refuse to write ``output`` onto one of the ``inputs`` (the same file or folder, however
    spelt), whatever ``--overwrite`` says.

    Raises:
        InputError: ``output`` is one of the inputs.
    """
    out = Path(output)
    for given in inputs:
        if given is None:
            continue
        source = Path(given)
        same = (out.exists() and source.exists() and os.path.samefile(out, source)) or \
            out.resolve() == source.resolve()
        if same:
            raise InputError(f"{out}: the output would replace the input {source}; choose another output path")


def refuse_existing(path: str | os.PathLike, overwrite: bool) -> Path:
    """The one overwrite guard: ``path`` as a Path, unless it exists and ``overwrite`` is false.

    Raises:
        FileExistsError: ``path`` exists (file or folder) and ``overwrite`` is false; the message
            tells the user to pass ``--overwrite``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    return path


def output_path(path: str | os.PathLike, overwrite: bool) -> Path:
    """``path`` checked as a table to write: a known format (:data:`OUTPUT_SUFFIXES`), and
    not an existing file unless ``overwrite`` (:func:`refuse_existing`).

    Raises:
        InputError: Unknown extension.
        FileExistsError: The file exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"{path}: unknown output format {path.suffix!r} (use .csv or .parquet)")
    return refuse_existing(path, overwrite)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    An interrupted or failed write leaves neither a partial file nor the temporary one.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_table(df: pd.DataFrame, path: str | os.PathLike, overwrite: bool = True,
                metadata: dict[str, str] | None = None) -> Path:
    """Write ``df`` as Parquet or CSV (by extension), atomically. CSV is UTF-8 with BOM so
    that Excel opens Chinese text correctly, and its text cells are neutralised
    (:func:`neutralize_formulas`). ``metadata`` (key-value text) goes into a Parquet file's
    schema metadata; CSV has none."""
    with staged_table(df, path, overwrite, metadata) as done:
        pass
    return done


@contextlib.contextmanager
def staged_table(df: pd.DataFrame, path: str | os.PathLike, overwrite: bool = True,
                 metadata: dict[str, str] | None = None) -> Iterator[Path]:
    """:func:`write_table` whose file appears only when the ``with`` block ends without an error:
    for outputs that must appear together or not at all (scores and their summary)."""
    path = output_path(path, overwrite)
    with atomic_path(path, overwrite=overwrite) as tmp:
        if path.suffix.lower() == ".csv":
            neutralize_formulas(df).to_csv(tmp, index=False, encoding="utf-8-sig")
        elif metadata:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata}), tmp)
        else:
            df.to_parquet(tmp, index=False)
        yield path


def write_export(df: pd.DataFrame, path: str | os.PathLike, *, title: str | None = None, note: str | None = None,
                 encoding: str = "gbk", overwrite: bool = True) -> Path:
    """Write ``df`` as ``.csv`` (in ``encoding``, GBK by default, as Chinese Excel does) or ``.xlsx``,
    with an optional ``title`` row above the header and ``note`` row below the data, as exports
    from Wind or provincial databases look. Atomic, like :func:`write_table`."""
    path = refuse_existing(path, overwrite)
    blank = [""] * (df.shape[1] - 1)
    grid = pd.concat([pd.DataFrame([[title, *blank]]) if title else None, pd.DataFrame([list(df.columns)]),
                      pd.DataFrame(df.to_numpy()), pd.DataFrame([[note, *blank]]) if note else None], ignore_index=True)
    kind = path.suffix.lower()
    if kind not in (".csv", *XLSX_SUFFIXES):
        raise InputError(f"{path}: exports are written as .csv or .xlsx")
    with atomic_path(path, overwrite=overwrite) as tmp:
        if kind == ".csv":
            grid.to_csv(tmp, header=False, index=False, encoding=encoding)
        else:
            grid.to_excel(tmp, header=False, index=False, engine="openpyxl")
    return path


def write_table_blocks(frame: pd.DataFrame, path: str | os.PathLike, overwrite: bool,
                       progress: Callable[[int], None] | None = None) -> None:
    """:func:`write_table` block by block (:data:`WRITE_ROWS` rows per Parquet row group or
    CSV block), reporting the rows written to ``progress``; same formats, same atomic rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        if path.suffix.lower() == ".csv":
            with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
                for start in range(0, max(len(frame), 1), WRITE_ROWS):
                    block = neutralize_formulas(frame.iloc[start:start + WRITE_ROWS])
                    block.to_csv(fh, index=False, header=start == 0)
                    if progress is not None:
                        progress(min(start + WRITE_ROWS, len(frame)))
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            with pq.ParquetWriter(tmp, table.schema) as writer:
                for start in range(0, max(len(frame), 1), WRITE_ROWS):
                    writer.write_table(table.slice(start, WRITE_ROWS))
                    if progress is not None:
                        progress(min(start + WRITE_ROWS, len(frame)))
