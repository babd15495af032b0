"""Normalisation inside the model, so that a model's input space is the data's own value range
(attacks then clip to the card's range and epsilon is in pixel units)."""

from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; puts normalisation inside the model so its input space
    is the data's own value range."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: list[float], std: list[float], ndim: int = 3) -> None:
        super().__init__()
        shape = (1, -1) + (1,) * (ndim - 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class NormalizedModel(nn.Module):
    """Wraps a model that expects normalised input so that it takes raw values instead."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], ndim: int) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std, ndim)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))
