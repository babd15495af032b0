"""Adversarial attacks behind one protocol: ``attack(model, x, y, *, eps) -> AttackResult``.

Our own implementations (pure PyTorch, batched, no global state):

- :class:`FGSM`: one signed-gradient step (Goodfellow et al. 2015); ``random_start=True`` with
  ``rel_step=1.25`` is FGSM-RS ("fast is better than free", Wong et al. 2020); ``norm="l2"``
  is the fast gradient method with an L2-normalised step.
- :class:`PGD`: projected gradient descent in L-inf or L2 with random restarts (Madry et al.
  2018).
- :class:`APGD`: AutoPGD with the cross-entropy or the DLR loss (Croce & Hein 2020), with the
  reference step-size schedule (checkpoints at 22%, then shrinking by 3% down to 6% of the
  iterations; halve the step when the loss oscillated in >= 25% of the last steps or did not
  improve since the last checkpoint; restart from the best point), momentum 0.75.
- :class:`Square`: the score-based black-box Square attack in L-inf (Andriushchenko et al.
  2020), margin loss, the reference schedule for the square size.

Conventions shared by every attack:

- ``model`` maps inputs in the model's own input space (``bounds``, the card's value range)
  to logits. Attacks never change its train/eval mode, never touch parameter gradients
  (they differentiate with ``torch.autograd.grad`` with respect to the input only) and keep
  no state between calls, so they can run inside a training loop (issue 7: PGD-AT, TRADES,
  FGSM-RS)::

      pgd = PGD(norm="linf", steps=7, rel_step=0.25, early_stop=False, check_success=False)
      x_adv = pgd(model, x, y, eps=8 / 255).x_adv     # then: loss = ce(model(x_adv), y)

  A custom loss ``loss(logits, y) -> per-sample loss to maximise`` may replace the built-in
  ones (``"ce"``, ``"dlr"``, ``"margin"``); for TRADES pass a closure over the clean logits.
- ``eps`` is a float or a per-sample tensor ``(N,)``, in the units of ``norm`` over the
  flattened input (L-inf: largest change of one value; L2: Euclidean length).
- ``success[i]`` is True when ``x_adv[i]`` is misclassified (``argmax != y``) and within
  ``eps`` of ``x[i]``; ``norms[i]`` is the size of ``x_adv[i] - x[i]`` in the attack's norm.
- ``evaluations`` counts per-sample forward passes, ``gradients`` per-sample backward passes
  (a batch of 100 forwarded once counts 100).
- Randomness comes from ``generator`` (a ``torch.Generator``) when given, else from torch's
  global generator (which the audit runner seeds per check).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["linf", "l2"]
LossFn = Callable[[Tensor, Tensor], Tensor]
AttackKind = Literal["white-box", "black-box", "decision-based", "minimal"]

__all__ = [
    "APGD", "FGSM", "LOSSES", "PGD", "Attack", "AttackResult", "CountingModel", "Norm",
    "Square", "apgd_checkpoints", "ce_loss", "dlr_loss", "margin_loss", "perturbation_norms",
    "project", "random_start", "run_batched",
]


# --------------------------------------------------------------------------- results


@dataclass
class AttackResult:
    """What one attack produced on a batch.

    ``x_adv`` (N, ...) adversarial inputs (for failed samples: the attack's last point),
    ``success`` (N,) bool, ``norms`` (N,) perturbation sizes in ``norm``, ``time`` seconds,
    ``evaluations`` per-sample forward passes, ``gradients`` per-sample backward passes,
    ``info`` attack-specific traces (per-sample tensors such as ``success_step``).
    """

    name: str
    norm: Norm
    eps: float | None
    x_adv: Tensor
    success: Tensor
    norms: Tensor
    time: float
    evaluations: int
    gradients: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def success_rate(self) -> float:
        """Share of samples where the attack succeeded."""
        return float(self.success.float().mean()) if len(self) else math.nan

    def found_norms(self) -> Tensor:
        """Perturbation size where the attack succeeded, ``inf`` where it failed."""
        inf = torch.full_like(self.norms, math.inf)
        return torch.where(self.success.to(self.norms.device), self.norms, inf)


@runtime_checkable
class Attack(Protocol):
    """The attack protocol. ``eps=None`` asks a minimal-perturbation attack for the smallest
    adversarial it can find; bounded attacks require ``eps``."""

    name: str
    norm: Norm
    kind: ClassVar[AttackKind]

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | Tensor | None
                 ) -> AttackResult: ...


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


def _loss_fn(loss: str | LossFn) -> LossFn:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown attack loss {loss!r}; use one of {', '.join(LOSSES)}")
    return LOSSES[loss]


# --------------------------------------------------------------------------- geometry


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
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
    e = _per_sample(eps, x)
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, e), -e)
    else:
        n = _per_sample(perturbation_norms(delta, "l2"), x)
        delta = delta * torch.clamp(e / (n + 1e-12), max=1.0)
    return (x + delta).clamp(bounds[0], bounds[1])


def _ascent(g: Tensor, norm: Norm) -> Tensor:
    """Steepest-ascent direction of unit size: sign (L-inf) or normalised gradient (L2)."""
    if norm == "linf":
        return g.sign()
    return g / (_per_sample(perturbation_norms(g, "l2"), g) + 1e-12)


def _rand(shape: tuple[int, ...], gen: torch.Generator | None, device: torch.device,
          normal: bool = False) -> Tensor:
    t = torch.randn(shape, generator=gen) if normal else torch.rand(shape, generator=gen)
    return t.to(device)


def random_start(x: Tensor, eps: Tensor, norm: Norm, bounds: tuple[float, float],
                 gen: torch.Generator | None) -> Tensor:
    """A uniform random point in the ``eps``-ball around ``x`` (clipped to the range)."""
    e = _per_sample(eps, x)
    shape = tuple(x.shape)
    if norm == "linf":
        delta = (2 * _rand(shape, gen, x.device) - 1) * e
    else:
        d = max(int(x[0].numel()), 1)
        direction = _ascent(_rand(shape, gen, x.device, normal=True), "l2")
        radius = _rand((shape[0],), gen, x.device) ** (1.0 / d)
        delta = direction * _per_sample(radius, x) * e
    return (x + delta).clamp(bounds[0], bounds[1])


def _eps_tensor(eps: float | Tensor | None, x: Tensor) -> Tensor:
    if eps is None:
        raise ValueError("this attack is bounded: pass eps")
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    return e.expand(x.shape[0]).clone() if e.ndim == 0 else e.to(x.dtype).reshape(-1)


def _logits_grad(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """(logits, per-sample loss, d loss / d x) at ``x``; parameters' .grad untouched."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        loss = loss_fn(logits, y)
        (g,) = torch.autograd.grad(loss.sum(), xg)
    return logits.detach(), loss.detach(), g


class CountingModel(nn.Module):
    """Wraps a model and counts per-sample forward and backward passes (for foolbox attacks)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0
        self.backwards = 0

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.model(x)
        n = int(x.shape[0])
        self.forwards += n
        if out.requires_grad:
            out.register_hook(lambda g: self._count_backward(n, g))
        return out

    def _count_backward(self, n: int, g: Tensor) -> Tensor:
        self.backwards += n
        return g


def _finish(name: str, norm: Norm, eps: float | Tensor | None, x: Tensor, x_adv: Tensor,
            success: Tensor, t0: float, evaluations: int, gradients: int,
            info: dict[str, Any] | None = None) -> AttackResult:
    return AttackResult(
        name=name, norm=norm, eps=float(eps) if isinstance(eps, int | float) else None,
        x_adv=x_adv.detach(), success=success.detach(),
        norms=perturbation_norms(x_adv - x, norm), time=time.perf_counter() - t0,
        evaluations=evaluations, gradients=gradients, info=info or {})


# --------------------------------------------------------------------------- PGD / FGSM


@dataclass
class PGD:
    """Projected gradient descent (Madry et al. 2018) in L-inf or L2 with random restarts.

    ``rel_step`` is the step size as a fraction of ``eps`` (default ``2.5 / steps``, so the
    steps can cross the ball); ``restarts`` re-runs from new random points on the samples not
    yet fooled; ``x_init`` (a call argument) replaces the first random start (warm start).
    With ``early_stop`` (the default) a sample stops once misclassified and keeps that point,
    which saves its remaining steps; without it every sample takes every step and ``x_adv`` is
    the last iterate (what adversarial training wants). ``check_success=False`` skips the final
    forward pass (success is then reported as False everywhere: do not read it).
    """

    norm: Norm = "linf"
    steps: int = 40
    rel_step: float | None = None
    restarts: int = 1
    random_start: bool = True
    loss: str | LossFn = "ce"
    early_stop: bool = True
    check_success: bool = True
    bounds: tuple[float, float] = (0.0, 1.0)
    generator: torch.Generator | None = None
    name: str = "PGD"
    kind: ClassVar[AttackKind] = "white-box"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | Tensor | None,
                 x_init: Tensor | None = None) -> AttackResult:
        t0 = time.perf_counter()
        x = x.detach()
        e = _eps_tensor(eps, x)
        loss_fn = _loss_fn(self.loss)
        rel = self.rel_step if self.rel_step is not None else 2.5 / max(self.steps, 1)
        n = x.shape[0]
        x_adv = x.clone()
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        success_step = torch.full((n,), -1, dtype=torch.long)
        loss_start = torch.full((n,), math.nan)
        loss_end = torch.full((n,), math.nan)
        counts = [0, 0]
        for r in range(max(self.restarts, 1)):
            todo = (~success).nonzero()[:, 0] if r else torch.arange(n, device=x.device)
            if todo.numel() == 0:
                break
            xs, ys, es = x[todo], y[todo], e[todo]
            if r == 0 and x_init is not None:
                start = project(x_init[todo].detach(), xs, es, self.norm, self.bounds)
            elif self.random_start:
                start = random_start(xs, es, self.norm, self.bounds, self.generator)
            else:
                start = xs.clone()
            adv, ok, step_ok, l0, l1 = self._run(model, xs, ys, es, es * rel, start, loss_fn,
                                                 counts)
            x_adv[todo] = adv
            success[todo] = ok
            cpu = todo.cpu()
            success_step[cpu] = torch.where(ok.cpu(), step_ok, success_step[cpu])
            if r == 0:
                loss_start[cpu], loss_end[cpu] = l0, l1
        info = {"success_step": success_step, "loss_start": loss_start, "loss_end": loss_end,
                "steps": self.steps}
        return _finish(self.name, self.norm, eps, x, x_adv, success, t0, counts[0], counts[1],
                       info)

    def _run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor, step: Tensor,
             start: Tensor, loss_fn: LossFn, counts: list[int]
             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One PGD run; returns (x_adv, success, success step, start loss, final loss)."""
        n = x.shape[0]
        out = start.clone()
        ok = torch.zeros(n, dtype=torch.bool, device=x.device)
        ok_step = torch.full((n,), -1, dtype=torch.long)
        l_start = torch.full((n,), math.nan)
        l_end = torch.full((n,), math.nan)
        idx = torch.arange(n, device=x.device)
        cur, xa, ya, ea, sa = start, x, y, eps, step
        for t in range(self.steps):
            logits, loss, g = _logits_grad(model, cur, ya, loss_fn)
            counts[0] += cur.shape[0]
            counts[1] += cur.shape[0]
            if t == 0:
                l_start[idx.cpu()] = loss.float().cpu()
            if self.early_stop:
                wrong = logits.argmax(dim=1) != ya
                if bool(wrong.any()):
                    hit = idx[wrong]
                    out[hit] = cur[wrong]
                    ok[hit] = True
                    ok_step[hit.cpu()] = t
                    l_end[hit.cpu()] = loss[wrong].float().cpu()
                    keep = ~wrong
                    idx, cur, xa, ya, ea, sa, g = (idx[keep], cur[keep], xa[keep], ya[keep],
                                                   ea[keep], sa[keep], g[keep])
                    if idx.numel() == 0:
                        return out, ok, ok_step, l_start, l_end
            cur = project(cur + _per_sample(sa, cur) * _ascent(g, self.norm), xa, ea,
                          self.norm, self.bounds)
        out[idx] = cur
        if self.check_success and idx.numel():
            with torch.no_grad():
                logits = model(cur)
                l_end[idx.cpu()] = loss_fn(logits, ya).float().cpu()
            counts[0] += cur.shape[0]
            wrong = logits.argmax(dim=1) != ya
            ok[idx[wrong]] = True
            ok_step[idx[wrong].cpu()] = self.steps
        return out, ok, ok_step, l_start, l_end


@dataclass
class FGSM(PGD):
    """Fast gradient sign method: one step of ``rel_step * eps`` (L-inf: sign of the gradient;
    L2: the normalised gradient). ``random_start=True, rel_step=1.25`` is FGSM-RS."""

    steps: int = 1
    rel_step: float | None = 1.0
    random_start: bool = False
    name: str = "FGSM"


# --------------------------------------------------------------------------- APGD


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


@dataclass
class APGD:
    """AutoPGD (Croce & Hein 2020) with the ``"ce"`` or ``"dlr"`` loss, L-inf or L2.

    Step size starts at ``2 eps``; at checkpoints (first after 22% of the iterations, then
    every ``k`` iterations with ``k`` shrinking by 3% of the iterations down to 6%) a sample's
    step is halved, and it restarts from its best point, when the loss increased in at most
    ``rho`` of the steps since the last checkpoint, or when its step was not just reduced and
    its best loss did not improve. Momentum 0.75. A sample stops once misclassified (its
    adversarial point is kept; the others' trajectories are unaffected). ``x_init`` replaces
    the first random start (warm start).
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

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"APGD-{self.loss.upper()}"

    @staticmethod
    def applies(num_classes: int, loss: str) -> str | None:
        """Reason the attack cannot run on a model with ``num_classes`` outputs, or None."""
        if loss == "dlr" and num_classes < 3:
            return "the DLR loss needs at least 3 classes"
        return None

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | Tensor | None,
                 x_init: Tensor | None = None) -> AttackResult:
        t0 = time.perf_counter()
        x = x.detach()
        e = _eps_tensor(eps, x)
        n = x.shape[0]
        x_adv = x.clone()
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        success_step = torch.full((n,), -1, dtype=torch.long)
        counts = [0, 0]
        for r in range(max(self.restarts, 1)):
            todo = (~success).nonzero()[:, 0]
            if todo.numel() == 0:
                break
            xs, ys, es = x[todo], y[todo], e[todo]
            if r == 0 and x_init is not None:
                start = project(x_init[todo].detach(), xs, es, self.norm, self.bounds)
            else:
                start = self._start(xs, es)
            adv, ok, step_ok = self._run(model, xs, ys, es, start, counts)
            x_adv[todo] = adv
            success[todo] = ok
            cpu = todo.cpu()
            success_step[cpu] = torch.where(ok.cpu(), step_ok, success_step[cpu])
        info = {"success_step": success_step, "steps": self.steps}
        return _finish(self.name, self.norm, eps, x, x_adv, success, t0, counts[0], counts[1],
                       info)

    def _start(self, x: Tensor, eps: Tensor) -> Tensor:
        """The reference's start: a random direction scaled to the sphere of radius eps."""
        if self.norm == "linf":
            t = 2 * _rand(tuple(x.shape), self.generator, x.device) - 1
            t = t / (_per_sample(perturbation_norms(t, "linf"), x) + 1e-12)
        else:
            t = _ascent(_rand(tuple(x.shape), self.generator, x.device, normal=True), "l2")
        return (x + _per_sample(eps, x) * t).clamp(*self.bounds)

    def _run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor, start: Tensor,
             counts: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        loss_fn = _loss_fn(self.loss)
        n_iter = self.steps
        checks = set(apgd_checkpoints(n_iter))
        n = x.shape[0]
        out = start.clone()
        ok = torch.zeros(n, dtype=torch.bool, device=x.device)
        ok_step = torch.full((n,), -1, dtype=torch.long)

        cur = start
        logits, loss, grad = _logits_grad(model, cur, y, loss_fn)
        counts[0] += n
        counts[1] += n
        # per-sample state, compacted together when samples succeed
        s: dict[str, Tensor] = {
            "idx": torch.arange(n, device=x.device), "x": x, "y": y, "eps": eps, "cur": cur,
            "old": cur.clone(), "grad": grad, "best": cur.clone(), "grad_best": grad.clone(),
            "loss_best": loss.clone(), "loss_last_check": loss.clone(),
            "reduced": torch.ones(n, dtype=torch.bool, device=x.device),
            "step": 2.0 * eps.clone(),
            # loss history since the last checkpoint: row 0 is the loss before it
            "hist": loss[None].clone(),
        }

        def drop_successes(lg: Tensor, t: int) -> bool:
            wrong = lg.argmax(dim=1) != s["y"]
            if not bool(wrong.any()):
                return False
            hit = s["idx"][wrong]
            out[hit] = s["cur"][wrong]
            ok[hit] = True
            ok_step[hit.cpu()] = t
            keep = ~wrong
            for key, v in s.items():
                s[key] = v[:, keep] if key == "hist" else v[keep]
            return True

        drop_successes(logits, 0)
        for i in range(n_iter):
            if s["idx"].numel() == 0:
                break
            cur, xa, ea = s["cur"], s["x"], s["eps"]
            a = 0.75 if i > 0 else 1.0
            momentum = cur - s["old"]
            s["old"] = cur
            step = _per_sample(s["step"], cur)
            z = project(cur + step * _ascent(s["grad"], self.norm), xa, ea, self.norm,
                        self.bounds)
            cur = project(cur + (z - cur) * a + momentum * (1 - a), xa, ea, self.norm,
                          self.bounds)
            s["cur"] = cur
            logits, loss, grad = _logits_grad(model, cur, s["y"], loss_fn)
            counts[0] += cur.shape[0]
            counts[1] += cur.shape[0]
            s["grad"] = grad
            improved = loss > s["loss_best"]
            s["best"] = torch.where(_per_sample(improved, cur), cur, s["best"])
            s["grad_best"] = torch.where(_per_sample(improved, cur), grad, s["grad_best"])
            s["loss_best"] = torch.where(improved, loss, s["loss_best"])
            s["hist"] = torch.cat([s["hist"], loss[None]])
            if drop_successes(logits, i + 1) and s["idx"].numel() == 0:
                break
            if i + 1 in checks:
                hist = s["hist"]
                k = hist.shape[0] - 1  # iterations since the last checkpoint
                increases = (hist[1:] > hist[:-1]).sum(dim=0)
                oscillating = increases <= k * self.rho
                no_improvement = ~s["reduced"] & (s["loss_last_check"] >= s["loss_best"])
                reduce = oscillating | no_improvement
                s["reduced"] = reduce
                s["loss_last_check"] = s["loss_best"].clone()
                s["step"] = torch.where(reduce, s["step"] / 2, s["step"])
                r = _per_sample(reduce, s["cur"])
                s["cur"] = torch.where(r, s["best"], s["cur"])
                s["grad"] = torch.where(r, s["grad_best"], s["grad"])
                s["hist"] = s["hist"][-1:]
        if s["idx"].numel():
            # failed samples: return the point of highest loss
            out[s["idx"]] = s["best"]
        return out, ok, ok_step


# --------------------------------------------------------------------------- Square


@dataclass
class Square:
    """The Square attack in L-inf (Andriushchenko et al. 2020): score-based, no gradients.

    Starts from vertical stripes of +-eps, then at each query changes one random square
    window per sample to a random +-2 eps shift (projected to the ball) and keeps it when the
    margin loss ``z_y - max_{i!=y} z_i`` decreases. The window covers a share ``p`` of the
    input, ``p_init`` halved on the reference schedule (rescaled to ``queries``). Non-image
    inputs (N, D) are treated as one row of D values (windows become segments).
    """

    norm: Norm = "linf"
    queries: int = 1000
    p_init: float = 0.8
    bounds: tuple[float, float] = (0.0, 1.0)
    generator: torch.Generator | None = None
    name: str = "Square"
    kind: ClassVar[AttackKind] = "black-box"

    def __post_init__(self) -> None:
        if self.norm != "linf":
            raise ValueError("our Square attack implements the L-inf version only")

    def _p(self, it: int) -> float:
        it = int(it / self.queries * 10000)
        for limit, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
                           (4000, 64), (6000, 128), (8000, 256)):
            if it <= limit:
                return self.p_init / div
        return self.p_init / 512

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | Tensor | None
                 ) -> AttackResult:
        t0 = time.perf_counter()
        x = x.detach()
        e = _eps_tensor(eps, x)
        shape = x.shape
        img = x.reshape(shape[0], 1, 1, -1) if x.ndim != 4 else x
        n, c, h, w = img.shape
        gen, dev = self.generator, x.device
        ev = _per_sample(e, img)
        stripes = torch.sign(2 * _rand((n, c, 1, w), gen, dev) - 1)
        best = torch.minimum(torch.maximum(img + ev * stripes, img - ev), img + ev)
        best = best.clamp(*self.bounds)
        with torch.no_grad():
            margin = -margin_loss(model(best.reshape(shape)), y)
        evals = n
        rows = torch.arange(h, device=dev)[None, :, None]
        cols = torch.arange(w, device=dev)[None, None, :]
        for it in range(self.queries):
            act = (margin > 0).nonzero()[:, 0]
            if act.numel() == 0:
                break
            p = self._p(it)
            if h == 1:
                sh, sw = 1, min(max(round(p * w), 1), w)
            else:
                s = min(max(round(math.sqrt(p * h * w)), 1), h, w)
                sh = sw = s
            m = act.numel()
            vh = (torch.rand(m, generator=gen) * (h - sh + 1)).long().to(dev)
            vw = (torch.rand(m, generator=gen) * (w - sw + 1)).long().to(dev)
            mask = ((rows >= vh[:, None, None]) & (rows < (vh + sh)[:, None, None])
                    & (cols >= vw[:, None, None]) & (cols < (vw + sw)[:, None, None]))
            shift = 2 * _per_sample(e[act], img[act]) * torch.sign(
                2 * _rand((m, c, 1, 1), gen, dev) - 1)
            xa, ea = img[act], _per_sample(e[act], img[act])
            cand = best[act] + mask[:, None].to(x.dtype) * shift
            cand = torch.minimum(torch.maximum(cand, xa - ea), xa + ea).clamp(*self.bounds)
            with torch.no_grad():
                new_margin = -margin_loss(model(cand.reshape(m, *shape[1:])), y[act])
            evals += m
            better = new_margin < margin[act]
            margin[act] = torch.where(better, new_margin, margin[act])
            upd = act[better]
            best[upd] = cand[better]
        x_adv = best.reshape(shape)
        success = margin <= 0
        # margin <= 0 counts ties as success; confirm with argmax to match the other attacks
        with torch.no_grad():
            success &= model(x_adv).argmax(dim=1) != y
        evals += n
        return _finish(self.name, self.norm, eps, x, x_adv, success, t0, evals, 0,
                       {"queries": self.queries})


