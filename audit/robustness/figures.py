"""Figures of the robustness check: robust accuracy curves, accuracy under corruptions and the
gallery of adversarial examples. Every drawing function runs in the house style (``@styled``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from torch import Tensor

from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure
from audit.robustness.corruptions import CORRUPTIONS
from audit.robustness.evaluate import Curve
from audit.robustness.evaluation import Gallery
from audit.robustness.ops import NORM_LABEL, Norm
from audit.stats import clopper_pearson

__all__ = ["corruption_figure", "curve_figure", "gallery_figure"]


def _band(acc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact 95% interval of each accuracy of ``acc`` (shares of ``n`` samples)."""
    cache: dict[int, tuple[float, float]] = {}
    lo, hi = np.empty(len(acc)), np.empty(len(acc))
    for i, a in enumerate(acc):
        k = round(float(a) * n)
        lo[i], hi[i] = cache.setdefault(k, clopper_pearson(k, n))
    return lo, hi


@styled
def curve_figure(curves: Mapping[Norm, Curve], clean_acc: float) -> Figure:
    """One panel per norm: robust accuracy against epsilon, minimal attack and worst case
    with its exact 95% interval as a band."""
    k = len(curves)
    fig, axes = new_figure(4.0 * k, 3.0, ncols=k, squeeze=False)
    for ax, (nm, c) in zip(axes[0], curves.items(), strict=True):
        top = max(c.eps) * 1.25
        grid = np.linspace(0, top, 200)
        ax.step(grid, c.accuracy_at(grid, "minimal"), where="post", linestyle="--",
                color=PALETTE[0], label="minimal attack (FMN)")
        worst = c.accuracy_at(grid)
        lo, hi = _band(worst, len(c.worst))
        ax.fill_between(grid, lo, hi, step="post", color=PALETTE[1], alpha=0.18, linewidth=0,
                        label="95% interval (worst case)")
        ax.step(grid, worst, where="post", color=PALETTE[1], label="worst case, all attacks")
        ax.plot(c.eps, [c.robust_accuracy(e) for e in c.eps], "o", color=PALETTE[1],
                markersize=4, label="reported eps")
        for e in c.eps:  # on a white box: the label stays readable over the curves
            ax.annotate(f"{c.robust_accuracy(e):.0%}", (e, c.robust_accuracy(e)),
                        textcoords="offset points", xytext=(4, 5), fontsize=8, zorder=6,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                              "alpha": 0.85})
        ax.set_xlim(0, top)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"{NORM_LABEL[nm]} epsilon")
        ax.set_ylabel("robust accuracy")
        ax.set_title(f"{NORM_LABEL[nm]} (clean accuracy {clean_acc:.1%})")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return to_figure(fig, "robustness-curves", "Robust accuracy against epsilon",
                     "Share of samples that no attack could fool within epsilon. Dashed: "
                     "from the minimal-perturbation attack alone; solid: worst case over "
                     "all attacks (bounded attacks confirm the dots); shaded: its exact "
                     "(Clopper-Pearson) 95% interval on the evaluated samples.")


@styled
def corruption_figure(corr: dict[str, list[float]], severities: list[int],
                      clean_acc: float, samples: int) -> Figure:
    """Accuracy against severity, one line per corruption (severity 0: clean), with the exact
    95% interval of each point (shares of ``samples`` samples) as error bars."""
    sev = [0, *severities]
    fig, ax = new_figure(4.6, 3.0)
    for i, (name, accs) in enumerate(corr.items()):
        y = np.asarray([clean_acc, *accs])
        lo, hi = _band(y, samples)
        shift = (i - (len(corr) - 1) / 2) * 0.06  # keep overlapping bars apart
        ax.errorbar(np.asarray(sev) + shift, y, yerr=np.stack([y - lo, hi - y]), fmt="o-",
                    color=PALETTE[i % len(PALETTE)], markersize=3, capsize=2,
                    elinewidth=0.8, label=CORRUPTIONS[name].title)
    ax.set_xticks(sev)
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Accuracy under common corruptions")
    fig.tight_layout()
    return to_figure(fig, "robustness-corruptions", "Accuracy under common corruptions",
                     "Each line is one corruption at severities 1-5 (CIFAR-10-C "
                     "parameters); severity 0 is the clean accuracy. Bars: exact 95% "
                     "intervals on the evaluated samples.")


