"""AutoAttack's standard protocol (Croce & Hein 2020): the ensemble and budgets RobustBench
and most papers report, run with this package's attacks.

``version='standard'`` of the reference, for L-inf and L2: APGD-CE (100 iterations, one run),
APGD-T (the 9 most likely other classes as targets, 100 iterations each, one run per
target), FAB-T (9 targets, 100 iterations), Square (5000 queries). The attacks run in that
order, each only on the samples every earlier one left robust (clean-misclassified samples
are not robust to begin with), in batches of 250 (the reference's default), and every attack
restarts its random generator from ``seed`` on every batch, as the reference does. The
attacks draw in the reference's order, so the same model, inputs and seed give the same
robust accuracy as ``pyautoattack``'s ``AutoAttack(model, norm=..., eps=...,
version='standard', seed=seed).run_standard_evaluation(x, y)`` (``bench/bench_autoattack.py``
measures both). A sample counts as broken when the model misclassifies the attack's point,
checked again with a forward pass of its own.

With fewer than 10 classes the targets are all the other classes (``classes - 1``, as the
reference's ``n_target_classes`` would have to be set); with fewer than 4, APGD-T's targeted
DLR loss is undefined and APGD-T is left out (the reference fails there), and so is the L2
Square on inputs smaller than 5 x 5 images; both are listed in ``skipped``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from audit.budget import Budget
from audit.distributed import current
from audit.robustness.apgd import APGD
from audit.robustness.apgdt import APGDT
from audit.robustness.base import Attack
from audit.robustness.fab import FABT
from audit.robustness.ops import Norm
from audit.robustness.square_aa import AASquare

__all__ = ["REFERENCE_BATCH", "AutoAttackResult", "ProtocolStage", "autoattack",
           "run_protocol", "standard_attacks"]

REFERENCE_BATCH = 250
"""The reference's default batch size; the generators restart from the seed per batch."""


@dataclass
class ProtocolStage:
    """One attack of the protocol: how many samples it attacked (those still robust) and
    broke, its time, per-sample forward passes (including the re-check) and backward passes."""

    attack: str
    kind: str
    attacked: int = 0
    broken: int = 0
    time: float = 0.0
    evaluations: int = 0
    gradients: int = 0
    unfinished: int = 0  # samples the attack did not finish (stopped by its budget)
    stopped: str = ""  # the budget that stopped it: evaluations or time


@dataclass
class AutoAttackResult:
    """The protocol's outcome at one norm and eps on ``samples`` samples: ``robust`` per
    sample (False for clean-misclassified ones), the stages in run order, what was left out,
    the seed, the total time and forward passes. ``x_adv`` (with ``keep_adv``): each sample's
    breaking point, the clean input where none."""

    norm: Norm
    eps: float
    seed: int
    samples: int
    clean_correct: int
    robust: np.ndarray
    stages: list[ProtocolStage] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    time: float = 0.0
    evaluations: int = 0
    x_adv: Tensor | None = None

    @property
    def robust_accuracy(self) -> float:
        """Share of all samples still robust after every stage."""
        return float(self.robust.mean()) if self.samples else float("nan")


def standard_attacks(norm: Norm, *, num_classes: int, sample_shape: tuple[int, ...],
                     bounds: tuple[float, float] = (0.0, 1.0),
                     generator: torch.Generator | None = None,
                     budget: Callable[[], Budget] | None = None
                     ) -> tuple[list[Attack], list[tuple[str, str]]]:
    """The standard ensemble for ``norm``, sharing ``generator``, and the attacks left out
    with their reasons (see the module docstring); ``budget`` gives each attack its own."""
    attacks, skipped = _standard(norm, num_classes, sample_shape, bounds, generator)
    for a in attacks:
        a.budget = budget() if budget is not None else None
    return attacks, skipped


def _standard(norm: Norm, num_classes: int, sample_shape: tuple[int, ...],
              bounds: tuple[float, float], generator: torch.Generator | None
              ) -> tuple[list[Attack], list[tuple[str, str]]]:
    targets = min(9, num_classes - 1)
    attacks: list[Attack] = [APGD(norm=norm, loss="ce", steps=100, restarts=1, rho=0.75,
                                  bounds=bounds, generator=generator, name="APGD-CE")]
    skipped: list[tuple[str, str]] = []
    apgdt = APGDT(norm=norm, targets=targets, steps=100, restarts=1, rho=0.75, bounds=bounds,
                  generator=generator)
    why = apgdt.applies(num_classes)
    if why:
        skipped.append((f"{apgdt.name} (AutoAttack)", why))
    else:
        attacks.append(apgdt)
    attacks.append(FABT(norm=norm, targets=targets, steps=100, restarts=1, alpha_max=0.1,
                        eta=1.05, beta=0.9, bounds=bounds, generator=generator))
    why = AASquare.input_reason(sample_shape, norm)
    if why:
        skipped.append(("Square (AutoAttack)", why))
    else:
        attacks.append(AASquare(norm=norm, queries=5000, p_init=0.8, bounds=bounds,
                                generator=generator))
    return attacks, skipped


