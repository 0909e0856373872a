"""Evaluation plots as matplotlib Figures (Agg backend; nothing is shown or written here).

Example:
    >>> figs = designation_plots(y, {"model": p_model, "rules": p_rules})  # doctest: +SKIP
    >>> sorted(figs)  # doctest: +SKIP
    ['calibration', 'pr', 'roc']
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def calibration_figure(y: np.ndarray, probs: Mapping[str, np.ndarray], n_bins: int = 15):
    """Reliability diagram (equal-frequency bins, log-log axes since base rates are ~1%)."""
    from lgml.modeling.evaluate import calibration_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo = 1.0
    for name, p in probs.items():
        curve = calibration_curve(y, p, n_bins).clip(lower=1e-5)  # log axes: zero rates drawn at 1e-5
        ax.plot(curve["predicted"], curve["observed"], marker="o", ms=3, label=name)
        lo = min(lo, float(curve["predicted"].min()))
    ax.plot([lo, 1], [lo, 1], color="grey", lw=0.8, ls="--", label="perfect")
    ax.set(xscale="log", yscale="log", xlabel="predicted probability (mean per bin)",
           ylabel="observed designation rate", title=f"Calibration, {n_bins} equal-frequency bins")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def roc_figure(y: np.ndarray, scores: Mapping[str, np.ndarray]):
    """ROC curves with AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.2, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test batches")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def pr_figure(y: np.ndarray, scores: Mapping[str, np.ndarray]):
    """Precision-recall curves with average precision in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, s in scores.items():
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, lw=1.2, label=f"{name} (AP {average_precision_score(y, s):.3f})")
    ax.axhline(float(np.mean(y)), color="grey", lw=0.8, ls="--", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test batches")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def growth_figure(y: np.ndarray, preds: Mapping[str, np.ndarray], n_bins: int = 20):
    """Mean actual vs mean predicted log growth over equal-frequency bins of each prediction."""
    from lgml.modeling.evaluate import calibration_curve

    plt = _pyplot()
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


def designation_plots(y: np.ndarray, probs: Mapping[str, np.ndarray]) -> dict:
    """``calibration``, ``roc`` and ``pr`` figures for the scorers in ``probs``."""
    return {"calibration": calibration_figure(y, probs), "roc": roc_figure(y, probs), "pr": pr_figure(y, probs)}


def close(figures: Mapping) -> None:
    """Release figures after they are saved."""
    plt = _pyplot()
    for fig in figures.values():
        if not isinstance(fig, (bytes, bytearray)):
            plt.close(fig)
