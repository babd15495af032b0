"""Figure of the certified check: certified accuracy against L2 radius, one curve per sigma
with its 95% band. Drawn in the house style (``@styled``)."""

from __future__ import annotations

import numpy as np

from audit.certified.evaluation import CertifiedEvaluation, rate
from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure

__all__ = ["curve_figure", "radius_grid"]


def radius_grid(ev: CertifiedEvaluation, points: int) -> np.ndarray:
    """Radii from 0 to a little past the largest certifiable one (and the reported radii)."""
    top = max([*(s.max_radius for s in ev.sigmas), *ev.radii, 1e-6]) * 1.05
    return np.linspace(0.0, top, max(points, 2))


@styled
def curve_figure(ev: CertifiedEvaluation) -> Figure:
    """Certified accuracy against radius per sigma (step curve, shaded Clopper-Pearson band),
    dots at the reported radii, a dotted line where each sigma's budget stops."""
    fig, ax = new_figure(5.2, 3.3)
    grid = radius_grid(ev, 400)
    for i, s in enumerate(ev.sigmas):
        color = PALETTE[i % len(PALETTE)]
        acc = s.curve(grid)
        bands = [rate(s.certified(float(r))) for r in grid]
        lo, hi = [b.ci_low for b in bands], [b.ci_high for b in bands]
        ax.step(grid, acc, where="post", color=color, label=f"sigma {s.sigma:g}")
        ax.fill_between(grid, lo, hi, step="post", color=color, alpha=0.15, linewidth=0)
        pts = [s.certified_accuracy(r).value for r in ev.radii]
        ax.plot(ev.radii, pts, "o", color=color, markersize=4)
        ax.axvline(s.max_radius, color=color, linestyle=":", linewidth=1)
    base = ev.base_accuracy.value
    ax.axhline(base, color="#777777", linestyle="--", linewidth=1,
               label=f"base model, no noise ({base:.1%})")
    ax.set_xlim(0, float(grid[-1]))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("L2 radius (input units)")
    ax.set_ylabel("certified accuracy")
    ax.set_title(f"Certified accuracy ({ev.samples} samples)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return to_figure(fig, "certified-curve", "Certified accuracy against L2 radius",
                     "Share of samples the smoothed classifier certifies with the true class "
                     "at each radius (randomized smoothing, CERTIFY), with the 95% "
                     "Clopper-Pearson band over the samples. Dots: the reported radii; dotted "
                     "lines: the largest radius the sampling budget can certify at each "
                     "sigma; dashed: the base model's accuracy without noise.")
