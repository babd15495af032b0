"""Figures of the saliency section: galleries, curves, where-the-model-looks, sanity, feature
visualisation and tabular feature importance. Image figures are PNG (small), plots SVG.
:func:`image_figures` and :func:`tabular_figures` draw a section's figures, in report order,
from an evaluation; every drawing function is :func:`~audit.figures.styled`."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure
from audit.saliency.evaluation import ImageEvaluation, TabularEvaluation
from audit.saliency.metrics import Faithfulness

_OK, _BAD = "#109618", "#dc3912"


def compact_png(fig: Any, id: str, title: str, caption: str, dpi: int = 80) -> Figure:
    """:func:`to_figure` as PNG, re-encoded with a 256-colour palette (about 3x smaller for
    heatmaps over textured images; deterministic)."""
    figure = to_figure(fig, id, title, caption, fmt="png", dpi=dpi)
    img = Image.open(io.BytesIO(base64.b64decode(figure.data))).convert("RGB")
    buf = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                 dither=Image.Dither.NONE).save(buf, format="PNG")
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


_CELL = 72  # pixels per image cell in mosaics
_PAD = 4


def _rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def _upscale(img: np.ndarray) -> np.ndarray:
    k = max(1, _CELL // img.shape[0])
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def heat_rgb(sal: np.ndarray) -> np.ndarray:
    """A map in [0, 1] as RGB with the ``jet`` colour map."""
    from matplotlib import colormaps

    return np.asarray(colormaps["jet"](np.clip(sal, 0, 1))[..., :3])


def overlay_rgb(img: np.ndarray, sal: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The input in grey with the map blended on top (and the mask's outline in white),
    upscaled to the mosaic cell size."""
    grey = _rgb(img if img.ndim == 2 else img.mean(axis=2))
    out = _upscale(0.5 * grey + 0.5 * heat_rgb(sal))
    if mask is not None and mask.any():
        m = _upscale(mask.astype(bool))
        inner = m.copy()
        inner[1:, :] &= m[:-1, :]
        inner[:-1, :] &= m[1:, :]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        out[m & ~inner] = 1.0
    return out


