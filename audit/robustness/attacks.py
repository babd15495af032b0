"""Adversarial attacks behind one contract: ``attack(model, x, y, *, eps) -> AttackResult``.

The public face of the attack modules (import from here):

- the contract, :class:`Attack` (its final ``__call__`` validates eps, counts evaluations,
  times the run and decides success; a subclass writes ``run()``), :class:`AttackResult`,
  :class:`CountingModel`, :func:`run_batched` (``audit.robustness.base``);
- our own attacks, pure PyTorch and batched: :class:`FGSM` and :class:`PGD` (``pgd``),
  :class:`APGD` (``apgd``), :class:`Square` (``square``), :class:`MIFGSM` (``mifgsm``);
  AutoAttack's :class:`APGDT` (``apgdt``), :class:`FABT` (``fab``) and :class:`AASquare`
  (``square_aa``), which the standard protocol runs (``autoattack``);
- the losses and the geometry they share (``ops``).

Conventions shared by every attack:

- ``model`` maps inputs in the model's own input space (``bounds``, the card's value range)
  to logits. Attacks never change its train/eval mode, never touch parameter gradients
  (they differentiate with ``torch.autograd.grad`` with respect to the input only) and keep
  no state between calls, so they can run inside a training loop (PGD-AT, TRADES, FGSM-RS)::

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

from audit.robustness.apgd import APGD, apgd_checkpoints
from audit.robustness.apgdt import APGDT
from audit.robustness.base import (
    ROLES,
    Attack,
    AttackKind,
    AttackResult,
    CountingModel,
    Found,
    Role,
    run_batched,
)
from audit.robustness.fab import FABT
from audit.robustness.mifgsm import MIFGSM
from audit.robustness.ops import (
    LOSSES,
    LossFn,
    Norm,
    ce_loss,
    dlr_loss,
    margin_loss,
    perturbation_norms,
    project,
    random_start,
)
from audit.robustness.pgd import FGSM, PGD
from audit.robustness.square import Square
from audit.robustness.square_aa import AASquare

__all__ = [
    "APGD", "APGDT", "FABT", "FGSM", "LOSSES", "MIFGSM", "PGD", "ROLES", "AASquare", "Attack",
    "AttackKind", "AttackResult", "CountingModel", "Found", "LossFn", "Norm", "Role", "Square",
    "apgd_checkpoints", "ce_loss", "dlr_loss", "margin_loss", "perturbation_norms", "project",
    "random_start", "run_batched",
]
