"""Matplotlib figures turned into inlined, deterministic report figures.

SVG output has fixed ids and no date, PNG output no software stamp, so the same data always
gives the same bytes (the JSON result is reproducible from a seed). The house style is applied
only inside :func:`styled` drawing functions (and :func:`new_figure` / :func:`to_figure`), never
to the process-wide rcParams, so importing this module changes nothing for the caller.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, ParamSpec, TypeVar, cast

import matplotlib
import matplotlib.figure
import matplotlib.text
import matplotlib.ticker
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from audit.display import shown
from audit.result import Figure

STYLE: dict[str, Any] = {
    "svg.hashsalt": "audit",
    "svg.fonttype": "path",
    "figure.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
}

_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextmanager
def figure_style() -> Iterator[None]:
    """The house style, for the duration of the block (nested uses are harmless)."""
    with matplotlib.rc_context(cast(Any, STYLE)):
        yield


def styled(draw: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorator: run a drawing function inside :func:`figure_style`, so text sizes, spines and
    SVG settings are the house style whatever the caller's rcParams."""

    @functools.wraps(draw)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with figure_style():
            return draw(*args, **kwargs)

    return wrapper

PALETTE = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477",
           "#66aa00", "#b82e2e", "#316395"]


def _subplots(figsize: tuple[float, float], **kwargs: Any) -> Any:
    """``plt.subplots`` without pyplot: an Agg figure not registered with any global figure
    manager (no backend switch, nothing to close)."""
    fig = matplotlib.figure.Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(**kwargs)
    return fig, axes


@styled
def new_figure(width: float = 6.0, height: float = 4.0, **kwargs: Any) -> Any:
    """A new matplotlib figure (and axes, as ``plt.subplots`` returns them)."""
    return _subplots((width, height), **kwargs)


def _shown_func(func: Callable[..., Any]) -> Callable[..., str]:
    def label(*args: Any) -> str:
        return shown(str(func(*args)))
    return label


def _show_texts(fig: Any) -> None:
    """:func:`shown` on every text of ``fig``: titles, labels, legends, annotations, and the
    fixed tick labels (their formatter writes them again at each draw)."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for fmt in (axis.get_major_formatter(), axis.get_minor_formatter()):
                if isinstance(fmt, matplotlib.ticker.FixedFormatter):
                    fmt.seq = [shown(str(s)) for s in fmt.seq]
                elif isinstance(fmt, matplotlib.ticker.FuncFormatter):  # set_ticks(..., labels)
                    fmt.func = _shown_func(fmt.func)
    for t in fig.findobj(matplotlib.text.Text):
        t.set_text(shown(t.get_text()))


def to_figure(fig: Any, id: str, title: str, caption: str = "",
              fmt: Literal["svg", "png"] = "svg", dpi: int = 100) -> Figure:
    """Render ``fig`` into a :class:`Figure` (base64 SVG or PNG) and close it. Every text in
    the figure has its control characters made visible first (:func:`audit.display.shown`):
    a class name with an escape character would make the SVG invalid XML."""
    _show_texts(fig)
    buf = io.BytesIO()
    with figure_style():
        if fmt == "svg":
            fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
            mime: Literal["image/svg+xml", "image/png"] = "image/svg+xml"
        else:
            fig.savefig(buf, format="png", bbox_inches="tight", dpi=dpi,
                        metadata={"Software": None})
            mime = "image/png"
    return Figure(id=id, title=title, mime=mime, caption=caption,
                  data=base64.b64encode(buf.getvalue()).decode("ascii"))


@styled
def image_grid(images: np.ndarray, titles: list[str] | None = None, ncols: int = 8,
               cmap: str = "gray", vmin: float | None = 0.0, vmax: float | None = 1.0,
               cell: float = 1.3) -> Any:
    """A grid of images ``(N, H, W)`` or ``(N, H, W, 3)`` with small titles; returns the fig."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, (n + ncols - 1) // ncols)
    fig, axes = _subplots((cell * ncols, cell * nrows + 0.3), nrows=nrows, ncols=ncols,
                          squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if titles:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return fig
