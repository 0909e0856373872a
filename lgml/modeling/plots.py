"""Evaluation figures as matplotlib Figures (Agg backend; nothing is shown or written here):
the one place they are drawn, for the bundle's ``plots/`` at training and for the model report.

Example:
    >>> fig = roc_figure(y, {"model": p_model, "rules": p_rules})  # doctest: +SKIP
    >>> png = png_bytes(fig)  # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np


def pyplot() -> Any:
    """``matplotlib.pyplot``, on the Agg backend (no display needed) unless the user chose one:
    a backend set by ``MPLBACKEND`` (as Jupyter kernels do) or pyplot already imported is left as
    it is, so that a notebook's own plots keep showing after lgml drew its figures (which are
    rendered to PNG and closed whatever the backend)."""
    import os
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def calibration_figure(y: np.ndarray, probs: Mapping[str, np.ndarray], n_bins: int = 15):
    """Reliability diagram (equal-frequency bins, log-log axes since base rates are ~1%).

    A bin with no designation has an observed rate of 0, which a log axis cannot show: such bins
    are drawn as open triangles on the bottom edge (labelled "observed 0"), never at an
    invented floor value.

    Args:
        y: 0/1 labels, shape (n,).
        probs: Scorer name -> probabilities of shape (n,).
        n_bins: Equal-frequency bins of each scorer's probabilities.
    """
    from lgml.modeling.evaluate import calibration_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo, zeros = 1.0, False
    for name, p in probs.items():
        curve = calibration_curve(y, p, n_bins)
        curve = curve[curve["predicted"] > 0]
        pos = curve[curve["observed"] > 0]
        line = ax.plot(pos["predicted"], pos["observed"], marker="o", ms=3, label=name)[0]
        zero = curve[curve["observed"] <= 0]
        if len(zero):
            zeros = True
            ax.plot(zero["predicted"], np.zeros(len(zero)), ls="none", marker="v", ms=6, mfc="none",
                    color=line.get_color(), transform=ax.get_xaxis_transform(), clip_on=False)
        if len(curve):
            lo = min(lo, float(curve["predicted"].min()), float(pos["observed"].min()) if len(pos) else 1.0)
    ax.plot([lo, 1], [lo, 1], color="grey", lw=0.8, ls="--", label="perfect")
    if zeros:
        ax.plot([], [], ls="none", marker="v", ms=6, mfc="none", color="#555",
                label="bins with no designation (observed 0)")
    ax.set(xscale="log", yscale="log", xlabel="predicted probability (mean per bin)",
           ylabel="observed designation rate", title=f"Calibration, {n_bins} equal-frequency bins")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _roc_axes(ax: Any, y: np.ndarray, scores: Mapping[str, np.ndarray], title: str) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.2, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(fontsize=8, loc="lower right")


def _pr_axes(ax: Any, y: np.ndarray, scores: Mapping[str, np.ndarray], title: str) -> None:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    for name, s in scores.items():
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, lw=1.2, label=f"{name} (AP {average_precision_score(y, s):.3f})")
    ax.axhline(float(np.mean(y)), color="grey", lw=0.8, ls="--", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title=title)
    ax.legend(fontsize=8, loc="upper right")


def _one_axes(draw: Any, y: np.ndarray, scores: Mapping[str, np.ndarray], title: str):
    fig, ax = pyplot().subplots(figsize=(5.5, 5))
    draw(ax, y, scores, title)
    fig.tight_layout()
    return fig


def roc_figure(y: np.ndarray, scores: Mapping[str, np.ndarray], title: str = "ROC, test batches"):
    """ROC curves with AUC in the legend.

    Args:
        y: 0/1 labels, shape (n,).
        scores: Scorer name -> ranking score of shape (n,) (higher = more likely).
        title: Axes title.
    """
    return _one_axes(_roc_axes, y, scores, title)


def pr_figure(y: np.ndarray, scores: Mapping[str, np.ndarray], title: str = "Precision-recall, test batches"):
    """Precision-recall curves with average precision in the legend (arguments as
    :func:`roc_figure`)."""
    return _one_axes(_pr_axes, y, scores, title)


def roc_pr_figure(y: np.ndarray, scores: Mapping[str, np.ndarray], where: str = "the data"):
    """:func:`roc_figure` and :func:`pr_figure` side by side in one figure; ``where`` names the
    rows in the titles."""
    plt = pyplot()
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(9.6, 4.2))
    _roc_axes(roc_ax, y, scores, f"ROC, {where}")
    _pr_axes(pr_ax, y, scores, f"Precision-recall, {where}")
    fig.tight_layout()
    return fig


def growth_figure(y: np.ndarray, preds: Mapping[str, np.ndarray], n_bins: int = 20):
    """Mean actual vs mean predicted log growth over equal-frequency bins of each prediction."""
    from lgml.modeling.evaluate import calibration_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, pred in preds.items():
        curve = calibration_curve(y, pred, n_bins)
        ax.plot(curve["predicted"], curve["observed"], marker="o", ms=3, label=name)
    lims = [float(np.nanpercentile(y, 2)), float(np.nanpercentile(y, 98))]
    ax.plot(lims, lims, color="grey", lw=0.8, ls="--", label="perfect")
    ax.set(xlabel="predicted log growth (bin mean)", ylabel="actual log growth (bin mean)",
           title=f"Growth, {n_bins} equal-frequency bins")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def png_bytes(fig: Any) -> bytes:
    """PNG of a figure (110 dpi, tight bounding box); the figure stays open."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def close(figures: Mapping) -> None:
    """Release figures after they are saved."""
    plt = pyplot()
    for fig in figures.values():
        if not isinstance(fig, (bytes, bytearray)):
            plt.close(fig)
