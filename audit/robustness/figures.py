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
        for e in c.eps:
            ax.annotate(f"{c.robust_accuracy(e):.0%}", (e, c.robust_accuracy(e)),
                        textcoords="offset points", xytext=(3, 4), fontsize=7)
        ax.set_xlim(0, top)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"{NORM_LABEL[nm]} epsilon")
        ax.set_ylabel("robust accuracy")
        ax.set_title(f"{NORM_LABEL[nm]} (clean accuracy {clean_acc:.1%})")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper right")
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
    ax.legend(fontsize=7)
    ax.set_title("Accuracy under common corruptions")
    fig.tight_layout()
    return to_figure(fig, "robustness-corruptions", "Accuracy under common corruptions",
                     "Each line is one corruption at severities 1-5 (CIFAR-10-C "
                     "parameters); severity 0 is the clean accuracy. Bars: exact 95% "
                     "intervals on the evaluated samples.")


@styled
def gallery_figure(g: Gallery, bounds: tuple[float, float]) -> Figure:
    """Clean, adversarial and amplified difference images, one column per example."""
    lo, hi = bounds
    k = len(g)
    fig, axes = new_figure(1.25 * k + 0.4, 4.3, nrows=3, ncols=k, squeeze=False)

    def show(img: Tensor) -> np.ndarray:
        a = ((img - lo) / ((hi - lo) or 1.0)).clamp(0, 1).numpy()
        return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))

    for j in range(k):
        diff = (g.adv[j] - g.clean[j]).mean(dim=0).numpy()
        amp = float(np.abs(diff).max()) or 1.0
        c_lab, c_conf = g.label(g.proba_clean[j])
        a_lab, a_conf = g.label(g.proba_adv[j])
        axes[0][j].imshow(show(g.clean[j]), cmap="gray", vmin=0, vmax=1,
                          interpolation="nearest")
        axes[0][j].set_title(f"{c_lab} ({c_conf:.0%})", fontsize=7)
        axes[1][j].imshow(show(g.adv[j]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[1][j].set_title(f"{a_lab} ({a_conf:.0%})", fontsize=7, color="#b82e2e")
        axes[2][j].imshow(diff / amp, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        axes[2][j].set_title(f"{g.attacks[j]} x{1 / amp:.0f}", fontsize=6)
        for i in range(3):
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
    for i, lab in enumerate(["clean", "adversarial", "difference"]):
        axes[i][0].set_ylabel(lab, fontsize=8)
    fig.tight_layout()
    return to_figure(
        fig, "robustness-gallery",
        f"Adversarial examples ({NORM_LABEL[g.norm]}, eps {g.eps:g})",
        "Top: clean input with the predicted class and its confidence. Middle: the "
        "adversarial input found by the attack with the smallest perturbation (red: its "
        "prediction). Bottom: the difference, amplified by the factor shown (red up, blue "
        "down).", fmt="png", dpi=80)
