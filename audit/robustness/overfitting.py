"""Catastrophic overfitting of fast (FGSM) adversarial training, detected while it trains.

Catastrophic overfitting (Wong et al. 2020; Andriushchenko & Flammarion 2020) is the model
becoming robust to the single-step training attack but not to multi-step PGD: PGD accuracy
collapses within a few batches while FGSM accuracy soars. :class:`OverfittingGuard` probes
both a few times per epoch on fixed training samples and, on a collapse, restores the last
good weights and answers with the run's ``co_action``: fall back to PGD training, stop, or
only warn.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from audit.robustness.adversarial import AdversarialConfig
from audit.robustness.attacks import FGSM
from audit.robustness.validation import robust_accuracies, validation_pgd
from audit.training.loss import BatchContext
from audit.training.state import cpu_state, to_cpu

if TYPE_CHECKING:
    from audit.training.trainer import Trainer

__all__ = ["CatastrophicOverfittingWarning", "CoMonitor", "OverfittingGuard"]


class CatastrophicOverfittingWarning(UserWarning):
    """Robust accuracy collapsed during fast (FGSM) adversarial training."""


@dataclass
class CoMonitor:
    """Detects catastrophic overfitting from PGD and FGSM accuracies on a fixed probe.

    ``update(pgd, fgsm)`` returns True when the PGD accuracy fell more than ``drop`` below the
    best value seen so far *and* the FGSM accuracy is more than ``drop`` above it (an unstable
    model whose accuracies fall together is not flagged), once the best PGD accuracy has
    exceeded ``floor`` (what a constant classifier scores on the probe: the share of its most
    common class; the flailing of an untrained model is not a collapse). Accuracies are
    measured at the full epsilon, so the warm-up does not trigger it.
    """

    drop: float = 0.2
    floor: float = 0.0
    best: float = -1.0
    history: list[list[float]] = field(default_factory=list)

    def update(self, pgd: float, fgsm: float) -> bool:
        self.history.append([pgd, fgsm])
        if pgd > self.best:
            self.best = pgd
            return False
        return (self.best > self.floor and self.best - pgd > self.drop
                and fgsm - pgd > self.drop)

    def state_dict(self) -> dict[str, Any]:
        return {"drop": self.drop, "floor": self.floor, "best": self.best,
                "history": [list(h) for h in self.history]}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.drop, self.floor, self.best = float(d["drop"]), float(d["floor"]), float(d["best"])
        self.history = [list(h) for h in d["history"]]


class OverfittingGuard:
    """Probes PGD and FGSM accuracy on ``probe`` (fixed training rows) ``co_checks`` times per
    epoch, keeps a snapshot of the last good weights and optimizer state, and on a collapse
    restores it, warns, and returns the action the loss must take (``co_action``)."""

    def __init__(self, config: AdversarialConfig, probe: tuple[Tensor, Tensor]) -> None:
        self.config = config
        self.probe = probe
        self.monitor = CoMonitor(drop=config.co_drop)
        n = len(probe[1])
        counts = torch.bincount(probe[1]) if n else torch.zeros(1)
        self.monitor.floor = float(counts.max()) / max(n, 1)
        self.snapshot: dict[str, Any] | None = None

    def due(self, ctx: BatchContext) -> bool:
        """Whether the batch just trained is one of the epoch's probe points."""
        k = self.config.co_checks
        return ctx.batch + 1 in {((i + 1) * ctx.batches) // (k + 1) for i in range(k)}

    def measure(self, trainer: Trainer, ctx: BatchContext) -> tuple[float, float]:
        """(PGD, FGSM) accuracy on the probe, from random starts fixed per probe point."""
        c = self.config
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + ctx.epoch * 1009 + ctx.batch)
        fgsm = FGSM(norm=c.norm, rel_step=1.25 if c.rel_step is None else c.rel_step,
                    random_start=False, bounds=c.bounds)
        _, (pgd_acc, fgsm_acc) = robust_accuracies(
            trainer.module, self.probe, [validation_pgd(c, max(c.eval_steps // 2, 1)), fgsm],
            c, gen, trainer.dist)
        return pgd_acc, fgsm_acc

    def check(self, trainer: Trainer, ctx: BatchContext) -> str | None:
        """Probe; on a collapse restore the last good state, report and warn, and return
        ``co_action`` (``"warn"`` changes nothing); otherwise snapshot and return None."""
        pgd, fgsm = self.measure(trainer, ctx)
        if not self.monitor.update(pgd, fgsm):
            self.snapshot = {"model": cpu_state(trainer.module),
                             "optimizer": to_cpu(trainer.optimizer.state_dict())}
            return None
        action = self.config.co_action
        msg = (f"catastrophic overfitting in epoch {ctx.epoch + 1}: PGD accuracy on "
               f"{len(self.probe[0])} training samples fell from {self.monitor.best:.1%} to "
               f"{pgd:.1%} while FGSM accuracy is {fgsm:.1%}")
        if action == "warn":
            msg += "; continuing (co_action=warn)"
        else:
            if self.snapshot is not None:
                trainer.module.load_state_dict(self.snapshot["model"])
                trainer.optimizer.load_state_dict(self.snapshot["optimizer"])
            msg += ("; restored the last good weights and switched to PGD training"
                    if action == "fallback" else
                    "; restored the last good weights and stopped (co_action=stop)")
        trainer.report(msg)
        if trainer.dist.is_main:
            warnings.warn(msg, CatastrophicOverfittingWarning, stacklevel=2)
        return action

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor.state_dict(), "snapshot": self.snapshot}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state["monitor"])
        self.snapshot = state["snapshot"]
