"""The HTML reports as a reader sees them: rendered by headless Chromium with no network.

Each report is opened twice: as written (its Content-Security-Policy forbids scripts and any
request, so any console message is a failure), and as an instrumented copy whose added script
records every image's load state into the DOM, read back with ``--dump-dom``. A screenshot of
each report is saved and must not be blank.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lgml.cli import app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make install adds it)")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")
CHECKER = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || (e.target && e.target.src) || e)), true);
window.addEventListener("load", () => {
  const images = Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth,
                                                         alt: i.alt, src: i.src.slice(0, 30)}));
  const out = document.createElement("pre");
  out.id = "lgml-check";
  out.textContent = JSON.stringify({images: images, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""
# Screenshots are kept for a person to look at (set LGML_SCREENSHOT_DIR to choose where).
SCREENSHOTS = Path(os.environ.get("LGML_SCREENSHOT_DIR") or tempfile.gettempdir()) / "lgml-report-screenshots"


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                          capture_output=True, text=True, timeout=120, check=False)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def image_states(html: Path, tmp: Path) -> dict:
    """Load an instrumented copy of ``html`` and return what its images and errors were."""
    text = html.read_text(encoding="utf-8")
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text, count=1)
    text = text.replace("<head>", "<head>" + CHECKER, 1)
    copy = tmp / f"checked-{html.name}"
    copy.write_text(text, encoding="utf-8")
    done = chromium(copy.as_uri(), tmp / f"profile-dom-{html.stem}", "--dump-dom", "--virtual-time-budget=10000")
    match = re.search(r'<pre id="lgml-check">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the check script did not run:\n{done.stderr[-2000:]}"
    import html as html_lib

    return json.loads(html_lib.unescape(match.group(1)))


def screenshot(html: Path, tmp: Path, height: int = 2600) -> tuple[Path, list[str]]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    png = SCREENSHOTS / f"{html.stem}.png"
    png.unlink(missing_ok=True)
    done = chromium(html.as_uri(), tmp / f"profile-shot-{html.stem}", "--enable-logging=stderr", "--v=0",
                    f"--screenshot={png}", f"--window-size=1280,{height}", "--virtual-time-budget=10000")
    assert png.is_file(), done.stderr[-2000:]
    return png, console_messages(done.stderr)


def assert_not_blank(png: Path) -> None:
    import matplotlib.image as mpimg

    pixels = mpimg.imread(png)[..., :3]
    assert pixels.std() > 0.05, f"{png} looks blank"
    background = np.median(pixels.reshape(-1, 3), axis=0)
    differs = np.abs(pixels - background).sum(axis=2) > 0.1
    assert differs.mean() > 0.02, f"{png}: only {differs.mean():.1%} of pixels differ from the background"


def check_report(html: Path, tmp: Path, min_images: int) -> Path:
    png, messages = screenshot(html, tmp)
    assert messages == [], "console messages:\n" + "\n".join(messages)
    assert_not_blank(png)
    states = image_states(html, tmp)
    assert states["errors"] == []
    assert len(states["images"]) >= min_images
    broken = [i for i in states["images"] if not i["complete"] or i["width"] == 0]
    assert broken == [], broken
    return png


runner = CliRunner()


@pytest.fixture(scope="module")
def reports(bundle_dir, data_dir, table, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    out = tmp_path_factory.mktemp("reports")
    panel, events = str(data_dir / "panel.parquet"), str(data_dir / "events.parquet")
    rows = table[(table["year"] == 2025) & ~table["holds_title"]].sort_values("score_total")
    firm = str(rows.iloc[-1]["firm_id"])
    commands = {
        "firm": ["explain", "--model", str(bundle_dir), "--input", panel, "--events", events, "--firm", firm],
        "top": ["explain", "--model", str(bundle_dir), "--input", panel, "--events", events, "--top", "1",
                "--target", "0.05", "--per-province", "--year", "2024"],
        "model": ["report", "--model", str(bundle_dir), "--data", panel, "--events", events, "--reference", panel,
                  "--reference-events", events, "--sample", "800"],
    }
    paths = {}
    for name, args in commands.items():
        paths[name] = out / f"report_{name}.html"
        result = runner.invoke(app, [*args, "--out", str(paths[name])])
        assert result.exit_code == 0, result.output
    return paths


def test_firm_report_renders_cleanly(reports, tmp_path):
    check_report(reports["firm"], tmp_path, min_images=2)


def test_top_per_province_report_renders_cleanly(reports, tmp_path):
    check_report(reports["top"], tmp_path, min_images=10)


def test_model_report_renders_cleanly(reports, tmp_path):
    check_report(reports["model"], tmp_path, min_images=5)


def test_the_checks_catch_a_broken_page(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src '
                   "'none'; img-src data:\"></head><body><img src=\"data:image/png;base64,AAAA\">"
                   '<img src="https://example.invalid/x.png"></body></html>', encoding="utf-8")
    png, messages = screenshot(bad, tmp_path, height=300)
    assert any("Content Security Policy" in m for m in messages)
    states = image_states(bad, tmp_path)
    assert any(i["width"] == 0 for i in states["images"])
    with pytest.raises(AssertionError):
        assert_not_blank(png)
