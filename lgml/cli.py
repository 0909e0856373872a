"""The ``lgml`` command line. Heavy libraries are imported inside the commands that use them
so that ``lgml --help`` stays instant."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from lgml.failures import VERBOSITY, OneErrorPath, exit_cleanly_on_sigterm

log = logging.getLogger("lgml")


app = typer.Typer(
    name="lgml",
    help="Predict and explain Little Giant (专精特新\"小巨人\") designations of Chinese SMEs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneErrorPath,
)

Units = Annotated[Optional[Literal["yuan", "wan"]], typer.Option(
    "--units", help="Money units of every money column: 'yuan' or 'wan' (万元, x10,000), overriding the units "
                    "written in the headers. Default: each header's unit, e.g. 营业收入(万元), else yuan.")]
Sheet = Annotated[Optional[str], typer.Option("--sheet", help="Sheet of an .xlsx input: name or 0-based position "
                                                              "(default: the first).")]
Encoding = Annotated[Optional[str], typer.Option("--encoding", help="Force the CSV encoding.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"lgml {version('lgml')}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v info, -vv debug.")] = 0,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Configure logging once for every command."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    VERBOSITY["level"] = verbose
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    exit_cleanly_on_sigterm()


def _table(title: str):
    """An empty rich table in the style of every table the CLI prints: a rule under the header and
    no frame, so that more of an 80-column terminal (or log) is left for the cells.

    Tables stay within the console's width (COLUMNS, 80 when piped) by wrapping only text columns;
    columns of names, identifiers and numbers are added with ``no_wrap=True``.
    """
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)


def fail(message: str, code: int = 1) -> None:
    """Print an error without a traceback and exit."""
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


PanelFile = Annotated[Path, typer.Argument(help="Panel as CSV (UTF-8 or GBK), Excel .xlsx or Parquet.")]
EventsFile = Annotated[Optional[Path], typer.Option("--events", help="Designation events table.")]


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Folder for panel.parquet, events.parquet, truth.parquet.")],
    firms: Annotated[int, typer.Option("--firms", min=100, help="Number of simulated firms.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    report: Annotated[bool, typer.Option("--report", help="Print calibration targets beside simulated values.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Write the embedded default: a simulated firm-year panel calibrated to published statistics.

    The data are synthetic. truth.parquet holds the true designation probability and expected
    growth of every firm-year, so models can be compared with the best possible one.
    """
    from rich.console import Console

    from lgml import simulate as sim, verbs
    from lgml.published import calibration_report

    console = Console(stderr=True)
    try:
        with console.status(f"Simulating {firms:,} firms x {sim.LAST_YEAR - sim.FIRST_YEAR + 1} years (seed {seed})"):
            result = verbs.simulate_files(out, firms, seed=seed, overwrite=overwrite)
    except FileExistsError as exc:
        fail(str(exc))
    console.print(f"Wrote {len(result.panel):,} firm-years, {len(result.events):,} designations to {out} "
                  "(simulated data, not real firms: names start with [模拟], credit codes are random)")
    if report:
        Console().print(_calibration_table(calibration_report(result)))


def _calibration_table(report):
    """The calibration report of a simulation as a rich table."""
    table = _table("Calibration: published target vs simulated")
    table.add_column("target", overflow="fold")
    table.add_column("published", overflow="fold")
    for col in ("simulated", "accepted band", "ok"):
        table.add_column(col, justify="right" if col == "simulated" else "left", no_wrap=True)
    for row in report.itertuples(index=False):
        table.add_row(row.target, row.published, f"{row.simulated:,.3f}", f"{row.low:,.3f} .. {row.high:,.3f}",
                      "yes" if row.ok else "[red]NO[/red]")
    return table


@app.command()
def validate(file: PanelFile, events: EventsFile = None, units: Units = None, encoding: Encoding = None,
             sheet: Sheet = None) -> None:
    """Check a firm-year panel (and events) against the input contract; exit 1 if it breaks it."""
    from lgml import validate as v, verbs

    try:
        result = verbs.validate_files(file, events, units=units, encoding=encoding, sheet=sheet)
    except v.ContractError as exc:
        fail(f"{exc}\n{v.broken_verdict(exc.problems)}")
    except verbs.USER_ERRORS as exc:
        fail(str(exc))
    print_notes(result.notes)
    typer.echo(result.text)


