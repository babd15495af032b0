"""The one training loop of ``audit``: the bundled recipes, adversarial hardening and the
fairness-penalty mitigation all run it, each with its own :class:`~audit.training.BatchLoss`.

Per epoch: shuffle (the ``seed`` stream), augment each global batch (its own stream, or the
shuffling stream as the bundled recipes do), hand each rank its shard to the loss, step the
optimizer and schedule, let the loss react (:meth:`BatchLoss.after_step`), then validate and
keep the best weights. With a checkpoint path every finished epoch is saved atomically, and
:meth:`Trainer.fit` with ``resume`` continues exactly where it ended: weights, optimizer,
schedule, every generator (the trainer's and the processes' global ones) and the loss's state.

Exactness: the shuffling and the loss's random draws come from generators shared by all
ranks, and losses scale their per-rank sums (:attr:`BatchContext.scale`) so that DDP's
gradient average equals the single-process mean over the global batch. Dropout masks are drawn
by each rank's own torch generator, so with dropout a distributed run is statistically, not
numerically, equivalent to a single-process run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypedDict

import torch
from torch import Tensor, nn

from audit.distributed import Distributed
from audit.errors import UsageError
from audit.training.augment import Augment
from audit.training.config import TrainConfig, build_optimizer, build_scheduler
from audit.training.epoch import EpochStats, Validator
from audit.training.loss import BatchContext, BatchLoss
from audit.training.state import (
    CHECKPOINT_VERSION,
    check_settings,
    cpu_state,
    read_checkpoint,
    rng_state,
    set_rng_state,
    to_cpu,
    write_checkpoint,
)

ProgressFn = Callable[[int, int, int], None]  # (epoch, batches done, batches per epoch)
EpochFn = Callable[[EpochStats], None]

__all__ = ["EpochFn", "ProgressFn", "Trainer", "TrainerOptions"]


class TrainerOptions(TypedDict, total=False):
    """The :class:`Trainer` keyword arguments a method's trainer builder passes through
    (``smoothing_trainer(model, config, train, **options)``)."""

    checkpoint: str | Path | None
    dist: Distributed | None
    augment: Augment | None
    on_batch: ProgressFn | None
    on_epoch: EpochFn | None


class Trainer:
    """Trains ``model`` in place on ``train`` (CPU tensors: every rank holds all of it and
    takes its shard of each global batch) by minimising ``loss``.

    ::

        trainer = Trainer(model, TrainConfig(epochs=20, lr=3e-3), CrossEntropy(), (x, y),
                          checkpoint="runs/ckpt.pt")
        trainer.fit(resume=True)        # continues from runs/ckpt.pt if it exists

    ``validator`` measures the model after each epoch; :attr:`best_state` holds the weights of
    its best epoch (without one: the last). ``augment(x, generator)`` transforms each global
    batch; ``augment_rng="shuffle"`` makes it draw from the shuffling generator (the bundled
    recipes' convention). In a distributed run (``dist``, see
    :func:`~audit.training.init_distributed`) the model is wrapped in
    DistributedDataParallel and only rank 0 writes. For bitwise-exact resume on CPU, train
    inside :func:`~audit.training.reproducible`.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        loss: BatchLoss,
        train: tuple[Tensor, Tensor],
        *,
        validator: Validator | None = None,
        checkpoint: str | Path | None = None,
        dist: Distributed | None = None,
        augment: Augment | None = None,
        augment_rng: Literal["own", "shuffle"] = "own",
        on_batch: ProgressFn | None = None,
        on_epoch: EpochFn | None = None,
    ) -> None:
        config.validate()
        self.config, self.loss, self.validator = config, loss, validator
        self.dist = dist or Distributed(device=next(model.parameters()).device)
        self.x, self.y = train[0].detach().cpu(), train[1].detach().cpu()
        if len(self.x) == 0:
            raise UsageError("no training data")
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.augment = augment
        self.on_batch, self.on_epoch = on_batch, on_epoch
        self.module = model.to(self.dist.device)
        self.model: nn.Module = self.module
        if self.dist.enabled:
            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        self.optimizer = build_optimizer(self.module.parameters(), config)
        self.scheduler = build_scheduler(self.optimizer, config,
                                         config.epochs * self.batches_per_epoch)
        self.data_gen = torch.Generator().manual_seed(config.seed)
        self.loss_gen = torch.Generator().manual_seed(config.seed + 1)
        self.aug_gen = self.data_gen if augment_rng == "shuffle" else \
            torch.Generator().manual_seed(config.seed + 2)
        self.epoch = 0
        self.stopped = False
        self.history: list[EpochStats] = []
        self.events: list[str] = []
        self._epoch_events: list[str] = []
        self.best_state: dict[str, Tensor] = cpu_state(self.module)
        self.best_epoch = -1
        self.best_score: tuple[float, ...] | None = None
        self.train_seconds = self.train_cpu_seconds = 0.0
        self.val_seconds = self.val_cpu_seconds = 0.0

    @property
    def batches_per_epoch(self) -> int:
        return (len(self.x) + self.config.batch_size - 1) // self.config.batch_size

    @property
    def finished(self) -> bool:
        return self.stopped or self.epoch >= self.config.epochs

    def stop(self) -> None:
        """End training after the current step (the epoch is still validated and saved)."""
        self.stopped = True

    def report(self, event: str) -> None:
        """Record something that happened in this epoch (shown with its stats)."""
        self._epoch_events.append(event)

    # ----------------------------------------------------------------- training

    def fit(self, resume: bool = False) -> list[EpochStats]:
        """Train the remaining epochs (all unless ``resume`` found a checkpoint) and return the
        history; the model ends in eval mode with the last epoch's weights."""
        if resume:
            self.load_checkpoint()
        while not self.finished:
            self.train_epoch()
            self.save_checkpoint()
        self.module.eval()
        return self.history

    def train_epoch(self) -> EpochStats:
        """One epoch over the training data, then validation; updates the best weights."""
        start, cpu_start = time.perf_counter(), time.process_time()
        self._epoch_events = []
        train = self._train_batches()
        val, val_seconds = self._validate()
        self.epoch += 1
        self.train_seconds += time.perf_counter() - start
        self.train_cpu_seconds += time.process_time() - cpu_start
        stats = EpochStats(
            epoch=self.epoch, lr=float(self.optimizer.param_groups[0]["lr"]),
            seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start,
            val_seconds=val_seconds, best=self._keep_if_best(val),
            events=list(self._epoch_events), info=self.loss.epoch_info(), train=train, val=val)
        self.history.append(stats)
        self.events.extend(stats.events)
        if self.on_epoch is not None and self.dist.is_main:
            self.on_epoch(stats)
        return stats

    def _train_batches(self) -> dict[str, float]:
        """The epoch's optimizer steps; returns the loss's tallies per training row."""
        c, d = self.config, self.dist
        nb = self.batches_per_epoch
        perm = torch.randperm(len(self.x), generator=self.data_gen)
        self.model.train()
        tallies: dict[str, float] = {}
        count = 0
        for b in range(nb):
            rows = perm[b * c.batch_size:(b + 1) * c.batch_size]
            xb, yb = self.x[rows], self.y[rows]
            if self.augment is not None:
                xb = self.augment(xb, self.aug_gen)
            lo, hi = d.shard(int(rows.numel()))
            ctx = BatchContext(epoch=self.epoch, batch=b, batches=nb, rows=rows, shard=(lo, hi),
                               dist=d, generator=self.loss_gen, tallies=tallies)
            loss = self.loss(self.model, xb[lo:hi].to(d.device), yb[lo:hi].to(d.device),
                             rows[lo:hi], ctx)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            count += hi - lo
            if self.on_batch is not None and d.is_main:
                self.on_batch(self.epoch, b + 1, nb)
            self.loss.after_step(self, ctx)
            if self.stopped:
                break
        names = list(tallies)
        *sums, total = d.sum([*(tallies[k] for k in names), float(count)])
        return {k: s / max(total, 1) for k, s in zip(names, sums, strict=True)}

    def _validate(self) -> tuple[dict[str, float], float]:
        if self.validator is None:
            return {}, 0.0
        start, cpu_start = time.perf_counter(), time.process_time()
        metrics = self.validator(self.module, self.dist)
        seconds = time.perf_counter() - start
        self.val_seconds += seconds
        self.val_cpu_seconds += time.process_time() - cpu_start
        return metrics, seconds

    def _keep_if_best(self, val: dict[str, float]) -> bool:
        """Keep this epoch's weights when they score at least as well as the best so far."""
        score = self.validator.score(val) if self.validator is not None else ()
        if self.best_score is not None and score < self.best_score:
            return False
        self.best_score, self.best_epoch = score, self.epoch
        self.best_state = cpu_state(self.module)
        return True

    # ----------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the last finished epoch ended (a
        collective in a distributed run: every rank's global RNG states are gathered)."""
        return {
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "world_size": self.dist.world_size,
            "epoch": self.epoch,
            "stopped": self.stopped,
            "model": cpu_state(self.module),
            "optimizer": to_cpu(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "generators": {"data": self.data_gen.get_state(), "loss": self.loss_gen.get_state(),
                           "augment": self.aug_gen.get_state()},
            "rng": self.dist.gather(rng_state()),
            "best": {"epoch": self.best_epoch, "state": self.best_state,
                     "score": None if self.best_score is None else list(self.best_score)},
            "history": [s.state() for s in self.history],
            "events": list(self.events),
            "loss": self.loss.state_dict(),
            "seconds": [self.train_seconds, self.train_cpu_seconds, self.val_seconds,
                        self.val_cpu_seconds],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (:class:`CheckpointError` when its settings differ
        from this trainer's)."""
        check_settings(state["config"], self.config, self.checkpoint)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        gens = state["generators"]
        self.data_gen.set_state(gens["data"])
        self.loss_gen.set_state(gens["loss"])
        self.aug_gen.set_state(gens["augment"])
        rng = state["rng"]
        set_rng_state(rng[self.dist.rank] if self.dist.rank < len(rng) else rng[0])
        self.epoch, self.stopped = int(state["epoch"]), bool(state["stopped"])
        best = state["best"]
        self.best_epoch, self.best_state = int(best["epoch"]), best["state"]
        self.best_score = None if best["score"] is None else tuple(best["score"])
        self.history = [EpochStats.from_state(h) for h in state["history"]]
        self.events = list(state["events"])
        self.loss.load_state_dict(state["loss"])
        (self.train_seconds, self.train_cpu_seconds, self.val_seconds,
         self.val_cpu_seconds) = (float(s) for s in state["seconds"])

    def save_checkpoint(self) -> None:
        """Write the checkpoint atomically (rank 0 only; every rank must call this)."""
        if self.checkpoint is None:
            return
        state = self.state_dict()
        if self.dist.is_main:
            write_checkpoint(self.checkpoint, state)
        self.dist.barrier()

    def load_checkpoint(self) -> bool:
        """Restore from the checkpoint file if it exists; returns whether it did."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return False
        self.load_state_dict(read_checkpoint(self.checkpoint))
        return True
