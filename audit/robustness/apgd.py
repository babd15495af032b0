"""AutoPGD (Croce & Hein 2020) with the cross-entropy or the DLR loss, L-inf or L2.

The reference step-size schedule: checkpoints at 22% of the iterations, then each interval 3%
shorter down to 6%; at a checkpoint a sample's step is halved, and it restarts from its best
point, when its loss rose in at most ``rho`` of the steps since the last checkpoint or when its
step was not just reduced and its best loss did not improve. Momentum 0.75.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from audit.robustness.base import Attack, AttackKind, Found, Role
from audit.robustness.ops import (
    LossFn,
    Norm,
    ascent,
    logits_grad,
    loss_fn,
    per_sample,
    perturbation_norms,
    project,
    rand,
)

__all__ = ["APGD", "apgd_checkpoints"]


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


class _Run:
    """Per-sample state of one APGD run, compacted together when samples succeed."""

    def __init__(self, x: Tensor, y: Tensor, eps: Tensor, start: Tensor, loss: Tensor,
                 grad: Tensor) -> None:
        n = x.shape[0]
        self.out = start.clone()
        self.ok = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.ok_step = torch.full((n,), -1, dtype=torch.long)
        self.s: dict[str, Tensor] = {
            "idx": torch.arange(n, device=x.device), "x": x, "y": y, "eps": eps, "cur": start,
            "old": start.clone(), "grad": grad, "best": start.clone(),
            "grad_best": grad.clone(), "loss_best": loss.clone(),
            "loss_last_check": loss.clone(),
            "reduced": torch.ones(n, dtype=torch.bool, device=x.device),
            "step": 2.0 * eps.clone(),
            # loss history since the last checkpoint: row 0 is the loss before it
            "hist": loss[None].clone(),
        }

    @property
    def active(self) -> int:
        return int(self.s["idx"].numel())

    def drop_successes(self, logits: Tensor, t: int) -> bool:
        """Keep the misclassified samples' points and stop attacking them."""
        s = self.s
        wrong = logits.argmax(dim=1) != s["y"]
        if not bool(wrong.any()):
            return False
        hit = s["idx"][wrong]
        self.out[hit] = s["cur"][wrong]
        self.ok[hit] = True
        self.ok_step[hit.cpu()] = t
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
class APGD(Attack):
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
    bounds: tuple[float, float] = (0.0, 1.0)
    generator: torch.Generator | None = None
    name: str = ""
    kind: ClassVar[AttackKind] = "white-box"
    role: ClassVar[Role] = "iterative"
    warm_start: ClassVar[bool] = True

    def default_name(self) -> str:
        return f"APGD-{self.loss.upper()}"

    def applies(self, num_classes: int) -> str | None:
        if self.loss == "dlr" and num_classes < 3:
            return "the DLR loss needs at least 3 classes"
        return None

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        assert eps is not None
        n = x.shape[0]
        x_adv = x.clone()
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        success_step = torch.full((n,), -1, dtype=torch.long)
        for r in range(max(self.restarts, 1)):
            todo = (~success).nonzero()[:, 0]
            if todo.numel() == 0:
                break
            xs, ys, es = x[todo], y[todo], eps[todo]
            start = x_init[todo] if r == 0 and x_init is not None else self._start(xs, es)
            run = self._descend(model, xs, ys, es, start)
            x_adv[todo] = run.out
            success[todo] = run.ok
            cpu = todo.cpu()
            success_step[cpu] = torch.where(run.ok.cpu(), run.ok_step, success_step[cpu])
        return Found(x_adv, success, {"success_step": success_step, "steps": self.steps})

    def _start(self, x: Tensor, eps: Tensor) -> Tensor:
        """The reference's start: a random direction scaled to the sphere of radius eps."""
        if self.norm == "linf":
            t = 2 * rand(tuple(x.shape), self.generator, x.device) - 1
            t = t / (per_sample(perturbation_norms(t, "linf"), x) + 1e-12)
        else:
            t = ascent(rand(tuple(x.shape), self.generator, x.device, normal=True), "l2")
        return (x + per_sample(eps, x) * t).clamp(*self.bounds)

    def _descend(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor, start: Tensor
                 ) -> _Run:
        fn = loss_fn(self.loss)
        checks = set(apgd_checkpoints(self.steps))
        logits, loss, grad = logits_grad(model, start, y, fn)
        run = _Run(x, y, eps, start, loss, grad)
        run.drop_successes(logits, 0)
        for i in range(self.steps):
            if run.active == 0:
                break
            logits = self._step(model, run, fn, momentum=0.75 if i > 0 else 1.0)
            if run.drop_successes(logits, i + 1) and run.active == 0:
                break
            if i + 1 in checks:
                run.checkpoint(self.rho)
        if run.active:
            run.out[run.s["idx"]] = run.s["best"]
        return run

    def _step(self, model: nn.Module, run: _Run, fn: LossFn, momentum: float) -> Tensor:
        """One momentum step of every active sample; returns the logits at the new point."""
        s = run.s
        cur, xa, ea, a = s["cur"], s["x"], s["eps"], momentum
        previous = cur - s["old"]
        s["old"] = cur
        z = project(cur + per_sample(s["step"], cur) * ascent(s["grad"], self.norm), xa, ea,
                    self.norm, self.bounds)
        cur = project(cur + (z - cur) * a + previous * (1 - a), xa, ea, self.norm, self.bounds)
        logits, loss, grad = logits_grad(model, cur, s["y"], fn)
        run.record(cur, loss, grad)
        return logits