def _predicted(g: Gallery, proba: Tensor) -> tuple[str, float]:
    """The predicted class of ``proba`` (cut to 16 characters: a title line of the gallery at
    11 pt) and its probability."""
    k = int(proba.argmax())
    name = g.classes[k] if k < len(g.classes) else str(k)
    return (name if len(name) <= 16 else name[:15] + "…"), float(proba[k])


GALLERY_CELL = 1.45  # inches per thumbnail: 145 px at the figure's 100 dpi
GALLERY_COLUMNS = 6  # examples per block of rows (a wider gallery wraps)


@styled
def gallery_figure(g: Gallery, bounds: tuple[float, float]) -> Figure:
    """Clean, adversarial and difference images, one column per example (blocks of
    :data:`GALLERY_COLUMNS`); the differences share one colour scale, shown by a colour bar."""
    lo, hi = bounds
    k = len(g)
    ncols = min(k, GALLERY_COLUMNS)
    blocks = (k + ncols - 1) // ncols
    diffs = [(g.adv[j] - g.clean[j]).mean(dim=0).numpy() for j in range(k)]
    scale = max((float(np.abs(d).max()) for d in diffs), default=0.0) or 1.0
    # an image cell and its gap are GALLERY_CELL wide, the colour bar column a tenth of it,
    # with room for the row names left and the bar's labels right; two title lines above
    width = GALLERY_CELL * (ncols + 0.1) * 1.12 + 1.4
    height = (GALLERY_CELL + 0.62) * 3 * blocks
    fig, axes = new_figure(width, height, nrows=3 * blocks, ncols=ncols + 1, squeeze=False,
                           gridspec_kw={"width_ratios": [1.0] * ncols + [0.1],
                                        "wspace": 0.12, "hspace": 0.45})
    fig.subplots_adjust(left=0.4 / width, right=1 - 1.0 / width, bottom=0.1 / height,
                        top=1 - 0.55 / height)

    def show(img: Tensor) -> np.ndarray:
        a = ((img - lo) / ((hi - lo) or 1.0)).clamp(0, 1).numpy()
        return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))

    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set(visible=True, color="#bbbbbb", linewidth=0.6)
    diff_image = None
    for j in range(k):
        b, c = divmod(j, ncols)
        top, mid, low = axes[3 * b][c], axes[3 * b + 1][c], axes[3 * b + 2][c]
        c_lab, c_conf = _predicted(g, g.proba_clean[j])
        a_lab, a_conf = _predicted(g, g.proba_adv[j])
        top.imshow(show(g.clean[j]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        top.set_title(f"{c_lab}\n{c_conf:.0%}", fontsize=11, linespacing=1.1)
        mid.imshow(show(g.adv[j]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        mid.set_title(f"{a_lab}\n{a_conf:.0%}", fontsize=11, color="#b82e2e", linespacing=1.1)
        diff_image = low.imshow(diffs[j], cmap="RdBu_r", vmin=-scale, vmax=scale,
                                interpolation="nearest")
        low.set_title(f"{g.attacks[j]}\nmax |δ| {float(np.abs(diffs[j]).max()):.2g}",
                      fontsize=10, linespacing=1.1)
    for b in range(blocks):
        for i, lab in enumerate(["clean", "adversarial", "difference"]):
            axes[3 * b + i][0].set_ylabel(lab, fontsize=11)
        for i in range(3):
            for c in range(ncols + 1):
                if (c == ncols and (i < 2 or b > 0)) or (c < ncols and b * ncols + c >= k):
                    axes[3 * b + i][c].axis("off")
    if diff_image is not None:  # one scale for every example: one bar, by the first block
        bar = fig.colorbar(diff_image, cax=axes[2][ncols])
        bar.ax.tick_params(labelsize=9)
        bar.set_label("adversarial − clean", fontsize=10)
    return to_figure(
        fig, "robustness-gallery",
        f"Adversarial examples ({NORM_LABEL[g.norm]}, eps {g.eps:g})",
        "Top: clean input with the predicted class and its confidence. Middle: the "
        "adversarial input found by the attack with the smallest perturbation (red: its "
        "prediction). Bottom: the perturbation (adversarial minus clean input, mean over "
        "channels, in the input's units), every example on the colour bar's scale (red up, "
        "blue down), with the attack and its largest pixel change.", fmt="png", dpi=100)