def _protocol_batch(attack: Attack, model: nn.Module, x: Tensor, y: Tensor, todo: Tensor,
                    eps: float, seed: int, generator: torch.Generator | None,
                    dev: torch.device, keep_adv: bool, _: int, sl: slice
                    ) -> tuple[Tensor, Tensor | None, ProtocolStage]:
    """One batch of one attack of the protocol: the samples it broke, their adversarials
    (``keep_adv``) and its counts (as a stage's)."""
    b = todo[sl]
    if generator is not None:
        generator.manual_seed(seed)
    xb, yb = x[b].to(dev), y[b].to(dev)
    r = attack(model, xb, yb, eps=eps)
    with torch.no_grad():
        broken = (r.success & (model(r.x_adv).argmax(dim=1) != yb)).cpu()
    adv = r.x_adv[broken.to(r.x_adv.device)].detach().cpu() if keep_adv else None
    counts = ProtocolStage(attack.name, attack.kind, stopped=r.stopped,
                           unfinished=0 if r.finished is None else int((~r.finished).sum()),
                           evaluations=r.evaluations + int(b.numel()), gradients=r.gradients)
    return b[broken], adv, counts


def run_protocol(model: nn.Module, x: Tensor, y: Tensor, attacks: list[Attack], eps: float, *,
                 norm: Norm, seed: int, generator: torch.Generator | None = None,
                 batch_size: int = REFERENCE_BATCH, device: torch.device | None = None,
                 keep_adv: bool = False) -> AutoAttackResult:
    """Run ``attacks`` one after the other, each on the samples still robust, in batches of
    ``batch_size`` on ``device``; ``generator`` (the one the attacks draw from) restarts from
    ``seed`` before every batch of every attack."""
    t0 = time.perf_counter()
    dev = device or x.device
    n = int(x.shape[0])
    world = current()  # each rank of a distributed audit attacks a block of the batches

    def clean(_: int, sl: slice) -> Tensor:
        with torch.no_grad():
            return model(x[sl].to(dev)).argmax(dim=1).cpu()

    preds = world.map(clean, n, batch_size)
    robust = torch.cat(preds) == y.cpu() if preds else torch.zeros(n, dtype=torch.bool)
    out = AutoAttackResult(norm=norm, eps=float(eps), seed=seed, samples=n,
                           clean_correct=int(robust.sum()), robust=robust.numpy(),
                           evaluations=n, x_adv=x.detach().cpu().clone() if keep_adv else None)
    for attack in attacks:
        stage = ProtocolStage(attack.name, attack.kind)
        t = time.perf_counter()
        todo = robust.nonzero()[:, 0]
        stage.attacked = int(todo.numel())
        for b, adv, r in world.map(partial(_protocol_batch, attack, model, x, y, todo, eps,
                                           seed, generator, dev, keep_adv),
                                   stage.attacked, batch_size):
            robust[b] = False
            if out.x_adv is not None and adv is not None:
                out.x_adv[b] = adv
            stage.broken += int(b.numel())
            stage.unfinished += r.unfinished
            stage.stopped = stage.stopped or r.stopped
            stage.evaluations += r.evaluations
            stage.gradients += r.gradients
        stage.time = time.perf_counter() - t
        out.evaluations += stage.evaluations
        out.stages.append(stage)
    out.robust = robust.numpy()
    out.time = time.perf_counter() - t0
    return out


def autoattack(model: nn.Module, x: Tensor, y: Tensor, *, norm: Norm, eps: float,
               seed: int = 0, bounds: tuple[float, float] = (0.0, 1.0),
               num_classes: int | None = None, batch_size: int = REFERENCE_BATCH,
               device: torch.device | None = None, keep_adv: bool = False,
               budget: Callable[[], Budget] | None = None) -> AutoAttackResult:
    """AutoAttack's standard protocol on ``x`` (inputs in ``bounds``, the model's own input
    space) with labels ``y`` at ``eps`` in ``norm``; see the module docstring::

        res = autoattack(model, x, y, norm="linf", eps=8 / 255, seed=0)
        res.robust_accuracy, [(s.attack, s.broken) for s in res.stages]
    """
    if num_classes is None:
        with torch.no_grad():
            num_classes = int(model(x[:1].to(device or x.device)).shape[1])
    generator = torch.Generator().manual_seed(seed)
    attacks, skipped = standard_attacks(norm, num_classes=num_classes,
                                        sample_shape=tuple(x.shape[1:]), bounds=bounds,
                                        generator=generator, budget=budget)
    res = run_protocol(model, x, y, attacks, eps, norm=norm, seed=seed, generator=generator,
                       batch_size=batch_size, device=device, keep_adv=keep_adv)
    res.skipped = skipped
    return res