def print_notes(notes) -> None:
    """Reading notes (:class:`lgml.exports.Note`) to stderr: warnings in yellow."""
    for note in notes:
        typer.secho(str(note), err=True, fg=typer.colors.YELLOW if note.level == "warning" else None)


@app.command()
def features(
    panel: PanelFile,
    out: Annotated[Path, typer.Option("--out", help="Feature table to write (.parquet or .csv).")],
    events: EventsFile = None,
    units: Units = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    overwrite: Overwrite = False,
) -> None:
    """Write point-in-time training features: one row per firm and application (batch) year."""
    from rich.console import Console

    from lgml import verbs

    console = Console(stderr=True)
    try:
        with console.status(f"Building features of {panel}"):
            table, notes = verbs.features_file(panel, out, events, units=units, encoding=encoding, overwrite=overwrite,
                                               sheet=sheet)
    except verbs.USER_ERRORS as exc:
        fail(str(exc))
    print_notes(notes)
    labelled = int(table["designated_next"].notna().sum())
    console.print(f"Wrote {len(table):,} rows x {table.shape[1]} columns to {out} "
                  f"({labelled:,} rows with a designation label)")


@app.command()
def check(
    file: PanelFile,
    year: Annotated[int, typer.Option("--year", help="Batch (application) year; fiscal year YEAR-1 is judged.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Per-firm table to write (.csv or .parquet).")] = None,
    units: Units = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    overwrite: Overwrite = False,
) -> None:
    """Check every firm against the Little Giant criteria of batch YEAR and explain shortfalls."""
    from rich.console import Console

    from lgml import verbs

    try:
        result = verbs.check_file(file, year, out, units=units, encoding=encoding, overwrite=overwrite, sheet=sheet)
    except verbs.USER_ERRORS as exc:
        fail(str(exc))
    print_notes(result.notes)
    assessed, console = result.assessed, Console()
    console.print(f"Batch {year} ({result.source}), fiscal year <= {year - 1}: {len(assessed):,} firms assessed")
    for flag, words in (("eligible", "meet every Little Giant criterion:"),
                        ("srdi_eligible", "qualify as provincial SRDI SMEs:  ")):
        console.print(f"  {words} {int(assessed[flag].sum()):,} ({assessed[flag].mean():.1%})")
    console.print(_failure_table(result.summary.head(10)))
    if out is not None:
        console.print(f"Wrote {len(assessed):,} firms x {assessed.shape[1]} columns to {out}")


def _failure_table(summary):
    """The most failed criteria as a rich table: identifiers and numbers whole, labels wrapped."""
    from lgml.vocabulary import DIMENSIONS

    table = _table("Most failed criteria")
    for col in ("criterion", "dim", "label", "标准", "failed", "share"):
        wraps = col in ("label", "标准")
        table.add_column(col, justify="right" if col in ("failed", "share") else "left", no_wrap=not wraps,
                         overflow="fold" if wraps else "ellipsis")
    for row in summary.itertuples(index=False):
        table.add_row(row.criterion, DIMENSIONS[row.dimension][0], row.label_en, row.label_zh,
                      f"{row.n_failed:,}", f"{row.share_failed:.1%}")
    return table


def _load_model(spec: str):
    """A bundle folder or an MLflow URI; a clear error otherwise."""
    from lgml.modeling.bundle import open_bundle

    try:
        return open_bundle(spec)
    except Exception as exc:  # BundleError, FileNotFoundError, ValueError, and MLflow's own types
        fail(f"cannot load model {spec}: {exc}")


def _output_format(out: Path, fmt: Optional[str], allowed: tuple[str, ...]) -> str:
    suffixes = {".html": "html", ".htm": "html", ".md": "md", ".json": "json"}
    chosen = fmt or suffixes.get(out.suffix.lower())
    if chosen not in allowed:
        fail(f"{out}: choose --format {' or '.join(allowed)} (or an output file ending in "
             f"{', '.join('.' + a for a in allowed)})")
    return chosen


