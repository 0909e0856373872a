"""The HTML reports as a reader sees them: rendered by headless Chromium with no network.

Each report is opened twice: as written (its Content-Security-Policy forbids scripts and any
request, so any console message is a failure), and as an instrumented copy whose added script
records every image's load state into the DOM, read back with ``--dump-dom``. A screenshot of
each report is saved and must not be blank. The dumped DOM is then read as a reader would: Chinese
text is present; the firm report's eligibility badge agrees with its checklist and its what-if
reaches the target or says plainly that it cannot; the model card's headline states the bundle's
evaluation and its drift table has rows. Each report is rendered once and its DOM reused.
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
    """Load an instrumented copy of ``html`` and return what its images and errors were, and
    the rendered DOM (``dom``)."""
    text = html.read_text(encoding="utf-8")
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text, count=1)
    text = text.replace("<head>", "<head>" + CHECKER, 1)
    copy = tmp / f"checked-{html.name}"
    copy.write_text(text, encoding="utf-8")
    done = chromium(copy.as_uri(), tmp / f"profile-dom-{html.stem}", "--dump-dom", "--virtual-time-budget=10000")
    match = re.search(r'<pre id="lgml-check">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the check script did not run:\n{done.stderr[-2000:]}"
    import html as html_lib

    return {**json.loads(html_lib.unescape(match.group(1))), "dom": done.stdout}


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


def check_report(html: Path, tmp: Path, min_images: int) -> dict:
    """Render ``html`` (screenshot and DOM), check it is clean, and return the image states with
    the rendered DOM."""
    png, messages = screenshot(html, tmp)
    assert messages == [], "console messages:\n" + "\n".join(messages)
    assert_not_blank(png)
    states = image_states(html, tmp)
    assert states["errors"] == []
    assert len(states["images"]) >= min_images
    broken = [i for i in states["images"] if not i["complete"] or i["width"] == 0]
    assert broken == [], broken
    return states


def visible_text(dom: str) -> str:
    """The text of a dumped DOM (tags, scripts and styles removed, entities decoded)."""
    import html as html_lib

    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", dom))


def has_chinese(text: str) -> bool:
    return re.search(r"[\u4e00-\u9fff]{2,}", text) is not None


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


MIN_IMAGES = {"firm": 2, "top": 10, "model": 5}


@pytest.fixture(scope="module")
def rendered(reports, tmp_path_factory):
    """Each report rendered once (screenshot, checks and DOM), on first use."""
    folder, cache = tmp_path_factory.mktemp("rendered"), {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = check_report(reports[name], folder, MIN_IMAGES[name])
        return cache[name]

    return get


def test_firm_report_renders_cleanly(rendered):
    assert has_chinese(visible_text(rendered("firm")["dom"]))


def test_top_per_province_report_renders_cleanly(rendered):
    assert has_chinese(visible_text(rendered("top")["dom"]))


def test_model_report_renders_cleanly(rendered):
    assert has_chinese(visible_text(rendered("model")["dom"]))


def test_eligibility_badge_agrees_with_the_checklist(rendered):
    for name in ("firm", "top"):
        dom = rendered(name)["dom"]
        sections = re.findall(r'<section class="firm".*?</section>', dom, re.S)
        assert sections, name
        for section in sections:
            badge = re.findall(r'data-eligibility="(\w+)"', section)
            statuses = set(re.findall(r'data-criterion-status="(\w+)"', section))
            assert len(badge) == 1 and statuses <= {"pass", "fail", "missing"} and statuses
            expected = "fails" if "fail" in statuses else "unknown" if "missing" in statuses else "meets"
            assert badge[0] == expected, (name, badge, statuses)


def test_whatif_reaches_its_target_or_says_it_cannot(rendered):
    dom = rendered("top")["dom"]
    boxes = re.findall(r'<div class="(?:ok|note)" data-whatif="([^"]*)" data-target="([^"]*)" '
                       r'data-probability-after="([^"]*)">(.*?)</div>', dom, re.S)
    assert boxes
    for goal, target, after, text in boxes:
        if float(after) < float(target):
            assert "No combination of up to" in text or "No feasible change" in text, text
            assert "within realistic limits" in text


def test_model_card_headline_matches_the_bundle_evaluation(rendered, bundle):
    dom = rendered("model")["dom"]
    gains = bundle.evaluation["gains"]
    batch = max(gains, key=int)
    g = gains[batch]
    head = re.search(r'<div class="ok" id="headline" ([^>]*)>(.*?)</div>', dom, re.S)
    assert head, "no headline"
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', head.group(1)))
    assert attrs == {"batch": batch, "k": str(g["k"]), "model": str(g["top_k"]["model"]),
                     "rules": str(g["top_k"]["rules"]), "oracle": str(g["top_k"]["oracle"])}
    sentence = " ".join(visible_text(head.group(2)).split())
    assert (f"Of the {g['k']} firms ranked highest for batch {batch}, {g['top_k']['model']} were designated; "
            f"the rule check's top {g['k']} held {g['top_k']['rules']}") in sentence


def test_model_card_drift_table_has_rows(rendered):
    dom = rendered("model")["dom"]
    table = re.search(r'<table id="drift-table">(.*?)</table>', dom, re.S)
    assert table and table.group(1).count("<tr>") > 5
    verdict = visible_text(re.search(r'<div [^>]*id="drift-verdict"[^>]*>(.*?)</div>', dom, re.S).group(1))
    assert re.search(r"(Stable|Moderate shift|Major shift)", verdict)
    text = visible_text(dom)
    assert "the model never saw" in text and "evaluation / populations" not in text


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
