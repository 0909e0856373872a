"""Score firms with a trained model bundle: one row per firm, streamed from a panel of any size.

:func:`score_file` is the ``lgml score`` verb. It reads the input in passes, holding at most one
chunk (plus one bucket) in memory at a time:

0. **keys** and 1. **window** (:mod:`lgml.score.stream`): find each firm's scored year, then
   check the rows of its window (the scored year and the two before) against the input
   contract and spill them into buckets by firm.
2. **score** (:mod:`lgml.score.engines`): per bucket, build the features of the scored rows and
   predict them (:mod:`lgml.score.core`), in-process (``engine="local"``) or on Dask workers
   (``engine="dask"``), which load the bundle from its folder.
3. **rank**: the scored rows (one per firm) are ranked within province and nationally and
   written to the output through a temporary file renamed on success (:mod:`lgml.io`), so an
   interrupted run leaves no partial output.

Probabilities are calibrated probabilities of designation in one of the batches t + 1 .. t + h of
the model's horizon h (batch t + 1 for h = 1). Several designation models of distinct horizons
score together: each firm's ``probability_h<h>`` are made monotone across horizons by isotonic
regression (:mod:`lgml.score.horizons`). A review model adds ``p_review_pass`` for the title
holders due for re-review in batch t + 1. Growth is the expected log revenue growth
``log(revenue[t+1] / revenue[t])``; contributions are in log-odds.
For a panel already in memory, :func:`lgml.score.core.score_panel` does the same in one call.

Example:
    >>> result = score_file("models/lgml-designation", "panel.parquet", "scores.parquet")  # doctest: +SKIP
    >>> result.summary.head()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lgml import io, streaming
from lgml.exports import Note
from lgml.score import engines, horizons as horizons_mod, stream
from lgml.score.core import (finish_scores, history_notice, level_reviews, predict_rows, province_summary,
                             rank_scores, rules_notice, score_panel, score_rows)
from lgml.score.stream import DEFAULT_CHUNK_ROWS

__all__ = ["DEFAULT_CHUNK_ROWS", "Progress", "ScoreError", "ScoreResult", "finish_scores", "history_notice",
           "predict_rows", "province_summary", "rank_scores", "rules_notice", "score_file", "score_panel",
           "score_rows"]

log = logging.getLogger(__name__)


class ScoreError(ValueError):
    """Scoring cannot start or finish: wrong options, a model of the wrong task or that cannot
    be loaded, no firm to score."""


Progress = Callable[[str, int, "int | None"], None]
"""``progress(stage, done, total)``: stage ``keys``/``read`` (rows), ``score`` (buckets) or
``write`` (rows); ``total`` None when unknown."""


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
        summary_output: The summary file written, or None.
        growth_level: Where the growth model's year level came from (distinct
            ``growth_level_source`` values), or None without a growth model.
        rules: :func:`rules_notice`: the rules each forecast batch is judged under.
        expected_designations: The designations the probabilities were refitted to, or None.
        probability_shift: The log-odds added to every probability by that refit, or None.
        notes: How the input was read (:class:`lgml.exports.Note`: unrecognised headers, optional
            columns entirely missing, units overridden or implausible), from its first chunk.
        horizons: The horizons of the designation models, the primary's first.
        repaired: With several horizons, the firms whose probabilities were not monotone across
            horizons and were repaired (0 otherwise).
        largest_violation: The largest amount by which a shorter horizon's probability exceeded
            a longer one's before the repair (0 when none did).
        review_model: ``name version`` of the review model, or None.
        review_due: Holders scored for re-review (rows with ``review_due``), or None without a
            review model.
        review_level: How ``p_review_pass`` was levelled to the review model's pass rate
            (:func:`lgml.score.core.level_reviews`), or None when it was not.
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
    summary_output: Path | None = None
    growth_level: str | None = None
    rules: str = ""
    expected_designations: float | None = None
    probability_shift: float | None = None
    notes: list[Note] = field(default_factory=list)
    horizons: tuple[int, ...] = (1,)
    repaired: int = 0
    largest_violation: float = 0.0
    review_model: str | None = None
    review_due: int | None = None
    review_level: str | None = None


def score_file(model: str | os.PathLike | Sequence[str | os.PathLike], input: str | os.PathLike,
               output: str | os.PathLike, *, events: str | os.PathLike | None = None,
               growth_model: str | os.PathLike | None = None, review_model: str | os.PathLike | None = None,
               year: int | None = None, explain: bool = False, chunk_rows: int = DEFAULT_CHUNK_ROWS,
               engine: str = "local", scheduler: str | None = None, units: str | None = None,
               encoding: str | None = None, sheet: str | int | None = None, overwrite: bool = False, summary: str | os.PathLike | None = None,
               macro_growth: float | None = None, expected_designations: float | None = None,
               progress: Progress | None = None) -> ScoreResult:
    """Score every firm of a panel file and write one row per firm (see the module docstring).

    Args:
        model: Designation bundle folder or MLflow URI, or several of distinct horizons (the
            first is the primary: ``probability``, ``log_odds``, ranks and the explanation
            columns are its own). Several models add ``probability_h<h>`` for each horizon,
            made consistent for every firm (p_h1 <= p_h2 <= p_h3) by isotonic regression
            across the horizons (the least-squares monotone fit with equal weights); the
            primary's ``probability`` is then its horizon's repaired value. Every output
            has ``horizon``, the primary's horizon.
        input: Panel as CSV (UTF-8 or GBK/GB18030), Parquet file or folder of Parquet files.
        output: ``.parquet`` or ``.csv`` file to write.
        events: Designation events file (``firm_id, batch_year, revoked_year``).
        growth_model: Optional growth bundle folder or MLflow URI.
        review_model: Optional review bundle folder or MLflow URI: adds ``review_due``,
            ``review_round`` and ``p_review_pass`` (calibrated probability that a holder whose
            title is re-reviewed in batch t + 1 keeps it, each review levelled to the model's
            pass rate as in its evaluation, see :func:`lgml.score.core.level_reviews`; NaN for
            every other row), and the summary's ``review_due`` and
            ``expected_review_failures``. Needs ``events``.
        year: Fiscal year to score; None scores each firm's latest year.
        explain: Add ``shap_<dimension>`` (log-odds) and ``reasons`` columns.
        chunk_rows: Rows read at a time, and about the rows per bucket.
        engine: ``local`` (this process) or ``dask``.
        scheduler: Dask scheduler address; None starts a LocalCluster.
        units: Money units overriding the headers' (``yuan`` or ``wan``); None reads each money
            column in its header's unit (``营业收入(万元)``), yuan without one.
        encoding: Force the CSV encoding.
        sheet: Sheet of an ``.xlsx`` input (name or 0-based position; default the first). An
            Excel sheet is read whole, not in chunks.
        overwrite: Replace existing output files.
        summary: Optional ``.csv``/``.parquet`` file for the per-province summary.
        macro_growth: The year's growth level for the growth model (a rate, 0.05 = 5%); None
            takes the model's default, the mean of recent years. The output's
            ``growth_level_source`` says which was used.
        expected_designations: Designations expected among the scored candidates (e.g. an
            announced batch size scaled to the firms scored): the probabilities' intercept is
            refitted so that they sum to it (:func:`lgml.modeling.calibrate.shift_to_count`);
            ranks do not change. None keeps the calibration batch's base rate.
        progress: Called as ``progress(stage, done, total)``.

    Returns:
        What was done, with the per-province summary.

    Raises:
        ContractError: The input (or events) break the contract.
        lgml.io.InputError: A file cannot be read, an output has an unknown format, or an
            output is one of the inputs.
        lgml.modeling.bundle.BundleInputError: The features do not fit the model.
        FileExistsError: ``output`` or ``summary`` exists and ``overwrite`` is false.
        ScoreError: No firm to score, a model of the wrong task, two models of one horizon,
            a review model without events, bad options.
    """
    started = time.perf_counter()
    output, summary = _check_options(engine, chunk_rows, output, summary, overwrite)
    for written in (output, summary):
        if written is not None:
            io.refuse_same(written, input, events)
    if summary is not None and summary.resolve() == output.resolve():
        raise ScoreError(f"{summary}: the summary would replace the scores; choose another path")
    if macro_growth is not None and (growth_model is None or not math.isfinite(macro_growth) or macro_growth <= -1):
        raise ScoreError("macro_growth needs a growth model (growth_model)" if growth_model is None else
                         f"macro_growth must be a growth rate above -1 (0.05 = 5%), not {macro_growth}")
    if expected_designations is not None and not (math.isfinite(expected_designations) and expected_designations > 0):
        raise ScoreError(f"expected_designations must be a positive number, not {expected_designations}")
    specs = [model] if isinstance(model, (str, os.PathLike)) else list(model)
    _check_model_options(specs, review_model, events, expected_designations)
    report = progress or (lambda stage, done, total: None)
    with streaming.work_dir(output) as work:
        models = _load_models(specs, growth_model, review_model, work)
        bundle, growth = models.bundle, models.growth
        history = _load_events(events, encoding, sheet)
        notice = history_notice(bundle, history, Path(events).name if events is not None else None)
        source = stream.open_input(input, encoding, engine=engine, year=year, sheet=sheet)
        keys = stream.key_headers(source.headers)
        context = _context(bundle)
        index = _key_pass(source, keys, year, chunk_rows, report)
        stream.release_memory()
        # Without the bundle's context, the fallback context needs every row of the input.
        keep = index if context is not None else None
        rows_read, buckets, notes = _spill_pass(source, keep, keys, engine, work, chunk_rows, units, report)
        source = source.released()  # the input held in memory is done with
        stream.release_memory()
        if not buckets:
            raise ScoreError(f"no firm of {source.path} could be scored")
        job = engines.ScoringJob(
            engines.bundle_identity(bundle), engines.bundle_identity(growth) if growth is not None else None,
            history, context if context is not None else stream.input_context(buckets, history), year, explain,
            str(source.path), macro_growth, _identity(models.review), tuple(map(_identity, models.others)))
        scored = engines.score_buckets(engine, buckets, work, job, models, scheduler=scheduler,
                                       progress=lambda n: report("score", n, len(buckets)))
        if scored.empty:
            raise ScoreError(f"no firm of {source.path} could be scored")
        shift = None
        if expected_designations is not None:
            from lgml.modeling import calibrate

            try:
                refit, shift = calibrate.shift_to_count(scored["probability"].to_numpy(dtype=float),
                                                        expected_designations)
            except ValueError as exc:
                raise ScoreError(str(exc)) from None
            scored = scored.assign(probability=refit)
        horizons = [horizons_mod.horizon_of(b) for b in (bundle, *models.others)]
        repair = None
        if models.others:
            scored, repair = horizons_mod.repair_scores(scored, horizons, horizons[0])
        levelled = None
        if models.review is not None:
            scored, levelled = level_reviews(scored, models.review)
        final = finish_scores(rank_scores(scored), bundle, growth, notice, review=models.review, others=models.others)
        per_province = province_summary(final)
        # The summary is staged first and renamed last: both files appear, or neither changes.
        with contextlib.ExitStack() as staged:
            if summary is not None:
                staged.enter_context(io.staged_table(per_province, summary, overwrite))
            io.write_table_blocks(final, output, overwrite, progress=lambda n: report("write", n, len(final)))
    firms = index.firms if index is not None else int(final["firm_id"].nunique())
    years = {int(k): int(v) for k, v in final["year"].value_counts().sort_index().items()}
    return ScoreResult(
        output=output, rows_read=rows_read, firms=firms, scored=len(final),
        skipped=max(firms - len(final), 0) if year is not None else 0, years=years,
        summary=per_province, history=notice, model=f"{bundle.name} {bundle.version}",
        seconds=time.perf_counter() - started, summary_output=summary,
        growth_level="; ".join(final["growth_level_source"].unique()) if growth is not None else None,
        rules=rules_notice(bundle, final["batch_year"].unique()),
        expected_designations=expected_designations, probability_shift=shift, notes=notes,
        horizons=tuple(horizons), repaired=repair.repaired if repair is not None else 0,
        largest_violation=repair.largest_violation if repair is not None else 0.0,
        review_model=f"{models.review.name} {models.review.version}" if models.review is not None else None,
        review_due=int(final["review_due"].sum()) if models.review is not None else None, review_level=levelled,
    )


def _check_options(engine: str, chunk_rows: int, output: str | os.PathLike, summary: str | os.PathLike | None,
                   overwrite: bool) -> tuple[Path, Path | None]:
    """Refuse bad options and outputs before any work: the output paths, checked."""
    if engine not in engines.ENGINES:
        raise ScoreError(f"engine must be 'local' or 'dask', not {engine!r}")
    if chunk_rows < 1:
        raise ScoreError(f"chunk_rows must be >= 1, not {chunk_rows}")
    output = io.output_path(output, overwrite)
    return output, io.output_path(summary, overwrite) if summary is not None else None


def _check_model_options(specs: list[Any], review_model: Any, events: Any, expected_designations: Any) -> None:
    """Refuse model options that cannot work together, before any model is loaded."""
    if not specs:
        raise ScoreError("--model is needed: give a designation model")
    if review_model is not None and events is None:
        raise ScoreError("--review-model needs --events: without designation events no firm is known to hold a "
                         "title, so none is due for re-review")
    if expected_designations is not None and len(specs) > 1:
        raise ScoreError("--expected-designations refits one model's probabilities; with several --model it would "
                         "break their order across horizons: give a single --model")


def _load_models(specs: list[Any], growth_model: Any, review_model: Any, work: Path) -> engines.Loaded:
    """The designation (primary first), growth and review bundles, their tasks and horizons
    checked; MLflow models are downloaded into ``work`` (beside the output, so on storage that
    Dask workers can share)."""
    from lgml.modeling.bundle import open_bundle

    try:
        designation = [open_bundle(spec, dst=work / f"model-{i}" if i else work / "model")
                       for i, spec in enumerate(specs)]
        growth = open_bundle(growth_model, dst=work / "growth-model") if growth_model is not None else None
        review = open_bundle(review_model, dst=work / "review-model") if review_model is not None else None
    except ValueError as exc:  # an MLflow location holding no lgml model
        raise ScoreError(str(exc)) from exc
    for bundle in designation:
        _check_task(bundle, "designation", "--model")
    if growth is not None:
        _check_task(growth, "growth", "--growth-model")
    if review is not None:
        _check_task(review, "review", "--review-model")
    try:
        horizons_mod.check_horizons(designation)
    except ValueError as exc:
        raise ScoreError(str(exc)) from None
    return engines.Loaded(designation[0], growth, review, tuple(designation[1:]))


def _identity(bundle: Any) -> tuple[str, str] | None:
    return engines.bundle_identity(bundle) if bundle is not None else None


def _check_task(bundle: Any, task: str, option: str) -> None:
    if bundle.task != task:
        raise ScoreError(f"{option} needs a {task} model; {bundle.path} is a {bundle.task} model")


def _load_events(events: str | os.PathLike | None, encoding: str | None,
                 sheet: str | int | None = None) -> pd.DataFrame | None:
    if events is None:
        return None
    from lgml.validate import load_events

    return load_events(events, encoding=encoding, sheet=sheet)


def _context(bundle: Any) -> pd.DataFrame | None:
    """The bundle's province/sector context, warning when it has none."""
    if bundle.context is None:
        log.warning("bundle %s has no province/sector context: computing it from the whole input, so "
                    "scores depend on which firms are scored together", bundle.path)
    return bundle.context


