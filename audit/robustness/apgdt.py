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

import torch
from torch import Tensor, nn

from audit.robustness.apgd import APGDRun, sphere_start
from audit.robustness.base import Attack, Found
from audit.robustness.ops import Norm

__all__ = ["APGDT", "dlr_targeted_loss"]


def dlr_targeted_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR loss (Croce & Hein 2020): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``
    with ``z_pi`` the logits sorted decreasingly; needs at least 4 classes."""
    z_sorted = logits.sort(dim=1)[0]
    z_y = logits.gather(1, y[:, None])[:, 0]
    z_t = logits.gather(1, target[:, None])[:, 0]
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + 1e-12)


def _targeted(logits: Tensor, s: dict[str, Tensor]) -> Tensor:
    return dlr_targeted_loss(logits, s["y"], s["t"])


@dataclass
class APGDT(Attack, kind="white-box", role="iterative", title="APGD-T"):
    """APGD-T (see the module docstring): ``targets`` target classes, ``restarts`` runs of
    ``steps`` iterations each. ``info``: ``target`` (the class of the run that broke each
    sample, -1 if none) and ``success_step``."""

    norm: Norm = "linf"
    targets: int = 9
    steps: int = 100
    restarts: int = 1
    rho: float = 0.75

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
        target = torch.full((n,), -1, dtype=torch.long, device=x.device)
        step_at = torch.full((n,), -1, dtype=torch.long, device=x.device)
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
                start = sphere_start(xs, es, self.norm, self.bounds, self.generator)
                run = APGDRun(model, xs, ys, es, start, _targeted, extra={"t": t},
                              zero_history=True).descend(self.steps, self.rho, self.norm,
                                                         self.bounds)
                x_adv[todo] = run.out
                success[todo] = run.ok
                hit = todo[run.ok]
                target[hit] = t[run.ok]
                step_at[hit] = run.ok_step[run.ok]
        return Found(x_adv, success, {"target": target, "success_step": step_at,
                                      "steps": self.steps})
