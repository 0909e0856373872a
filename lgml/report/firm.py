"""The per-firm report: one or many firm explanations (:func:`lgml.explain.firm.firm_explanation`)
as one HTML, Markdown or JSON document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lgml.report import FORMATS, environment, now, to_json
from lgml.report import figures

TOP_WATERFALL = 10


def firm_figures(data: dict[str, Any]) -> dict[str, str]:
    """Waterfall and grouped bars of one firm explanation, as PNG data URIs."""
    from lgml.vocabulary import FEATURE_LABELS, format_value
    
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
        explanations: Output of :func:`lgml.explain.firm.firm_explanation`.
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
    # One firm under the default title is named by the title; otherwise each firm gets a heading.
    firm_titles = title is not None or len(explanations) != 1
    if title is None:
        one = explanations[0] if explanations else {}
        name = f" · {one['firm_name']}" if one.get("firm_name") else ""
        outlook = "Little Giant re-review outlook" if one.get("kind") == "review" else "Little Giant outlook"
        title = (f"Firm {one['firm_id']}{name}: {outlook}" if len(explanations) == 1
                 else f"{len(explanations)} firms: Little Giant outlook")
    if sections is None:
        sections = [("", list(range(len(firms))))]
    # The document's model: the designation model when some firm is explained by it (a review
    # explanation names its review model in its own section).
    model = next((e["model"] for e in explanations if e.get("kind") != "review"),
                 explanations[0]["model"] if explanations else {})
    template = environment(fmt == "md").get_template("firms.html.j2" if fmt == "html" else "firms.md.j2")
    return template.render(title=title, firms=firms, sections=sections, model=model, generated=now(),
                           firm_titles=firm_titles)
