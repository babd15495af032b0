"""Fairness charts: per-group rates with intervals, disparities with intervals and thresholds,
and the accuracy-versus-gap trade-off of mitigations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure

if TYPE_CHECKING:
    from audit.fairness.metrics import Disparity, FairnessResult

RATE_STYLE = (("selection_rate", "selection rate", PALETTE[0], "o"),
              ("true_positive_rate", "TPR", PALETTE[3], "s"),
              ("false_positive_rate", "FPR", PALETTE[1], "^"))


def _short(label: str, limit: int = 28) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _err(value: float, lo: float, hi: float) -> list[list[float]]:
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(value)):
        return [[0.0], [0.0]]
    return [[max(value - lo, 0.0)], [max(hi - value, 0.0)]]


@styled
def group_rates_figure(res: FairnessResult, min_group_size: int) -> Figure:
    """One panel per grouping: selection rate, TPR and FPR of each group with bootstrap
    intervals; hollow markers for groups too small to compare."""
    sizes = [len(g.labels) for g in res.groupings]
    fig, axes = new_figure(7.2, 0.9 + sum(0.42 * s + 0.7 for s in sizes),
                           nrows=len(sizes), squeeze=False,
                           gridspec_kw={"height_ratios": [s + 1.2 for s in sizes]})
    for ax, g in zip(axes[:, 0], res.groupings, strict=True):
        ys = np.arange(len(g.labels))[::-1]
        for j, (key, name, colour, marker) in enumerate(RATE_STYLE):
            off = (j - 1) * 0.22
            for i, y in enumerate(ys):
                v = float(g.rates[key][i])
                if not math.isfinite(v):
                    continue
                lo, hi = g.rate_ci[key][i]
                counted = bool(g.counted[key][i])
                ax.errorbar([v], [y + off], xerr=_err(v, lo, hi), fmt=marker, color=colour,
                            markersize=5, capsize=2, elinewidth=1,
                            markerfacecolor=colour if counted else "white",
                            label=name if i == 0 else None)
        labels = [f"{_short(lab)} (n={int(n)}{', small' if n < min_group_size else ''})"
                  for lab, n in zip(g.labels, g.rows, strict=True)]
        ax.set_yticks(ys, labels, fontsize=8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.7, len(g.labels) - 0.3)
        ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
        ax.set_title(f"by {g.name}", loc="left")
    axes[-1, 0].set_xlabel("rate (bars: bootstrap 95% interval; hollow: not compared)")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return to_figure(fig, "group-rates", "Rates by group",
                     "Each group's selection rate, true positive rate and false positive rate "
                     "with bootstrap intervals. Far-apart markers of one colour are a "
                     "disparity; wide bars mean few rows.")


def disparity_rows(res: FairnessResult, kind: str) -> list[tuple[str, str, Disparity]]:
    """(grouping, short name, disparity) of every plotted disparity of ``kind``, in the order
    of the groupings and their specs."""
    return [(g.name, d.spec.short, d) for g in res.groupings for d in g.disparities.values()
            if d.spec.plot and d.spec.kind == kind]


@styled
def disparity_figure(res: FairnessResult, low: float, medium: float, high: float,
                     four_fifths: float) -> Figure:
    """Differences (left) and ratios (right) of every grouping with intervals, against the
    severity thresholds and the four-fifths line."""
    rows_d, rows_r = disparity_rows(res, "difference"), disparity_rows(res, "ratio")
    n = max(len(rows_d), 1)
    fig, (ax, ax2) = new_figure(9.0, 1.2 + 0.28 * n, ncols=2,
                                gridspec_kw={"width_ratios": [3, 2]})
    colours = {g.name: PALETTE[i % len(PALETTE)] for i, g in enumerate(res.groupings)}
    _bars(ax, rows_d, colours)
    top = max([d.ci_high for _, _, d in rows_d if math.isfinite(d.ci_high)]
              + [d.value for _, _, d in rows_d if math.isfinite(d.value)] + [high * 1.1])
    ax.set_xlim(-0.005 - 0.01 * top, min(1.0, top * 1.08))
    for x, c in ((low, "#9ab8e0"), (medium, "#e0a040"), (high, "#c62828")):
        ax.axvline(x, color=c, linestyle="--", linewidth=0.9)
    ax.set_xlabel(f"difference (lines: low {low:g}, medium {medium:g}, high {high:g})")
    ax.set_title("Differences (0 = parity)", loc="left")
    _bars(ax2, rows_r, colours)
    ax2.set_xlim(-0.02, 1.02)  # a ratio of 0 is a whole dot, not half of one
    ax2.axvline(four_fifths, color="#c62828", linestyle="--", linewidth=0.9)
    ax2.set_xlabel(f"ratio (line: four-fifths rule, {four_fifths:g})")
    ax2.set_title("Ratios (1 = parity)", loc="left")
    handles = [ax.plot([], [], "o", color=c)[0] for c in colours.values()]
    fig.legend(handles, [f"by {k}" for k in colours], loc="lower center", ncol=len(colours),
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return to_figure(fig, "disparities", "Disparities with intervals",
                     "Each dot is a disparity of one grouping with its bootstrap interval. "
                     "Left: differences against the severity thresholds; right: ratios "
                     "against the four-fifths rule.")


def _bars(ax: Any, rows: Sequence[tuple[str, str, Disparity]], colours: dict[str, str]) -> None:
    ys = np.arange(len(rows))[::-1]
    for y, (gname, _, d) in zip(ys, rows, strict=True):
        if not math.isfinite(d.value):
            continue
        ax.errorbar([d.value], [y], xerr=_err(d.value, d.ci_low, d.ci_high), fmt="o",
                    color=colours[gname], markersize=4, capsize=2, elinewidth=1)
    ax.set_yticks(ys, [f"{name} · {_short(gname, 16)}" for gname, name, _ in rows],
                  fontsize=8)
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)


@styled
def tradeoff_figure(points: Sequence[dict[str, Any]], panels: Sequence[tuple[str, str]]
                    ) -> Figure:
    """Accuracy against fairness gap, one panel per gap, one colour and marker per method.

    ``points`` are rows with ``method``, ``setting`` (e.g. ``λ=1``), ``accuracy`` and, for each
    panel key, the gap (and optionally ``KEY.ci``, its interval, drawn as a bar). The first
    method is the reference (your model, or the retrained baseline): a dark star."""
    ncols = min(2, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = new_figure(4.6 * ncols, 3.6 * nrows, nrows=nrows, ncols=ncols, squeeze=False)
    methods = list(dict.fromkeys(str(p["method"]) for p in points))
    markers = ["*", "o", "s", "^", "D", "v", "P", "X"]
    labelled: list[tuple[Any, list[tuple[float, float, str, str]]]] = []
    for ax, (key, label) in zip(axes.flat, panels, strict=False):
        notes: list[tuple[float, float, str, str]] = []
        labelled.append((ax, notes))
        for i, m in enumerate(methods):
            pts = [p for p in points if p["method"] == m and math.isfinite(float(p[key]))]
            if not pts:
                continue
            xs = [float(p[key]) for p in pts]
            ys = [float(p["accuracy"]) for p in pts]
            colour = "#222222" if i == 0 else PALETTE[i % len(PALETTE)]
            ax.plot(xs, ys, color=colour, linestyle="-" if len(pts) > 1 else "none",
                    linewidth=0.8, alpha=0.6)
            for p, x, y in zip(pts, xs, ys, strict=True):
                lo, hi = p.get(f"{key}.ci", (math.nan, math.nan))
                ax.errorbar([x], [y], xerr=_err(x, lo, hi), fmt=markers[i % len(markers)],
                            color=colour, markersize=7 if i == 0 else 5, capsize=2,
                            elinewidth=0.7, label=m if p is pts[0] else None)
                if p.get("setting"):
                    notes.append((x, y, str(p["setting"]), colour))
        ax.set_xlabel(f"{label} (lower is fairer)", fontsize=9)
        ax.set_ylabel("accuracy")
        ax.margins(y=0.08)
        ax.set_xlim(left=0)
        ax.grid(color="#eeeeee", linewidth=0.6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 6), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    for ax, notes in labelled:
        _place_labels(fig, ax, notes)
    return to_figure(fig, "mitigation-tradeoff", "Fairness gap against accuracy",
                     "Each point is one variant (method and strength) measured on held-out "
                     "data, with the bootstrap interval of its gap; up and to the left is "
                     "better. The distance from the reference (star: your model) shows what "
                     "fairness costs in accuracy.")


_OFFSETS = ((4, 4), (4, -11), (-6, 4), (-6, -11), (4, 13), (4, -20))
"""Where a point's label may go (points, from the point), tried in order."""


def _place_labels(fig: Any, ax: Any, notes: Sequence[tuple[float, float, str, str]],
                  size: float = 7.0) -> None:
    """Label points ``(x, y, text, colour)`` at the first offset where the label overlaps no
    label placed before (boxes estimated from the font size); a label with no free place is
    left out (its point keeps its colour and marker in the legend)."""
    fig.canvas.draw()  # the final limits and layout, so data positions map to their pixels
    scale = fig.dpi / 72
    width, height = 0.6 * size * scale, 1.2 * size * scale
    taken: list[tuple[float, float, float, float]] = []
    for x, y, text, colour in notes:
        px, py = ax.transData.transform((x, y))
        w = width * len(text)
        for dx, dy in _OFFSETS:
            left = px + dx * scale - (w if dx < 0 else 0)
            low = py + dy * scale
            box = (left, low, left + w, low + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                       for b in taken):
                taken.append(box)
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy),
                            ha="right" if dx < 0 else "left", fontsize=size, color=colour)
                break
