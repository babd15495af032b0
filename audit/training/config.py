"""The settings of a training run, parsed like every other settings table in ``audit``
(:func:`audit.params.parse_dataclass`), and the optimizer and schedule they describe."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

import torch
from torch import nn

from audit.errors import UsageError
from audit.params import parse_dataclass

Optimizer = Literal["adam", "sgd"]
Schedule = Literal["onecycle", "cosine", "constant"]

__all__ = ["Optimizer", "Schedule", "TrainConfig", "build_optimizer", "build_scheduler",
           "value_range"]


def value_range(bounds: Any) -> tuple[float, float]:
    """A ``bounds`` setting (the input's value range) as a float pair: Python callers pass
    lists and ints, as JSON does. Whether low < high is a range rule (:meth:`TrainConfig.rules`)."""
    if len(bounds) != 2:
        raise UsageError(f"bounds must be (low, high), got {bounds}")
    return float(bounds[0]), float(bounds[1])


@dataclass
class TrainConfig:
    """How a model is optimised (every setting has a default).

    ``batch_size`` is the global batch (split over ranks in a distributed run); ``lr`` the peak
    learning rate of ``schedule`` (one-cycle, cosine decay or constant, stepped per batch);
    ``optimizer``: AdamW (``"adam"``) or SGD with Nesterov momentum 0.9. ``seed`` seeds the
    shuffling; the loss and the augmentation draw from their own streams (``seed + 1``,
    ``seed + 2``). A loss with settings of its own extends this class (see
    :class:`audit.robustness.adversarial.AdversarialConfig`), so that one flat table holds a
    run's settings: what a checkpoint must match to be resumed, and what a card records.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: Optimizer = "adam"
    schedule: Schedule = "onecycle"
    seed: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "settings") -> Self:
        """Parse a flat mapping (command-line values, JSON, a checkpoint's settings): an
        unknown key or a value of the wrong type or choice is a :class:`ConfigError` naming
        ``where`` and the key. Ranges are checked by :meth:`validate`."""
        return parse_dataclass(cls, values, where, "[training]")

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values (tuples as lists), e.g. for a card's recipe."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    def validate(self) -> None:
        """Raise :class:`UsageError` naming the first invalid setting (types and choices are
        checked by the same parser as :meth:`from_dict`, so the messages are the same)."""
        type(self).from_dict(self.to_dict())
        for ok, message in self.rules():
            if not ok:
                raise UsageError(message)

    def rules(self) -> list[tuple[bool, str]]:
        """``(condition, message)`` for every range rule; a subclass adds its own."""
        return [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
        ]


def build_optimizer(params: Iterable[nn.Parameter], config: TrainConfig
                    ) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, over ``params``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9,
                               weight_decay=config.weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
                    ) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule ``config`` names, over ``total_steps`` batches."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                   total_steps=total_steps)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
