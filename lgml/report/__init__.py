"""Reports: per-firm explanations and the model report as self-contained HTML (images embedded,
no scripts, no external requests), Markdown or JSON.

Templates live in ``lgml/report/templates`` and are rendered with autoescaping on, so firm IDs
and other user strings cannot inject markup.

Example:
    >>> data = firm_explanation(bundle, row, firm_rows)  # doctest: +SKIP
    >>> html = render_firms([data], "html")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from collections.abc import Callable
from functools import lru_cache
from typing import Any

FORMATS = ("html", "md", "json")
TOP_WATERFALL = 10


@lru_cache(maxsize=2)
def environment(markdown: bool = False) -> Any:
    """The Jinja environment of the report templates.

    HTML templates autoescape every value. Markdown templates escape what Markdown would turn
    into markup or break a table: ``<`` (raw HTML) and ``|`` (table cells); line breaks in
    values become spaces.
    """
    import jinja2

    from lgml import vocabulary

    options = dict(loader=jinja2.PackageLoader("lgml", "report/templates"), trim_blocks=True, lstrip_blocks=True,
                   undefined=jinja2.StrictUndefined)
    if markdown:
        env = jinja2.Environment(autoescape=False, finalize=_markdown_escape, **options)
    else:
        env = jinja2.Environment(autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                                 **options)
    env.filters.update(pct=vocabulary.pct, pp=vocabulary.signed_pp, lo=vocabulary.signed_log_odds,
                       num=vocabulary.fixed)
    return env


def _markdown_escape(value: Any) -> Any:
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value)
    if text.startswith("data:image/"):
        return text
    return text.replace("<", "&lt;").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def to_json(data: Any) -> str:
    """Strict JSON (NaN and infinities as null), UTF-8 text, keys kept in order."""
    return json.dumps(_clean(data), ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        return _clean(x.item())
    return x


def firm_figures(data: dict[str, Any]) -> dict[str, str]:
    """Waterfall and grouped bars of one firm explanation, as PNG data URIs."""
    from lgml.vocabulary import FEATURE_LABELS, format_value
    from lgml.report import figures

    labels = {}
    for f, value in data["feature_values"].items():
        unit = FEATURE_LABELS.get(f, (f, "number"))[1]
        labels[f] = f"{data['feature_labels'].get(f, f)} = {format_value(value, unit)}"
    return {
        "waterfall": figures.waterfall(data["contributions"], labels, data["base_value"], top=TOP_WATERFALL,
                                       pp=data["contributions_pp"]),
        "groups": figures.group_bars(data["groups"], data["group_labels"], unit="log-odds (sum per dimension)"),
    }


def render_firms(explanations: list[dict[str, Any]], fmt: str = "html", *, title: str | None = None,
                 figures_on: bool = True, sections: list[tuple[str, list[int]]] | None = None,
                 progress: Callable[[int], None] | None = None) -> str:
    """Render one or many firm explanations as one document.

    Args:
        explanations: Output of :func:`lgml.explain.firm_explanation`.
        fmt: ``html``, ``md`` or ``json``.
        title: Document title; default names the firm (or the number of firms).
        figures_on: Embed the waterfall and grouped bars (HTML and Markdown).
        sections: Optional grouping, ``[(heading, [index into explanations, ...]), ...]``,
            e.g. one section per province.
        progress: Called with 1 after each firm's figures.

    Returns:
        The document text.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "json":
        body = explanations[0] if len(explanations) == 1 and sections is None else {"firms": explanations}
        return to_json(body)
    firms = []
    for e in explanations:
        firms.append(dict(e, _figures=firm_figures(e) if figures_on else {}))
        if progress is not None:
            progress(1)
    if title is None:
        title = (f"Firm {explanations[0]['firm_id']}: Little Giant outlook" if len(explanations) == 1
                 else f"{len(explanations)} firms: Little Giant outlook")
    if sections is None:
        sections = [("", list(range(len(firms))))]
    model = explanations[0]["model"] if explanations else {}
    template = environment(fmt == "md").get_template("firms.html.j2" if fmt == "html" else "firms.md.j2")
    return template.render(title=title, firms=firms, sections=sections, model=model, generated=_now())


def render_model(report: dict[str, Any], fmt: str = "html") -> str:
    """Render a model report (see :func:`lgml.report.model.model_report`)."""
    if fmt == "json":
        return to_json({k: v for k, v in report.items() if k != "images"})
    if fmt != "html":
        raise ValueError(f"the model report is written as html or json, not {fmt!r}")
    return environment().get_template("model.html.j2").render(r=report, generated=_now())


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
