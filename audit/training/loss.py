"""The pluggable part of training: the loss of one batch.

A training objective is one :class:`BatchLoss` subclass writing ``__call__(model, x, y, idx,
ctx) -> loss``; the trainer owns everything around it (shuffling, augmentation, sharding over
ranks, the optimizer step, checkpoints). :class:`CrossEntropy` is the plain objective of the
bundled recipes; a fairness penalty overrides its :meth:`CrossEntropy.penalty`, and the
adversarial losses of :mod:`audit.robustness.losses` craft their own inputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audit.distributed import Distributed

if TYPE_CHECKING:
    from audit.training.trainer import Trainer

__all__ = ["BatchContext", "BatchLoss", "CrossEntropy"]


@dataclass
class BatchContext:
    """What the trainer tells a loss about the batch it is computing.

    ``rows`` are the global batch's row numbers in the training data (all ranks); this rank
    holds ``rows[shard[0]:shard[1]]``. ``generator`` is the loss's own random stream (saved in
    checkpoints, so a resumed run draws the same numbers).
    """

    epoch: int
    batch: int
    batches: int
    rows: Tensor
    shard: tuple[int, int]
    dist: Distributed
    generator: torch.Generator
    tallies: dict[str, float] = field(default_factory=dict)

    @property
    def progress(self) -> float:
        """Epochs done, fractional: what a warm-up schedule reads."""
        return self.epoch + self.batch / self.batches

    @property
    def global_size(self) -> int:
        """Rows in the global batch (all ranks together)."""
        return int(self.rows.numel())

    @property
    def scale(self) -> float:
        """The factor on this rank's per-sample loss *sum* that makes DDP's average of the
        ranks' gradients the gradient of the global batch's mean."""
        return self.dist.world_size / self.global_size

    def tally(self, name: str, value: float) -> None:
        """Add ``value``, a sum over this rank's rows, to the epoch's ``name``: the epoch's
        stats show it summed over ranks and divided by the number of training rows."""
        self.tallies[name] = self.tallies.get(name, 0.0) + value


class BatchLoss(ABC):
    """A training objective: the scalar loss of one batch. Subclasses write ``__call__``; the
    other methods are optional hooks with do-nothing defaults."""

    @abstractmethod
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor,
                 ctx: BatchContext) -> Tensor:
        """The loss of this rank's rows ``(x, y)`` (on the training device; ``idx`` their row
        numbers in the training data) to call ``backward`` on. ``model`` may be wrapped in
        DistributedDataParallel: call it once per step."""

    def epoch_info(self) -> dict[str, Any]:
        """Values to show with each epoch's stats (e.g. the method and epsilon used)."""
        return {}

    def after_step(self, trainer: Trainer, ctx: BatchContext) -> None:
        """Called after each optimizer step (e.g. to monitor training and stop it)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """The loss's changing state, saved in checkpoints (weights_only-safe values)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        return None


class CrossEntropy(BatchLoss):
    """Cross-entropy: the batch mean, or weighted by ``sample_weight`` (one weight per
    training row, e.g. reweighing's), plus the optional :meth:`penalty` term."""

    def __init__(self, sample_weight: Tensor | None = None) -> None:
        self.sample_weight = sample_weight

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor,
                 ctx: BatchContext) -> Tensor:
        logits = model(x)
        loss = self.reduce(F.cross_entropy(logits, y, reduction="none"), idx, ctx)
        extra = self.penalty(logits, y, idx)
        if extra is not None:
            loss = loss + extra
        ctx.tally("train_loss", float(loss.detach()) * ctx.global_size / ctx.dist.world_size)
        return loss

    def reduce(self, per_sample: Tensor, idx: Tensor, ctx: BatchContext) -> Tensor:
        """The batch's (weighted) mean of ``per_sample``; in a distributed run this rank's
        share of the global batch's mean."""
        w = self.sample_weight
        if not ctx.dist.enabled:  # the plain mean, as the bundled models were trained
            if w is None:
                return per_sample.mean()
            wb = w[idx].to(per_sample.device)
            return (per_sample * wb).sum() / wb.sum()
        if w is None:
            return per_sample.sum() * ctx.scale
        total = float(w[ctx.rows].sum())
        return (per_sample * w[idx].to(per_sample.device)).sum() * (ctx.dist.world_size / total)

    def penalty(self, logits: Tensor, y: Tensor, idx: Tensor) -> Tensor | None:
        """A term added to the batch's loss (``None``: nothing); subclasses override it."""
        return None
