"""Reading and writing tables: CSV (UTF-8 or GBK/GB18030) and Parquet, written atomically.

Only this module and the CLI touch files; every other module works on DataFrames.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

# Chinese Excel exports are usually GBK/GB18030; "utf-8-sig" also strips a BOM.
CSV_ENCODINGS = ("utf-8-sig", "gb18030")


class InputError(ValueError):
    """A file cannot be read as a table (missing, unknown format, undecodable)."""


def read_table(path: str | os.PathLike, encoding: str | None = None) -> pd.DataFrame:
    """Read a CSV file, a Parquet file or a folder of Parquet files.

    CSV is tried as UTF-8 then GB18030 (a superset of GBK) unless ``encoding`` is given.
    Every CSV column is read as text so that codes such as sector "06" keep their zeros;
    the contract casts types afterwards.

    Args:
        path: File or folder.
        encoding: Force a CSV encoding.

    Returns:
        The table as read, with its original headers.

    Raises:
        InputError: The path is missing, of an unknown type, or cannot be decoded.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types; give one clear message
            raise InputError(f"{path}: cannot read as Parquet ({exc})") from exc
    if suffix in (".csv", ".txt", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        for enc in (encoding,) if encoding else CSV_ENCODINGS:
            try:
                return pd.read_csv(path, sep=sep, dtype=str, encoding=enc, keep_default_na=True)
            except UnicodeDecodeError:
                continue
            except LookupError as exc:
                raise InputError(f"{path}: unknown encoding {enc!r}") from exc
            except pd.errors.ParserError as exc:
                raise InputError(f"{path}: malformed CSV ({exc})") from exc
        tried = encoding or " and ".join(CSV_ENCODINGS)
        raise InputError(f"{path}: cannot decode the file as {tried}; pass the encoding explicitly")
    raise InputError(f"{path}: unknown table format {suffix!r} (use .csv or .parquet)")


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    An interrupted or failed write leaves neither a partial file nor the temporary one.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def write_table(df: pd.DataFrame, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write ``df`` as Parquet or CSV (by extension), atomically. CSV is UTF-8 with BOM so
    that Excel opens Chinese text correctly."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
        raise InputError(f"{path}: unknown output format {suffix!r} (use .csv or .parquet)")
    with atomic_path(path, overwrite=overwrite) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False, encoding="utf-8-sig")
        else:
            df.to_parquet(tmp, index=False)
    return path
