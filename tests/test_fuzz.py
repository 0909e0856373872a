"""Fuzz: corrupted panels, events, configs and bundles through every verb of the command line.

Hypothesis draws the damage (derandomized, so CI sees the same cases every run); every run must
end in exit 0 or a clear error (1 or 2), never a traceback or lgml's internal-error exit (70),
never leave a file at the output path after an error or a temporary file beside it, and never
change an input.

CI runs about 70 cases; ``LGML_FUZZ_SCALE=20 pytest tests/test_fuzz.py`` runs 20 times as many
(a longer profile by hand).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lgml.cli import app
from lgml.modeling.integrity import write_manifest

runner = CliRunner()
SCALE = max(1, int(os.environ.get("LGML_FUZZ_SCALE", "1")))


def fuzz(examples: int) -> settings:
    return settings(_FUZZ, max_examples=examples * SCALE)


_FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
TOKENS = ["", "-", "--", "nan", "NULL", "1e308", "-1e308", "inf", "-1", "0", "abc", "=1+1", "@SUM(A1)", "2023年",
          "2023-12-31", "是", "否", "C34", "99", "１２３", "x" * 300, "\x00", "1,234,567.8", "12%", "Atlantis", "北京",
          "<script>", "[a](http://x)", "9" * 40]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def base(small_sim, tmp_path_factory) -> dict[str, bytes]:
    """A small valid panel and its events as CSV text (the fuzz cases damage copies of them)."""
    firms = small_sim.panel["firm_id"].drop_duplicates().head(80)
    panel = small_sim.panel[small_sim.panel["firm_id"].isin(firms)]
    events = small_sim.events[small_sim.events["firm_id"].isin(firms)]
    return {"panel": panel.to_csv(index=False).encode("utf-8"), "events": events.to_csv(index=False).encode("utf-8")}


def _lines(data: bytes) -> list[list[str]]:
    return [line.split(",") for line in data.decode("utf-8").splitlines()]


def _join(rows: list[list[str]]) -> bytes:
    return ("\n".join(",".join(r) for r in rows) + "\n").encode("utf-8")


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """One or two kinds of damage to a CSV file."""
    rows = _lines(data)
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["cells", "cells", "drop_column", "duplicate_header", "rename_header",
                                     "truncate", "empty", "header_only", "duplicate_rows", "gbk", "garbage",
                                     "ragged"]))
        if kind == "cells" and len(rows) > 1:
            for _ in range(draw(st.integers(1, 12))):
                r = draw(st.integers(1, len(rows) - 1))
                c = draw(st.integers(0, len(rows[r]) - 1))
                rows[r][c] = draw(st.sampled_from(TOKENS)).replace(",", ";").replace("\n", " ")
        elif kind == "drop_column" and len(rows[0]) > 1:
            c = draw(st.integers(0, len(rows[0]) - 1))
            rows = [r[:c] + r[c + 1:] for r in rows]
        elif kind == "duplicate_header" and len(rows[0]) > 1:
            a, b = draw(st.integers(0, len(rows[0]) - 1)), draw(st.integers(0, len(rows[0]) - 1))
            rows[0][a] = rows[0][b]
        elif kind == "rename_header":
            rows[0][draw(st.integers(0, len(rows[0]) - 1))] = draw(st.sampled_from(["研发经费", "x", "", "year"]))
        elif kind == "truncate":
            text = _join(rows)
            return text[: draw(st.integers(0, len(text)))]
        elif kind == "empty":
            return b""
        elif kind == "header_only":
            rows = rows[:1]
        elif kind == "duplicate_rows" and len(rows) > 2:
            rows = rows + rows[1: 1 + draw(st.integers(1, 5))]
        elif kind == "gbk":
            return _join(rows).decode("utf-8").encode("gb18030")
        elif kind == "garbage":
            text = bytearray(_join(rows))
            at = draw(st.integers(0, len(text)))
            return bytes(text[:at]) + draw(st.binary(min_size=1, max_size=40)) + bytes(text[at:])
        elif kind == "ragged" and len(rows) > 1:
            rows[draw(st.integers(1, len(rows) - 1))].append("extra")
    return _join(rows)


def _assert_clean(result, out: Path | None, inputs: dict[Path, str]) -> None:
    assert result.exit_code in (0, 1, 2), f"exit {result.exit_code}:\n{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output, result.output
    if result.exit_code != 0 and out is not None:
        assert not out.exists(), f"{out} written by a failed run:\n{result.output}"
    for path, digest in inputs.items():
        assert _digest(path) == digest, f"{path} was modified"
    if out is not None and out.parent.exists():
        left = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
        assert left == [], f"temporary files left: {left}"


def _run(args: list[str], out: Path | None, inputs: list[Path]) -> None:
    digests = {p: _digest(p) for p in inputs}
    _assert_clean(runner.invoke(app, args), out, digests)


@fuzz(16)
@given(data=st.data())
def test_damaged_panels_through_the_reading_verbs(base, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz-panel")
    panel = folder / "panel.csv"
    panel.write_bytes(data.draw(damaged(base["panel"]), label="panel"))
    events = folder / "events.csv"
    events.write_bytes(base["events"])
    _run(["validate", str(panel), "--events", str(events)], None, [panel, events])
    out = folder / "out" / "features.parquet"
    _run(["features", str(panel), "--events", str(events), "--out", str(out)], out, [panel, events])
    out = folder / "out" / "check.csv"
    _run(["check", str(panel), "--year", "2026", "--out", str(out)], out, [panel])


@fuzz(6)
@given(data=st.data())
def test_damaged_panels_and_events_through_the_model_verbs(base, bundle_dir, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz-model")
    panel, events = folder / "panel.csv", folder / "events.csv"
    damage_panel = data.draw(st.booleans(), label="damage the panel")
    panel.write_bytes(data.draw(damaged(base["panel"]), label="panel") if damage_panel else base["panel"])
    events.write_bytes(base["events"] if damage_panel else data.draw(damaged(base["events"]), label="events"))
    out = folder / "out" / "scores.csv"
    _run(["score", "--model", str(bundle_dir), "--input", str(panel), "--events", str(events), "--output", str(out)],
         out, [panel, events])
    out = folder / "out" / "top.html"
    _run(["explain", "--model", str(bundle_dir), "--input", str(panel), "--events", str(events), "--top", "1",
          "--out", str(out)], out, [panel, events])
    out = folder / "out" / "card.json"
    _run(["report", "--model", str(bundle_dir), "--data", str(panel), "--events", str(events), "--sample", "100",
          "--out", str(out)], out, [panel, events])


BUNDLE_FILES = ["model.txt", "metadata.json", "calibration.json", "evaluation.json", "config.yaml", "manifest.json",
                "context.parquet", "reference.json"]


@fuzz(20)
@given(data=st.data())
def test_damaged_bundles_are_refused_cleanly(base, bundle_dir, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz-bundle")
    bundle = Path(shutil.copytree(bundle_dir, folder / "bundle"))
    name = data.draw(st.sampled_from(BUNDLE_FILES), label="file")
    path = bundle / name
    kind = data.draw(st.sampled_from(["truncate", "flip", "delete", "empty", "json_edit"]), label="damage")
    raw = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))])
    elif kind == "flip" and raw:
        at = data.draw(st.integers(0, len(raw) - 1))
        path.write_bytes(raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1:])
    elif kind == "delete":
        path.unlink()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "json_edit" and name.endswith(".json") and name != "manifest.json":
        value = json.loads(raw)
        if isinstance(value, dict) and value:
            key = data.draw(st.sampled_from(sorted(value)), label="key")
            value[key] = data.draw(st.sampled_from([None, [], {}, "x", -1, [1, 2], value[key]]), label="value")
        path.write_text(json.dumps(value), encoding="utf-8")
    if data.draw(st.booleans(), label="re-sign the manifest") and (bundle / "manifest.json").exists():
        write_manifest(bundle)  # a careful tamperer: only the consistency checks stand in the way
    panel = folder / "panel.csv"
    panel.write_bytes(base["panel"])
    out = folder / "out" / "scores.csv"
    _run(["score", "--model", str(bundle), "--input", str(panel), "--output", str(out)], out, [panel])


@fuzz(30)
@given(text=st.one_of(
    st.text(max_size=200),
    st.sampled_from(["task: designation\n", "task: [\n", "- a\n- b\n", "name: x\ntask: growth\nsplit: 3\n",
                     "task: designation\nname: ../../etc\nsplit: {train_until: 2022, valid: [2023], test: [2024]}\n"
                     "data: {simulate: {firms: -5, seed: 0}}\n",
                     "task: designation\nname: x\nsplit: {train_until: 2030, valid: [2020], test: [2019]}\n"
                     "data: {simulate: {firms: 300, seed: 0}}\n"]),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1"))))
def test_broken_configs_are_refused_before_any_work(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("fuzz-config")
    config = folder / "config.yaml"
    config.write_bytes(text.encode("utf-8", "surrogatepass") if text else b"")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code in (1, 2), f"exit {result.exit_code}:\n{result.output}"
    assert "Traceback" not in result.output
