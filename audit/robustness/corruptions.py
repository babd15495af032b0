"""Common corruptions (Hendrycks & Dietterich 2019), written in PyTorch, batched.

Four corruptions at five severities, with the CIFAR-10-C parameters of the reference
``make_cifar_c.py`` (values in [0, 1]; inputs in another range are mapped to [0, 1] and back):

- ``gaussian_noise``: add N(0, c^2), c = 0.04, 0.06, 0.08, 0.09, 0.10;
- ``gaussian_blur``: Gaussian filter with sigma c = 0.4, 0.6, 0.7, 0.8, 1.0 pixels (kernel
  truncated at 4 sigma, edges repeat the border pixel, as ``skimage.filters.gaussian``);
- ``contrast``: ``(x - m) c + m`` with ``m`` the per-image, per-channel mean,
  c = 0.75, 0.5, 0.4, 0.3, 0.15;
- ``brightness``: add c to the HSV value channel, c = 0.05, 0.1, 0.15, 0.2, 0.3 (for grey
  images this is ``x + c``; for colour images every channel scales by ``V'/V``).

Everything is clipped to the value range. Only ``gaussian_noise`` applies to tabular data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from audit.distributed import current

__all__ = ["CORRUPTIONS", "SEVERITY", "Corruption", "applicable", "corrupt",
           "corruption_accuracy"]

SEVERITY: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
}


@dataclass(frozen=True)
class Corruption:
    """One corruption: ``apply(u, c, generator)`` on images in [0, 1]."""

    name: str
    title: str
    image_only: bool
    apply: Callable[[Tensor, float, torch.Generator | None], Tensor]


def _noise(u: Tensor, c: float, gen: torch.Generator | None) -> Tensor:
    return u + torch.randn(tuple(u.shape), generator=gen).to(u.device) * c


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> Tensor:
    """The 1-D normalised Gaussian kernel of radius ``round(truncate * sigma)``."""
    radius = max(int(truncate * sigma + 0.5), 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


def _blur(u: Tensor, sigma: float, gen: torch.Generator | None) -> Tensor:
    n, c, h, w = u.shape
    k = gaussian_kernel(sigma).to(u.device)
    r = (k.numel() - 1) // 2
    z = u.reshape(n * c, 1, h, w)
    z = F.conv2d(F.pad(z, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    z = F.conv2d(F.pad(z, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return z.reshape(n, c, h, w)


def _contrast(u: Tensor, c: float, gen: torch.Generator | None) -> Tensor:
    m = u.mean(dim=(-2, -1), keepdim=True)
    return (u - m) * c + m


def _brightness(u: Tensor, c: float, gen: torch.Generator | None) -> Tensor:
    v = u.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0.0, 1.0)
    scaled = u * (v_new / v.clamp_min(1e-12))
    return torch.where(v > 0, scaled, v_new.expand_as(u))


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": Corruption("gaussian_noise", "Gaussian noise", False, _noise),
    "gaussian_blur": Corruption("gaussian_blur", "Gaussian blur", True, _blur),
    "contrast": Corruption("contrast", "Contrast", True, _contrast),
    "brightness": Corruption("brightness", "Brightness", True, _brightness),
}


def applicable(name: str, x: Tensor, kind: str) -> str | None:
    """Reason corruption ``name`` does not apply to inputs like ``x``, or None."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; use one of {', '.join(CORRUPTIONS)}")
    if CORRUPTIONS[name].image_only and (kind != "image" or x.ndim != 4):
        return "needs images (N, C, H, W)"
    return None


def corrupt(x: Tensor, name: str, severity: int, *, bounds: tuple[float, float] = (0.0, 1.0),
            generator: torch.Generator | None = None) -> Tensor:
    """``x`` corrupted by ``name`` at ``severity`` (1-5), in the same value range."""
    if not 1 <= severity <= 5:
        raise ValueError("severity must be 1 to 5")
    lo, hi = bounds
    width = hi - lo if hi > lo else 1.0
    u = (x - lo) / width
    out = CORRUPTIONS[name].apply(u, SEVERITY[name][severity - 1], generator)
    return out.clamp(0.0, 1.0) * width + lo


def corruption_accuracy(logits_fn: Callable[[Tensor], Tensor], x: Tensor, y: Tensor,
                        names: list[str], severities: list[int], *, kind: str,
                        bounds: tuple[float, float], generator: torch.Generator | None = None,
                        batch_size: int = 256) -> dict[str, list[float]]:
    """Accuracy under each applicable corruption at each severity, streamed in batches.

    ``logits_fn`` maps a batch to logits on any device (e.g. ``Subject.logits`` with
    ``on_device=True``). Corruptions that do not apply are left out of the result. The
    corruption is applied to the batch where ``x`` lives (the CPU generator's noise); the
    count of correct predictions stays on the logits' device and is read once, at the end.
    Each batch draws its noise from its own stream (:meth:`Distributed.map`), so a
    distributed audit, whose ranks each take a block of the batches, counts the same.
    """
    used = [name for name in names if applicable(name, x, kind) is None]
    n = int(x.shape[0])
    world = current()

    def one(_: int, sl: slice) -> Tensor:
        xb, counts = x[sl], []
        for name in used:
            for s in severities:
                logits = logits_fn(corrupt(xb, name, s, bounds=bounds, generator=generator))
                counts.append((logits.argmax(dim=1) == y[sl].to(logits.device)).sum())
        stacked = torch.stack(counts) if counts else torch.zeros(0, dtype=torch.long)
        return stacked.cpu() if world.enabled else stacked

    parts = world.map(one, n, batch_size, seeded=True, generators=[generator])
    if not used or not parts:
        return {name: [math.nan] * len(severities) for name in used}
    correct = torch.stack([p.to(parts[0].device) for p in parts]).sum(dim=0).cpu()
    per = correct.reshape(len(used), len(severities)).tolist()
    return {name: [c / n for c in row] for name, row in zip(used, per, strict=True)}
