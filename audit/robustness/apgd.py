"""AutoPGD (Croce & Hein 2020) with the cross-entropy or the DLR loss, L-inf or L2.

The reference step-size schedule: checkpoints at 22% of the iterations, then each interval 3%
shorter down to 6%; at a checkpoint a sample's step is halved, and it restarts from its best
point, when its loss rose in at most ``rho`` of the steps since the last checkpoint or when its
step was not just reduced and its best loss did not improve. Momentum 0.75.
:class:`APGDRun` is that iteration on any per-sample objective; APGD-T reuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from audit.robustness.base import Attack, Found
from audit.robustness.ops import (
    Norm,
    ascent,
    logits_grad,
    loss_fn,
    per_sample,
    perturbation_norms,
    project,
    rand,
)

__all__ = ["APGD", "APGDRun", "Objective", "apgd_checkpoints", "sphere_start"]

Objective = Callable[[Tensor, dict[str, Tensor]], Tensor]
"""(logits, the active samples' state) -> per-sample loss to maximise."""


def apgd_checkpoints(n_iter: int) -> list[int]:
    """Iterations after which APGD checks its step size (Croce & Hein 2020, section 3.2):
    the first after 22% of ``n_iter``, then each interval 3% shorter, at least 6%. For 100
    iterations: 22, 41, 57, 70, 80, 87, 93, 99 (the paper's p_j = 0, 0.22, 0.41, ...)."""
    k = max(int(0.22 * n_iter), 1)
    k_min = max(int(0.06 * n_iter), 1)
    k_decr = max(int(0.03 * n_iter), 1)
    out, at = [], k
    while at <= n_iter:
        out.append(at)
        k = max(k - k_decr, k_min)
        at += k
    return out


def sphere_start(x: Tensor, eps: Tensor, norm: Norm, bounds: tuple[float, float],
                 generator: torch.Generator | None) -> Tensor:
    """The reference's start: a random direction scaled to the sphere of radius eps."""
    if norm == "linf":
        t = 2 * rand(tuple(x.shape), generator, x.device) - 1
        t = t / (per_sample(perturbation_norms(t, "linf"), x) + 1e-12)
    else:
        t = ascent(rand(tuple(x.shape), generator, x.device, normal=True), "l2")
    return (x + per_sample(eps, x) * t).clamp(*bounds)


class APGDRun:
    """One APGD run from ``start``: per-sample state, compacted together when samples succeed.

    ``extra`` holds more per-sample tensors the objective reads (APGD-T's targets).
    ``zero_history``: the first interval's first step is compared with 0 rather than with the
    start's loss (the reference APGD-T's unwritten history entry).
    """

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor, start: Tensor,
                 objective: Objective, *, extra: dict[str, Tensor] | None = None,
                 zero_history: bool = False) -> None:
        n = x.shape[0]
        self.model, self.objective = model, objective
        self.out = start.clone()
        self.ok = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.ok_step = torch.full((n,), -1, dtype=torch.long, device=x.device)
        self.s: dict[str, Tensor] = {"idx": torch.arange(n, device=x.device), "x": x, "y": y,
                                     "eps": eps, **(extra or {})}
        logits, loss, grad = self._loss_grad(start)
        self.s.update({
            "cur": start, "old": start.clone(), "grad": grad, "best": start.clone(),
            "grad_best": grad.clone(), "loss_best": loss.clone(),
            "loss_last_check": loss.clone(),
            "reduced": torch.ones(n, dtype=torch.bool, device=x.device),
            "step": 2.0 * eps.clone(),
            # loss history since the last checkpoint: row 0 is the loss before it
            "hist": (torch.zeros_like(loss) if zero_history else loss)[None].clone(),
        })
        self.drop_successes(logits, 0)

    @property
    def active(self) -> int:
        return int(self.s["idx"].numel())

    def _loss_grad(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        s = self.s
        return logits_grad(self.model, x, s["y"], lambda z, _y: self.objective(z, s))

    def descend(self, steps: int, rho: float, norm: Norm, bounds: tuple[float, float]
                ) -> APGDRun:
        """``steps`` iterations; failed samples end on their point of highest loss."""
        checks = set(apgd_checkpoints(steps))
        for i in range(steps):
            if self.active == 0:
                break
            logits = self.step(0.75 if i > 0 else 1.0, norm, bounds)
            if self.drop_successes(logits, i + 1) and self.active == 0:
                break
            if i + 1 in checks:
                self.checkpoint(rho)
        if self.active:
            self.out[self.s["idx"]] = self.s["best"]
        return self

    def step(self, momentum: float, norm: Norm, bounds: tuple[float, float]) -> Tensor:
        """One momentum step of every active sample; returns the logits at the new point."""
        s = self.s
        cur, xa, ea, a = s["cur"], s["x"], s["eps"], momentum
        previous = cur - s["old"]
        s["old"] = cur
        z = project(cur + per_sample(s["step"], cur) * ascent(s["grad"], norm), xa, ea, norm,
                    bounds)
        cur = project(cur + (z - cur) * a + previous * (1 - a), xa, ea, norm, bounds)
        logits, loss, grad = self._loss_grad(cur)
        self.record(cur, loss, grad)
        return logits

    def drop_successes(self, logits: Tensor, t: int) -> bool:
        """Keep the misclassified samples' points and stop attacking them."""
        s = self.s
        wrong = logits.argmax(dim=1) != s["y"]
        if not bool(wrong.any()):
            return False
        hit = s["idx"][wrong]
        self.out[hit] = s["cur"][wrong]
        self.ok[hit] = True
        self.ok_step[hit] = t
        keep = ~wrong
        for key, v in s.items():
            s[key] = v[:, keep] if key == "hist" else v[keep]
        return True

    def record(self, cur: Tensor, loss: Tensor, grad: Tensor) -> None:
        """The new iterate, its loss and gradient; the best point so far per sample."""
        s = self.s
        s["cur"], s["grad"] = cur, grad
        improved = loss > s["loss_best"]
        s["best"] = torch.where(per_sample(improved, cur), cur, s["best"])
        s["grad_best"] = torch.where(per_sample(improved, cur), grad, s["grad_best"])
        s["loss_best"] = torch.where(improved, loss, s["loss_best"])
        s["hist"] = torch.cat([s["hist"], loss[None]])

    def checkpoint(self, rho: float) -> None:
        """Halve the step of the samples that oscillated or stopped improving, and send
        them back to their best point."""
        s = self.s
        hist = s["hist"]
        k = hist.shape[0] - 1  # iterations since the last checkpoint
        increases = (hist[1:] > hist[:-1]).sum(dim=0)
        oscillating = increases <= k * rho
        no_improvement = ~s["reduced"] & (s["loss_last_check"] >= s["loss_best"])
        reduce = oscillating | no_improvement
        s["reduced"] = reduce
        s["loss_last_check"] = s["loss_best"].clone()
        s["step"] = torch.where(reduce, s["step"] / 2, s["step"])
        r = per_sample(reduce, s["cur"])
        s["cur"] = torch.where(r, s["best"], s["cur"])
        s["grad"] = torch.where(r, s["grad_best"], s["grad"])
        s["hist"] = s["hist"][-1:]


@dataclass
class APGD(Attack, kind="white-box", role="iterative", warm_start=True):
    """AutoPGD with the ``"ce"`` or ``"dlr"`` loss (see the module docstring).

    Step size starts at ``2 eps``. A sample stops once misclassified (its adversarial point is
    kept; the others' trajectories are unaffected); failed samples end on their point of
    highest loss. ``x_init`` replaces the first random start (warm start).
    """

    norm: Norm = "linf"
    loss: Literal["ce", "dlr"] = "ce"
    steps: int = 100
    restarts: int = 1
    rho: float = 0.75

    def default_name(self) -> str:
        return f"APGD-{self.loss.upper()}"

    def applies(self, num_classes: int) -> str | None:
        if self.loss == "dlr" and num_classes < 3:
            return "the DLR loss needs at least 3 classes"
        return None

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        assert eps is not None
        fn = loss_fn(self.loss)
        n = x.shape[0]
        x_adv = x.clone()
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        success_step = torch.full((n,), -1, dtype=torch.long, device=x.device)
        for r in range(max(self.restarts, 1)):
            todo = (~success).nonzero()[:, 0]
            if todo.numel() == 0:
                break
            xs, ys, es = x[todo], y[todo], eps[todo]
            start = (x_init[todo] if r == 0 and x_init is not None
                     else sphere_start(xs, es, self.norm, self.bounds, self.generator))
            run = APGDRun(model, xs, ys, es, start, lambda z, s: fn(z, s["y"])).descend(
                self.steps, self.rho, self.norm, self.bounds)
            x_adv[todo] = run.out
            success[todo] = run.ok
            success_step[todo] = torch.where(run.ok, run.ok_step, success_step[todo])
        return Found(x_adv, success, {"success_step": success_step, "steps": self.steps})
