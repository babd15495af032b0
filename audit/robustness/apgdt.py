"""APGD-T: AutoPGD on the targeted DLR loss (Croce & Hein 2020), AutoAttack's second attack.

For the ``targets`` most likely classes after the first (ranked by the logits at the clean
point: the 2nd, the 3rd, ...), one after the other, ``restarts`` runs of ``steps`` APGD
iterations maximise the targeted DLR loss
``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` on the samples not yet misclassified.
Success means misclassified (the target need not be hit), as in AutoAttack.

The iteration is the reference's (``APGDAttack_targeted`` of the AutoAttack code): start on
the sphere of radius eps in a random direction, step ``2 eps``, momentum 0.75, checkpoints of
:func:`~audit.robustness.apgd.apgd_checkpoints` where a sample's step is halved and it goes
back to its best point when the loss rose in at most ``rho`` of the interval's steps or did
not improve since the last checkpoint. As in the reference, the first interval's first step
is compared with 0 (an unwritten history entry) rather than with the start's loss. The random
starts are drawn from ``generator`` in the reference's order (one per target and restart, the
shape of the samples still to fool), so a run seeded like pyautoattack draws the same starts.
Unlike the reference, a sample stops once misclassified: the others' iterations are
unchanged (samples do not interact), only the wasted steps are saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from audit.robustness.apgd import apgd_checkpoints
from audit.robustness.base import Attack, AttackKind, Found, Role
from audit.robustness.ops import Norm, ascent, per_sample, perturbation_norms, project, rand

__all__ = ["APGDT", "dlr_targeted_loss"]


def dlr_targeted_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR loss (Croce & Hein 2020): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``
    with ``z_pi`` the logits sorted decreasingly; needs at least 4 classes."""
    z_sorted = logits.sort(dim=1)[0]
    z_y = logits.gather(1, y[:, None])[:, 0]
    z_t = logits.gather(1, target[:, None])[:, 0]
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + 1e-12)


