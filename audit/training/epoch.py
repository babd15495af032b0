"""What the trainer records per epoch, and the validation that picks the best epoch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from audit.distributed import Distributed

__all__ = ["EpochStats", "Validator"]


@dataclass
class EpochStats:
    """One epoch's numbers: what the progress display and a card's history show.

    ``info`` comes from the loss (e.g. ``method``, ``eps``), ``train`` is the loss's tallies
    per training row (e.g. ``train_loss``), ``val`` the validator's metrics. Their names are
    attributes too: ``stats.val_robust_accuracy``.
    """

    epoch: int
    lr: float
    seconds: float
    cpu_seconds: float = 0.0
    val_seconds: float = 0.0
    best: bool = False
    events: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    train: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # only called for names that are not fields; the guard keeps copy/pickle working
        if name.startswith("__") or name in ("info", "train", "val"):
            raise AttributeError(name)
        for values in (self.info, self.train, self.val):
            if name in values:
                return values[name]
        raise AttributeError(f"{type(self).__name__} has no value {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Flat: epoch, the loss's info, lr, the training and validation values, timings."""
        return {"epoch": self.epoch, **self.info, "lr": self.lr, **self.train, **self.val,
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
                "val_seconds": self.val_seconds, "best": self.best, "events": list(self.events)}

    def state(self) -> dict[str, Any]:
        """As saved in a checkpoint (:meth:`from_state` reads it back)."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> EpochStats:
        return cls(**state)


class Validator(ABC):
    """Measures the model after every epoch; the trainer keeps the weights of the epoch with
    the best :meth:`score` (ties: the later epoch)."""

    @abstractmethod
    def __call__(self, model: nn.Module, dist: Distributed) -> dict[str, float]:
        """Metrics of ``model`` (the unwrapped module; every rank calls this)."""

    def score(self, metrics: Mapping[str, float]) -> tuple[float, ...]:
        """What "best" means: compared as a tuple, larger is better (default: the metrics in
        order)."""
        return tuple(metrics.values())
