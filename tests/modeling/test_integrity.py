"""Bundles verified as a whole: every file against the manifest, metadata and calibration shapes,
and each model text parsed before LightGBM reads it — including files tampered with so that
every recorded sha256 matches (only the consistency checks stand in the way then)."""

from __future__ import annotations

import json
import os
import logging
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lgml.cli import app
from lgml.modeling.bundle import BundleError, load_bundle, sha256_file
from lgml.modeling.integrity import MANIFEST_FILE, check_model_text, write_manifest

runner = CliRunner()


@pytest.fixture()
def copy(designation_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(designation_bundle.path, tmp_path / "bundle"))


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(change(data)), encoding="utf-8")


def _resign(folder: Path) -> None:
    """Make every recorded sha256 match the files again, as a careful tamperer would."""
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    if isinstance(meta, dict):
        meta["sha256"] = {name: sha256_file(folder / name) for name in meta.get("sha256", {})}
        meta["model_sha256"] = meta["sha256"].get("model.txt")
        (folder / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    write_manifest(folder)


def test_a_saved_bundle_has_a_manifest_of_every_file(designation_bundle):
    listed = json.loads((designation_bundle.path / MANIFEST_FILE).read_text())["sha256"]
    files = {p.relative_to(designation_bundle.path).as_posix() for p in designation_bundle.path.rglob("*")
             if p.is_file()} - {MANIFEST_FILE}
    assert set(listed) == files and {"calibration.json", "metadata.json", "model.txt", "config.yaml"} <= files
    assert all(listed[name] == sha256_file(designation_bundle.path / name) for name in files)


@pytest.mark.parametrize("name, spoil, message", [
    ("calibration.json", lambda p: p.write_text(p.read_text()[:40]), "calibration.json does not match"),
    ("evaluation.json", lambda p: p.write_text("{}"), "evaluation.json does not match"),
    ("plots", lambda p: (p / "extra.png").write_bytes(b"x"), "plots/extra.png not listed"),
    ("config.yaml", lambda p: p.unlink(), "missing config.yaml"),
])
def test_any_file_changed_after_saving_is_named(copy, name, spoil, message):
    spoil(copy / name)
    with pytest.raises(BundleError, match=re.escape(message)):
        load_bundle(copy)


@pytest.mark.parametrize("change, message", [
    (lambda m: {**m, "features": m["features"][::-1]}, "in another order"),
    (lambda m: {**m, "features": m["features"][:-3]}, "that differ"),
    (lambda m: {k: v for k, v in m.items() if k != "features"}, "lacks 'features'"),
    (lambda m: [m], "holds a list, not an object"),
    (lambda m: {**m, "features": m["features"] + m["features"][:1]}, "lists a name twice"),
])
def test_metadata_that_disagrees_with_the_model_is_refused_even_when_resigned(copy, change, message):
    _edit_json(copy / "metadata.json", change)
    _resign(copy)
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


@pytest.mark.parametrize("change, message", [
    (lambda c: {**c, "y": c["y"][:-1]}, "knots x and"),
    (lambda c: {**c, "x": c["x"][::-1]}, "not increasing"),
    (lambda c: {"method": "magic"}, "unknown method"),
    (lambda c: {**c, "x": ["a"] * len(c["x"])}, "not a list of numbers"),
])
def test_calibration_of_the_wrong_shape_is_refused_even_when_resigned(copy, change, message):
    _edit_json(copy / "calibration.json", change)
    _resign(copy)
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def _truncate(text: str) -> str:
    return text[: len(text) // 2]


def _bad_child(text: str) -> str:
    return re.sub(r"(?m)^left_child=(-?\d+)", "left_child=999", text, count=1)


def _bad_feature(text: str) -> str:
    return re.sub(r"(?m)^split_feature=(\d+)", "split_feature=4000", text, count=1)


def _short_array(text: str) -> str:
    return re.sub(r"(?m)^(leaf_value=.*) \S+$", r"\1", text, count=1)


def _shifted_tree(text: str) -> str:
    return text.replace("Tree=1\n", "Tree=1\n\n", 1)


@pytest.mark.parametrize("spoil, message", [
    (_truncate, "truncated"), (lambda t: "", "does not start"), (_bad_child, "left_child points outside"),
    (_bad_feature, "reads a feature outside"), (_short_array, "leaf_value has"), (_shifted_tree, "tree_sizes"),
])
def test_a_damaged_model_text_never_reaches_lightgbm(copy, spoil, message):
    path = copy / "model.txt"
    path.write_text(spoil(path.read_text(encoding="utf-8")), encoding="utf-8")
    _resign(copy)
    with pytest.raises(BundleError, match=f"model.txt .*{message}"):
        load_bundle(copy)


def test_the_model_text_check_accepts_every_tree_of_a_real_model(designation_bundle):
    text = (designation_bundle.path / "model.txt").read_text(encoding="utf-8")
    check_model_text(text, designation_bundle.features)
    assert designation_bundle.booster.num_trees() == text.count("\nTree=")


def test_a_bundle_without_a_manifest_loads_with_a_warning(copy, caplog):
    (copy / MANIFEST_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="lgml.modeling.bundle"):
        bundle = load_bundle(copy)
    assert "no manifest.json" in caplog.text and bundle.features


def test_score_with_a_tampered_bundle_is_a_clear_error(copy, data_dir, tmp_path):
    _edit_json(copy / "metadata.json", lambda m: {**m, "features": m["features"][::-1]})
    _resign(copy)
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", "--model", str(copy), "--input", str(data_dir / "panel.parquet"),
                                 "--output", str(out)])
    assert result.exit_code != 0
    assert "in another order" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_bundle_folders_are_as_readable_as_any_folder_the_user_makes(designation_bundle, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert (designation_bundle.path.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


def test_replacing_a_bundle_swaps_it_whole(tmp_path, monkeypatch):
    from lgml.modeling import bundle as bundle_module

    target, new = tmp_path / "model", tmp_path / ".model.lgml-1-x.tmp"
    for folder, text in ((target, "old"), (new, "new")):
        folder.mkdir()
        (folder / "model.txt").write_text(text)
    moves = []
    real = os.replace
    monkeypatch.setattr(bundle_module.os, "replace", lambda a, b: moves.append((a, b)) or real(a, b))
    bundle_module._replace_dir(new, target)
    assert (target / "model.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert moves == []  # one atomic exchange: at no moment was there no bundle at the path
