"""AutoAttack's Square attack (Andriushchenko et al. 2020), L-inf and L2, as its reference code.

Score-based: no gradients, only the margin ``z_y - max_{i!=y} z_i`` of the model's logits.
The sampling is the AutoAttack reference's (``SquareAttack``, margin loss, one restart,
``p_init`` 0.8, the square-size schedule on the raw query count), drawn from ``generator``
in the reference's order, so a run seeded like pyautoattack draws the same squares:

- L-inf: start from vertical stripes of +-eps; at each query one square window, the same for
  every sample of the batch, gets a random +-2 eps shift per channel (projected onto the ball
  and the range), kept per sample where the margin drops or the point is misclassified;
- L2: start from a grid of 5x5 tiles of the reference's ``eta`` profile with random signs,
  on the sphere of radius eps; at each query the mass of a second random window moves into
  a first one with a new random-sign ``eta`` profile, the whole perturbation renormalised
  to eps.

Inputs are (N, C, H, W) images (others are seen as (N, 1, 1, D) rows; the L2 version needs
images of at least 5 x 5). The ``margin <= 0`` points are checked with ``argmax``.
This module is separate from :mod:`audit.robustness.square` (the suite's L-inf Square with
per-sample windows and a schedule rescaled to its budget), whose numbers stay as they were.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from audit.robustness.base import Attack, Found
from audit.robustness.ops import Norm, margin_loss, per_sample

__all__ = ["AASquare", "p_selection"]

_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
             (6000, 128), (8000, 256))


def p_selection(p_init: float, it: int) -> float:
    """The reference's share of the input covered by the square at query ``it``."""
    for limit, div in _SCHEDULE:
        if it <= limit:
            return p_init / div
    return p_init / 512


def _eta_rectangles(x: int, y: int) -> Tensor:
    delta = torch.zeros(x, y)
    xc, yc = x // 2 + 1, y // 2 + 1
    c0, c1 = xc - 1, yc - 1
    for k in range(max(xc, yc)):
        delta[max(c0, 0):min(c0 + 2 * k + 1, x), max(0, c1):min(c1 + 2 * k + 1, y)] += \
            1.0 / (k + 1) ** 2
        c0, c1 = c0 - 1, c1 - 1
    return delta / (delta ** 2).sum().sqrt()


