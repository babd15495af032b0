"""Figures of the drift check: per-column effect against what could be detected, the model's
predictions on both data sets, and the accuracy with and without labels."""

from __future__ import annotations

import numpy as np

from audit.drift.evaluation import DriftEvaluation
from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure

__all__ = ["accuracy_figure", "columns_figure", "predictions_figure"]

REF, CUR = PALETTE[0], PALETTE[1]
TOP_COLUMNS = 20


@styled
def columns_figure(ev: DriftEvaluation) -> Figure:
    """Observed effect (KS D or Cramér's V) of the columns with the largest effects, with the
    minimal detectable effect as a tick: a dot right of its tick is a detectable drift."""
    cols = sorted(ev.features, key=lambda f: f.effect - f.mde, reverse=True)[:TOP_COLUMNS]
    cols = cols[::-1]
    fig, ax = new_figure(6.0, 0.8 + 0.28 * len(cols))
    y = np.arange(len(cols))
    colors = [CUR if f.drifted else "#888888" for f in cols]
    ax.hlines(y, 0, [f.effect for f in cols], color=colors, linewidth=2)
    ax.scatter([f.effect for f in cols], y, color=colors, zorder=3, s=18,
               label="observed effect (red: drifted after BH)")
    ax.scatter([f.mde for f in cols], y, marker="|", s=120, color="#222222", zorder=4,
               label="minimal detectable effect (80% power)")
    ax.set_yticks(y, [f"{f.column} ({'KS D' if f.test == 'ks' else 'V'})" for f in cols])
    ax.set_xlabel("effect size: KS distance (numeric) or Cramér's V (categorical)")
    ax.set_xlim(0, max([0.05, *(max(f.effect, f.mde) * 1.15 for f in cols)]))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False)
    ax.set_title(f"Per-column drift ({len(ev.drifted)} of {len(ev.features)} drifted)",
                 pad=22)
    fig.tight_layout()
    return to_figure(fig, "drift-columns", "Per-column drift against detectable effect",
                     "Each column's observed effect between reference and current data "
                     "(Kolmogorov-Smirnov distance for numeric columns, Cramér's V for "
                     "categorical ones) as a dot, red when the column drifted after the "
                     "Benjamini-Hochberg correction; the black tick is the smallest effect the "
                     "test detects with 80% power at these sample sizes, so a grey dot far "
                     f"left of its tick is 'no drift seen', not 'no drift'. The "
                     f"{min(TOP_COLUMNS, len(ev.features))} columns with the largest effect "
                     "relative to that tick are shown; the table lists all.")


@styled
def predictions_figure(ev: DriftEvaluation) -> Figure:
    """Predicted class shares (bars) and top-class confidence (histograms) on both sets."""
    # stacked, not side by side: each panel stays legible on a phone-width page
    fig, (ax1, ax2) = new_figure(5.0, 5.6, nrows=2)
    shares = ev.class_shares[:20]
    x = np.arange(len(shares))
    ax1.bar(x - 0.2, [s[1] for s in shares], 0.4, color=REF, label="reference")
    ax1.bar(x + 0.2, [s[2] for s in shares], 0.4, color=CUR, label="current")
    ax1.set_xticks(x, [s[0] for s in shares], rotation=45 if len(shares) > 6 else 0,
                   ha="right" if len(shares) > 6 else "center", fontsize=7)
    ax1.set_ylabel("share of predictions")
    ax1.set_title("Predicted classes")
    ax1.legend(fontsize=7)
    bins = np.linspace(0.0, 1.0, 21)
    for conf, color, label in ((ev.confidence_reference, REF, "reference"),
                               (ev.confidence_current, CUR, "current")):
        if len(conf):
            ax2.hist(conf, bins=bins, density=True, histtype="step", color=color,
                     linewidth=1.5, label=label)
    ax2.set_xlabel("top-class probability")
    ax2.set_ylabel("density")
    ax2.set_title("Confidence")
    ax2.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return to_figure(fig, "drift-predictions", "The model's predictions on both data sets",
                     "Top: the share of each predicted class on the reference and the "
                     "current data" + (" (first 20 classes)" if len(ev.class_shares) > 20
                                       else "") + ". Bottom: the distribution of the model's "
                     "top-class probability on each; confidence falling on current data often "
                     "comes before a fall in accuracy.")


@styled
def accuracy_figure(ev: DriftEvaluation) -> Figure:
    """Reference accuracy, the label-free estimate with its interval, and the real accuracy
    with its interval when the current data has labels."""
    a = ev.accuracy
    assert a is not None
    rows: list[tuple[str, float, float, float, str]] = [
        ("reference (labels)", a.reference_accuracy, a.reference_accuracy,
         a.reference_accuracy, REF),
        ("current, estimated\nwithout labels", a.estimated, a.ci_low, a.ci_high, PALETTE[2])]
    if a.realized is not None and a.realized_ci_low is not None \
            and a.realized_ci_high is not None:
        rows.append(("current (labels)", a.realized, a.realized_ci_low, a.realized_ci_high,
                     CUR))
    fig, ax = new_figure(5.0, 0.9 + 0.5 * len(rows))
    for i, (_, v, lo, hi, color) in enumerate(rows):
        ax.errorbar([v], [i], xerr=[[v - lo], [hi - v]], fmt="o", color=color, capsize=4)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    lo_all = min(r[2] for r in rows)
    ax.set_xlim(max(0.0, lo_all - 0.1), 1.0)
    ax.set_xlabel("accuracy")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Accuracy on current data")
    fig.tight_layout()
    return to_figure(fig, "drift-accuracy", "Accuracy with and without labels",
                     "The reference accuracy; the current accuracy estimated from the model's "
                     "confidence after calibrating it on the reference (CBPE), with its 95% "
                     "interval; and, when the current data has labels, the real accuracy with "
                     "its Wilson 95% interval.")
