"""Command-line checks across verbs: ``lgml report``, and every command stays thin."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lgml.cli
from lgml.cli import app

runner = CliRunner()


def test_cli_report(bundle_dir, data_dir, tmp_path):
    out = tmp_path / "model.html"
    args = ["report", "--model", str(bundle_dir), "--data", str(data_dir / "panel.parquet"),
            "--events", str(data_dir / "events.parquet"), "--sample", "800", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 4
    assert "Metrics by province" in html and "model &gt; rules" in html
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    js = tmp_path / "model.json"
    result = runner.invoke(app, ["report", "--model", str(bundle_dir), "--sample", "500", "--out", str(js)])
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text(encoding="utf-8"))
    assert data["group_importance"] and data["drift"] is None


@pytest.mark.parametrize("command", ["simulate", "validate", "features", "check", "explain"])
def test_commands_stay_thin(command):
    """A command only parses options, calls one package function and prints: at most 30 lines."""
    tree = ast.parse(Path(lgml.cli.__file__).read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == command)
    assert node.end_lineno - node.lineno + 1 <= 30
