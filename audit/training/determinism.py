"""Deterministic CPU training: the setting every bundled recipe and ``audit harden`` train in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["reproducible"]


@contextmanager
def reproducible(seed: int | None = None, threads: int | None = 1) -> Iterator[None]:
    """Seed torch, use deterministic kernels and ``threads`` CPU threads (one: the bundled
    models are small, one thread is fastest, and a float sum's order then does not depend on
    the machine's core count), restoring the previous settings afterwards."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if seed is not None:
        torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
