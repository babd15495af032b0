"""Training a certifiable model: Gaussian data augmentation (Cohen et al. 2019) as a
:class:`~audit.training.BatchLoss` of the shared trainer.

Randomized smoothing certifies well only a base model that classifies noisy inputs well, so
the model is trained on ``x + N(0, sigma^2 I)`` at the sigma it will be certified at (Cohen et
al. train on the same noise; the inputs are not clipped, as in certification)::

    trainer = smoothing_trainer(model, SmoothingConfig(sigma=0.25, epochs=20),
                                train=(x_train, y_train), val=(x_val, y_val))
    trainer.fit()
    model.load_state_dict(trainer.best_state)

The noise of a global batch is drawn once from the loss's generator and sliced per rank, so a
distributed run trains on the same noise as a single process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Unpack

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audit.distributed import Distributed
from audit.errors import UsageError
from audit.training.config import TrainConfig, value_range
from audit.training.epoch import Validator
from audit.training.loss import BatchContext, BatchLoss
from audit.training.trainer import Trainer, TrainerOptions

__all__ = ["GaussianAugmentLoss", "NoisyValidation", "SmoothingConfig", "smoothing_trainer"]


@dataclass
class SmoothingConfig(TrainConfig):
    """Settings of a Gaussian-augmentation run: the optimisation (:class:`TrainConfig`) plus
    the noise level ``sigma`` (input units). ``val_draws``: noisy copies of each validation
    sample measured per epoch (the best epoch has the best noisy accuracy); ``bounds``: the
    input's value range (the card's ``input.range``; recorded, noise is not clipped)."""

    method: Literal["smoothing"] = "smoothing"
    sigma: float = 0.25
    val_draws: int = 8
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        self.bounds = value_range(self.bounds)

    def rules(self) -> list[tuple[bool, str]]:
        return [
            (math.isfinite(self.sigma) and self.sigma > 0,
             f"sigma must be > 0, got {self.sigma}"),
            *super().rules(),
            (self.val_draws >= 1, f"val_draws must be >= 1, got {self.val_draws}"),
            (self.bounds[0] < self.bounds[1], f"bounds must be (low, high), got {self.bounds}"),
        ]


class GaussianAugmentLoss(BatchLoss):
    """Cross-entropy on ``x + sigma * N(0, I)``: one forward per batch. Tallies
    ``train_loss`` and ``train_noisy_accuracy``; shows ``method`` and ``sigma`` per epoch."""

    def __init__(self, sigma: float) -> None:
        if not sigma > 0:
            raise UsageError(f"sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor,
                 ctx: BatchContext) -> Tensor:
        lo, hi = ctx.shard
        noise = torch.randn((ctx.global_size, *x.shape[1:]), generator=ctx.generator)
        logits = model(x + self.sigma * noise[lo:hi].to(device=x.device, dtype=x.dtype))
        loss = F.cross_entropy(logits, y, reduction="none")
        ctx.tally("train_loss", float(loss.detach().sum()))
        ctx.tally("train_noisy_accuracy", float((logits.detach().argmax(1) == y).sum()))
        return loss.sum() * ctx.scale

    def epoch_info(self) -> dict[str, Any]:
        return {"method": "smoothing", "sigma": self.sigma}


class NoisyValidation(Validator):
    """Clean accuracy and accuracy under the training noise (``val_draws`` copies of each
    sample, the same noise every epoch: seed + 4) after every epoch; the best epoch is the
    most accurate under noise (then without). Sharded over ranks."""

    def __init__(self, config: SmoothingConfig, data: tuple[Tensor, Tensor],
                 batch: int = 512) -> None:
        self.config, self.data, self.batch = config, data, batch

    @torch.no_grad()
    def __call__(self, model: nn.Module, dist: Distributed) -> dict[str, float]:
        x_all, y_all = self.data
        c = self.config
        gen = torch.Generator().manual_seed(c.seed + 4)
        noise = torch.randn((c.val_draws, *x_all.shape), generator=gen)
        lo, hi = dist.shard(len(x_all))
        counts = [0.0, 0.0]
        was = model.training
        model.eval()
        try:
            for i in range(lo, hi, self.batch):
                j = min(i + self.batch, hi)
                x, y = x_all[i:j].to(dist.device), y_all[i:j].to(dist.device)
                counts[0] += float((model(x).argmax(1) == y).sum())
                noisy = x[None] + c.sigma * noise[:, i:j].to(dist.device)
                pred = model(noisy.flatten(0, 1)).argmax(1).view(c.val_draws, -1)
                counts[1] += float((pred == y[None]).sum()) / c.val_draws
        finally:
            model.train(was)
        clean, noisy_acc = dist.sum(counts)
        n = max(len(x_all), 1)
        return {"val_clean_accuracy": clean / n, "val_noisy_accuracy": noisy_acc / n}

    def score(self, metrics: Mapping[str, float]) -> tuple[float, ...]:
        return metrics["val_noisy_accuracy"], metrics["val_clean_accuracy"]


def smoothing_trainer(
    model: nn.Module,
    config: SmoothingConfig,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor] | None = None,
    **options: Unpack[TrainerOptions],
) -> Trainer:
    """A :class:`Trainer` for Gaussian data augmentation at ``config.sigma``: clean and noisy
    validation accuracy on ``val`` each epoch (without ``val``: on 256 fixed training rows,
    seed + 3), the best noisy-accuracy weights in :attr:`Trainer.best_state`. Arguments as for
    :class:`Trainer`."""
    config.validate()
    x, y = train[0].detach().cpu(), train[1].detach().cpu()
    if val is None:
        rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(config.seed + 3))
        val = (x[rows[:256]], y[rows[:256]])
    val_data = (val[0].detach().cpu(), val[1].detach().cpu())
    return Trainer(model, config, GaussianAugmentLoss(config.sigma), (x, y),
                   validator=NoisyValidation(config, val_data), **options)