def _eta(s: int) -> Tensor:
    """The reference's L2 profile of an s x s window (before its random transpose)."""
    delta = torch.zeros(s, s)
    delta[: s // 2] = _eta_rectangles(s // 2, s)
    delta[s // 2:] = -1.0 * _eta_rectangles(s - s // 2, s)
    return delta / (delta ** 2).sum().sqrt()


def _margin(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return -margin_loss(model(x), y)


@dataclass
class AASquare(Attack, kind="black-box", role="black-box", title="Square"):
    """AutoAttack's Square (see the module docstring), ``queries`` per sample."""

    norm: Norm = "linf"
    queries: int = 5000
    p_init: float = 0.8


    @staticmethod
    def input_reason(shape: tuple[int, ...], norm: Norm) -> str | None:
        """Why the attack cannot run on samples of ``shape`` (without the batch), or None."""
        if norm == "l2" and (len(shape) != 3 or min(shape[1:]) < 5):
            return "the L2 Square attack needs images of at least 5 x 5"
        return None

    def _rand(self, *shape: int) -> Tensor:
        return torch.rand(shape, generator=self.generator)

    def _int(self, high: int) -> int:
        """The reference's ``random_int(0, high)``: one uniform draw, truncated."""
        return int((high * self._rand(1)).long())

    def _sign(self, *shape: int, device: torch.device) -> Tensor:
        return torch.sign(2 * self._rand(*shape) - 1).to(device)

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        assert eps is not None
        why = self.input_reason(tuple(x.shape[1:]), self.norm)
        if why:
            raise ValueError(f"{self.name}: {why}")
        shape = x.shape
        img = x if x.ndim == 4 else x.reshape(shape[0], 1, 1, -1)
        flat = _Flat(model, shape) if x.ndim != 4 else model
        search = self._linf if self.norm == "linf" else self._l2
        best = search(flat, img, y, per_sample(eps, img))
        x_adv = best.reshape(shape)
        with torch.no_grad():  # margin <= 0 counts ties; success is a changed argmax
            success = model(x_adv).argmax(dim=1) != y
        return Found(x_adv, success, {"queries": self.queries})

    def _search(self, model: nn.Module, x: Tensor, y: Tensor, e: Tensor, best: Tensor,
                candidate: Callable[[int, Tensor, Tensor, Tensor], Tensor]) -> Tensor:
        """The reference's loop from ``best``: at each query, ``candidate(it, x, best, eps)``
        of the samples still robust, kept where it lowers the margin (or fools the model)."""
        margin = _margin(model, best, y)
        if bool((margin < 0).all()):
            return best
        act = (margin > 0).nonzero()[:, 0]
        xa, ba, ya, ea, ma = x[act], best[act], y[act], e[act], margin[act]
        for it in range(self.queries):
            cand = candidate(it, xa, ba, ea)
            new = _margin(model, cand, ya)
            better = (new < ma) | (new <= 0)
            ma = torch.where(better, new, ma)
            ba = torch.where(per_sample(better, ba), cand, ba)
            act, xa, ba, ya, ea, ma = self._compact(best, act, xa, ba, ya, ea, ma)
            if act.numel() == 0:
                break
        best[act] = ba
        return best

    def _linf(self, model: nn.Module, x: Tensor, y: Tensor, e: Tensor) -> Tensor:
        n, c, h, w = x.shape
        lo, hi = self.bounds

        def candidate(it: int, xa: Tensor, ba: Tensor, ea: Tensor) -> Tensor:
            s = min(max(round(math.sqrt(p_selection(self.p_init, it) * (c * h * w) / c)), 1),
                    h, w)
            vh, vw = self._int(h - s), self._int(w - s)
            shift = 2 * self._sign(c, 1, 1, device=x.device)
            win = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
            cand = ba.clone()
            xw = xa[win]
            cand[win] = torch.minimum(torch.maximum(ba[win] + shift * ea, xw - ea),
                                      xw + ea).clamp(lo, hi)
            return cand

        best = (x + e * self._sign(n, c, 1, w, device=x.device)).clamp(lo, hi)
        return self._search(model, x, y, e, best, candidate)

    def _l2(self, model: nn.Module, x: Tensor, y: Tensor, e: Tensor) -> Tensor:
        n, c, h, w = x.shape
        dev = x.device
        delta = torch.zeros_like(x)
        s = h // 5
        vh = (h - s * 5) // 2
        for _ in range(h // s):
            vw = (h - s * 5) // 2
            for _ in range(w // s):
                prof = self._profile(s).to(dev)
                delta[:, :, vh:vh + s, vw:vw + s] += prof * self._sign(n, c, 1, 1, device=dev)
                vw += s
            vh += s

        def candidate(it: int, xa: Tensor, ba: Tensor, ea: Tensor) -> Tensor:
            s = max(round(math.sqrt(p_selection(self.p_init, it) * (c * h * w) / c)), 3)
            s = min(s + 1 if s % 2 == 0 else s, h, w)
            vh, vw = self._int(h - s), self._int(w - s)
            vh2, vw2 = self._int(h - s), self._int(w - s)
            return self._l2_candidate(xa, ba, ea, s, (vh, vw), (vh2, vw2))

        best = (x + _unit(delta) * e).clamp(*self.bounds)
        return self._search(model, x, y, e, best, candidate)

    def _l2_candidate(self, x: Tensor, best: Tensor, e: Tensor, s: int,
                      w1: tuple[int, int], w2: tuple[int, int]) -> Tensor:
        """Move the perturbation's mass of window 2 into window 1 with a new profile."""
        m, c = x.shape[:2]
        lo, hi = self.bounds
        delta = best - x
        win1 = (slice(None), slice(None), slice(w1[0], w1[0] + s), slice(w1[1], w1[1] + s))
        win2 = (slice(None), slice(None), slice(w2[0], w2[0] + s), slice(w2[1], w2[1] + s))
        mask = torch.zeros_like(x[:1, :1])
        mask[win1] = 1.0
        mask[win2] = 1.0
        norm_w1 = (delta[win1] ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()
        norm_img = (delta ** 2).flatten(1).sum(-1).sqrt().view(-1, 1, 1, 1)
        norm_ws = ((delta * mask) ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()
        prof = self._profile(s).to(x.device)
        new = prof * self._sign(m, c, 1, 1, device=x.device)
        new = new + delta[win1] / (1e-12 + norm_w1)
        room = torch.clamp(e ** 2 - norm_img ** 2, min=0) / c + norm_ws ** 2
        new = new / (1e-12 + (new ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()) * room.sqrt()
        delta[win2] = 0.0
        delta[win1] = new
        return (x + _unit(delta) * e).clamp(lo, hi)

    def _profile(self, s: int) -> Tensor:
        """The ``eta`` profile, transposed with probability 1/2 (one draw, as the reference)."""
        prof = _eta(s)
        if bool(self._rand(1) > 0.5):
            prof = prof.permute(1, 0)
        return prof

    @staticmethod
    def _compact(best: Tensor, act: Tensor, xa: Tensor, ba: Tensor, ya: Tensor, ea: Tensor,
                 ma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Write the points that reached margin <= 0 into ``best`` and stop querying them."""
        done = ma <= 0
        if not bool(done.any()):
            return act, xa, ba, ya, ea, ma
        best[act[done]] = ba[done]
        keep = ~done
        return act[keep], xa[keep], ba[keep], ya[keep], ea[keep], ma[keep]


def _unit(delta: Tensor) -> Tensor:
    """``delta`` scaled to L2 length 1 per sample (the reference's ``normalize``)."""
    t = (delta ** 2).flatten(1).sum(-1).sqrt()
    return delta / (t.view(-1, *([1] * (delta.ndim - 1))) + 1e-12)


class _Flat(nn.Module):
    """A model of (N, ...) inputs seen from (N, 1, 1, D) rows."""

    def __init__(self, model: nn.Module, shape: torch.Size) -> None:
        super().__init__()
        self.model, self.sample = model, tuple(shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.model(x.reshape(x.shape[0], *self.sample))
        return out
