"""Small architectures used by tests through ``--arch toy_models:NAME`` (tests/ is on the
path in the CLI fixture)."""

from __future__ import annotations

import torch
from torch import nn


class TinyMLP(nn.Module):
    """Flatten + Linear on (1, 8, 8) digits."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class Raises(nn.Module):
    """A model whose forward always fails."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom in forward")


class ReturnsNaN(nn.Module):
    """A model that returns NaN logits."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


class TinyTabular(nn.Module):
    """Logistic regression on three features."""

    def __init__(self, features: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(features, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
