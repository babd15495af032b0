"""What every attack is built from: the losses it maximises and the geometry of the eps-ball.

- Losses map ``(logits, y)`` to a per-sample loss to maximise: :func:`ce_loss`,
  :func:`dlr_loss` (Croce & Hein 2020, scale-invariant), :func:`margin_loss` (Carlini-Wagner).
- Geometry: per-sample perturbation sizes, projection onto the ball and the value range,
  uniform random starts, and the unit steepest-ascent direction of each norm.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["linf", "l2"]
NORMS: tuple[Norm, ...] = ("linf", "l2")
NORM_LABEL = {"linf": "L-inf", "l2": "L2"}
"""How each norm is written in names and reports."""
LossFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["LOSSES", "NORMS", "NORM_LABEL", "LossFn", "Norm", "ascent", "ce_loss",
           "dlr_loss", "logits_grad", "loss_fn", "margin_loss", "per_sample",
           "perturbation_norms", "project", "rand", "random_start"]


# --------------------------------------------------------------------------- losses


def ce_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample cross-entropy."""
    return F.cross_entropy(logits, y, reduction="none")


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of logits ratio (Croce & Hein 2020); needs at least 3 classes.

    ``-(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3)`` with ``z_pi`` the logits sorted decreasingly:
    invariant to shifting and scaling the logits, so saturated softmax cannot hide gradients.
    """
    z_sorted, ind_sorted = logits.sort(dim=1)
    top_is_y = (ind_sorted[:, -1] == y).to(logits.dtype)
    z_y = logits.gather(1, y[:, None])[:, 0]
    other = z_sorted[:, -2] * top_is_y + z_sorted[:, -1] * (1.0 - top_is_y)
    return -(z_y - other) / (z_sorted[:, -1] - z_sorted[:, -3] + 1e-12)


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """``max_{i!=y} z_i - z_y`` (Carlini-Wagner margin): positive when misclassified."""
    z_y = logits.gather(1, y[:, None])[:, 0]
    other = logits.scatter(1, y[:, None], -math.inf).amax(dim=1)
    return other - z_y


LOSSES: dict[str, LossFn] = {"ce": ce_loss, "dlr": dlr_loss, "margin": margin_loss}


def loss_fn(loss: str | LossFn) -> LossFn:
    """A loss by name (``"ce"``, ``"dlr"``, ``"margin"``), or the callable itself."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown attack loss {loss!r}; use one of {', '.join(LOSSES)}")
    return LOSSES[loss]


def logits_grad(model: nn.Module, x: Tensor, y: Tensor, loss: LossFn
                ) -> tuple[Tensor, Tensor, Tensor]:
    """(logits, per-sample loss, d loss / d x) at ``x``; parameters' .grad untouched."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        value = loss(logits, y)
        (g,) = torch.autograd.grad(value.sum(), xg)
    return logits.detach(), value.detach(), g


# --------------------------------------------------------------------------- geometry


def per_sample(v: Tensor, x: Tensor) -> Tensor:
    """A (N,) tensor viewed as (N, 1, ..., 1) to broadcast against ``x``."""
    return v.view(-1, *([1] * (x.ndim - 1)))


def perturbation_norms(delta: Tensor, norm: Norm) -> Tensor:
    """Per-sample L-inf or L2 size of ``delta`` (N, ...) over all its values."""
    flat = delta.detach().flatten(1)
    if flat.shape[1] == 0:
        return torch.zeros(flat.shape[0], device=flat.device)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def project(x_adv: Tensor, x: Tensor, eps: Tensor, norm: Norm,
            bounds: tuple[float, float]) -> Tensor:
    """Project ``x_adv`` onto the ``eps``-ball around ``x`` (eps per sample, (N,)), then onto
    the value range. Clipping to the range after the ball keeps the point inside the ball."""
    delta = x_adv - x
    e = per_sample(eps, x)
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, e), -e)
    else:
        n = per_sample(perturbation_norms(delta, "l2"), x)
        delta = delta * torch.clamp(e / (n + 1e-12), max=1.0)
    return (x + delta).clamp(bounds[0], bounds[1])


def ascent(g: Tensor, norm: Norm) -> Tensor:
    """Steepest-ascent direction of unit size: sign (L-inf) or normalised gradient (L2)."""
    if norm == "linf":
        return g.sign()
    return g / (per_sample(perturbation_norms(g, "l2"), g) + 1e-12)


def rand(shape: tuple[int, ...], gen: torch.Generator | None, device: torch.device,
         normal: bool = False) -> Tensor:
    """Uniform [0, 1) (or standard normal) values drawn on the CPU from ``gen``, so a seed
    gives the same numbers on every device."""
    t = torch.randn(shape, generator=gen) if normal else torch.rand(shape, generator=gen)
    return t.to(device)


def random_start(x: Tensor, eps: Tensor, norm: Norm, bounds: tuple[float, float],
                 gen: torch.Generator | None) -> Tensor:
    """A uniform random point in the ``eps``-ball around ``x`` (clipped to the range)."""
    e = per_sample(eps, x)
    shape = tuple(x.shape)
    if norm == "linf":
        delta = (2 * rand(shape, gen, x.device) - 1) * e
    else:
        d = max(int(x[0].numel()), 1)
        direction = ascent(rand(shape, gen, x.device, normal=True), "l2")
        radius = rand((shape[0],), gen, x.device) ** (1.0 / d)
        delta = direction * per_sample(radius, x) * e
    return (x + delta).clamp(bounds[0], bounds[1])
