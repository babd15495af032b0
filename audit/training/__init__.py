"""One training layer for every model ``audit`` trains: the bundled recipes (``audit train``),
adversarial hardening (``audit harden``) and the fairness-penalty mitigation (``audit
mitigate``).

- :class:`Trainer` (``trainer``): the resumable loop (shuffling, augmentation, DDP sharding,
  validation and best weights, atomic per-epoch checkpoints with exact resume);
- :class:`TrainConfig` (``config``): its settings, parsed by :func:`audit.params.parse_dataclass`;
- :class:`BatchLoss` (``loss``): the pluggable per-batch objective, :class:`CrossEntropy` the
  plain one (adversarial losses: :mod:`audit.robustness.losses`; the fairness penalty:
  :mod:`audit.fairness.mitigation`);
- ``state`` (checkpoint and RNG state), ``distributed`` (``torchrun`` ranks), ``bundle``
  (:func:`save_bundle`), ``determinism`` (:func:`reproducible`), ``augment``
  (:func:`random_shift`).

A new objective is one class::

    class Smoothed(BatchLoss):
        def __call__(self, model, x, y, idx, ctx):
            return F.cross_entropy(model(x), y, label_smoothing=0.1)

    Trainer(model, TrainConfig(epochs=5), Smoothed(), (x, y)).fit()
"""

from typing import TYPE_CHECKING

from audit._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["Augment", "random_shift"], "audit.training.augment"),
    "save_bundle": "audit.training.bundle",
    **dict.fromkeys(["TrainConfig", "build_optimizer", "build_scheduler"],
                    "audit.training.config"),
    "reproducible": "audit.training.determinism",
    **dict.fromkeys(["Distributed", "init_distributed"], "audit.distributed"),
    **dict.fromkeys(["EpochStats", "Validator"], "audit.training.epoch"),
    **dict.fromkeys(["BatchContext", "BatchLoss", "CrossEntropy"], "audit.training.loss"),
    **dict.fromkeys(["EpochFn", "ProgressFn", "Trainer", "TrainerOptions"],
                    "audit.training.trainer"),
}
__all__ = [
    "Augment",
    "BatchContext",
    "BatchLoss",
    "CrossEntropy",
    "Distributed",
    "EpochFn",
    "EpochStats",
    "ProgressFn",
    "TrainConfig",
    "Trainer",
    "Validator",
    "build_optimizer",
    "build_scheduler",
    "init_distributed",
    "random_shift",
    "reproducible",
    "save_bundle",
]
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from audit.distributed import Distributed, init_distributed
    from audit.training.augment import Augment, random_shift
    from audit.training.bundle import save_bundle
    from audit.training.config import TrainConfig, build_optimizer, build_scheduler
    from audit.training.determinism import reproducible
    from audit.training.epoch import EpochStats, Validator
    from audit.training.loss import BatchContext, BatchLoss, CrossEntropy
    from audit.training.trainer import EpochFn, ProgressFn, Trainer
