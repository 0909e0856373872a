"""Faults and hostile outputs: a kill mid-run, stale temporary files, an output that is an input,
spreadsheet formulas in text cells, bundle folders' permissions and replacement."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lgml import io
from lgml.cli import app

runner = CliRunner()


def test_formula_cells_are_neutralised_in_csv_but_numbers_are_not(tmp_path):
    frame = pd.DataFrame({"firm_id": ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "ok", None],
                          "name": pd.Categorical(["=1", "a", "b", "c", "d", "e", "f"]),
                          "value": [-1.5, 2, 3, 4, 5, 6, 7]})
    out = io.write_table(frame, tmp_path / "out.csv")
    back = pd.read_csv(out, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    assert back["firm_id"].tolist() == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)", "'\tx", "ok", ""]
    assert back["name"].iloc[0] == "'=1"
    assert back["value"].iloc[0] == "-1.5"
    assert frame["firm_id"].iloc[0] == "=HYPERLINK(\"http://x\")"  # the caller's frame is untouched
    io.write_table_blocks(frame, tmp_path / "blocks.csv", overwrite=False)
    assert pd.read_csv(tmp_path / "blocks.csv", dtype=str, encoding="utf-8-sig")["firm_id"].iloc[0].startswith("'=")
    parquet = pd.read_parquet(io.write_table(frame, tmp_path / "out.parquet"))
    assert parquet["firm_id"].iloc[0] == "=HYPERLINK(\"http://x\")"  # typed formats keep the value


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_stale_temporary_files_of_a_killed_run_are_removed_by_the_next(tmp_path):
    target = tmp_path / "scores.csv"
    dead = _dead_pid()
    stale_file = tmp_path / f".scores.csv.lgml-{dead}-abc.tmp"
    stale_dir = tmp_path / f".scores.csv.lgml-{dead}-work-xyz"
    stale_file.write_text("partial")
    (stale_dir / "sub").mkdir(parents=True)
    running = tmp_path / f".scores.csv.lgml-{os.getpid()}-live.tmp"  # a run still going
    foreign = tmp_path / ".scores.csv.swp"  # not lgml's
    for path in (running, foreign):
        path.write_text("keep")
    old = time.time() - 3600
    for path in (stale_file, stale_dir, running, foreign):
        os.utime(path, (old, old))
    io.write_table(pd.DataFrame({"a": [1]}), target)
    assert not stale_file.exists() and not stale_dir.exists()
    assert running.exists() and foreign.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, running.name, foreign.name])


@pytest.mark.parametrize("verb", ["score", "features", "check", "explain"])
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(verb, bundle_dir, small_sim, tmp_path):
    panel = tmp_path / "panel.csv"
    small_sim.panel.head(400).to_csv(panel, index=False)
    before = panel.read_bytes()
    spelt = str(tmp_path / "." / "panel.csv")  # the same file, spelt differently
    args = {"score": ["score", "--model", str(bundle_dir), "--input", str(panel), "--output", spelt],
            "features": ["features", str(panel), "--out", spelt],
            "check": ["check", str(panel), "--year", "2026", "--out", spelt],
            "explain": ["explain", "--model", str(bundle_dir), "--input", str(panel), "--top", "1", "--out",
                        str(tmp_path / "panel.html")]}[verb]
    if verb == "explain":
        panel_html = tmp_path / "panel.html"
        shutil.copy(panel, panel_html)
        args[args.index("--input") + 1] = str(panel_html)
        before = panel_html.read_bytes()
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code != 0, result.output
    assert "would replace the input" in result.output and "Traceback" not in result.output
    assert (panel_html if verb == "explain" else panel).read_bytes() == before


def test_sigterm_removes_the_work_in_progress(bundle_dir, small_sim, tmp_path):
    """A run killed by SIGTERM exits 143 with a message, leaving neither the output nor any
    temporary file or work folder behind."""
    panel = tmp_path / "in" / "panel.parquet"
    panel.parent.mkdir()
    pd.concat([small_sim.panel] * 3, ignore_index=True).assign(
        firm_id=lambda d: d["firm_id"] + "-" + (d.index // len(small_sim.panel)).astype(str)).to_parquet(panel)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    lgml = Path(sys.executable).with_name("lgml")
    proc = subprocess.Popen([str(lgml), "score", "--model", str(bundle_dir), "--input", str(panel), "--output",
                             str(out_dir / "scores.parquet"), "--chunk-rows", "200"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not any(out_dir.iterdir()):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("verb", ["simulate", "features", "check", "score", "explain", "report"])
def test_an_unwritable_output_is_one_clear_message(verb, bundle_dir, data_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    panel, events = str(data_dir / "panel.parquet"), str(data_dir / "events.parquet")
    args = {"simulate": ["simulate", "--firms", "300", "--out", str(blocker / "sim")],
            "features": ["features", panel, "--out", str(blocker / "f.parquet")],
            "check": ["check", panel, "--year", "2026", "--out", str(blocker / "c.csv")],
            "score": ["score", "--model", str(bundle_dir), "--input", panel, "--output", str(blocker / "s.csv")],
            "explain": ["explain", "--model", str(bundle_dir), "--input", panel, "--events", events, "--top", "1",
                        "--out", str(blocker / "e.html")],
            "report": ["report", "--model", str(bundle_dir), "--out", str(blocker / "r.html")]}[verb]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert str(blocker) in result.output and "Traceback" not in result.output
    assert blocker.read_text() == "not a folder"


def test_a_defect_is_reported_as_one_and_shown_with_vv(data_dir, monkeypatch):
    from lgml import validate

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(validate, "read_panel", broken)
    result = runner.invoke(app, ["validate", str(data_dir / "panel.parquet")])
    assert result.exit_code == 70
    assert "internal error: KeyError" in result.output and "-vv" in result.output
    result = runner.invoke(app, ["-vv", "validate", str(data_dir / "panel.parquet")])
    assert isinstance(result.exception, KeyError)


@pytest.mark.parametrize("year", ["2018", "2037", "99999"])
def test_a_batch_year_outside_the_known_batches_is_refused(year, data_dir):
    result = runner.invoke(app, ["check", str(data_dir / "panel.parquet"), "--year", year])
    assert result.exit_code == 1 and "batches run from 2019" in result.output, result.output


def test_train_refuses_a_config_that_is_not_utf8_and_a_models_dir_that_is_a_file(tmp_path):
    config = tmp_path / "gbk.yaml"
    config.write_bytes("task: designation\nname: 小巨人\n".encode("gbk"))
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2 and "not UTF-8" in result.output and str(config) in result.output
    blocker = tmp_path / "models"
    blocker.write_text("a file")
    config = tmp_path / "c.yaml"
    config.write_text(f"task: designation\nname: x\nmodels_dir: {blocker}\ndata: {{simulate: {{firms: 400, seed: 0}}}}\n"
                      "split: {train_until: 2022, valid: [2023], test: [2024]}\n",
                      encoding="utf-8")
    started = time.perf_counter()
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 1 and "is a file, not a folder" in result.output, result.output
    assert time.perf_counter() - started < 20  # refused before simulating or training
    assert blocker.read_text() == "a file"


def test_an_unwritable_summary_leaves_the_previous_scores_in_place(bundle_dir, data_dir, tmp_path):
    scores = tmp_path / "scores.csv"
    scores.write_text("previous scores")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = runner.invoke(app, ["score", "--model", str(bundle_dir), "--input", str(data_dir / "panel.parquet"),
                                 "--output", str(scores), "--summary", str(blocker / "summary.csv"), "--overwrite"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert scores.read_text() == "previous scores"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "scores.csv"]


@pytest.fixture()
def sim_panel(small_sim):
    return small_sim.panel[small_sim.panel["firm_id"].isin(small_sim.panel["firm_id"].unique()[:40])]


def test_a_panel_without_rows_is_an_error_in_every_reading_path(sim_panel, bundle_dir, tmp_path):
    sim_panel.head(0).to_parquet(tmp_path / "zero.parquet")
    sim_panel.head(0).to_csv(tmp_path / "header.csv", index=False)
    for args in (["validate", str(tmp_path / "zero.parquet")], ["validate", str(tmp_path / "header.csv")],
                 ["explain", "--model", str(bundle_dir), "--input", str(tmp_path / "zero.parquet"), "--top", "1",
                  "--out", str(tmp_path / "e.html")],
                 ["score", "--model", str(bundle_dir), "--input", str(tmp_path / "zero.parquet"), "--output",
                  str(tmp_path / "s.csv")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "no rows" in result.output, (args, result.output)
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "e.html").exists()


def test_a_repeated_parquet_column_is_named(sim_panel, bundle_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(sim_panel, preserve_index=False)
    pq.write_table(table.append_column("year", table.column("year")), tmp_path / "dup.parquet")
    for args in (["validate", str(tmp_path / "dup.parquet")],
                 ["score", "--model", str(bundle_dir), "--input", str(tmp_path / "dup.parquet"), "--output",
                  str(tmp_path / "s.csv")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "'year' appear more than once" in result.output, result.output


def test_values_far_outside_any_sme_are_warned_about_by_row(sim_panel, tmp_path):
    panel = sim_panel.copy()
    panel.loc[panel.index[0], "revenue"] = 1e308
    panel.loc[panel.index[1], "employees"] = 10**15
    panel.to_parquet(tmp_path / "p.parquet")
    result = runner.invoke(app, ["validate", str(tmp_path / "p.parquet")])
    assert result.exit_code == 0, result.output
    first, second = panel.iloc[0], panel.iloc[1]
    assert f"revenue: 1 row(s) beyond 100,000,000,000 yuan, far outside any SME ({first.firm_id} {first.year}" \
        in result.output
    assert "employees: 1 row(s) beyond 100,000 people" in result.output and str(second.firm_id) in result.output
    assert result.output.strip().endswith("no rule broken; 2 warnings above.")


def test_a_designation_before_the_firm_was_founded_is_an_error(sim_panel, tmp_path):
    sim_panel.to_parquet(tmp_path / "p.parquet")
    firm = sim_panel.iloc[0]
    pd.DataFrame({"firm_id": [firm.firm_id], "batch_year": [int(firm.founded_year) - 1],
                  "revoked_year": [None]}).to_csv(tmp_path / "e.csv", index=False)
    if firm.founded_year - 1 < 2019:
        panel = sim_panel.assign(founded_year=sim_panel["founded_year"].where(sim_panel["firm_id"] != firm.firm_id,
                                                                             2021))
        panel = panel[(panel["firm_id"] != firm.firm_id) | (panel["year"] >= 2021)]
        panel.to_parquet(tmp_path / "p.parquet")
        pd.DataFrame({"firm_id": [firm.firm_id], "batch_year": [2020], "revoked_year": [None]}).to_csv(
            tmp_path / "e.csv", index=False)
    result = runner.invoke(app, ["validate", str(tmp_path / "p.parquet"), "--events", str(tmp_path / "e.csv")])
    assert result.exit_code == 1 and "must not be before the firm was founded" in result.output, result.output


def test_a_file_mixing_utf8_and_gbk_is_named_as_such(sim_panel, tmp_path):
    from lgml.schema import PROVINCES

    panel = sim_panel.head(20).assign(province=lambda d: d["province"].map(lambda p: PROVINCES[p][0]))
    head = panel.head(10).to_csv(index=False).encode("utf-8")
    tail = panel.iloc[10:].to_csv(index=False, header=False).encode("gbk")
    (tmp_path / "mixed.csv").write_bytes(head + tail)
    result = runner.invoke(app, ["validate", str(tmp_path / "mixed.csv")])
    assert result.exit_code == 1 and "mixes two text encodings: line 2 is UTF-8, line 12 is not" in result.output
    (tmp_path / "gbk.csv").write_bytes(panel.to_csv(index=False).encode("gbk"))
    assert runner.invoke(app, ["validate", str(tmp_path / "gbk.csv")]).exit_code == 0


def test_simulate_into_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = runner.invoke(app, ["simulate", "--firms", "300", "--out", str(tmp_path / "afile")])
    assert result.exit_code == 1 and "is a file" in result.output


@pytest.mark.parametrize("verb", ["check", "score"])
def test_a_full_disk_is_one_clear_message_and_leaves_nothing(verb, bundle_dir, data_dir, tmp_path, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x"))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    out = tmp_path / "out" / "result.csv"
    args = {"check": ["check", str(data_dir / "panel.parquet"), "--year", "2026", "--out", str(out)],
            "score": ["score", "--model", str(bundle_dir), "--input", str(data_dir / "panel.parquet"),
                      "--output", str(out)]}[verb]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "no space left on the device; nothing was written" in result.output, \
        result.output
    assert list(out.parent.iterdir()) == []


def test_sigterm_surfacing_as_another_error_still_exits_143(data_dir, monkeypatch):
    """The SIGTERM handler's exit can reach the CLI wrapped in another exception (raised by a
    cleanup while unwinding): it still ends as a termination, not as an internal error."""
    from lgml import failures, validate

    def interrupted(*args, **kwargs):
        failures.TERMINATED["signum"] = signal.SIGTERM
        raise RuntimeError("cleanup failed while unwinding")

    monkeypatch.setattr(validate, "read_panel", interrupted)
    monkeypatch.setitem(failures.TERMINATED, "signum", None)
    result = runner.invoke(app, ["validate", str(data_dir / "panel.parquet")])
    assert result.exit_code == 143 and "internal error" not in result.output


@pytest.mark.parametrize("verb", ["validate", "features", "check", "score", "explain", "report"])
def test_a_zero_byte_panel_is_one_clear_message(verb, bundle_dir, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    args = {"validate": ["validate", str(empty)],
            "features": ["features", str(empty), "--out", str(out / "f.parquet")],
            "check": ["check", str(empty), "--year", "2026", "--out", str(out / "c.csv")],
            "score": ["score", "--model", str(bundle_dir), "--input", str(empty), "--output", str(out / "s.csv")],
            "explain": ["explain", "--model", str(bundle_dir), "--input", str(empty), "--top", "1",
                        "--out", str(out / "e.html")],
            "report": ["report", "--model", str(bundle_dir), "--data", str(empty), "--out", str(out / "r.html")]}[verb]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and str(empty) in result.output and "Traceback" not in result.output, result.output
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("verb", ["features", "check", "score"])
def test_an_unknown_output_format_is_refused_before_any_work(verb, bundle_dir, data_dir, tmp_path):
    panel = str(data_dir / "panel.parquet")
    args = {"features": ["features", panel, "--out", str(tmp_path / "x.txt")],
            "check": ["check", panel, "--year", "2026", "--out", str(tmp_path / "x.txt")],
            "score": ["score", "--model", str(bundle_dir), "--input", panel, "--output", str(tmp_path / "x.txt")]}[verb]
    started = time.perf_counter()
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and "unknown output format '.txt'" in result.output, result.output
    assert time.perf_counter() - started < 5 and list(tmp_path.iterdir()) == []
