"""Clean and robust accuracy while training adversarially: the per-epoch validation that picks
the best-robust weights, and the probe the catastrophic-overfitting monitor reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from audit.distributed import Distributed
from audit.robustness.adversarial import AdversarialConfig, model_mode, random_unit_noise
from audit.robustness.attacks import FGSM, PGD
from audit.training.epoch import Validator

__all__ = ["RobustValidation", "probe_rows", "robust_accuracies", "validation_pgd"]


def validation_pgd(config: AdversarialConfig, steps: int) -> PGD:
    """The PGD attack that measures robust accuracy while training (random start shared with
    the other attacks of the measurement, see :func:`robust_accuracies`)."""
    return PGD(norm=config.norm, steps=steps, random_start=False, early_stop=True,
               bounds=config.bounds)


def probe_rows(n: int, config: AdversarialConfig) -> Tensor:
    """The ``co_probe`` fixed training rows (seed + 3) measured when there is no validation
    split and by the catastrophic-overfitting monitor."""
    gen = torch.Generator().manual_seed(config.seed + 3)
    return torch.randperm(n, generator=gen)[: config.co_probe]


def robust_accuracies(model: nn.Module, data: tuple[Tensor, Tensor],
                      attacks: Sequence[PGD | FGSM], config: AdversarialConfig,
                      generator: torch.Generator, dist: Distributed, batch: int = 512
                      ) -> tuple[float, list[float]]:
    """Clean accuracy and robust accuracy against each attack on ``data`` at the full eps,
    every attack from the same random start drawn from ``generator``; sharded over ranks
    (every rank calls it and gets the totals)."""
    x_all, y_all = data
    noise = random_unit_noise(tuple(x_all.shape), config.norm, generator)
    lo, hi = dist.shard(len(x_all))
    counts = [0.0] * (1 + len(attacks))
    with model_mode(model, "eval"):
        for i in range(lo, hi, batch):
            j = min(i + batch, hi)
            x, y = x_all[i:j].to(dist.device), y_all[i:j].to(dist.device)
            with torch.no_grad():
                ok = model(x).argmax(1) == y
            start = (x + config.eps * noise[i:j].to(dist.device)).clamp(*config.bounds)
            counts[0] += float(ok.sum())
            for k, attack in enumerate(attacks):
                r = attack(model, x, y, eps=config.eps, x_init=start)
                counts[k + 1] += float((ok & ~r.success).sum())
    totals = dist.sum(counts)
    n = max(len(x_all), 1)
    return totals[0] / n, [t / n for t in totals[1:]]


class RobustValidation(Validator):
    """Clean and PGD (``eval_steps``) accuracy on ``data`` after every epoch, from the same
    random starts each time (seed + 4); the best epoch is the most robust (then the most
    accurate)."""

    def __init__(self, config: AdversarialConfig, data: tuple[Tensor, Tensor]) -> None:
        self.config = config
        self.data = data

    def __call__(self, model: nn.Module, dist: Distributed) -> dict[str, float]:
        gen = torch.Generator().manual_seed(self.config.seed + 4)
        clean, (robust,) = robust_accuracies(
            model, self.data, [validation_pgd(self.config, self.config.eval_steps)],
            self.config, gen, dist)
        return {"val_clean_accuracy": clean, "val_robust_accuracy": robust}

    def score(self, metrics: Mapping[str, float]) -> tuple[float, ...]:
        return metrics["val_robust_accuracy"], metrics["val_clean_accuracy"]
