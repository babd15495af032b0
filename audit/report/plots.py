"""Matplotlib figures turned into inlined, deterministic report figures.

SVG output has fixed ids and no date, PNG output no software stamp, so the same data always
gives the same bytes (the JSON result is reproducible from a seed).
"""

from __future__ import annotations

import base64
import io
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from audit.core import Figure

plt.rcParams.update({
    "svg.hashsalt": "audit",
    "svg.fonttype": "path",
    "figure.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
})

PALETTE = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477",
           "#66aa00", "#b82e2e", "#316395"]


def new_figure(width: float = 6.0, height: float = 4.0, **kwargs: Any) -> Any:
    """A new matplotlib figure (and axes, as ``plt.subplots`` returns them)."""
    return plt.subplots(figsize=(width, height), **kwargs)


def to_figure(fig: Any, id: str, title: str, caption: str = "",
              fmt: Literal["svg", "png"] = "svg", dpi: int = 100) -> Figure:
    """Render ``fig`` into a :class:`Figure` (base64 SVG or PNG) and close it."""
    buf = io.BytesIO()
    try:
        if fmt == "svg":
            fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
            mime: Literal["image/svg+xml", "image/png"] = "image/svg+xml"
        else:
            fig.savefig(buf, format="png", bbox_inches="tight", dpi=dpi,
                        metadata={"Software": None})
            mime = "image/png"
    finally:
        plt.close(fig)
    return Figure(id=id, title=title, mime=mime, caption=caption,
                  data=base64.b64encode(buf.getvalue()).decode("ascii"))


def image_grid(images: np.ndarray, titles: list[str] | None = None, ncols: int = 8,
               cmap: str = "gray", vmin: float | None = 0.0, vmax: float | None = 1.0,
               cell: float = 1.3) -> Any:
    """A grid of images ``(N, H, W)`` or ``(N, H, W, 3)`` with small titles; returns the fig."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, (n + ncols - 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + 0.3),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if titles:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return fig
