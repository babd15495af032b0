"""The surrogate check's figures: fidelity curves and, for images, the regions used."""

from __future__ import annotations

import numpy as np

from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure
from audit.surrogate.evaluate import FAMILY_TITLE, SurrogateEvaluation
from audit.surrogate.features import RegionView
from audit.surrogate.model import linear_coef
from audit.surrogate.params import SurrogateParams
from audit.surrogate.sweep import Sweep


@styled
def curve_figure(tree: Sweep, linear: Sweep, baseline: float, p: SurrogateParams) -> Figure:
    """Agreement and R² against complexity for both families; the recommended point starred
    (hollow when its family is not faithful; none when no point beats the constant guess)."""
    fig, axes = new_figure(9.0, 3.6, ncols=2, sharey=True)
    values = [baseline, p.min_fidelity_medium]
    for ax, sweep, xlabel in ((axes[0], tree, "tree depth"),
                              (axes[1], linear, "features with a non-zero weight")):
        xs = np.array([pt.complexity for pt in sweep.points], dtype=float)
        agree = np.array([pt.agreement for pt in sweep.points])
        lo = np.array([pt.fidelity.agreement_ci[0] for pt in sweep.points])
        hi = np.array([pt.fidelity.agreement_ci[1] for pt in sweep.points])
        r2 = np.array([pt.fidelity.r2 for pt in sweep.points])
        values += list(lo) + [v for v in r2 if np.isfinite(v)]
        ax.fill_between(xs, lo, hi, color=PALETTE[0], alpha=0.2, linewidth=0)
        ax.plot(xs, agree, "o-", color=PALETTE[0], markersize=4, label="agreement (95% CI)")
        ax.plot(xs, r2, "s--", color=PALETTE[1], markersize=3, label="R² of probabilities")
        rec = sweep.recommendation
        if rec is not None:
            ok = sweep.best.agreement >= p.min_fidelity_medium
            ax.plot([rec.complexity], [rec.agreement], "*", markersize=13, zorder=5,
                    color=PALETTE[3], markerfacecolor=PALETTE[3] if ok else "white",
                    label="recommended" if ok else "smallest near best (not faithful)")
        ax.axhline(p.min_fidelity_medium, color="#888888", linestyle=":", linewidth=1,
                   label=f"faithful ({p.min_fidelity_medium:.0%})")
        ax.axhline(baseline, color="#bbbbbb", linestyle="-.", linewidth=1,
                   label="constant guess")
        ax.set_xlabel(xlabel)
        ax.set_title(FAMILY_TITLE[sweep.family].capitalize())
    finite = [v for v in values if np.isfinite(v)]
    axes[0].set_ylim(max(min(finite) - 0.05, -0.25), 1.02)
    axes[0].set_ylabel("fidelity on held-out samples")
    legend: dict[str, object] = {}
    for ax in axes:
        for h, name in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(name, h)
    fig.legend(list(legend.values()), list(legend), loc="lower center",
               ncol=min(len(legend), 4), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.055 * ((len(legend) + 3) // 4), 1, 1))
    return to_figure(fig, "fidelity-curve", "Fidelity against complexity",
                     "Agreement (with bootstrap 95% band) and R² of probabilities of each "
                     "surrogate on held-out samples; the star marks the smallest surrogate "
                     f"within {p.tolerance:.0%} of its family's best among those that beat "
                     "the constant guess (hollow: the family stays below the faithfulness "
                     "line; no star: none beats the constant guess).")


@styled
def region_figure(ev: SurrogateEvaluation) -> Figure:
    """Mean image with the region grid, tree importance per region and linear usage."""
    view = ev.view
    assert isinstance(view, RegionView) and ev.mean_image is not None
    rt, rl = ev.tree.shown, ev.linear.shown
    tree = rt.surrogate.tree_
    g = view.grid
    imp = np.zeros((g, g))
    if tree is not None:
        for j, v in enumerate(tree.feature_importances_):
            _, i, jj = view.region(j)
            imp[i, jj] += v
    coef = linear_coef(rl.surrogate)
    lin = np.zeros((g, g))
    if coef is not None:
        for j in range(coef.shape[1]):
            _, i, jj = view.region(j)
            lin[i, jj] += float(np.abs(coef[:, j]).sum())
    mean_img = ev.mean_image
    fig, axes = new_figure(9.0, 3.3, ncols=3)
    c = mean_img.shape[0]
    shown = mean_img[0] if c == 1 else np.clip(mean_img.transpose(1, 2, 0), 0, 1)
    h, w = shown.shape[:2]
    panels = ((axes[0], None, "mean input with region names"),
              (axes[1], imp, "tree: importance by region"),
              (axes[2], lin, "linear: |weights| by region"))
    for ax, heat, title in panels:
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                  extent=(0, w, h, 0))
        if heat is not None and heat.max() > 0:
            ax.imshow(heat / heat.max(), cmap="magma", alpha=0.65, vmin=0, vmax=1,
                      interpolation="nearest", extent=(0, w, h, 0))
        for e in view.row_edges:
            ax.axhline(e, color="#33aaff", linewidth=0.6)
        for e in view.col_edges:
            ax.axvline(e, color="#33aaff", linewidth=0.6)
        if heat is None:
            for i in range(g):
                for j in range(g):
                    cy = (view.row_edges[i] + view.row_edges[i + 1]) / 2
                    cx = (view.col_edges[j] + view.col_edges[j + 1]) / 2
                    ax.text(cx, cy, f"r{i + 1}c{j + 1}", ha="center", va="center",
                            fontsize=7, color="black",
                            bbox={"boxstyle": "round,pad=0.15", "fc": "#ffee99",
                                  "ec": "none", "alpha": 0.85})
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return to_figure(fig, "surrogate-regions", "Image regions used by the surrogates",
                     "Left: the average audit image divided into the regions the surrogates "
                     "read (rNcM = row N, column M from the top left). Middle and right: "
                     "how much the tree and linear surrogates of the section rely on each "
                     "region (brighter = more; read them only where the surrogate is "
                     "faithful).", fmt="png", dpi=90)