def _mosaic(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Cells (RGB, any size up to ``_CELL``) placed on a white grid."""
    ncols = max(len(r) for r in rows)
    step = _CELL + _PAD
    canvas = np.ones((len(rows) * step - _PAD, ncols * step - _PAD, 3))
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            c = _upscale(_rgb(cell)) if cell.shape[0] < _CELL else _rgb(cell)
            h, w = min(c.shape[0], _CELL), min(c.shape[1], _CELL)
            canvas[i * step:i * step + h, j * step:j * step + w] = c[:h, :w]
    return canvas


@styled
def _mosaic_figure(rows: list[list[np.ndarray]], col_titles: Sequence[str],
                   col_colours: Sequence[str], row_labels: Sequence[str]) -> Any:
    """One axes showing the mosaic at one screen pixel per image pixel, with text labels."""
    canvas = _mosaic(rows)
    h, w = canvas.shape[:2]
    dpi = 100
    fig, ax = new_figure((w + 90) / dpi, (h + 34) / dpi)
    fig.subplots_adjust(left=80 / (w + 90), right=1 - 10 / (w + 90), top=1 - 30 / (h + 34),
                        bottom=4 / (h + 34))
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    step = _CELL + _PAD
    for j, (t, c) in enumerate(zip(col_titles, col_colours, strict=True)):
        ax.text(j * step + _CELL / 2, -4, t, ha="center", va="bottom", fontsize=7, color=c)
    for i, label in enumerate(row_labels):
        ax.text(-6, i * step + _CELL / 2, label, ha="right", va="center", fontsize=7)
    return fig


@styled
def gallery(method: str, title: str, images: np.ndarray, maps: torch.Tensor,
            true: Sequence[str], pred: Sequence[str], masks: torch.Tensor | None,
            n_correct: int) -> Figure:
    """Input (top row) and saliency overlay (bottom row) per sample; the first ``n_correct``
    columns are correctly classified, the rest misclassified."""
    g = len(images)
    overlays = [overlay_rgb(images[j], maps[j].numpy(),
                            None if masks is None else masks[j].numpy()) for j in range(g)]
    fig = _mosaic_figure(
        [list(images), overlays],
        [f"true {_short(true[j])}\npred {_short(pred[j])}" for j in range(g)],
        [_OK if j < n_correct else _BAD for j in range(g)], ["input", title.replace(" ", "\n")])
    wrong = g - n_correct
    caption = (f"{title} for {n_correct} correctly classified (green titles) and {wrong} "
               "misclassified (red titles) samples; each map explains the predicted class. "
               "Red is most salient, blue least."
               + (" White outline: the object mask." if masks is not None else "")
               + ("" if wrong else " The model made no mistakes on the audit data."))
    return compact_png(fig, f"gallery-{method}", f"Gallery: {title}", caption)


def _short(name: str, n: int = 9) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


@styled
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


@styled
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


@styled
def sanity_figure(images: np.ndarray, trained: dict[str, torch.Tensor],
                  randomized: dict[str, torch.Tensor], titles: dict[str, str],
                  rho: dict[str, float]) -> Figure:
    """Per method (rows) and sample: the input, the trained model's map, the random model's."""
    k = len(images)
    rows = [[cell for j in range(k) for cell in (images[j], heat_rgb(trained[m][j].numpy()),
                                                  heat_rgb(randomized[m][j].numpy()))]
            for m in trained]
    heads = [t for j in range(k) for t in (f"input #{j + 1}", "trained", "random weights")]
    labels = [f"{titles[m]}\nρ={rho.get(m, float('nan')):.2f}" for m in trained]
    fig = _mosaic_figure(rows, heads, ["black"] * len(heads), labels)
    return compact_png(fig, "sanity", "Sanity check: trained vs randomised weights",
                       "For each method (rows) and input: the map of the trained model and of "
                       "the same architecture with random weights. A method that explains the "
                       "model gives different maps; ρ is the mean Spearman rank correlation over "
                       "the sanity samples.")


@styled
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


@styled
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


def image_figures(ev: ImageEvaluation) -> list[Figure]:
    """Where the model looks (with masks), a gallery per method, the faithfulness curves, the
    sanity comparison and the feature visualisation, as far as they were measured."""
    out: list[Figure] = []
    e = ev.explained
    if e is None:
        return out
    sc = ev.shortcut
    if sc is not None and sc.maps is not None:
        h = sc.hotspot
        out.append(where_figure(sc.maps.mean_map, sc.maps.outside_map, sc.maps.object_freq,
                                (h.row, h.col, h.size), h.where,
                                display_images(sc.maps.example, e.value_range)[0]))
    images = display_images(e.x, e.value_range)
    show = e.show
    for s in ev.scores:
        out.append(gallery(s.name, s.title, images[show], e.maps[s.name][show],
                           [e.true[i] for i in show], [e.pred[i] for i in show],
                           None if e.masks is None else e.masks[show], e.n_correct))
    titles = {s.name: s.title for s in ev.scores}
    out.append(curves({s.name: s.faithfulness for s in ev.scores}, titles, ev.random, "pixel"))
    if e.random_maps:
        k = min(2, len(next(iter(e.random_maps.values()))))
        rho = {s.name: s.sanity for s in ev.scores if s.sanity is not None}
        out.append(sanity_figure(images[:k], {m: e.maps[m][:k] for m in e.random_maps},
                                 {m: v[:k] for m, v in e.random_maps.items()}, titles, rho))
    if (fv := ev.featvis) is not None:
        out.append(featvis_figure(display_images(fv.images, e.value_range), fv.classes,
                                  fv.probabilities))
    return out


def tabular_figures(ev: TabularEvaluation) -> list[Figure]:
    """The feature-importance bars and the faithfulness curves over features."""
    titles = {s.name: s.title for s in ev.scores}
    return [importance_figure([ev.feature_names[f] for f in ev.order],
                              {m: v[ev.order] for m, v in ev.mean_abs.items()}, titles),
            curves({s.name: s.faithfulness for s in ev.scores}, titles, ev.random, "feature")]
