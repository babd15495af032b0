"""Figures of the saliency section: galleries, curves, where-the-model-looks, sanity, feature
visualisation and tabular feature importance. Image figures are PNG (small), plots SVG."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from audit.core import Figure
from audit.report.plots import PALETTE, new_figure, to_figure
from audit.saliency.metrics import Faithfulness

_OK, _BAD = "#109618", "#dc3912"


def compact_png(fig: Any, id: str, title: str, caption: str, dpi: int = 80) -> Figure:
    """:func:`to_figure` as PNG, re-encoded with a 256-colour palette (about 3x smaller for
    heatmaps over textured images; deterministic)."""
    figure = to_figure(fig, id, title, caption, fmt="png", dpi=dpi)
    img = Image.open(io.BytesIO(base64.b64decode(figure.data))).convert("RGB")
    buf = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                 dither=Image.Dither.NONE).save(buf, format="PNG", optimize=True)
    if buf.tell() < len(figure.data) * 3 // 4:
        figure.data = base64.b64encode(buf.getvalue()).decode("ascii")
    return figure


def display_images(x: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
    """Images ``(N, C, H, W)`` to displayable ``(N, H, W)`` grey or ``(N, H, W, 3)`` RGB in
    [0, 1] (other channel counts are averaged to grey)."""
    lo, hi = value_range
    img = ((x.detach().float().cpu() - lo) / max(hi - lo, 1e-12)).clamp(0, 1)
    if img.shape[1] == 3:
        return img.permute(0, 2, 3, 1).numpy()
    return img.mean(dim=1).numpy()


def _show(ax: object, img: np.ndarray) -> None:
    kw = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0} if img.ndim == 2 else {}
    ax.imshow(img, interpolation="nearest", **kw)  # type: ignore[attr-defined]


def _overlay(ax: object, img: np.ndarray, sal: np.ndarray, mask: np.ndarray | None) -> None:
    grey = img if img.ndim == 2 else img.mean(axis=2)
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")  # type: ignore[attr-defined]
    ax.imshow(sal, cmap="jet", vmin=0, vmax=1, alpha=0.5,  # type: ignore[attr-defined]
              interpolation="bilinear" if sal.shape[0] >= 16 else "nearest")
    if mask is not None and mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors="white",  # type: ignore[attr-defined]
                   linewidths=0.7)


def gallery(method: str, title: str, images: np.ndarray, maps: torch.Tensor,
            true: Sequence[str], pred: Sequence[str], masks: torch.Tensor | None,
            n_correct: int) -> Figure:
    """Input (top row) and saliency overlay (bottom row) per sample; the first ``n_correct``
    columns are correctly classified, the rest misclassified."""
    g = len(images)
    fig, axes = new_figure(1.15 * g + 0.6, 2.75, nrows=2, ncols=g, squeeze=False)
    for j in range(g):
        ok = j < n_correct
        a0, a1 = axes[0][j], axes[1][j]
        _show(a0, images[j])
        _overlay(a1, images[j], maps[j].numpy(), None if masks is None else masks[j].numpy())
        a0.set_title(f"true {_short(true[j])}\npred {_short(pred[j])}", fontsize=7,
                     color=_OK if ok else _BAD)
        for a in (a0, a1):
            a.set_xticks([])
            a.set_yticks([])
            for side in a.spines.values():
                side.set_visible(False)
    axes[0][0].set_ylabel("input", fontsize=8)
    axes[1][0].set_ylabel(title, fontsize=8)
    fig.tight_layout(pad=0.3)
    wrong = g - n_correct
    caption = (f"{title} for {n_correct} correctly classified (green titles) and {wrong} "
               "misclassified (red titles) samples; each map explains the predicted class. "
               "Red is most salient, blue least."
               + (" White outline: the object mask." if masks is not None else "")
               + ("" if wrong else " The model made no mistakes on the audit data."))
    return compact_png(fig, f"gallery-{method}", f"Gallery: {title}", caption)


def _short(name: str, n: int = 9) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def curves(results: dict[str, Faithfulness], titles: dict[str, str], random: Faithfulness,
           unit: str) -> Figure:
    """Mean deletion and insertion curves of each method and of a random order."""
    fig, (a0, a1) = new_figure(8.0, 3.0, ncols=2)
    for ax, kind in ((a0, "deletion"), (a1, "insertion")):
        for i, (m, r) in enumerate(results.items()):
            c = r.deletion_curve if kind == "deletion" else r.insertion_curve
            auc = r.deletion_auc if kind == "deletion" else r.insertion_auc
            ax.plot(np.linspace(0, 1, len(c)), c, color=PALETTE[i % len(PALETTE)],
                    label=f"{titles[m]} ({auc:.2f})", linewidth=1.4)
        c = random.deletion_curve if kind == "deletion" else random.insertion_curve
        auc = random.deletion_auc if kind == "deletion" else random.insertion_auc
        ax.plot(np.linspace(0, 1, len(c)), c, "--", color="#777777",
                label=f"random order ({auc:.2f})", linewidth=1.2)
        ax.set_xlabel(f"share of {unit}s {'removed' if kind == 'deletion' else 'revealed'}")
        ax.set_ylabel("probability of explained class")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{kind.capitalize()} ({'lower' if kind == 'deletion' else 'higher'} "
                     "is better)")
        ax.legend(fontsize=6.5, loc="upper right" if kind == "deletion" else "lower right")
    fig.tight_layout()
    return to_figure(fig, "faithfulness-curves", "Deletion and insertion curves",
                     f"Mean probability of the explained class as the most salient {unit}s are "
                     "removed (left; a faithful map makes it fall fast) or revealed on the "
                     "baseline (right; it should rise fast). Legend: area under the curve. The "
                     "dashed line is a random order, the reference a map must beat.")


def where_figure(mean_map: torch.Tensor, outside_map: torch.Tensor, object_freq: torch.Tensor,
                 box: tuple[int, int, int], where: str, example: np.ndarray) -> Figure:
    """Mean saliency, mean saliency outside the object (with the hotspot box), how often each
    pixel is object, and an example image with the box."""
    from matplotlib.patches import Rectangle

    fig, axes = new_figure(9.2, 2.6, ncols=4)
    r, c, s = box
    panels = [(mean_map, "mean saliency", "jet"),
              (outside_map, "mean saliency outside object", "jet"),
              (object_freq, "where objects are", "Greys")]
    for ax, (img, title, cmap) in zip(axes[:3], panels, strict=True):
        arr = img.numpy()
        ax.imshow(arr / max(float(arr.max()), 1e-12), cmap=cmap, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title, fontsize=8)
    _show(axes[3], example)
    axes[3].set_title("example, hotspot boxed", fontsize=8)
    for ax in (axes[1], axes[3]):
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), s, s, fill=False, edgecolor="white"
                               if ax is axes[1] else "#ff00ff", linewidth=1.6))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.4)
    return compact_png(fig, "where", "Where the model looks",
                     "Saliency averaged over the explained images (the methods that beat a random "
                     f"order), all of it and the part outside the object masks; the box marks "
                     f"the {s}x{s} window with the most saliency outside the object ({where}), "
                     "which the occlusion test covers. Third panel: how often each pixel belongs "
                     "to an object.")


def sanity_figure(images: np.ndarray, trained: dict[str, torch.Tensor],
                  randomized: dict[str, torch.Tensor], titles: dict[str, str],
                  rho: dict[str, float]) -> Figure:
    """Per method (rows) and sample: the input, the trained model's map, the random model's."""
    k = len(images)
    methods = list(trained)
    fig, axes = new_figure(1.0 * 3 * k + 0.8, 1.05 * len(methods) + 0.4,
                           nrows=len(methods), ncols=3 * k, squeeze=False)
    for i, m in enumerate(methods):
        for j in range(k):
            _show(axes[i][3 * j], images[j])
            for off, maps, label in ((1, trained, "trained"), (2, randomized, "random weights")):
                axes[i][3 * j + off].imshow(maps[m][j].numpy(), cmap="jet", vmin=0, vmax=1,
                                            interpolation="nearest")
                if i == 0:
                    axes[i][3 * j + off].set_title(label, fontsize=7)
            if i == 0:
                axes[i][3 * j].set_title(f"input #{j + 1}", fontsize=7)
        axes[i][0].set_ylabel(f"{titles[m]}\nρ={rho.get(m, float('nan')):.2f}", fontsize=7)
    for row in axes:
        for a in row:
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout(pad=0.3)
    return compact_png(fig, "sanity", "Sanity check: trained vs randomised weights",
                     "For each method (rows) and input: the map of the trained model and of the "
                     "same architecture with random weights. A method that explains the model "
                     "gives different maps; ρ is the mean Spearman rank correlation over the "
                     "sanity samples.")


def featvis_figure(images: np.ndarray, names: Sequence[str], probs: Sequence[float]) -> Figure:
    """The per-class feature visualisations in a grid."""
    k = len(images)
    ncols = min(k, 10)
    nrows = (k + ncols - 1) // ncols
    fig, axes = new_figure(1.05 * ncols, 1.2 * nrows + 0.1, nrows=nrows, ncols=ncols,
                           squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            _show(ax, images[i])
            ax.set_title(f"{_short(names[i])}\np={probs[i]:.2f}", fontsize=7)
    fig.tight_layout(pad=0.3)
    return compact_png(fig, "feature-visualisation", "Feature visualisation per class",
                     "Inputs optimised to maximise each class's logit, regularised with jitter, "
                     "L2 and total-variation penalties and periodic blur (Olah et al., 2017). "
                     "They show what the model responds to most; p is the model's probability "
                     "of that class for the image. Patterns outside the object's usual place "
                     "(e.g. in a corner) hint at a shortcut.")


def importance_figure(names: Sequence[str], values: dict[str, np.ndarray],
                      titles: dict[str, str]) -> Figure:
    """Horizontal bars of mean |attribution| per feature (scaled to the top feature) per
    method."""
    k = len(names)
    fig, ax = new_figure(6.5, 0.28 * k + 1.0)
    methods = list(values)
    h = 0.8 / max(len(methods), 1)
    ypos = np.arange(k)
    for i, m in enumerate(methods):
        v = values[m] / max(float(np.max(values[m])), 1e-12)
        ax.barh(ypos + i * h - 0.4 + h / 2, v, height=h, color=PALETTE[i % len(PALETTE)],
                label=titles[m])
    ax.set_yticks(ypos, [_short(n, 28) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("mean |attribution| (scaled to the top feature)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Feature importance")
    fig.tight_layout()
    return to_figure(fig, "feature-importance", "Feature importance",
                     "Mean absolute attribution per feature over the explained rows, for each "
                     "method, scaled so each method's top feature is 1. Features are ordered by "
                     "their average rank across methods.")
