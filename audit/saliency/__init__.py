"""Saliency: explain a model's decisions and measure how far the explanations can be trusted.

One protocol, :class:`Explainer`: ``explain(x, target) -> Tensor`` gives, for a batch of inputs
and the class to explain for each, a non-negative importance map scaled to [0, 1] per sample:
``(N, H, W)`` for images ``(N, C, H, W)`` and ``(N, F)`` for tabular rows ``(N, F)``. Every
method is one small class (``gradcam``, ``lime``, ``gradients``); ``metrics`` scores maps
(faithfulness, sanity, localisation); ``check`` is the ``saliency`` audit check.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import torch


@runtime_checkable
class Explainer(Protocol):
    """A saliency method. ``name`` is a stable id (``gradcam``), ``title`` a display name."""

    name: ClassVar[str]
    title: ClassVar[str]

    def explain(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Importance of each pixel (``(N, H, W)``) or feature (``(N, F)``) for class
        ``target[i]`` of sample ``x[i]``, non-negative and scaled so each sample's max is 1."""
        ...


def map_shape(x: torch.Tensor) -> tuple[int, ...]:
    """The shape of the maps of ``x``: ``(N, H, W)`` for images, ``(N, F)`` for rows."""
    return (int(x.shape[0]), *x.shape[2:]) if x.ndim >= 3 else tuple(x.shape)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Clamp at 0 and divide each sample by its max (all-zero maps stay zero); float32 CPU."""
    m = maps.detach().float().cpu().clamp(min=0)
    peak = m.reshape(m.shape[0], -1).amax(dim=1).clamp(min=1e-12)
    return m / peak.view(-1, *([1] * (m.ndim - 1)))


def channel_sum_abs(attr: torch.Tensor) -> torch.Tensor:
    """Input-shaped attributions to maps: ``|a|`` summed over channels for images, ``|a|`` for
    rows."""
    return attr.abs().sum(dim=1) if attr.ndim >= 3 else attr.abs()


def batches(n: int, size: int) -> list[slice]:
    """Slices covering ``range(n)`` in chunks of ``size``."""
    size = max(1, int(size))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


from audit.saliency.gradcam import GradCAM, GradCAMPlusPlus  # noqa: E402
from audit.saliency.gradients import IntegratedGradientsExplainer, SmoothGrad  # noqa: E402
from audit.saliency.layers import LayerInfo, find_target_layer, spatial_layers  # noqa: E402
from audit.saliency.lime import LimeImage, LimeTabular  # noqa: E402

__all__ = [
    "Explainer", "GradCAM", "GradCAMPlusPlus", "IntegratedGradientsExplainer", "LayerInfo",
    "LimeImage", "LimeTabular", "SmoothGrad", "batches", "channel_sum_abs", "find_target_layer",
    "map_shape", "normalize_maps", "spatial_layers",
]