# --------------------------------------------------------------------------- batching


def run_batched(attack: Callable[..., AttackResult], model: nn.Module, x: Tensor, y: Tensor,
                *, eps: float | Tensor | None, batch_size: int = 256,
                device: torch.device | None = None, **kwargs: Any) -> AttackResult:
    """Run ``attack`` over ``x`` in batches (bounded memory) and join the results on the CPU.

    Extra keyword arguments (``x_init``) are sliced per batch when they are tensors with N rows.
    """
    t0 = time.perf_counter()
    parts: list[AttackResult] = []
    n = int(x.shape[0])
    dev = device or x.device
    for i in range(0, n, batch_size):
        sl = slice(i, i + batch_size)
        kw = {k: (v[sl].to(dev) if isinstance(v, Tensor) and v.shape[:1] == (n,) else v)
              for k, v in kwargs.items()}
        e = eps[sl].to(dev) if isinstance(eps, Tensor) and eps.ndim else eps
        r = attack(model, x[sl].to(dev), y[sl].to(dev), eps=e, **kw)
        r.x_adv, r.success, r.norms = r.x_adv.cpu(), r.success.cpu(), r.norms.cpu()
        parts.append(r)
    if not parts:
        raise ValueError("run_batched needs at least one sample")
    first = parts[0]
    info: dict[str, Any] = {}
    for key, v in first.info.items():
        if isinstance(v, Tensor) and v.ndim == 1 and v.shape[0] == len(first):
            info[key] = torch.cat([p.info[key].cpu() for p in parts])
        else:
            info[key] = v
    return AttackResult(
        name=first.name, norm=first.norm, eps=first.eps,
        x_adv=torch.cat([p.x_adv for p in parts]), success=torch.cat([p.success for p in parts]),
        norms=torch.cat([p.norms for p in parts]), time=time.perf_counter() - t0,
        evaluations=sum(p.evaluations for p in parts), gradients=sum(p.gradients for p in parts),
        info=info)
