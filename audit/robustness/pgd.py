"""PGD (Madry et al. 2018) and FGSM (Goodfellow et al. 2015), L-inf or L2.

``FGSM(random_start=True, rel_step=1.25)`` is FGSM-RS ("fast is better than free", Wong et
al. 2020); ``FGSM(norm="l2")`` is the fast gradient method with an L2-normalised step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from audit.robustness.base import Attack, Found
from audit.robustness.ops import (
    LossFn,
    Norm,
    ascent,
    logits_grad,
    loss_fn,
    per_sample,
    project,
    random_start,
)

__all__ = ["FGSM", "PGD"]


def _traces(n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample success, success step, start and final loss, all on ``device`` (the attack's
    loop writes them there; :func:`~audit.robustness.base.run_batched` copies the joined
    traces to the CPU once)."""
    return (torch.zeros(n, dtype=torch.bool, device=device),
            torch.full((n,), -1, dtype=torch.long, device=device),
            torch.full((n,), math.nan, device=device), torch.full((n,), math.nan, device=device))


@dataclass
class PGD(Attack, title="PGD", kind="white-box", role="iterative", warm_start=True):
    """Projected gradient descent in L-inf or L2 with random restarts.

    ``rel_step`` is the step size as a fraction of ``eps`` (default ``2.5 / steps``, so the
    steps can cross the ball); ``restarts`` re-runs from new random points on the samples not
    yet fooled; ``x_init`` (a call argument) replaces the first random start (warm start).
    With ``early_stop`` (the default) a sample stops once misclassified and keeps that point,
    which saves its remaining steps; without it every sample takes every step and ``x_adv`` is
    the last iterate (what adversarial training wants). ``check_success=False`` skips the final
    forward pass (success is then reported as False everywhere: do not read it).
    ``info``: ``success_step``, ``loss_start`` and ``loss_end`` per sample (first restart).
    """

    norm: Norm = "linf"
    steps: int = 40
    rel_step: float | None = None
    restarts: int = 1
    random_start: bool = True
    loss: str | LossFn = "ce"
    early_stop: bool = True
    check_success: bool = True

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        assert eps is not None
        fn = loss_fn(self.loss)
        rel = self.rel_step if self.rel_step is not None else 2.5 / max(self.steps, 1)
        n = x.shape[0]
        x_adv = x.clone()
        success, success_step, loss_start, loss_end = _traces(n, x.device)
        for r in range(max(self.restarts, 1)):
            todo = (~success).nonzero()[:, 0] if r else torch.arange(n, device=x.device)
            if todo.numel() == 0:
                break
            xs, ys, es = x[todo], y[todo], eps[todo]
            if r == 0 and x_init is not None:
                start = x_init[todo]
            elif self.random_start:
                start = random_start(xs, es, self.norm, self.bounds, self.generator)
            else:
                start = xs.clone()
            adv, ok, step_ok, l0, l1 = self._descend(model, xs, ys, es, es * rel, start, fn)
            x_adv[todo] = adv
            success[todo] = ok
            success_step[todo] = torch.where(ok, step_ok, success_step[todo])
            if r == 0:
                loss_start[todo], loss_end[todo] = l0, l1
        return Found(x_adv, success, {"success_step": success_step, "loss_start": loss_start,
                                      "loss_end": loss_end, "steps": self.steps})

    def _descend(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor, step: Tensor,
                 start: Tensor, fn: LossFn) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One PGD run; returns (x_adv, success, success step, start loss, final loss)."""
        n = x.shape[0]
        out = start.clone()
        ok, ok_step, l_start, l_end = _traces(n, x.device)
        idx = torch.arange(n, device=x.device)
        cur, xa, ya, ea, sa = start, x, y, eps, step
        for t in range(self.steps):
            logits, loss, g = logits_grad(model, cur, ya, fn)
            if t == 0:
                l_start[idx] = loss.float()
            if self.early_stop:
                wrong = logits.argmax(dim=1) != ya
                if bool(wrong.any()):
                    hit = idx[wrong]
                    out[hit] = cur[wrong]
                    ok[hit] = True
                    ok_step[hit] = t
                    l_end[hit] = loss[wrong].float()
                    keep = ~wrong
                    idx, cur, xa, ya, ea, sa, g = (idx[keep], cur[keep], xa[keep], ya[keep],
                                                   ea[keep], sa[keep], g[keep])
                    if idx.numel() == 0:
                        return out, ok, ok_step, l_start, l_end
            cur = project(cur + per_sample(sa, cur) * ascent(g, self.norm), xa, ea,
                          self.norm, self.bounds)
        out[idx] = cur
        if self.check_success and idx.numel():
            with torch.no_grad():
                logits = model(cur)
                l_end[idx] = fn(logits, ya).float()
            wrong = logits.argmax(dim=1) != ya
            ok[idx[wrong]] = True
            ok_step[idx[wrong]] = self.steps
        return out, ok, ok_step, l_start, l_end


@dataclass
class FGSM(PGD, title="FGSM", role="single-step"):
    """Fast gradient sign method: one step of ``rel_step * eps`` (L-inf: sign of the gradient;
    L2: the normalised gradient). ``random_start=True, rel_step=1.25`` is FGSM-RS."""

    steps: int = 1
    rel_step: float | None = 1.0
    random_start: bool = False