def _loss_grad(model: nn.Module, x: Tensor, y: Tensor, t: Tensor
               ) -> tuple[Tensor, Tensor, Tensor]:
    """(logits, targeted DLR loss, its gradient) at ``x``; parameters' .grad untouched."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        loss = dlr_targeted_loss(logits, y, t)
        (g,) = torch.autograd.grad(loss.sum(), xg)
    return logits.detach(), loss.detach(), g


class _State:
    """Per-sample tensors of one run, compacted together when samples succeed (``hist``,
    the losses since the last checkpoint, is (steps + 1, N))."""

    def __init__(self, **tensors: Tensor) -> None:
        self.s = tensors

    def __getitem__(self, key: str) -> Tensor:
        return self.s[key]

    def __setitem__(self, key: str, value: Tensor) -> None:
        self.s[key] = value

    def keep(self, mask: Tensor) -> None:
        for key, v in self.s.items():
            self.s[key] = v[:, mask] if key == "hist" else v[mask]


@dataclass
class APGDT(Attack):
    """APGD-T (see the module docstring): ``targets`` target classes, ``restarts`` runs of
    ``steps`` iterations each. ``info``: ``target`` (the class of the run that broke each
    sample, -1 if none) and ``success_step``."""

    norm: Norm = "linf"
    targets: int = 9
    steps: int = 100
    restarts: int = 1
    rho: float = 0.75
    bounds: tuple[float, float] = (0.0, 1.0)
    generator: torch.Generator | None = None
    name: str = ""
    kind: ClassVar[AttackKind] = "white-box"
    role: ClassVar[Role] = "iterative"
    title: ClassVar[str] = "APGD-T"

    def default_name(self) -> str:
        return "APGD-T"

    def applies(self, num_classes: int) -> str | None:
        if num_classes < 4:
            return "the targeted DLR loss needs at least 4 classes"
        return None

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        assert eps is not None
        n = x.shape[0]
        x_adv = x.clone()
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        target = torch.full((n,), -1, dtype=torch.long)
        step_at = torch.full((n,), -1, dtype=torch.long)
        for k in range(2, self.targets + 2):
            for _ in range(max(self.restarts, 1)):
                todo = (~success).nonzero()[:, 0]
                if todo.numel() == 0:
                    break
                xs, ys, es = x[todo], y[todo], eps[todo]
                with torch.no_grad():  # the reference ranks the targets at each restart
                    order = model(xs).sort(dim=1)[1]
                if k > order.shape[1]:
                    break
                t = order[:, -k]
                out, ok, at = self._descend(model, xs, ys, t, es, self._start(xs, es))
                x_adv[todo] = out
                success[todo] = ok
                hit = todo[ok].cpu()
                target[hit] = t[ok].cpu()
                step_at[hit] = at[ok.cpu()]
        return Found(x_adv, success, {"target": target, "success_step": step_at,
                                      "steps": self.steps})

    def _start(self, x: Tensor, eps: Tensor) -> Tensor:
        """The reference's start: a random direction scaled to the sphere of radius eps."""
        if self.norm == "linf":
            t = 2 * rand(tuple(x.shape), self.generator, x.device) - 1
            t = t / (per_sample(perturbation_norms(t, "linf"), x) + 1e-12)
        else:
            t = ascent(rand(tuple(x.shape), self.generator, x.device, normal=True), "l2")
        return (x + per_sample(eps, x) * t).clamp(*self.bounds)

    def _descend(self, model: nn.Module, x: Tensor, y: Tensor, t: Tensor, eps: Tensor,
                 start: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One run: (points, misclassified, step of success) per sample."""
        n = x.shape[0]
        out = start.clone()
        ok = torch.zeros(n, dtype=torch.bool, device=x.device)
        at = torch.full((n,), -1, dtype=torch.long)
        logits, loss, grad = _loss_grad(model, start, y, t)
        st = _State(idx=torch.arange(n, device=x.device), x=x, y=y, t=t, eps=eps, cur=start,
                    old=start.clone(), grad=grad, best=start.clone(), grad_best=grad.clone(),
                    loss_best=loss.clone(), loss_last_check=loss.clone(),
                    reduced=torch.ones(n, dtype=torch.bool, device=x.device),
                    step=2.0 * eps.clone(), hist=torch.zeros_like(loss)[None])
        checks = set(apgd_checkpoints(self.steps))
        self._drop(st, logits, out, ok, at, 0)
        for i in range(self.steps):
            if st["idx"].numel() == 0:
                break
            logits, loss, grad = self._step(model, st, 0.75 if i > 0 else 1.0)
            self._drop(st, logits, out, ok, at, i + 1, loss, grad)
            if i + 1 in checks and st["idx"].numel():
                self._checkpoint(st)
        out[st["idx"]] = st["best"]
        return out, ok, at

    def _step(self, model: nn.Module, st: _State, a: float) -> tuple[Tensor, Tensor, Tensor]:
        """One momentum step of every active sample: (logits, loss, grad) at the new point."""
        cur, xa, ea = st["cur"], st["x"], st["eps"]
        previous = cur - st["old"]
        st["old"] = cur
        z = project(cur + per_sample(st["step"], cur) * ascent(st["grad"], self.norm), xa, ea,
                    self.norm, self.bounds)
        cur = project(cur + (z - cur) * a + previous * (1 - a), xa, ea, self.norm, self.bounds)
        st["cur"] = cur
        return _loss_grad(model, cur, st["y"], st["t"])

    @staticmethod
    def _drop(st: _State, logits: Tensor, out: Tensor, ok: Tensor, at: Tensor, step: int,
              loss: Tensor | None = None, grad: Tensor | None = None) -> None:
        """Keep the misclassified samples' points and stop them; record the others' new loss
        and gradient (best point so far, loss history)."""
        wrong = logits.argmax(dim=1) != st["y"]
        if bool(wrong.any()):
            hit = st["idx"][wrong]
            out[hit] = st["cur"][wrong]
            ok[hit] = True
            at[hit.cpu()] = step
            keep = ~wrong
            st.keep(keep)
            loss = loss[keep] if loss is not None else None
            grad = grad[keep] if grad is not None else None
        if loss is None or grad is None:
            return
        cur = st["cur"]
        st["grad"] = grad
        better = loss > st["loss_best"]
        st["best"] = torch.where(per_sample(better, cur), cur, st["best"])
        st["grad_best"] = torch.where(per_sample(better, cur), grad, st["grad_best"])
        st["loss_best"] = torch.where(better, loss, st["loss_best"])
        st["hist"] = torch.cat([st["hist"], loss[None]])

    def _checkpoint(self, st: _State) -> None:
        """Halve the step of the samples that oscillated or stopped improving and send them
        back to their best point."""
        hist = st["hist"]
        k = hist.shape[0] - 1
        increases = (hist[1:] > hist[:-1]).sum(dim=0)
        reduce = (increases <= k * self.rho) | (
            ~st["reduced"] & (st["loss_last_check"] >= st["loss_best"]))
        st["reduced"] = reduce
        st["loss_last_check"] = st["loss_best"].clone()
        st["step"] = torch.where(reduce, st["step"] / 2, st["step"])
        r = per_sample(reduce, st["cur"])
        st["cur"] = torch.where(r, st["best"], st["cur"])
        st["grad"] = torch.where(r, st["grad_best"], st["grad"])
        st["hist"] = hist[-1:]
