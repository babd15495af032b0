"""Data augmentation applied by the trainer to each global batch before it is sharded."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from audit.errors import UsageError

__all__ = ["Augment", "random_shift"]

# ``augment(x, generator) -> x``: draws its randomness from ``generator`` only, so that a resumed
# run (which restores the generator) augments exactly as an uninterrupted one
Augment = Callable[[Tensor, torch.Generator], Tensor]


def random_shift(x: Tensor, generator: torch.Generator, max_shift: int = 1) -> Tensor:
    """Translate each image (N, C, H, W) by up to ``max_shift`` pixels in each direction, with
    zero fill: the usual augmentation for small images (``--augment shift``, digits-cnn)."""
    if x.ndim != 4:
        raise UsageError("--augment shift needs images (N, C, H, W); use --augment none for "
                         "tabular data")
    n, c, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    return pad[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
               rows, cols]
