"""The CLI's printed tables read at 80 columns when piped (a log file, CI): names and numbers
whole, headers distinct; ``--version``; the verdict of ``lgml validate``."""

import re
from importlib.metadata import version
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from lgml.cli import _metrics_table, app
from lgml.schema import PROVINCES

DATA = Path(__file__).parent / "data"
NUMBER_CUT = re.compile(r"\d…|…\d")  # "20,0…", "0.1…": a number rich cut short


def run(*args: str):
    """The command run as in a pipe to a log: not a terminal, COLUMNS=80."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})


def assert_fits_80(text: str) -> None:
    too_wide = [line for line in text.splitlines() if cell_len(line) > 80]
    assert not too_wide, too_wide
    assert not NUMBER_CUT.search(text), text


def header_cells(text: str, first: str) -> list[str]:
    """The cells of the header line starting with ``first`` (cells are 2+ spaces apart)."""
    line = next(line for line in text.splitlines() if line.startswith(first))
    return re.split(r"\s{2,}", line.strip())


def test_version_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"lgml {version('lgml')}\n"
    assert re.fullmatch(r"lgml \d+\.\d+\.\d+\S*\n", result.output)


def test_score_province_summary_at_80_columns(bundle_dir, growth_dir, data_dir, tmp_path):
    summary = tmp_path / "summary.csv"
    result = run("score", "--model", str(bundle_dir), "--growth-model", str(growth_dir),
                 "--input", str(data_dir / "panel.parquet"), "--events", str(data_dir / "events.parquet"),
                 "--output", str(tmp_path / "scores.parquet"), "--summary", str(summary))
    assert result.exit_code == 0, result.output
    table = result.output[result.output.index("Expected designations"):]
    assert_fits_80(table)
    heads = header_cells(table, "province")  # the last line of a two-line header
    assert heads == ["province", "firms", "candidates", "sum p", "p≥0.5", "p≥0.2", "p≥0.1", "growth"]
    assert table.splitlines()[1].split() == ["log"]
    assert "not shown at this width: holders, max p (all in --summary)" in table
    written = pd.read_csv(summary)
    assert len(written) > 25 and set(written["province"]) - {"All"} <= set(PROVINCES)
    rows = {line.split("  ")[0]: line for line in table.splitlines()}
    for row in written.itertuples(index=False):  # every name whole, at the start of its row
        cells = re.split(r"\s{2,}", rows[row.province].strip())
        assert cells[:4] == [row.province, f"{row.firms:,}", f"{row.candidates:,}",
                             f"{row.expected_designations:,.1f}"]
        assert cells[4:7] == [str(row[written.columns.get_loc(c)]) for c in ("p>=0.5", "p>=0.2", "p>=0.1")]
    assert rows["All"].split()[1] == f"{written['firms'].iloc[-1]:,}" == f"{written['firms'].iloc[:-1].sum():,}"


def test_check_failed_criteria_at_80_columns(data_dir):
    from lgml.verbs import check_file

    result = run("check", str(data_dir / "panel.parquet"), "--year", "2027")
    assert result.exit_code == 0, result.output
    table = result.output[result.output.index("Most failed criteria"):]
    assert_fits_80(table)
    assert "…" not in table  # the Chinese labels wrap instead of being cut
    assert header_cells(table, "criterion") == ["criterion", "dim", "label", "标准", "failed", "share"]
    summary = check_file(data_dir / "panel.parquet", 2027).summary.head(10)
    starts = [line.split()[0] for line in table.splitlines()[3:] if line and not line.startswith(" ")]
    assert starts == list(summary["criterion"])
    for row in summary.itertuples(index=False):
        line = next(line for line in table.splitlines() if line.startswith(row.criterion + " "))
        assert line.split()[-2:] == [f"{row.n_failed:,}", f"{row.share_failed:.1%}"]


def test_simulate_report_at_80_columns(tmp_path):
    result = run("simulate", "--firms", "1000", "--seed", "3", "--out", str(tmp_path), "--report")
    assert result.exit_code == 0, result.output
    table = result.output[result.output.index("Calibration"):]
    assert_fits_80(table)
    assert header_cells(table, "target") == ["target", "published", "simulated", "accepted band", "ok"]
    bands = re.findall(r"-?[\d,]+\.\d{3} \.\. [\d,]+\.\d{3}", table)  # each band whole on one line
    assert len(bands) == table.count(" yes") + table.count(" NO") > 20


@pytest.mark.parametrize(("task", "keys", "heads"), [
    ("designation", ("auc", "pr_auc", "ece", "topk_precision"),
     ["population", "scorer", "auc", "pr_auc", "ece", "precision"]),
    ("growth", ("r2", "r2_within", "spearman", "level_error", "coverage"),
     ["population", "scorer", "r2", "within", "spearman", "error", "coverage"]),
])
def test_train_metrics_table_at_80_columns(task, keys, heads):
    scorers = {s: {k: -0.123456 for k in keys} for s in ("model", "rules", "logistic", "oracle")}
    evaluation = {"task": task, "test_batches": [2024, 2025], "populations": {"all": scorers, "pool": scorers}}
    out = StringIO()
    Console(file=out, width=80).print(_metrics_table(evaluation, "lgml-designation"))
    text = out.getvalue()
    assert_fits_80(text)
    assert header_cells(text, "population") == heads
    first = {"designation": ["topk"], "growth": ["r2", "level"]}[task]  # two-line headers' first lines
    assert text.splitlines()[1].split() == first
    assert text.count("-0.1235") == 8 * len(keys)


def test_validate_ends_with_the_verdict_on_a_valid_panel(data_dir, small_sim):
    result = run("validate", str(data_dir / "panel.parquet"), "--events", str(data_dir / "events.parquet"))
    assert result.exit_code == 0, result.output
    assert_fits_80(result.output)
    assert result.output.splitlines()[-1] == (
        f"Valid: {small_sim.panel['firm_id'].nunique():,} firms, {len(small_sim.panel):,} firm-years, "
        f"{len(small_sim.events):,} designation events, no rule broken.")
    assert "3,000 firms" in result.output.splitlines()[-1]


def test_validate_ends_with_the_verdict_on_a_small_file():
    result = run("validate", str(DATA / "valid_gbk.csv"), "--units", "wan")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "Valid: 3 firms, 5 firm-years, no rule broken."


def test_validate_ends_with_the_verdict_on_a_broken_panel(tmp_path):
    result = run("validate", str(DATA / "broken_gbk.csv"))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "Invalid: 4 rules broken in up to 5 rows."
    negative = tmp_path / "negative.csv"
    frame = pd.read_csv(DATA / "valid_gbk.csv", encoding="gbk")
    money = "发明专利"
    frame.loc[[0, 2], money] = -1
    frame.to_csv(negative, index=False, encoding="gbk")
    one = run("validate", str(negative), "--units", "wan")
    assert one.exit_code == 1, one.output
    assert one.output.splitlines()[-1] == "Invalid: 1 rule broken in 2 rows."