Firms = Annotated[Optional[list[str]], typer.Option("--firm", help="Firm ID to explain (repeatable).")]
FiscalYear = Annotated[Optional[int], typer.Option("--year", help="Fiscal year judged (default: the latest); "
                                                              "the application is for batch YEAR+1.")]
Top = Annotated[Optional[int], typer.Option("--top", min=1, help="Explain the N most likely firms.")]
PerProvince = Annotated[bool, typer.Option("--per-province", help="With --top: N per province.")]
Target = Annotated[float, typer.Option("--target", min=0.0, max=1.0, help="Probability the what-if search aims for.")]
Reasons = Annotated[int, typer.Option("--reasons", min=1, help="Drivers listed per firm.")]
GrowthModel = Annotated[Optional[str], typer.Option("--growth-model", help="Growth model bundle.")]


@app.command()
def explain(
    model: Annotated[str, typer.Option("--model", help="Model bundle folder (or an MLflow model URI).")],
    input: Annotated[Path, typer.Option("--input", help="Panel as CSV (UTF-8 or GBK), Excel .xlsx or Parquet.")],
    out: Annotated[Path, typer.Option("--out", help="Report file (.html, .md or .json).")],
    firm: Firms = None, year: FiscalYear = None, events: EventsFile = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="html, md or json (default: from --out).")] = None,
    units: Units = None, encoding: Encoding = None, sheet: Sheet = None, growth_model: GrowthModel = None, top: Top = None,
    per_province: PerProvince = False, target: Target = 0.5, reasons: Reasons = 8, overwrite: Overwrite = False,
) -> None:
    """Explain firms: probability, drivers, criteria checklist and what would have to change.

    Either --firm ID (one report per firm, several IDs in one file) or --top N [--per-province]
    (one combined report of the most likely firms).
    """
    from rich.console import Console

    from lgml import io
    from lgml.explain.firm import USER_ERRORS, explain_file

    chosen = _output_format(out, fmt, ("html", "md", "json"))
    try:  # refused before the models are loaded
        io.refuse_existing(out, overwrite)
        io.refuse_same(out, input, events)
    except (FileExistsError, io.InputError) as exc:
        fail(str(exc))
    bundle, growth = _load_model(model), (_load_model(growth_model) if growth_model else None)
    console = Console(stderr=True)
    try:
        with _ScoreProgress(console) as progress:
            result = explain_file(bundle, input, out, events=events, units=units, encoding=encoding, sheet=sheet,
                                  overwrite=overwrite,
                                  firms=firm or (), top=top, per_province=per_province, year=year, growth_bundle=growth,
                                  target=target, k=reasons, fmt=chosen, progress=progress)
    except USER_ERRORS as exc:
        fail(str(exc))
    n = len(result.explanations)
    console.print(f"Wrote {n} firm explanation{'s' if n != 1 else ''} to {out}")