def _key_pass(source: streaming.TableSource, keys: tuple[str | None, str | None], year: int | None, chunk_rows: int,
              report: Progress) -> stream.KeyIndex | None:
    """Pass 0 (see :func:`lgml.score.stream.key_pass`), refusing an input without a firm to score."""
    index = stream.key_pass(source, keys, year, chunk_rows, lambda n: report("keys", n, source.rows))
    if index is not None and not index.scored_firms:
        what = f"a row for fiscal year {year}" if year is not None else "a readable firm_id and year"
        raise ScoreError(f"no firm in {source.path} has {what}")
    return index


def _spill_pass(source: streaming.TableSource, index: stream.KeyIndex | None, keys: tuple[str | None, str | None],
                engine: str, work: Path, chunk_rows: int, units: str | None,
                report: Progress) -> tuple[int, list[Path] | list[pd.DataFrame], list[Note]]:
    """Pass 1: a window that fits in memory stays there as one bucket (scored in this process);
    larger ones are spilled to bucket files of about ``chunk_rows`` rows."""
    window_rows = index.window_rows if index is not None else (source.rows or 0)
    in_memory = stream.holds_in_memory(window_rows, engine)
    buckets = 1 if in_memory else stream.n_buckets(window_rows, chunk_rows)
    return stream.spill_pass(source, index, keys, None if in_memory else work, buckets, chunk_rows, units,
                             lambda n: report("read", n, source.rows))
