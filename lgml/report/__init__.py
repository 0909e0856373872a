"""Reports: per-firm explanations and the model report as self-contained HTML (images embedded,
no scripts, no external requests), Markdown or JSON.

The per-firm report is rendered by :mod:`lgml.report.firm`, the model report by
:mod:`lgml.report.model`; this module holds what both share: the template environment (HTML
autoescaped, so firm IDs and other user strings cannot inject markup; Markdown escaped),
number filters and strict JSON.

Example:
    >>> from lgml.report.firm import render_firms
    >>> data = firm_explanation(bundle, row, firm_rows)  # doctest: +SKIP
    >>> html = render_firms([data], "html")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

FORMATS = ("html", "md", "json")


# Characters that start Markdown markup inside a line: escaped in every value (see _markdown_escape).
_MARKDOWN_SPECIAL = re.compile(r"[\\`*_\[\]|#!~>]")


@lru_cache(maxsize=2)
def environment(markdown: bool = False) -> Any:
    """The Jinja environment of the report templates.

    HTML templates autoescape every value. Markdown templates escape every value so that it reads
    as literal text (:func:`_markdown_escape`): no raw HTML, link, image, emphasis or broken
    table cell can come from the data.
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
    """A value as literal Markdown text: raw HTML (``<``) as an entity, and every character that
    could start emphasis, code, a link, an image, a heading or a table cell backslash-escaped;
    line breaks become spaces. Values the report code itself marks safe (``markupsafe.Markup``,
    such as the PNG data URIs of :func:`lgml.report.figures.png_uri`) are kept as they are;
    nothing a user's data holds can pass as such."""
    from markupsafe import Markup

    if value is None or isinstance(value, (int, float, Markup)):
        return value
    text = str(value).replace("\r", " ").replace("\n", " ").replace("<", "&lt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\g<0>", text)


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


def now() -> str:
    """The time a report is generated, in UTC."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
