"""Figures of the saliency section: galleries, curves, where-the-model-looks, sanity, feature
visualisation and tabular feature importance. Image figures are PNG (small), plots SVG.
:func:`image_figures` and :func:`tabular_figures` draw a section's figures, in report order,
from an evaluation; every drawing function is :func:`~audit.figures.styled`."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure
from audit.saliency.evaluation import ImageEvaluation, ShortcutEvidence, TabularEvaluation
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


CELL_MIN = 120  # displayed side of an image cell in mosaics, at least (pixels)
FONT = 11  # titles and labels, in points: the report's body text size at 100 dpi
_PAD = 6  # pixels between cells
_LABEL_W = 130  # pixels left of a mosaic for the row labels
_TITLE_H = 40  # pixels above a row with (two-line) titles
_BAR_H = 64  # pixels below a mosaic for its colour bar
_MAX_COLS = 6  # gallery samples per row block (six cells fit the report's column)


def cell_scale(height: int) -> int:
    """The integer upscaling that makes an image ``height`` pixels high at least
    :data:`CELL_MIN` pixels on screen."""
    return max(1, math.ceil(CELL_MIN / max(height, 1)))


def _rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def _upscale(img: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def heat_rgb(sal: np.ndarray) -> np.ndarray:
    """A map in [0, 1] as RGB with the ``jet`` colour map."""
    from matplotlib import colormaps

    return np.asarray(colormaps["jet"](np.clip(sal, 0, 1))[..., :3])


def overlay_rgb(img: np.ndarray, sal: np.ndarray, mask: np.ndarray | None,
                k: int = 1) -> np.ndarray:
    """The input in grey with the map blended on top (and the mask's outline in white),
    upscaled ``k`` times."""
    grey = _rgb(img if img.ndim == 2 else img.mean(axis=2))
    out = _upscale(0.5 * grey + 0.5 * heat_rgb(sal), k)
    if mask is not None and mask.any():
        m = _upscale(mask.astype(bool), k)
        inner = m.copy()
        inner[1:, :] &= m[:-1, :]
        inner[:-1, :] &= m[1:, :]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        out[m & ~inner] = 1.0
    return out


@dataclass
class MosaicRow:
    """One row of a mosaic: its cells (grey or RGB, upscaled to the mosaic's cell size), a label
    on the left, and optional titles above the cells (with their colours)."""

    cells: list[np.ndarray]
    label: str = ""
    titles: Sequence[str] | None = None
    colours: Sequence[str] | None = None


def _colour_bar(fig: Any, rect: Sequence[float], label: str) -> None:
    from matplotlib import colormaps
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import Normalize

    cax = fig.add_axes(rect)
    bar = ColorbarBase(cax, cmap=colormaps["jet"], norm=Normalize(0, 1),
                       orientation="horizontal")
    bar.set_ticks([0.0, 0.5, 1.0], labels=["0 low", "0.5", "1 high"])
    bar.ax.tick_params(labelsize=FONT - 1)
    bar.set_label(label, fontsize=FONT - 1)


@styled
def mosaic_figure(rows: list[MosaicRow], colour_bar: str | None = None) -> Any:
    """The cells on a white grid at one screen pixel per canvas pixel (render at 100 dpi), row
    labels and cell titles at :data:`FONT`, and a ``jet`` colour bar labelled ``colour_bar``."""
    cell = max(max(c.shape[0], c.shape[1]) for r in rows for c in r.cells)
    ncols = max(len(r.cells) for r in rows)
    step = cell + _PAD
    tops, y = [], 0
    for r in rows:
        y += _TITLE_H if r.titles else 0
        tops.append(y)
        y += step
    ch, cw = y - _PAD, ncols * step - _PAD
    canvas = np.ones((ch, cw, 3))
    for r, top in zip(rows, tops, strict=True):
        for j, c in enumerate(r.cells):
            img = _rgb(c)
            canvas[top:top + img.shape[0], j * step:j * step + img.shape[1]] = img
    bar = _BAR_H if colour_bar else 0
    width, height = _LABEL_W + cw + 8, ch + bar + 4
    fig, ax = new_figure(width / 100, height / 100)
    ax.set_position((_LABEL_W / width, (bar + 2) / height, cw / width, ch / height))
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    for r, top in zip(rows, tops, strict=True):
        ax.text(-10, top + cell / 2, r.label, ha="right", va="center", fontsize=FONT)
        for j, t in enumerate(r.titles or ()):
            colour = r.colours[j] if r.colours else "black"
            ax.text(j * step + cell / 2, top - 5, t, ha="center", va="bottom", fontsize=FONT,
                    color=colour)
    if colour_bar:
        bw = min(cw, 360)
        _colour_bar(fig, ((_LABEL_W + (cw - bw) / 2) / width, (bar - 22) / height,
                          bw / width, 14 / height), colour_bar)
    return fig


_HEAT_BAR = "attribution, scaled per map"


@styled
def gallery(method: str, title: str, images: np.ndarray, maps: torch.Tensor,
            true: Sequence[str], pred: Sequence[str], masks: torch.Tensor | None,
            n_correct: int) -> Figure:
    """Input and saliency overlay (rows) per sample; the first ``n_correct`` samples are
    correctly classified, the rest misclassified; at most six samples per row block."""
    g = len(images)
    k = cell_scale(images.shape[1])
    blocks = max(1, math.ceil(g / _MAX_COLS))
    per = max(1, math.ceil(g / blocks))
    rows: list[MosaicRow] = []
    for b in range(0, g, per):
        idx = range(b, min(b + per, g))
        rows.append(MosaicRow(
            [_upscale(_rgb(images[j]), k) for j in idx], "input",
            [f"true {_short(true[j])}\npred {_short(pred[j])}" for j in idx],
            [_OK if j < n_correct else _BAD for j in idx]))
        rows.append(MosaicRow(
            [overlay_rgb(images[j], maps[j].numpy(),
                         None if masks is None else masks[j].numpy(), k) for j in idx],
            title.replace(" ", "\n")))
    fig = mosaic_figure(rows, _HEAT_BAR)
    wrong = g - n_correct
    caption = (f"{title} for {n_correct} correctly classified (green titles) and {wrong} "
               "misclassified (red titles) samples; each map explains the predicted class. "
               "Colour: the map scaled to [0, 1] per image, red most salient, blue least."
               + (" White outline: the object mask." if masks is not None else "")
               + ("" if wrong else " The model made no mistakes on the audit data."))
    return compact_png(fig, f"gallery-{method}", f"Gallery: {title}", caption, dpi=100)


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
def where_figure(sc: ShortcutEvidence, example: np.ndarray) -> Figure:
    """Mean saliency, mean saliency outside the object, the window map (share of predictions
    changed by occluding each window), how often each pixel is object, and an example image;
    the region of a localised cue is boxed (no box when no place is named)."""
    from matplotlib.patches import Rectangle

    assert sc.maps is not None
    h = sc.hotspot
    fig, axes = new_figure(9.8, 3.2, ncols=5)
    fig.set_layout_engine("constrained")
    sal = []
    for ax, img, title in ((axes[0], sc.maps.mean_map, "mean saliency"),
                           (axes[1], sc.maps.outside_map, "saliency outside\nthe object")):
        arr = img.numpy()
        sal.append(ax.imshow(arr / max(float(arr.max()), 1e-12), cmap="jet", vmin=0, vmax=1,
                             interpolation="nearest"))
        ax.set_title(title, fontsize=FONT)
    occ = axes[2].imshow(sc.windows.pixel_map().numpy(), cmap="magma", vmin=0, vmax=1,
                         interpolation="nearest")
    axes[2].set_title("predictions changed\nby occluding there", fontsize=FONT)
    freq = axes[3].imshow(sc.maps.object_freq.numpy(), cmap="Greys", vmin=0, vmax=1,
                          interpolation="nearest")
    axes[3].set_title("where objects are", fontsize=FONT)
    _show(axes[4], example)
    axes[4].set_title("example" + (", cue boxed" if h.localised else ""), fontsize=FONT)
    if h.localised:
        r0, c0, r1, c1 = h.region
        for ax, colour in ((axes[1], "white"), (axes[2], "#00e0ff"), (axes[4], "#ff00ff")):
            ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False,
                                   edgecolor=colour, linewidth=1.8))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set(visible=True, color="#999999", linewidth=0.6)
    for mappable, where, label in ((sal[0], [axes[0], axes[1]], "saliency (0 low, 1 high)"),
                                   (occ, [axes[2]], "predictions changed"),
                                   (freq, [axes[3]], "share of images")):
        bar = fig.colorbar(mappable, ax=where, orientation="horizontal", fraction=0.07,
                           pad=0.03, aspect=20 * len(where))
        bar.set_ticks([0.0, 0.5, 1.0])
        bar.ax.tick_params(labelsize=FONT - 2)
        bar.set_label(label, fontsize=FONT - 1)
    s = sc.windows.size
    place = (f"The box marks the {h.where}, where the windows that change at least half as "
             f"many predictions as the strongest one lie ({h.area:.0%} of the image, "
             f"{h.share:.0%} of the change)." if h.localised else
             "No box: the change is not concentrated in one place (no localised cue).")
    return compact_png(fig, "where", "Where the model looks",
                       "Saliency averaged over the explained images (the methods that beat a "
                       "random order), all of it and the part outside the object masks; the "
                       f"share of predictions that change when each {s}x{s} background window "
                       "is occluded (outside the object, with the data's mean colour; each "
                       "pixel shows its strongest window); how often each pixel belongs to an "
                       f"object; an explained input. {place}", dpi=100)


@styled
def sanity_figure(images: np.ndarray, trained: dict[str, torch.Tensor],
                  randomized: dict[str, torch.Tensor], titles: dict[str, str],
                  rho: dict[str, float]) -> Figure:
    """Per method (rows) and sample: the input, the trained model's map, the random model's."""
    kk = len(images)
    k = cell_scale(images.shape[1])
    heads = [t for j in range(kk) for t in (f"input #{j + 1}", "trained", "random\nweights")]
    rows = [MosaicRow([_upscale(c, k) for j in range(kk)
                       for c in (_rgb(images[j]), heat_rgb(trained[m][j].numpy()),
                                 heat_rgb(randomized[m][j].numpy()))],
                      f"{titles[m].replace(' ', chr(10))}\nρ={rho.get(m, float('nan')):.2f}",
                      heads if i == 0 else None)
            for i, m in enumerate(trained)]
    fig = mosaic_figure(rows, _HEAT_BAR)
    return compact_png(fig, "sanity", "Sanity check: trained vs randomised weights",
                       "For each method (rows) and input: the map of the trained model and of "
                       "the same architecture with random weights. A method that explains the "
                       "model gives different maps; ρ is the mean Spearman rank correlation over "
                       "the sanity samples.", dpi=100)


@styled
def featvis_figure(images: np.ndarray, names: Sequence[str], probs: Sequence[float]) -> Figure:
    """The per-class feature visualisations in a grid."""
    k = len(images)
    ncols = min(k, _MAX_COLS)
    nrows = (k + ncols - 1) // ncols
    fig, axes = new_figure(1.5 * ncols, 1.9 * nrows + 0.1, nrows=nrows, ncols=ncols,
                           squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            _show(ax, images[i])
            ax.set_title(f"{_short(names[i], 14)}\np={probs[i]:.2f}", fontsize=FONT)
    fig.tight_layout(pad=0.3)
    return compact_png(fig, "feature-visualisation", "Feature visualisation per class",
                       "Inputs optimised to maximise each class's logit, regularised with "
                       "jitter, L2 and total-variation penalties and periodic blur (Olah et al., "
                       "2017). They show what the model responds to most; p is the model's "
                       "probability of that class for the image. Patterns outside the object's "
                       "usual place (e.g. in a corner), or flat colours and textures instead of "
                       "shapes, hint at a shortcut.", dpi=100)


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
        out.append(where_figure(sc, display_images(sc.maps.example, e.value_range)[0]))
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