@app.command()
def report(
    model: Annotated[str, typer.Option("--model", help="Model bundle folder (or an MLflow model URI).")],
    out: Annotated[Path, typer.Option("--out", help="Report file (.html, .md or .json).")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Panel to evaluate and check for drift.")] = None,
    events: Annotated[Optional[Path], typer.Option("--events", help="Designation events of --data.")] = None,
    reference: Annotated[Optional[Path], typer.Option("--reference", help="Panel to measure drift against "
                                                                          "(default: the bundle's stored profile).")] = None,
    reference_events: Annotated[Optional[Path], typer.Option("--reference-events",
                                                            help="Events of --reference.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="html, md or json (default: from --out).")] = None,
    units: Units = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    sample: Annotated[int, typer.Option("--sample", min=100, help="Rows sampled for the importance plots.")] = 4_000,
    overwrite: Overwrite = False,
) -> None:
    """Model card: the headline in words (the top 100 of the latest held-out batch beside the
    rule check), gains chart, calibration, metrics by province and sector on held-out batches,
    drift (PSI) of --data's latest batch against the training reference with a verdict, and
    provenance; then the technical detail (baselines, oracle, gates, curves, importance).

    Without --data, a model trained on the simulated default is described on a fresh simulated
    sample drawn with its config's seed.
    """
    from rich.console import Console

    from lgml import io, validate as v
    from lgml.modeling.bundle import BundleInputError
    from lgml.report.model import render_model
    from lgml.report.model import build_model_report

    chosen = _output_format(out, fmt, ("html", "md", "json"))
    try:
        io.refuse_existing(out, overwrite)
        io.refuse_same(out, data, events, reference, reference_events)
    except (FileExistsError, io.InputError) as exc:
        fail(str(exc))
    console = Console(stderr=True)
    bundle = _load_model(model)
    if bundle.task != "designation":
        fail(f"{model} is a {bundle.task} model; the report covers designation models")
    try:
        with console.status("Building features") as status:
            result = build_model_report(bundle, data, events=events, reference=reference,
                                        reference_events=reference_events, units=units, encoding=encoding, sheet=sheet,
                                        sample=sample, on_step=status.update)
    except (v.ContractError, io.InputError, BundleInputError) as exc:
        fail(str(exc))
    with io.atomic_path(out, overwrite=True) as tmp:
        tmp.write_text(render_model(result, chosen), encoding="utf-8")
    console.print(f"Wrote the model report of {bundle.config.name} to {out}")


@app.command()
def score(
    model: Annotated[str, typer.Option("--model", help="Designation bundle folder or MLflow URI (models:/name@champion).")],
    input: Annotated[Path, typer.Option("--input", help="Panel: CSV (UTF-8 or GBK), Excel .xlsx (read whole), Parquet "
                                                        "file or folder of Parquet files.")],
    output: Annotated[Path, typer.Option("--output", help="Scores to write (.parquet or .csv).")],
    events: Annotated[Optional[Path], typer.Option("--events", help="Designation events: flags title holders, feeds history features.")] = None,
    growth_model: Annotated[Optional[str], typer.Option("--growth-model", help="Growth bundle folder or MLflow URI.")] = None,
    year: Annotated[Optional[int], typer.Option("--year", help="Fiscal year to score (default: each firm's latest year).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Add contributions per dimension (log-odds) and the top 3 reasons.")] = False,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", min=1, help="Rows read at a time (bounds memory).")] = 200_000,
    engine: Annotated[Literal["local", "dask"], typer.Option("--engine", help="Score in this process or on Dask.")] = "local",
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler (tcp://host:8786); default a local cluster.")] = None,
    units: Units = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    summary: Annotated[Optional[Path], typer.Option("--summary", help="Per-province summary to write (.csv or .parquet).")] = None,
    macro_growth: Annotated[Optional[float], typer.Option(
        "--macro-growth", help="The year's growth level for --growth-model as a rate (0.05 = 5%), e.g. a published "
                               "industrial value-added forecast (default: the mean of recent years).")] = None,
    expected_designations: Annotated[Optional[float], typer.Option(
        "--expected-designations", help="Designations expected among the scored candidates (e.g. an announced batch "
                                        "size or quota, scaled to the firms scored): refit the probabilities' "
                                        "intercept so that they sum to it; ranks do not change.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Score every firm: calibrated designation probability, ranks, growth, optional reasons."""
    from rich.console import Console

    from lgml import io, score as sc, validate as v
    from lgml.modeling.bundle import BundleError, BundleInputError

    errors = (v.ContractError, io.InputError, BundleError, BundleInputError, sc.ScoreError, FileExistsError,
              FileNotFoundError, *_mlflow_errors(model, growth_model))
    console = Console(stderr=True)
    with _ScoreProgress(console) as progress:
        try:
            result = sc.score_file(model, input, output, events=events, growth_model=growth_model, year=year,
                                   explain=explain, chunk_rows=chunk_rows, engine=engine, scheduler=scheduler,
                                   units=units, encoding=encoding, sheet=sheet, overwrite=overwrite, summary=summary,
                                   macro_growth=macro_growth, expected_designations=expected_designations,
                                   progress=progress)
        except errors as exc:
            progress.stop()
            fail(str(exc))
    _print_scores(console, result, year)


def _mlflow_errors(*specs: Optional[str]) -> tuple[type[Exception], ...]:
    """MLflow's own exception type when a model is an MLflow URI (mlflow is imported only then)."""
    if not any(spec and ":/" in spec for spec in specs):
        return ()
    from mlflow.exceptions import MlflowException

    return (MlflowException,)


def _print_scores(console, result, year: Optional[int]) -> None:
    """What ``lgml score`` did (to stderr) and the per-province summary table (to stdout)."""
    from rich.console import Console

    print_notes(result.notes)
    years = ", ".join(f"{y}: {n:,}" for y, n in result.years.items())
    console.print(f"Scored {result.scored:,} firms (fiscal year {years}) from {result.rows_read:,} rows "
                  f"in {result.seconds:.1f} s with {result.model} -> {result.output}")
    if result.skipped:
        console.print(f"[yellow]{result.skipped:,} firms have no row for fiscal year {year} and were not scored[/yellow]")
    console.print(f"Designation history: {result.history}")
    if result.rules:
        console.print(f"Rules: {result.rules}")
    if result.probability_shift is not None:
        console.print(f"Probabilities refitted to {result.expected_designations:,.1f} expected designations "
                      f"(log-odds {result.probability_shift:+.3f})")
    if result.growth_level:
        console.print(f"Growth level: {result.growth_level}")
    out = Console()
    out.print(_summary_table(result.summary, out.width))
    if result.summary_output is not None:
        console.print(f"Wrote the per-province summary to {result.summary_output}")


class _ScoreProgress:
    """A rich progress bar per scoring stage, as a ``progress(stage, done, total)`` callable."""

    LABELS = {"keys": "Finding each firm's year", "read": "Reading and checking rows",
              "score": "Scoring buckets", "write": "Writing scores"}

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=console, transient=True)
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "_ScoreProgress":
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def stop(self) -> None:
        self._bar.stop()

    def __call__(self, stage: str, done: int, total: Optional[int]) -> None:
        if stage not in self._tasks:
            self._tasks[stage] = self._bar.add_task(self.LABELS.get(stage, stage), total=total)
        self._bar.update(self._tasks[stage], completed=done, total=total)


SUMMARY_HEADS = {"province": "province", "firms": "firms", "title_holders": "holders", "candidates": "candidates",
                 "expected_designations": "sum p", "max_probability": "max p", "mean_growth": "log\ngrowth"}
SUMMARY_DROPPABLE = ("title_holders", "max_probability")  # the least useful first; both are in --summary


def _summary_table(summary, width: int = 80):
    """The per-province summary as a rich table at most ``width`` characters wide.

    Province names and numbers are never cut: when the table would not fit, the columns of
    ``SUMMARY_DROPPABLE`` are left out (the caption names them) before anything is squeezed.
    """
    from rich.console import Console

    unbounded = Console(width=10_000)  # measures the width the table needs, not what it is given
    columns = list(summary.columns)
    table = _province_table(summary, columns)
    for col in (c for c in SUMMARY_DROPPABLE if c in columns):
        if unbounded.measure(table).maximum <= width:
            break
        columns.remove(col)
        table = _province_table(summary, columns)
        table.caption = "not shown at this width: " + ", ".join(
            SUMMARY_HEADS[c] for c in SUMMARY_DROPPABLE if c not in columns) + " (all in --summary)"
    return table


def _province_table(summary, columns: list[str]):
    """The ``columns`` of the per-province summary as a rich table; the total row set apart."""
    table = _table("Expected designations (sum of probabilities) by province")
    for col in columns:
        table.add_column(SUMMARY_HEADS.get(col, col.replace(">=", "≥")), no_wrap=True,
                         justify="left" if col == "province" else "right")
    last = len(summary) - 1
    for i, row in enumerate(summary[columns].itertuples(index=False)):
        cells = []
        for col, value in zip(columns, row):
            if col == "province":
                cells.append(str(value))
            elif col == "expected_designations":
                cells.append(f"{value:,.1f}")
            elif col in ("max_probability", "mean_growth"):
                cells.append("" if value != value else f"{value:.3f}")
            else:
                cells.append(f"{int(value):,}")
        table.add_row(*cells, end_section=i == last - 1)
    return table


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", help="Training config (YAML), e.g. configs/designation.yaml.")],
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log the run to MLflow.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing model bundle.")] = False,
) -> None:
    """Train, calibrate and evaluate a model from a config; write its bundle to models/<name>.

    Exits 2 on an invalid config and 1 when the data break the contract or a quality gate fails.
    """
    from rich.console import Console

    from lgml.config import ConfigError, TrainConfig

    try:
        cfg = TrainConfig.from_file(config)
    except ConfigError as exc:
        fail(str(exc), code=2)
    from lgml import io, validate as v
    from lgml.modeling.dataset import SplitError
    from lgml.modeling.train import train_from_config

    console = Console(stderr=True)
    try:
        io.refuse_existing(cfg.bundle_dir, overwrite)
        with console.status(f"Training {cfg.name} ({cfg.task})") as status:
            result = train_from_config(cfg, overwrite=overwrite,
                                       on_step=lambda step: status.update(f"{cfg.name}: {step}"))
    except (v.ContractError, io.InputError, FileExistsError) as exc:
        fail(str(exc))
    except SplitError as exc:
        fail(f"{config}: {exc}")
    Console().print(_metrics_table(result.evaluation, cfg.name))
    console.print(f"Wrote bundle {result.bundle_path} (trained in {result.fit.seconds['total']:.1f}s, "
                  f"{result.fit.best_iteration} rounds)")
    if cfg.mlflow.enabled and not no_track:
        _track(result, cfg, console)
    failed = _failed_gates(result.evaluation)
    if failed:
        fail(failed)


def _track(result, cfg, console) -> None:
    """Log a finished training run to MLflow and say where it went."""
    from lgml import tracking

    run = tracking.log_training(result.bundle_path, cfg, result.evaluation)
    if run.unchanged:
        console.print(f"MLflow run {run.run_id}; the model is unchanged (same model, config and data as version "
                      f"{run.model_version}): no new version registered, aliases left as they were")
        return
    console.print(f"MLflow run {run.run_id}" + (f", model version {run.model_version}" if run.model_version else "")
                  + (f", aliases {', '.join(run.aliases)}" if run.aliases else ""))


def _failed_gates(evaluation: dict) -> str:
    """The message of the failed quality gates, or "" when every gate passed."""
    gates = evaluation["gates"]
    if gates["passed"]:
        return ""
    failed = [c for c in gates["checks"] if not c["passed"]]
    return "Quality gates failed: " + "; ".join(f"{c['name']} ({c['value']:.4f} vs {c['threshold']:.4f})"
                                                for c in failed)


METRIC_HEADS = {"topk_precision": "topk\nprecision", "r2_within": "r2\nwithin", "level_error": "level\nerror"}


def _metrics_table(evaluation: dict, name: str):
    """Rich table of the test metrics: scorers x populations (two-line headers fit 80 columns)."""
    keys = (("auc", "pr_auc", "ece", "topk_precision") if evaluation["task"] in ("designation", "review")
            else ("r2", "r2_within", "spearman", "level_error", "coverage"))
    batches = ", ".join(str(b) for b in evaluation.get("test_batches", []))
    table = _table(f"{name}: test batches {batches}")
    table.add_column("population", no_wrap=True)
    table.add_column("scorer", no_wrap=True)
    for key in keys:
        table.add_column(METRIC_HEADS.get(key, key), justify="right", no_wrap=True)
    for pop, scorers in evaluation["populations"].items():
        for scorer, metrics in scorers.items():
            table.add_row(pop, scorer, *(f"{metrics[k]:.4f}" if metrics.get(k) is not None else "-" for k in keys))
    return table
