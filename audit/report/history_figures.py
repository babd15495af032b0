"""The small multiples of ``audit history``: one small SVG panel per plotted metric (value
per run, its interval as error bars over a band, bars set with ``--threshold`` as dashed
lines, the latest point red when a finding is about it).

Each panel is its own image so that the page can lay them out in as many columns as fit
(four on a wide screen, one on a phone) instead of shrinking one big grid. A panel holds only
numbers: its metric name is the HTML caption, escaped there, so no string from a result is
drawn into the SVG.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.ticker

from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure

if TYPE_CHECKING:
    from audit.report.history import Series

__all__ = ["series_panel"]

_LINE, _BAD, _BAR = PALETTE[0], PALETTE[1], PALETTE[2]


@styled
def _draw(s: Series, flagged: bool) -> object:
    fig, ax = new_figure(3.3, 2.0)
    pts = [(i + 1, p) for i, p in enumerate(s.points) if p is not None and p.value is not None]
    xs = [x for x, _ in pts]
    ys = [p.value for _, p in pts]
    # (run, value, low, high) of the points with an interval
    banded = [(x, p.value, p.low, p.high) for x, p in pts
              if p.value is not None and p.low is not None and p.high is not None]
    if len(banded) >= 2:
        ax.fill_between([b[0] for b in banded], [b[2] for b in banded],
                        [b[3] for b in banded], color=_LINE, alpha=0.12, lw=0)
    if banded:
        # max(0, ...): an interval that does not hold its value must not draw a negative bar
        err = [[max(0.0, v - lo) for _, v, lo, _ in banded],
               [max(0.0, hi - v) for _, v, _, hi in banded]]
        ax.errorbar([b[0] for b in banded], [b[1] for b in banded], yerr=err, fmt="none",
                    ecolor=_LINE, elinewidth=1, capsize=3)
    ax.plot(xs, ys, "-o", color=_LINE, ms=3.5, lw=1.3)
    if flagged and pts and pts[-1][0] == len(s.points):
        ax.plot([xs[-1]], [ys[-1]], "o", color=_BAD, ms=7, zorder=5)
    for t in s.thresholds:
        ax.axhline(t.bound, color=_BAR, ls="--", lw=1.2)
    n = len(s.points)
    ax.set_xlim(0.5, n + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=min(n, 8), integer=True))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=4))
    ax.set_xlabel("run", fontsize=8, labelpad=1)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", color="#e4e7ec", lw=0.6)
    fig.tight_layout(pad=0.3)
    return fig


def series_panel(s: Series, flagged: bool = False) -> Figure:
    """The panel of series ``s`` as an inlined SVG; ``flagged`` marks its latest point."""
    return to_figure(_draw(s, flagged), id=f"history-{s.name}", title=s.name)
