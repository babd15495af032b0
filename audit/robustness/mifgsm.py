"""MI-FGSM, the momentum iterative fast gradient sign method (Dong et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from audit.robustness.base import Attack, Found
from audit.robustness.ops import LossFn, Norm, ascent, logits_grad, loss_fn, per_sample, project

__all__ = ["MIFGSM"]


@dataclass
class MIFGSM(Attack, title="MI-FGSM", kind="white-box", role="iterative"):
    """``steps`` steps of ``eps / steps`` from the clean input along the sign (L-inf) or the
    direction (L2) of a momentum ``g <- decay * g + grad / ||grad||_1``, projected onto the
    ball. The momentum keeps the direction stable across steps, so it escapes poor local
    maxima of the loss better than PGD. A sample stops once misclassified."""

    norm: Norm = "linf"
    steps: int = 10
    decay: float = 1.0
    loss: str | LossFn = "ce"

    def run(self, model: nn.Module, x: Tensor, y: Tensor, eps: Tensor | None,
            x_init: Tensor | None) -> Found:
        assert eps is not None
        fn = loss_fn(self.loss)
        step = eps / max(self.steps, 1)
        cur, momentum, out = x.clone(), torch.zeros_like(x), x.clone()
        done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for t in range(self.steps + 1):
            act = (~done).nonzero()[:, 0]
            if act.numel() == 0:
                break
            if t == self.steps:  # the last point only needs a prediction
                with torch.no_grad():
                    logits = model(cur[act])
            else:
                logits, _, grad = logits_grad(model, cur[act], y[act], fn)
            wrong = logits.argmax(dim=1) != y[act]
            out[act[wrong]], done[act[wrong]] = cur[act[wrong]], True
            if t == self.steps:
                break
            a, g = act[~wrong], grad[~wrong]
            l1 = per_sample(g.flatten(1).abs().sum(dim=1), g)
            momentum[a] = self.decay * momentum[a] + g / (l1 + 1e-12)
            cur[a] = project(cur[a] + per_sample(step[a], g) * ascent(momentum[a], self.norm),
                             x[a], eps[a], self.norm, self.bounds)
        out[~done] = cur[~done]
        return Found(out, done, {"steps": self.steps})
