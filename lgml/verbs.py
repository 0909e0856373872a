"""Orchestration of the small command-line verbs (``simulate``, ``validate``, ``features``,
``check``): read, compute, write; the CLI only parses options and prints.

Every error a user can cause is one of :data:`USER_ERRORS`; the CLI prints it without a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lgml import criteria, io, validate
from lgml.explain.reasons import failed_text
from lgml.exports import Note
from lgml.schema import IDENTITY_COLUMNS
from lgml.validate import ContractError

SIMULATED_FILES = ("panel.parquet", "events.parquet", "truth.parquet")


class VerbError(ValueError):
    """A request a verb cannot serve (bad output name, nothing to judge ...)."""


USER_ERRORS: tuple[type[Exception], ...] = (ContractError, io.InputError, FileExistsError, VerbError)


def _load(panel: str | os.PathLike, events: str | os.PathLike | None, units: str | None, encoding: str | None,
          sheet: str | int | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None, list[Note]]:
    """The canonical panel (money in yuan), its events (None without a file) and the notes on
    how they were read. ``sheet`` picks the sheet of an ``.xlsx`` panel and events file."""
    frame, notes = validate.read_panel(panel, units=units, encoding=encoding, sheet=sheet)
    history = None
    if events is not None:
        history, more = validate.read_events(events, panel=frame, encoding=encoding, sheet=sheet)
        notes = notes + [Note(n.level, f"{Path(events).name}: {n.text}") for n in more]
    return frame, history, notes


@dataclass(frozen=True)
class Validated:
    """Result of :func:`validate_files`: the summary and verdict text and the reading notes."""

    text: str
    notes: list[Note]


def validate_files(panel: str | os.PathLike, events: str | os.PathLike | None = None, *, units: str | None = None,
                   encoding: str | None = None, sheet: str | int | None = None) -> Validated:
    """``lgml validate``: check a panel (and events) against the input contract.

    Returns:
        The panel's summary text (:func:`lgml.validate.summary`) with a last line holding the
        verdict (:func:`lgml.validate.verdict`), and the notes on how the files were read
        (:func:`lgml.validate.read_panel`).

    Raises:
        lgml.validate.ContractError, lgml.io.InputError: The input breaks the contract.
    """
    frame, history, notes = _load(panel, events, units, encoding, sheet)
    warned = sum(note.level == "warning" for note in notes)
    return Validated(f"{validate.summary(frame)}\n{validate.verdict(frame, history, warned)}", notes)


def features_file(panel: str | os.PathLike, out: str | os.PathLike, events: str | os.PathLike | None = None, *,
                  units: str | None = None, encoding: str | None = None, overwrite: bool = False,
                  sheet: str | int | None = None) -> tuple[pd.DataFrame, list[Note]]:
    """``lgml features``: build the training feature table of a panel and write it to ``out``.

    Returns:
        The feature table (:func:`lgml.features.build_features`), shape (n_firm_years, n_columns),
        and the reading notes.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is false (checked before any work).
        lgml.io.InputError: ``out`` is not .csv or .parquet (checked before any work).
        lgml.validate.ContractError, lgml.io.InputError: The input breaks the contract.
    """
    from lgml.features import build_features

    io.output_path(out, overwrite)
    io.refuse_same(out, panel, events)
    frame, history, notes = _load(panel, events, units, encoding, sheet)
    table = build_features(frame, history)
    io.write_table(table, out, overwrite=True)
    return table, notes


def simulate_files(out: str | os.PathLike, firms: int, *, seed: int = 0, overwrite: bool = False):
    """``lgml simulate``: simulate a panel and write ``panel``, ``events`` and ``truth`` parquet
    files into the folder ``out``.

    Returns:
        The :class:`lgml.simulate.Simulation`.

    Raises:
        FileExistsError: One of the files exists and ``overwrite`` is false, or ``out`` is a
            file (before any work).
    """
    from lgml.simulate import simulate

    if Path(out).exists() and not Path(out).is_dir():
        raise FileExistsError(f"{out} is a file; --out names the folder that receives panel.parquet, "
                              "events.parquet and truth.parquet")
    paths = [io.refuse_existing(Path(out) / name, overwrite) for name in SIMULATED_FILES]
    result = simulate(firms, seed=seed)
    marker = {"lgml.synthetic": f"simulated by lgml (seed {seed}): no row describes a real firm; firm names start "
                                f"with [模拟] and credit codes are random"}
    for path, table in zip(paths, (result.panel, result.events, result.truth)):
        io.write_table(table, path, metadata=marker)
    return result


@dataclass(frozen=True)
class Checked:
    """Result of :func:`check_file`.

    Attributes:
        assessed: One row per firm: :func:`lgml.criteria.assess` and its ``failed`` text.
        summary: :func:`lgml.criteria.failure_summary` of ``assessed``.
        source: The rules' source document.
        notes: How the panel was read (:func:`lgml.validate.read_panel`).
    """

    assessed: pd.DataFrame
    summary: pd.DataFrame
    source: str
    notes: list[Note] = field(default_factory=list)


def _with_names(assessed: pd.DataFrame, panel: pd.DataFrame) -> pd.DataFrame:
    """``assessed`` with the panel's ``firm_name``/``credit_code`` after ``firm_id``, when given."""
    from lgml.score.core import with_identity

    names = [c for c in IDENTITY_COLUMNS if c in panel.columns and panel[c].notna().any()]
    if not names:
        return assessed
    out = with_identity(assessed, panel[["firm_id", "year", *names]])
    return out[["firm_id", *names, *(c for c in assessed.columns if c != "firm_id")]]


