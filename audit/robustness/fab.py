"""FAB-T: the targeted Fast Adaptive Boundary attack (Croce & Hein 2020), AutoAttack's third.

FAB looks for the smallest perturbation that changes the class. At each step it linearises
the model's targeted decision function ``z_t - z_y`` around the current point and projects
both the current point and the clean input onto the linearised boundary (within the value
range, in the attack's norm); it moves to a convex combination of the two projections,
overshooting by ``eta``, with the weight of the clean input's projection at most
``alpha_max``. Once a point is adversarial it is recorded when it is the smallest found and
pulled back towards the clean input by ``beta``. Targets are the ``targets`` most likely
classes after the first at the clean point (2nd, 3rd, ...), one after the other; with
``restarts > 1`` every further run of a target starts from a random point at half of eps.

The parameters, the projections and the iteration are those of the AutoAttack reference
(``FABAttack_PT``, targeted, 100 iterations, ``alpha_max`` 0.1, ``eta`` 1.05, ``beta`` 0.9;
the projections :func:`projection_linf` and :func:`projection_l2` are ported from it, MIT
licence, Croce 2019). Two changes that do not alter the result: with ``eps`` a sample stops
once it has an adversarial within eps (its minimal norm can only shrink afterwards, which the
bounded result does not need), and the forward pass that tells whether the new point is
adversarial also gives the next step's gradient (the reference runs two forwards and a
backward per step, this runs one of each, plus one for the samples pulled back). Without
``eps`` (``eps=None``) every sample takes every step of every target and ``info`` carries
``minimal_norms``, the smallest adversarial perturbation found (``inf``: none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audit.robustness.base import Attack, Found
from audit.robustness.ops import Norm, per_sample, perturbation_norms, rand

__all__ = ["FABT", "projection_l2", "projection_linf"]


def projection_linf(t: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Smallest L-inf step ``d`` (rows of ``t``, (N, D)) with ``w . (t + d) = b`` and
    ``t + d`` in [0, 1] (as close as the box allows), per row."""
    w, b = w.clone(), b.clone()
    sign = 2 * ((w * t).sum(1) - b >= 0) - 1
    w.mul_(sign.unsqueeze(1))
    b.mul_(sign)
    a = (w < 0).to(t.dtype)
    d = (a - t) * (w != 0).to(t.dtype)
    p = a - t * (2 * a - 1)
    indp = torch.argsort(p, dim=1)
    b = b - (w * t).sum(1)
    b0 = (w * d).sum(1)
    indp2 = indp.flip((1,))
    ws = w.gather(1, indp2)
    bs2 = -ws * d.gather(1, indp2)
    s = torch.cumsum(ws.abs(), dim=1)
    sb = torch.cumsum(bs2, dim=1) + b0.unsqueeze(1)
    b2 = sb[:, -1] - s[:, -1] * p.gather(1, indp[:, 0:1]).squeeze(1)
    c_l = b - b2 > 0
    c2 = (b - b0 > 0) & (~c_l)
    lb = torch.zeros(int(c2.sum()), device=t.device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    indp_, sb_, s_, p_, b_ = indp[c2], sb[c2], s[c2], p[c2], b[c2]
    for _ in range(math.ceil(math.log2(w.shape[1]))):
        mid = torch.floor((lb + ub) / 2)
        m2 = mid.long().unsqueeze(1)
        indcurr = indp_.gather(1, indp_.size(1) - 1 - m2)
        b2 = (sb_.gather(1, m2) - s_.gather(1, m2) * p_.gather(1, indcurr)).squeeze(1)
        c = b_ - b2 > 0
        lb = torch.where(c, mid, lb)
        ub = torch.where(c, ub, mid)
    lbi = lb.long()
    if c_l.any():
        lmbd = torch.clamp_min((b[c_l] - sb[c_l, -1]) / (-s[c_l, -1]), min=0).unsqueeze(-1)
        d[c_l] = (2 * a[c_l] - 1) * lmbd
    lmbd = torch.clamp_min((b[c2] - sb[c2, lbi]) / (-s[c2, lbi]), min=0).unsqueeze(-1)
    d[c2] = torch.min(lmbd, d[c2]) * a[c2] + torch.max(-lmbd, d[c2]) * (1 - a[c2])
    return d * (w != 0).to(t.dtype)


def projection_l2(t: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Smallest L2 step ``d`` (rows of ``t``, (N, D)) with ``w . (t + d) = b`` and ``t + d``
    in [0, 1] (as close as the box allows), per row."""
    w = w.clone()
    c = (w * t).sum(1) - b
    ind2 = 2 * (c >= 0) - 1
    w.mul_(ind2.unsqueeze(1))
    c.mul_(ind2)
    r = torch.max(t / w, (t - 1) / w).clamp(min=-1e12, max=1e12)
    r.masked_fill_(w.abs() < 1e-8, 1e12)
    r[r == -1e12] *= -1
    rs, indr = torch.sort(r, dim=1)
    rs2 = F.pad(rs[:, 1:], (0, 1))
    rs.masked_fill_(rs == 1e12, 0)
    rs2.masked_fill_(rs2 == 1e12, 0)
    w3s = (w ** 2).gather(1, indr)
    w5 = w3s.sum(dim=1, keepdim=True)
    ws = w5 - torch.cumsum(w3s, dim=1)
    d = -(r * w)
    d.mul_((w.abs() > 1e-8).to(t.dtype))
    s = torch.cat((-w5 * rs[:, 0:1], torch.cumsum((-rs2 + rs) * ws, dim=1) - w5 * rs[:, 0:1]), 1)
    c4 = s[:, 0] + c < 0
    c3 = (d * w).sum(dim=1) + c > 0
    c2 = ~(c4 | c3)
    lb = torch.zeros(int(c2.sum()), device=t.device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    s_, c_ = s[c2], c[c2]
    for _ in range(math.ceil(math.log2(w.shape[1]))):
        mid = torch.floor((lb + ub) / 2)
        m2 = mid.long().unsqueeze(1)
        c3 = s_.gather(1, m2).squeeze(1) + c_ > 0
        lb = torch.where(c3, mid, lb)
        ub = torch.where(c3, ub, mid)
    lbi = lb.long()
    if c4.any():
        alpha = c[c4] / w5[c4].squeeze(-1)
        d[c4] = -alpha.unsqueeze(-1) * w[c4]
    if c2.any():
        alpha = (s[c2, lbi] + c[c2]) / ws[c2, lbi] + rs[c2, lbi]
        alpha[ws[c2, lbi] == 0] = 0
        c5 = (alpha.unsqueeze(-1) > r[c2]).to(t.dtype)
        d[c2] = d[c2] * c5 - alpha.unsqueeze(-1) * w[c2] * (1 - c5)
    return d * (w.abs() > 1e-8).to(t.dtype)


class _Unit(nn.Module):
    """The model seen from the unit box: ``u`` in [0, 1] maps to ``lo + (hi - lo) u``."""

    def __init__(self, model: nn.Module, lo: float, hi: float) -> None:
        super().__init__()
        self.model, self.lo, self.width = model, lo, hi - lo

    def forward(self, u: Tensor) -> Tensor:
        out: Tensor = self.model(self.lo + self.width * u)
        return out


def _diff_grad(model: nn.Module, x: Tensor, y: Tensor, t: Tensor, grad: bool
               ) -> tuple[Tensor, Tensor, Tensor | None]:
    """(logits, ``z_t - z_y``, its gradient or None) at ``x``."""
    xg = x.detach().requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        logits = model(xg)
        u = torch.arange(x.shape[0], device=x.device)
        diff = -(logits[u, y] - logits[u, t])
        g = torch.autograd.grad(diff.sum(), xg)[0] if grad else None
    return logits.detach(), diff.detach(), g


@dataclass
class FABT(Attack, kind="minimal", role="minimal-norm", title="FAB-T", needs_eps=False):
    """FAB-T (see the module docstring)."""

    norm: Norm = "linf"
    targets: int = 9
    steps: int = 100
    restarts: int = 1
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9


    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        if eps is None and self.restarts > 1:
            raise ValueError(f"{self.name}: random restarts start within eps; pass eps")
        lo, hi = self.bounds
        unit = (lo, hi) == (0.0, 1.0)
        net = model if unit else _Unit(model, lo, hi)
        u = x if unit else (x - lo) / (hi - lo)
        e = None if eps is None else (eps if unit else eps / (hi - lo))
        with torch.no_grad():
            wrong = net(u).argmax(dim=1) != y  # already adversarial: norm 0
        best = torch.where(wrong, 0.0, math.inf).to(u.dtype)
        best_u = u.clone()
        for k in range(2, self.targets + 2):
            for r in range(max(self.restarts, 1)):
                todo = ((best > e) if e is not None else ~wrong).nonzero()[:, 0]
                if todo.numel() == 0:
                    break
                us, ys = u[todo], y[todo]
                with torch.no_grad():
                    order = net(us).sort(dim=1)[1]
                if k > order.shape[1]:
                    break
                es = None if e is None else e[todo]
                adv, found = self._single(net, us, ys, order[:, -k], es, r > 0)
                better = found < best[todo]
                best[todo[better]] = found[better]
                best_u[todo[better]] = adv[better]
        x_adv = best_u if unit else lo + (hi - lo) * best_u
        norms = best if unit else best * (hi - lo)
        success = torch.isfinite(norms) if eps is None else norms <= eps
        info: dict[str, Any] = {"steps": self.steps}
        if eps is None:
            info["minimal_norms"] = norms.cpu()
        return Found(x_adv, success, info)

    def _single(self, model: nn.Module, x0: Tensor, y: Tensor, t: Tensor, eps: Tensor | None,
                random_start: bool) -> tuple[Tensor, Tensor]:
        """One run towards target ``t``: (smallest adversarial, its norm; ``inf``: none)."""
        n = x0.shape[0]
        adv = x0.clone()
        res = torch.full((n,), math.inf, dtype=x0.dtype, device=x0.device)
        x1 = x0.clone()
        if random_start:
            assert eps is not None
            normal = self.norm == "l2"
            d = rand(tuple(x0.shape), self.generator, x0.device, normal=normal)
            d = d if normal else 2 * d - 1
            d = d / per_sample(perturbation_norms(d, self.norm), d)
            x1 = (x0 + per_sample(eps, x0) * d * 0.5).clamp(0.0, 1.0)
        idx = torch.arange(n, device=x0.device)
        _, df, dg = _diff_grad(model, x1, y, t, True)
        fused = True
        for it in range(self.steps):
            last = it == self.steps - 1
            assert dg is not None
            x1 = self._step(x1, x0[idx], df, dg)
            # fused: the forward that tells adversarial points also gives the next gradient
            # (then only the points pulled back need another); else one forward here and a
            # forward-backward for all after the pull-back, as the reference. Same result;
            # fused is cheaper while under about half of the points are adversarial.
            logits, df, dg = _diff_grad(model, x1, y[idx], t[idx], fused and not last)
            is_adv = logits.argmax(dim=1) != y[idx]
            if bool(is_adv.any()):
                ia = is_adv.nonzero()[:, 0]
                xa = x0[idx[ia]]
                norm = perturbation_norms(x1[ia] - xa, self.norm)
                smaller = norm < res[idx[ia]]
                gi = idx[ia[smaller]]
                adv[gi] = x1[ia[smaller]]
                res[gi] = norm[smaller]
                x1[ia] = xa + (x1[ia] - xa) * self.beta
                if fused and not last:
                    _, dfa, dga = _diff_grad(model, x1[ia], y[idx[ia]], t[idx[ia]], True)
                    assert dg is not None and dga is not None
                    df[ia], dg[ia] = dfa, dga
            if not fused and not last:
                _, df, dg = _diff_grad(model, x1, y[idx], t[idx], True)
            fused = float(is_adv.float().mean()) < 0.5
            if eps is not None and not last:
                keep = res[idx] > eps[idx]
                if not bool(keep.all()):
                    idx, x1, df = idx[keep], x1[keep], df[keep]
                    assert dg is not None
                    dg = dg[keep]
                    if idx.numel() == 0:
                        break
        return adv, res

    def _step(self, x1: Tensor, x0: Tensor, df: Tensor, dg: Tensor) -> Tensor:
        """Project the current point and the clean input onto the linearised boundary and
        move to their overshot convex combination."""
        m = x1.shape[0]
        w = dg.reshape(m, -1)
        b = -df + (w * x1.reshape(m, -1)).sum(dim=1)
        proj = projection_linf if self.norm == "linf" else projection_l2
        d3 = proj(torch.cat((x1.reshape(m, -1), x0.reshape(m, -1)), 0), torch.cat((w, w), 0),
                  torch.cat((b, b), 0))
        d1, d2 = d3[:m].reshape(x1.shape), d3[m:].reshape(x1.shape)
        a0 = perturbation_norms(d3, self.norm).clamp_min(1e-8)
        a1, a2 = per_sample(a0[:m], x1), per_sample(a0[m:], x1)
        alpha = (a1 / (a1 + a2)).clamp(0.0, self.alpha_max)
        return ((x1 + self.eta * d1) * (1 - alpha) + (x0 + d2 * self.eta) * alpha).clamp(0.0, 1.0)
