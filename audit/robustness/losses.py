"""Adversarial training as a :class:`~audit.training.BatchLoss` of the shared trainer.

:class:`AdversarialLoss` trains on PGD (Madry), TRADES or fast FGSM-RS inputs (see
:mod:`audit.robustness.adversarial`), with a linear epsilon warm-up and, for the fast method,
the catastrophic-overfitting guard (:mod:`audit.robustness.overfitting`).
:func:`adversarial_trainer` puts it in a :class:`~audit.training.Trainer` with the per-epoch
robust validation that keeps the best-robust weights::

    trainer = adversarial_trainer(model, AdversarialConfig(method="trades", eps=0.1, epochs=20),
                                  train=(x_train, y_train), val=(x_val, y_val),
                                  checkpoint="runs/ckpt.pt")
    trainer.fit(resume=True)      # continues from runs/ckpt.pt if it exists
    model.load_state_dict(trainer.best_state)

The random starts of a global batch are drawn once from the loss's generator and sliced per
rank, so a distributed run attacks from the same starts as a single process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Unpack

from torch import Tensor, nn

from audit.robustness.adversarial import (
    AdversarialConfig,
    Method,
    adversarial_batch,
    eps_schedule,
    noise_kind,
    random_unit_noise,
)
from audit.robustness.overfitting import OverfittingGuard
from audit.robustness.validation import RobustValidation, probe_rows
from audit.training.loss import BatchContext, BatchLoss
from audit.training.trainer import Trainer, TrainerOptions

__all__ = ["AdversarialLoss", "adversarial_trainer"]


class AdversarialLoss(BatchLoss):
    """The adversarial training loss of ``config.method`` at the warmed-up eps of each batch.

    ``method`` may change while training: the ``guard`` (fast method only) falls back to PGD
    when catastrophic overfitting sets in. Tallies ``train_loss`` and
    ``train_robust_accuracy`` (on the adversarial inputs); shows ``method`` and the last
    batch's ``eps`` with each epoch.
    """

    def __init__(self, config: AdversarialConfig, guard: OverfittingGuard | None = None) -> None:
        self.config = config
        self.method: Method = config.method
        self.eps = 0.0
        self.guard = guard

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor,
                 ctx: BatchContext) -> Tensor:
        c = self.config
        lo, hi = ctx.shard
        noise = random_unit_noise((ctx.global_size, *x.shape[1:]), c.norm, ctx.generator,
                                  noise_kind(self.method))
        self.eps = eps_schedule(ctx.progress, c.eps, c.warmup_epochs)
        out = adversarial_batch(model, x, y, method=self.method, eps=self.eps, norm=c.norm,
                                steps=c.steps, rel_step=c.rel_step, beta=c.beta,
                                bounds=c.bounds, noise=noise[lo:hi], attack_mode=c.attack_mode)
        ctx.tally("train_loss", float(out.loss.detach().sum()))
        ctx.tally("train_robust_accuracy", float((out.logits_adv.argmax(1) == y).sum()))
        return out.loss.sum() * ctx.scale

    def epoch_info(self) -> dict[str, Any]:
        return {"method": self.method, "eps": self.eps}

    def after_step(self, trainer: Trainer, ctx: BatchContext) -> None:
        if self.guard is None or self.method != "fast" or not self.guard.due(ctx):
            return
        action = self.guard.check(trainer, ctx)
        if action == "fallback":
            self.method = "pgd"
        elif action == "stop":
            trainer.stop()

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method,
                "guard": self.guard.state_dict() if self.guard is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        method = str(state["method"])
        self.method = "trades" if method == "trades" else "fast" if method == "fast" else "pgd"
        if self.guard is not None and state.get("guard") is not None:
            self.guard.load_state_dict(state["guard"])


def adversarial_trainer(
    model: nn.Module,
    config: AdversarialConfig,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor] | None = None,
    **options: Unpack[TrainerOptions],
) -> Trainer:
    """A :class:`Trainer` for adversarial training: :class:`AdversarialLoss` (with the
    catastrophic-overfitting guard for the fast method), clean and PGD validation accuracy on
    ``val`` each epoch (without ``val``: on ``co_probe`` fixed training rows), the best-robust
    weights in :attr:`Trainer.best_state`. Arguments as for :class:`Trainer`."""
    config.validate()
    x, y = train[0].detach().cpu(), train[1].detach().cpu()
    rows = probe_rows(len(x), config)
    probe = (x[rows], y[rows])
    guard = OverfittingGuard(config, probe) if config.method == "fast" else None
    val_data = (val[0].detach().cpu(), val[1].detach().cpu()) if val is not None else probe
    return Trainer(model, config, AdversarialLoss(config, guard), (x, y),
                   validator=RobustValidation(config, val_data), **options)