def check_file(panel: str | os.PathLike, batch_year: int, out: str | os.PathLike | None = None, *,
               units: str | None = None, encoding: str | None = None, overwrite: bool = False,
               sheet: str | int | None = None) -> Checked:
    """``lgml check``: judge every firm of a panel on the Little Giant criteria of one batch,
    explain its shortfalls in words and optionally write the per-firm table.

    Args:
        panel: Panel file (CSV or Parquet).
        batch_year: Application (batch) year; fiscal year ``batch_year - 1`` is judged.
        out: Per-firm table to write (.csv or .parquet), or None.
        units, encoding, sheet: How to read the panel (:func:`lgml.validate.read_panel`).
        overwrite: Replace an existing ``out``.

    Returns:
        :class:`Checked`; ``assessed`` has the columns of :func:`lgml.criteria.assess` (with
        ``firm_name`` and ``credit_code`` after ``firm_id`` when the panel gives them) and
        ``failed`` (" | "-separated ``criterion: phrase`` of each criterion missed, empty when
        all are met; :func:`lgml.explain.reasons.failed_text`).

    Raises:
        VerbError: No firm has a year to judge, or ``batch_year`` is outside the batches the
            rules and the input contract cover.
        lgml.io.InputError: Unknown output format.
        FileExistsError, lgml.validate.ContractError, lgml.io.InputError: See :func:`features_file`.
    """
    from lgml.schema import YEAR_MAX
    from lgml.validate import BATCH_YEAR_MIN

    if not BATCH_YEAR_MIN <= batch_year <= YEAR_MAX + 1:
        raise VerbError(f"--year {batch_year}: batches run from {BATCH_YEAR_MIN} (the first Little Giant batch) to "
                        f"{YEAR_MAX + 1} (fiscal year {YEAR_MAX}, the last the input contract accepts)")
    if out is not None:
        io.output_path(out, overwrite)
        io.refuse_same(out, panel)
    frame, _, notes = _load(panel, None, units, encoding, sheet)
    rows = criteria.judged_rows(frame, batch_year)
    assessed = criteria.assess(frame, batch_year, rows=rows)
    if assessed.empty:
        raise VerbError(f"no firm has a fiscal year <= {batch_year - 1} to judge for batch {batch_year}")
    judged = pd.concat([rows, assessed.drop(columns=[c for c in assessed.columns if c in rows.columns])], axis=1)
    assessed["failed"] = failed_text(judged, batch_year)
    assessed = _with_names(assessed, frame)
    if out is not None:
        io.write_table(assessed, out, overwrite=overwrite)
    return Checked(assessed, criteria.failure_summary(assessed), criteria.RULES[criteria.regime_for(batch_year)]["source"],
                   notes)
