"""The Square attack in L-inf (Andriushchenko et al. 2020): score-based, no gradients."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from audit.robustness.base import Attack, Found
from audit.robustness.ops import Norm, margin_loss, per_sample, rand

__all__ = ["Square"]


@dataclass
class Square(Attack, title="Square", kind="black-box", role="black-box", norms=("linf",)):
    """Score-based L-inf attack with the margin loss and the reference square-size schedule.

    Starts from vertical stripes of +-eps, then at each query changes one random square
    window per sample to a random +-2 eps shift (projected to the ball) and keeps it when the
    margin loss ``z_y - max_{i!=y} z_i`` decreases. The window covers a share ``p`` of the
    input, ``p_init`` halved on the reference schedule (rescaled to ``queries``). Non-image
    inputs (N, D) are treated as one row of D values (windows become segments).
    """

    norm: Norm = "linf"
    queries: int = 1000
    p_init: float = 0.8

    def _p(self, it: int) -> float:
        it = int(it / self.queries * 10000)
        for limit, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
                           (4000, 64), (6000, 128), (8000, 256)):
            if it <= limit:
                return self.p_init / div
        return self.p_init / 512

    def _size(self, it: int, h: int, w: int) -> tuple[int, int]:
        """Height and width of the window at query ``it`` (a segment for one-row inputs)."""
        p = self._p(it)
        if h == 1:
            return 1, min(max(round(p * w), 1), w)
        s = min(max(round(math.sqrt(p * h * w)), 1), h, w)
        return s, s

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        assert eps is not None
        shape = x.shape
        img = x.reshape(shape[0], 1, 1, -1) if x.ndim != 4 else x
        n, c, h, w = img.shape
        ev = per_sample(eps, img)
        stripes = torch.sign(2 * rand((n, c, 1, w), self.generator, x.device) - 1)
        best = torch.minimum(torch.maximum(img + ev * stripes, img - ev), img + ev)
        best = best.clamp(*self.bounds)
        with torch.no_grad():
            margin = -margin_loss(model(best.reshape(shape)), y)
        for it in range(self.queries):
            act = (margin > 0).nonzero()[:, 0]
            if act.numel() == 0:
                break
            self._query(model, img, y, eps, best, margin, act, self._size(it, h, w), shape[1:])
        x_adv = best.reshape(shape)
        success = margin <= 0
        # margin <= 0 counts ties as success; confirm with argmax to match the other attacks
        with torch.no_grad():
            success &= model(x_adv).argmax(dim=1) != y
        return Found(x_adv, success, {"queries": self.queries})

    def _query(self, model: nn.Module, img: Tensor, y: Tensor, eps: Tensor, best: Tensor,
               margin: Tensor, act: Tensor, size: tuple[int, int], sample: torch.Size) -> None:
        """One query per active sample: a random window shifted by +-2 eps, kept where it
        lowers the margin (``best`` and ``margin`` are updated in place)."""
        gen, dev = self.generator, img.device
        _, c, h, w = img.shape
        sh, sw = size
        m = act.numel()
        rows = torch.arange(h, device=dev)[None, :, None]
        cols = torch.arange(w, device=dev)[None, None, :]
        vh = (torch.rand(m, generator=gen) * (h - sh + 1)).long().to(dev)
        vw = (torch.rand(m, generator=gen) * (w - sw + 1)).long().to(dev)
        mask = ((rows >= vh[:, None, None]) & (rows < (vh + sh)[:, None, None])
                & (cols >= vw[:, None, None]) & (cols < (vw + sw)[:, None, None]))
        xa, ea = img[act], per_sample(eps[act], img[act])
        shift = 2 * ea * torch.sign(2 * rand((m, c, 1, 1), gen, dev) - 1)
        cand = best[act] + mask[:, None].to(img.dtype) * shift
        cand = torch.minimum(torch.maximum(cand, xa - ea), xa + ea).clamp(*self.bounds)
        with torch.no_grad():
            new_margin = -margin_loss(model(cand.reshape(m, *sample)), y[act])
        better = new_margin < margin[act]
        margin[act] = torch.where(better, new_margin, margin[act])
        best[act[better]] = cand[better]
