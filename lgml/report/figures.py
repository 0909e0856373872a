"""Report figures as self-contained PNG data URIs (matplotlib, Agg backend).

Every function takes plain data, draws one figure, closes it and returns
``"data:image/png;base64,..."`` so that reports embed their images. Only report-specific
drawing lives here (waterfall, dimension bars, importance, beeswarm, PSI bars); evaluation
figures (ROC, precision-recall, calibration) are drawn by :mod:`lgml.modeling.plots` and
embedded with :func:`to_data_uri`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from lgml.modeling.plots import png_bytes, pyplot

CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "SimHei",
             "Microsoft YaHei", "PingFang SC")
POS, NEG, NEUTRAL = "#c0392b", "#2471a3", "#7f8c8d"


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """A font with Chinese glyphs if one is installed (else labels fall back to English)."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return next((n for n in CJK_FONTS if n in names), None)


def _style() -> dict[str, Any]:
    font = cjk_font()
    return {"font.sans-serif": ([font] if font else []) + ["DejaVu Sans"], "font.family": "sans-serif",
            "axes.spines.top": False, "axes.spines.right": False, "font.size": 9}


def label(text: str) -> str:
    """``text`` as drawable: without a Chinese font, keep only its non-Chinese part."""
    if cjk_font() or text.isascii():
        return text
    kept = "".join(ch for ch in text if ord(ch) < 0x2E80).strip(" ·")
    return kept or text


def to_data_uri(fig: Any) -> str:
    """PNG data URI of a figure (the figure is closed)."""
    data = png_bytes(fig)
    pyplot().close(fig)
    return png_uri(data)


def png_uri(data: bytes) -> str:
    """Data URI of PNG bytes (e.g. a bundle's stored plot), marked safe for the templates
    (``markupsafe.Markup``: only base64 characters, built here, never from user data)."""
    from markupsafe import Markup

    return Markup("data:image/png;base64," + base64.b64encode(data).decode("ascii"))


def waterfall(contrib: Mapping[str, float], labels: Mapping[str, str], base: float, top: int = 10,
              pp: Mapping[str, float] | None = None, title: str = "") -> str:
    """Waterfall of the largest contributions from the base value to the firm's score.

    Args:
        contrib: Feature -> contribution in log-odds.
        labels: Feature -> display label (the feature's value may be part of it).
        base: Expected log-odds (start of the waterfall).
        top: Features drawn; the rest are summed in one bar.
        pp: Feature -> probability points, written beside each bar.
        title: Figure title.
    """
    plt = pyplot()
    items = sorted(contrib.items(), key=lambda kv: -abs(kv[1]))
    shown, rest = items[:top], items[top:]
    names = [labels.get(f, f) for f, _ in shown]
    values = [v for _, v in shown]
    notes = [f"{v:+.2f}" + (f" ({pp[f]:+.1f} pp)" if pp is not None else "") for f, v in shown]
    if rest:
        other = float(sum(v for _, v in rest))
        names.append(f"{len(rest)} other features")
        values.append(other)
        notes.append(f"{other:+.2f}" + (f" ({sum(pp[f] for f, _ in rest):+.1f} pp)" if pp is not None else ""))
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(9.6, 0.4 * len(values) + 1.3))
        start = base
        for i, (v, note) in enumerate(zip(values, notes)):
            ax.barh(i, v, left=start, color=POS if v > 0 else NEG, height=0.62)
            ax.text(max(start, start + v) + 0.02, i, note, va="center", fontsize=8)
            if i + 1 < len(values):
                ax.plot([start + v, start + v], [i + 0.31, i + 0.69], color="#999", lw=0.7)
            start += v
        ax.axvline(base, color=NEUTRAL, lw=0.8, ls="--")
        ax.axvline(start, color="#222", lw=0.9)
        ax.set_yticks(range(len(values)), [label(n) for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("log-odds of designation (base %.2f -> firm %.2f)" % (base, start))
        lo, hi = min(base, start, *np.cumsum([base, *values])), max(base, start, *np.cumsum([base, *values]))
        ax.set_xlim(lo - 0.15 * (hi - lo + 0.1), hi + 0.45 * (hi - lo + 0.1))
        if title:
            ax.set_title(label(title), fontsize=10, loc="left")
        return to_data_uri(fig)


def group_bars(values: Mapping[str, float], labels: Mapping[str, str], unit: str = "log-odds",
               title: str = "") -> str:
    """Horizontal bars per criterion dimension (positive red, negative blue)."""
    plt = pyplot()
    names = list(values)
    vals = [values[n] for n in names]
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(6.4, 0.36 * len(names) + 1.2))
        ax.barh(range(len(names)), vals, color=[POS if v > 0 else NEG for v in vals], height=0.6)
        ax.set_yticks(range(len(names)), [label(labels.get(n, n)) for n in names])
        ax.invert_yaxis()
        ax.axvline(0, color="#333", lw=0.8)
        ax.set_xlabel(unit)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:+.2f}" if v >= 0 else f"{v:+.2f} ", va="center", ha="left" if v >= 0 else "right",
                    fontsize=8)
        if title:
            ax.set_title(label(title), fontsize=10, loc="left")
        return to_data_uri(fig)


