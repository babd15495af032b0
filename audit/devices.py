"""Which device an audit runs on: ``--device auto|cpu|cuda|cuda:N``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from audit.errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device"]


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device ``spec`` names: ``auto`` (or ``None``) is the first CUDA device when
    one is present, else the CPU; ``cuda`` and ``cuda:N`` must exist. :class:`UsageError`
    (exit 4) with the devices there are, otherwise."""
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text == "auto":
        return torch.device("cuda" if count else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m is None:
        raise UsageError(f"--device {spec!r} is not auto, cpu, cuda or cuda:N")
    index = int(m.group(1) or 0)
    if index >= count:
        there = f"{count} CUDA device(s)" if count else "no CUDA device (torch.cuda is " \
                                                       "not available)"
        raise UsageError(f"--device {spec}: this machine has {there}; use --device cpu or "
                         "auto")
    return torch.device(f"cuda:{index}")
