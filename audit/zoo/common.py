"""What the bundled recipes share: their training loop settings and a test-accuracy helper."""

from __future__ import annotations

import torch
from torch import nn

from audit.training import Augment, CrossEntropy, TrainConfig, Trainer


def fit_recipe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
               augment: Augment | None = None) -> nn.Module:
    """Train ``model`` as every bundled recipe does: the shared trainer with cross-entropy
    (AdamW and one-cycle unless ``config`` says otherwise), the augmentation drawing from the
    shuffling generator (the convention the bundled weights were made with, kept so that they
    reproduce bit for bit on the same CPU type and torch build, which ``save_bundle`` records
    in the card's recipe). Deterministic for a given seed on CPU inside ``reproducible``."""
    Trainer(model, config, CrossEntropy(), (x, y), augment=augment,
            augment_rng="shuffle").fit()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    return correct / max(len(x), 1)