def importance_bars(values: pd.Series, labels: Mapping[str, str], unit: str, title: str = "") -> str:
    """Bars of mean |contribution| (largest on top)."""
    plt = pyplot()
    values = values.sort_values(ascending=True)
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(values) + 1.2))
        ax.barh(range(len(values)), values.to_numpy(), color="#5d6d7e", height=0.6)
        ax.set_yticks(range(len(values)), [label(labels.get(n, n)) for n in values.index])
        ax.set_xlabel(unit)
        if title:
            ax.set_title(label(title), fontsize=10, loc="left")
        return to_data_uri(fig)


def beeswarm(contrib: pd.DataFrame, values: pd.DataFrame, labels: Mapping[str, str], top: int = 15,
             seed: int = 0) -> str:
    """SHAP beeswarm: one dot per row and feature at its contribution (log-odds), coloured by the
    feature's value rank within the sample (blue low, red high; grey missing or categorical)."""
    plt = pyplot()
    order = contrib.abs().mean().sort_values(ascending=False).index[:top]
    rng = np.random.default_rng(seed)
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(9.6, 0.34 * len(order) + 1.4))
        for i, f in enumerate(order):
            x = contrib[f].to_numpy(dtype=float)
            v = (pd.to_numeric(values[f], errors="coerce") if f in values.columns
                 else pd.Series(np.nan, index=values.index))
            rank = v.rank(pct=True).to_numpy(dtype=float)
            y = i + _jitter(x, rng)
            nan = np.isnan(rank)
            ax.scatter(x[nan], y[nan], s=4, color="#aaaaaa", alpha=0.6, linewidths=0)
            sc = ax.scatter(x[~nan], y[~nan], s=4, c=rank[~nan], cmap="coolwarm", vmin=0, vmax=1, alpha=0.8,
                            linewidths=0)
        ax.axvline(0, color="#333", lw=0.8)
        ax.set_yticks(range(len(order)), [label(labels.get(f, f)) for f in order])
        ax.invert_yaxis()
        ax.set_xlabel("contribution (log-odds)")
        cbar = fig.colorbar(sc, ax=ax, fraction=0.03, pad=0.01)
        cbar.set_ticks([0, 1], labels=["low", "high"])
        cbar.set_label("feature value")
        return to_data_uri(fig)


def _jitter(x: np.ndarray, rng: np.random.Generator, width: float = 0.38) -> np.ndarray:
    """Vertical offsets that spread dense regions of ``x`` wider (a cheap swarm)."""
    if len(x) == 0:
        return x
    hist, edges = np.histogram(x, bins=min(60, max(5, len(x) // 20)))
    density = hist[np.clip(np.digitize(x, edges[1:-1]), 0, len(hist) - 1)] / max(hist.max(), 1)
    return rng.uniform(-1, 1, len(x)) * width * np.sqrt(density)


def psi_bars(psi: Sequence[tuple[str, float]], labels: Mapping[str, str], top: int = 20) -> str:
    """Bars of the largest population stability indexes, with the 0.1 / 0.25 guides."""
    plt = pyplot()
    items = sorted(psi, key=lambda kv: -kv[1])[:top][::-1]
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(6.4, 0.3 * len(items) + 1.2))
        vals = [v for _, v in items]
        colors = ["#c0392b" if v >= 0.25 else "#e67e22" if v >= 0.1 else "#5d6d7e" for v in vals]
        ax.barh(range(len(items)), vals, color=colors, height=0.6)
        ax.set_yticks(range(len(items)), [label(labels.get(f, f)) for f, _ in items])
        for x in (0.1, 0.25):
            ax.axvline(x, color="#999", ls="--", lw=0.8)
        ax.set_xlabel("PSI (current vs reference)")
        return to_data_uri(fig)


GAINS_CHART_MAX = 40  # % of candidates drawn: designations are rare, so the curves rise within the first few %
GAINS_STYLE = {"model": ("this model", "#c0392b", "-"), "rules": ("rule check", "#2471a3", "-"),
               "oracle": ("best possible (true probabilities)", "#27ae60", "--")}


def gains_chart(curve: Mapping[str, Sequence[float]], batch: int | str) -> str:
    """Gains chart of one batch: share of its designations captured (y) by the top share of
    candidates ranked by each scorer (x), with the random-pick diagonal.

    Args:
        curve: ``{"share": [0, 0.01, ..., 1], scorer: [share captured, ...]}`` (scorers
            ``model``, ``rules`` and optionally ``oracle``).
        batch: The batch year, for the title.
    """
    plt = pyplot()
    x = 100 * np.asarray(curve["share"], dtype=float)
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for name, (text, color, ls) in GAINS_STYLE.items():
            if name in curve:
                ax.plot(x, 100 * np.asarray(curve[name], dtype=float), color=color, ls=ls, lw=1.6, label=text)
        ax.plot([0, 100], [0, 100], color=NEUTRAL, lw=0.8, ls=":", label="random pick")
        ax.set(xlim=(0, GAINS_CHART_MAX), ylim=(0, 101), xlabel="top % of candidates, ranked by score",
               ylabel="% of the batch's designations captured")
        ax.set_title(f"Gains, batch {batch}", fontsize=10, loc="left")
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(fontsize=8, loc="lower right")
        return to_data_uri(fig)
