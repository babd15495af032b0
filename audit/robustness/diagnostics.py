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

Attacks are picked by their ``role`` (``single-step``, ``iterative``, ``black-box``,
``minimal-norm``), never by name, so a suite with other attacks is judged the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audit.robustness.base import AttackResult
from audit.robustness.evaluate import Curve
from audit.robustness.ops import Norm, ce_loss, perturbation_norms

__all__ = ["Diagnostic", "Thresholds", "black_box", "iterations", "loss_surface",
           "minimal_success", "run_diagnostics", "single_step", "unbounded"]

WHITE_BOX_ROLES = ("single-step", "iterative", "minimal-norm")


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


def _not_judged(id: str, title: str, norm: str, threshold: float, why: str) -> Diagnostic:
    return Diagnostic(id, title, norm, math.nan, threshold, False, why, False)


def single_step(results: Sequence[AttackResult], th: Thresholds) -> Diagnostic:
    """The single-step attack's success rate minus the best iterative attack's, on the same
    samples."""
    single = [r for r in results if r.role == "single-step"]
    iterative = [r for r in results if r.role == "iterative"]
    title = "Single-step attack beats iterative ones"
    if not single or not iterative:
        return _not_judged("single-step", title, results[0].norm if results else "linf",
                           th.single_step_margin, "Needs single-step and iterative attacks.")
    fgsm = single[0]
    best = max(iterative, key=lambda r: r.success_rate)
    gap = fgsm.success_rate - best.success_rate
    return Diagnostic(
        "single-step", title, fgsm.norm, gap, th.single_step_margin, gap > th.single_step_margin,
        f"{fgsm.name} succeeds on {fgsm.success_rate:.1%} of samples, the best iterative attack "
        f"({best.name}) on {best.success_rate:.1%}.")


def iterations(results: Sequence[AttackResult], th: Thresholds) -> Diagnostic:
    """Share of the samples the first iterative attack that traces its loss (PGD) failed on
    whose loss did not rise over the iterations."""
    title = "More iterations do not help"
    traced = [r for r in results if r.role == "iterative" and "loss_start" in r.info]
    if not traced:
        return _not_judged("iterations", title, results[0].norm if results else "linf",
                           th.stall_share, "No iterative attack traced its loss.")
    pgd = traced[0]
    failed = ~pgd.success.cpu()
    l0 = pgd.info["loss_start"][failed]
    l1 = pgd.info["loss_end"][failed]
    first = pgd.info["success_step"]
    early = float(((first >= 0) & (first <= 1)).float().mean()) if len(first) else math.nan
    n = int(failed.sum())
    if n < th.min_failed:
        return _not_judged("iterations", title, pgd.norm, th.stall_share,
                           f"{pgd.name} broke all but {n} samples; too few left to judge.")
    stalled = ~(l1 > l0 + 1e-6 * l0.abs().clamp_min(1e-3))
    share = float(stalled.float().mean())
    return Diagnostic(
        "iterations", title, pgd.norm, share, th.stall_share, share > th.stall_share,
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


def minimal_success(curve: Curve, results: Sequence[AttackResult]) -> dict[str, float]:
    """Per minimal-norm attack, the share of correctly classified samples it fooled without
    a budget: the curve's (on every sample) and the suite's (``info['minimal_norms']``)."""
    out: dict[str, float] = {}
    correct_n = int(np.sum(curve.correct))
    for st in curve.stats.values():
        if st.role == "minimal-norm" and correct_n and not st.stopped:
            out[st.name] = st.successes / max(st.samples, 1)
    for r in results:
        if r.role == "minimal-norm" and "minimal_norms" in r.info:
            out[r.name] = float(torch.isfinite(r.info["minimal_norms"]).float().mean())
    return out


def black_box(results: Sequence[AttackResult], eps: float, th: Thresholds) -> Diagnostic:
    """Share of samples broken within ``eps`` only by black-box / decision-based attacks."""
    norm = results[0].norm if results else "linf"
    white = [r for r in results if r.role in WHITE_BOX_ROLES]
    black = [r for r in results if r.role == "black-box"]
    if not white or not black:
        return _not_judged("black-box", "Black-box attacks beat white-box ones", norm,
                           th.blackbox_margin, "Needs both white-box and black-box attacks.")

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
    return [_flat(flat_share, len(flat), norm, th),
            _noisy(noisy_share, int(live.sum()), h, directions, norm, th)], evals


def _flat(share: float, n: int, norm: Norm, th: Thresholds) -> Diagnostic:
    return Diagnostic(
        "loss-flat", "Flat loss surface (zero gradients)", norm, share, th.flat_share,
        share > th.flat_share,
        f"The input gradient of the cross-entropy is zero or not finite on {share:.0%} "
        f"of {n} correctly classified samples.")


def _noisy(share: float, live: int, h: float, directions: int, norm: Norm,
           th: Thresholds) -> Diagnostic:
    if math.isnan(share):
        return _not_judged("loss-noisy", "Noisy loss surface", norm, th.noisy_share,
                           "No sample has a usable gradient.")
    return Diagnostic(
        "loss-noisy", "Noisy loss surface", norm, share, th.noisy_share,
        share > th.noisy_share,
        f"A step of {h:g} along the gradient direction raised the loss no more than the "
        f"best of {directions} random directions on {share:.0%} of {live} samples.")


def run_diagnostics(model: nn.Module, x: Tensor, y: Tensor, results: Sequence[AttackResult],
                    curve: Curve, eps: float, bounds: tuple[float, float], th: Thresholds,
                    generator: torch.Generator | None = None) -> tuple[list[Diagnostic], int]:
    """Every diagnostic of one norm on the suite's ``results`` (run on correctly classified
    ``x``, ``y`` at ``eps``), in report order; returns them and the forward passes used.
    Attacks stopped by their budget are left out: a cut-short attack would read as masking."""
    norm = curve.norm
    results = [r for r in results if not r.stopped]
    out = [single_step(results, th), iterations(results, th),
           unbounded(minimal_success(curve, results), norm, th),
           black_box(results, eps, th)]
    surface, evals = loss_surface(model, x, y, norm, eps, bounds, th, generator=generator)
    return out + surface, evals
