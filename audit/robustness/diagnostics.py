"""Gradient-masking diagnostics (Carlini et al. 2019, "On Evaluating Adversarial Robustness";
Athalye et al. 2018): signs that the attacks, not the model, are weak.

Each diagnostic returns a :class:`Diagnostic` (value, threshold, triggered). Any triggered one
makes the robustness evaluation unreliable: the robust accuracy is then an optimistic upper
bound that an adaptive attack would likely lower.

- ``single-step``: a single-step attack (FGSM) succeeds more often than the iterative ones.
- ``iterations``: iterations do not help: on the samples PGD could not break, its loss did
  not rise from its starting point (the gradient gives no direction to follow).
- ``unbounded``: gradient-based minimal-perturbation attacks without a budget fail to fool the
  model on some samples, although any input can be changed into another class's image.
- ``black-box``: score- or decision-based attacks (no gradients) break samples that every
  white-box attack failed on at the same epsilon.
- ``loss-flat`` / ``loss-noisy``: the input gradient of the loss is zero or not finite, or a
  random direction raises the loss as much as the gradient direction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from audit.robustness.attacks import AttackResult, Norm, ce_loss, perturbation_norms

__all__ = ["Diagnostic", "Thresholds", "black_box", "iterations", "loss_surface",
           "single_step", "unbounded"]


@dataclass
class Thresholds:
    """When each diagnostic triggers."""

    single_step_margin: float = 0.02
    stall_share: float = 0.5
    min_failed: int = 5
    unbounded_min: float = 0.98
    blackbox_margin: float = 0.02
    flat_share: float = 0.2
    noisy_share: float = 0.5


@dataclass
class Diagnostic:
    """One check of the evaluation itself; ``evaluated`` is False when there was too little
    evidence to judge (then it never triggers)."""

    id: str
    title: str
    norm: str
    value: float
    threshold: float
    triggered: bool
    detail: str
    evaluated: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def single_step(fgsm: AttackResult, iterative: Sequence[AttackResult],
                th: Thresholds) -> Diagnostic:
    """FGSM's success rate minus the best iterative attack's, on the same samples."""
    best = max(iterative, key=lambda r: r.success_rate)
    gap = fgsm.success_rate - best.success_rate
    return Diagnostic(
        "single-step", "Single-step attack beats iterative ones", fgsm.norm, gap,
        th.single_step_margin, gap > th.single_step_margin,
        f"{fgsm.name} succeeds on {fgsm.success_rate:.1%} of samples, the best iterative attack "
        f"({best.name}) on {best.success_rate:.1%}.")


def iterations(pgd: AttackResult, th: Thresholds) -> Diagnostic:
    """Share of the samples PGD failed on whose loss did not rise over the iterations."""
    failed = ~pgd.success.cpu()
    l0 = pgd.info["loss_start"][failed]
    l1 = pgd.info["loss_end"][failed]
    first = pgd.info["success_step"]
    early = float(((first >= 0) & (first <= 1)).float().mean()) if len(first) else math.nan
    n = int(failed.sum())
    if n < th.min_failed:
        return Diagnostic("iterations", "More iterations do not help", pgd.norm, math.nan,
                          th.stall_share, False,
                          f"{pgd.name} broke all but {n} samples; too few left to judge.", False)
    stalled = ~(l1 > l0 + 1e-6 * l0.abs().clamp_min(1e-3))
    share = float(stalled.float().mean())
    return Diagnostic(
        "iterations", "More iterations do not help", pgd.norm, share, th.stall_share,
        share > th.stall_share,
        f"On the {n} samples {pgd.name} could not break in {pgd.info['steps']} steps, its loss "
        f"did not rise on {share:.0%}; {pgd.success_rate:.1%} success overall, {early:.1%} "
        "within one step.")


def unbounded(minimal: dict[str, float], norm: Norm, th: Thresholds) -> Diagnostic:
    """Best success rate of gradient-based minimal attacks without a budget (per attack in
    ``minimal``: name -> share of correctly classified samples fooled)."""
    if not minimal:
        return Diagnostic("unbounded", "Unbounded attacks do not reach 0% accuracy", norm,
                          math.nan, th.unbounded_min, False, "No minimal attack ran.", False)
    name, rate = max(minimal.items(), key=lambda kv: kv[1])
    listed = ", ".join(f"{k} {v:.1%}" for k, v in minimal.items())
    return Diagnostic(
        "unbounded", "Unbounded attacks do not reach 0% accuracy", norm, rate,
        th.unbounded_min, rate < th.unbounded_min,
        f"Without a budget, the best gradient-based minimal attack ({name}) fooled {rate:.1%} "
        f"of the correctly classified samples ({listed}); it should be ~100%.")


def black_box(results: Sequence[AttackResult], kinds: dict[str, str], eps: float,
              th: Thresholds) -> Diagnostic:
    """Share of samples broken within ``eps`` only by black-box / decision-based attacks."""
    norm = results[0].norm if results else "linf"
    white = [r for r in results if kinds.get(r.name) in ("white-box", "minimal")]
    black = [r for r in results if kinds.get(r.name) in ("black-box", "decision-based")]
    if not white or not black:
        return Diagnostic("black-box", "Black-box attacks beat white-box ones", norm,
                          math.nan, th.blackbox_margin, False,
                          "Needs both white-box and black-box attacks.", False)

    def within(r: AttackResult) -> Tensor:
        return r.success.cpu() & (r.norms.cpu() <= eps * (1 + 1e-5))

    w = torch.stack([within(r) for r in white]).any(dim=0)
    b = torch.stack([within(r) for r in black]).any(dim=0)
    only = b & ~w
    share = float(only.float().mean())
    names = ", ".join(r.name for r in black)
    return Diagnostic(
        "black-box", "Black-box attacks beat white-box ones", norm, share, th.blackbox_margin,
        share > th.blackbox_margin and int(only.sum()) >= 2,
        f"{int(only.sum())} of {len(only)} samples were broken within eps {eps:g} by a "
        f"black-box attack ({names}) but by none of {len(white)} white-box attacks "
        f"(white-box {float(w.float().mean()):.1%}, black-box {float(b.float().mean()):.1%}).")


def loss_surface(model: nn.Module, x: Tensor, y: Tensor, norm: Norm, eps: float,
                 bounds: tuple[float, float], th: Thresholds, *, directions: int = 8,
                 generator: torch.Generator | None = None) -> tuple[list[Diagnostic], int]:
    """Probe the cross-entropy around correctly classified ``x``; returns the ``loss-flat``
    and ``loss-noisy`` diagnostics and the number of per-sample forward passes used.

    Flat: the input gradient is zero or not finite. Noisy: stepping ``eps/2`` along the
    gradient direction (sign for L-inf, normalised for L2) raises the loss no more than the
    best of ``directions`` random directions of the same size.
    """
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = ce_loss(model(xg), y)
        (g,) = torch.autograd.grad(loss.sum(), xg)
    evals = int(x.shape[0])
    loss = loss.detach()
    gmax = perturbation_norms(g, "linf")
    flat = (gmax == 0) | ~torch.isfinite(g.flatten(1)).all(dim=1)
    flat_share = float(flat.float().mean()) if len(flat) else math.nan
    h = eps / 2

    def step(d: Tensor) -> Tensor:
        if norm == "linf":
            d = d.sign()
        else:
            d = d / (perturbation_norms(d, "l2").view(-1, *([1] * (d.ndim - 1))) + 1e-12)
        with torch.no_grad():
            return ce_loss(model((x + h * d).clamp(*bounds)), y) - loss

    rise_g = step(g)
    evals += int(x.shape[0])
    rise_r = torch.full_like(rise_g, -math.inf)
    for _ in range(directions):
        r = torch.randn(tuple(x.shape), generator=generator).to(x.device)
        rise_r = torch.maximum(rise_r, step(r))
        evals += int(x.shape[0])
    live = ~flat
    noisy = (rise_r >= rise_g)[live]
    noisy_share = float(noisy.float().mean()) if int(live.sum()) else math.nan
    flat_d = Diagnostic(
        "loss-flat", "Flat loss surface (zero gradients)", norm, flat_share, th.flat_share,
        flat_share > th.flat_share,
        f"The input gradient of the cross-entropy is zero or not finite on {flat_share:.0%} "
        f"of {len(flat)} correctly classified samples.")
    if math.isnan(noisy_share):
        noisy_d = Diagnostic("loss-noisy", "Noisy loss surface", norm, math.nan,
                             th.noisy_share, False, "No sample has a usable gradient.", False)
    else:
        noisy_d = Diagnostic(
            "loss-noisy", "Noisy loss surface", norm, noisy_share, th.noisy_share,
            noisy_share > th.noisy_share,
            f"A step of {h:g} along the gradient direction raised the loss no more than the "
            f"best of {directions} random directions on {noisy_share:.0%} of "
            f"{int(live.sum())} samples.")
    return [flat_d, noisy_d], evals
