"""Figures of the slices check: the weakest slices' error rates with intervals, the image
slices' galleries with saliency overlays, and the proxies' strength against the model's
reliance on them."""

from __future__ import annotations

import numpy as np

from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure
from audit.saliency.figures import gallery
from audit.slices.evaluation import GallerySlice, SlicesEvaluation
from audit.slices.search import SliceResult
from audit.stats import wilson

__all__ = ["gallery_figures", "proxies_figure", "slices_figure"]

TOP = 12


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@styled
def slices_figure(ev: SlicesEvaluation, slices: list[SliceResult]) -> Figure:
    """Error rate of each shown slice with its Wilson 95% interval, against the model's
    overall error rate; confirmed slices in red."""
    shown = slices[:TOP][::-1]
    fig, ax = new_figure(6.4, 0.9 + 0.3 * len(shown))
    y = np.arange(len(shown))
    for i, s in enumerate(shown):
        lo, hi = wilson(s.errors, s.size)
        color = PALETTE[1] if s.confirmed else "#888888"
        ax.errorbar([s.rate], [i], xerr=[[max(0.0, s.rate - lo)], [max(0.0, hi - s.rate)]],
                    fmt="o", color=color,
                    capsize=3, markersize=4)
    ax.axvline(ev.error_rate, color="#333333", linestyle="--", linewidth=1,
               label=f"overall error {ev.error_rate:.1%}")
    ax.set_yticks(y, [f"{_short(s.rule)} (n={s.size})" for s in shown], fontsize=7)
    ax.set_xlim(0, min(1.0, max([0.05, *(wilson(s.errors, s.size)[1] for s in shown)]) * 1.1))
    ax.set_xlabel("error rate in the slice")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False)
    ax.set_title("Weakest slices (red: confirmed)", pad=16)
    fig.tight_layout()
    return to_figure(fig, "slices-rates", "Error rate of the weakest slices",
                     "Each slice's error rate with its Wilson 95% interval, measured on rows "
                     "the search did not use to find it (embedding clusters: on all rows, "
                     "as they were found without the errors); red: confirmed after "
                     "Benjamini-Hochberg; dashed: the model's overall error rate.")


def gallery_figures(galleries: list[GallerySlice]) -> list[Figure]:
    """One gallery per image slice: inputs and Grad-CAM overlays, correct members first."""
    out = []
    for i, g in enumerate(galleries):
        if g.maps is None:
            continue
        fig = gallery(f"slice-{i + 1}", "Grad-CAM", g.images, g.maps, g.true,
                      g.pred, None, g.n_correct)
        fig.title = f"Slice {i + 1}: {_short(g.rule, 80)}"
        fig.caption = (f"Members of the slice \u201c{g.rule}\u201d: " + fig.caption)
        out.append(fig)
    return out


@styled
def proxies_figure(ev: SlicesEvaluation, strong_auc: float, reliance: float) -> Figure:
    """Each feature's held-out AUC for a sensitive attribute against how much the model's
    predictions depend on it."""
    fig, ax = new_figure(5.6, 3.6)
    sens = sorted({x.sensitive for x in ev.proxies})
    for j, s in enumerate(sens):
        pts = [x for x in ev.proxies if x.sensitive == s]
        ax.scatter([x.auc for x in pts], [x.reliance or 0.0 for x in pts],
                   color=PALETTE[j % len(PALETTE)], label=f"predicting {s}", s=18)
        for x in pts:
            if x.strong:
                ax.annotate(_short(x.feature, 18), (x.auc, x.reliance or 0.0), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
    ax.axvline(strong_auc, color="#333333", linestyle=":", linewidth=1)
    ax.axhline(reliance, color="#333333", linestyle=":", linewidth=1)
    ax.set_xlabel("held-out AUC of the feature for the sensitive attribute")
    ax.set_ylabel("share of predictions that change\nwhen the feature is shuffled")
    ax.set_xlim(0.45, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Proxies and the model's reliance on them")
    fig.tight_layout()
    return to_figure(fig, "slices-proxies", "Proxies of the sensitive attributes",
                     "Each feature of the training data as a dot: how well it alone predicts a "
                     "sensitive attribute (held-out ROC AUC; 0.5 is chance) and how much the "
                     "model's predictions depend on it. Top right of the dotted lines: strong "
                     "proxies the model relies on, each a finding.")
