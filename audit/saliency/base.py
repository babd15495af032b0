"""The explainer contract: one base class, one method to write, one shared post-processing.

A saliency method subclasses :class:`Explainer`, declares itself with class attributes
(``name``, ``title``, ``modalities``, ``default_for``, ``needs_layer``) and writes
:meth:`~Explainer.attribute`.
The base's :meth:`~Explainer.explain` turns attributions into the maps every metric and figure
reads: ``(N, H, W)`` for images ``(N, C, H, W)``, ``(N, F)`` for rows, non-negative, each sample
scaled to a maximum of 1. :meth:`~Explainer.build` makes the explainer from an
:class:`ExplainContext` (what the check knows); override it when the constructor takes settings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Self

import torch
from torch import nn

if TYPE_CHECKING:
    from audit.saliency.grids import Layout
    from audit.saliency.settings import SaliencyParams

Modality = Literal["image", "tabular"]
"""The kind of data an explainer handles: images ``(N, C, H, W)`` or rows ``(N, F)``."""


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


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def to_maps(attr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The default post-processing of :meth:`Explainer.explain`.

    Input-shaped attributions are signed per input element, so their magnitude counts (summed
    over channels); map-shaped ones are already evidence for the class per pixel, so only the
    positive part counts. Either way each sample is scaled to a maximum of 1.
    """
    if tuple(attr.shape) == tuple(x.shape):
        return normalize_maps(channel_sum_abs(attr))
    if tuple(attr.shape) == map_shape(x):
        return normalize_maps(attr)
    raise ValueError(f"attributions of shape {tuple(attr.shape)} for inputs {tuple(x.shape)}: "
                     f"expected the input's shape or the map shape {map_shape(x)}")


@dataclass(frozen=True)
class ExplainContext:
    """What the check knows when it builds an explainer; the model is passed on its own because
    the sanity check builds the same explainer again for a randomised copy."""

    settings: SaliencyParams
    baseline: torch.Tensor  # the data mean: IG's starting point, LIME's fill for hidden parts
    noise: float  # SmoothGrad's noise std in input units
    seed: int  # LIME's seed
    batch_size: int = 256  # CAM batches (one forward and one backward each)
    gradient_batch: int | None = None  # IG and SmoothGrad batches; None: the class default
    layer: str | None = None  # dotted name of the CAM target layer (needs_layer explainers)
    layer_layout: Layout | None = None  # how that layer's output covers the image
    background: torch.Tensor | None = None  # rows LIME (tabular) perturbs from
    feature_names: list[str] | None = None


class Explainer(ABC):
    """A saliency method: subclasses declare the class attributes and write :meth:`attribute`.

    ``name`` is the stable id used in settings and metric keys (``gradcam``), ``title`` the
    display name; ``modalities`` the data it explains, ``default_for`` those where the check
    runs it without being asked, ``needs_layer`` whether it needs a spatial target layer.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    modalities: ClassVar[frozenset[Modality]] = frozenset({"image"})
    default_for: ClassVar[frozenset[Modality]] = frozenset()
    needs_layer: ClassVar[bool] = False

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @classmethod
    def build(cls, model: nn.Module, ctx: ExplainContext) -> Self:
        """The explainer of ``model`` with the check's settings in ``ctx``."""
        return cls(model)

    @classmethod
    def unavailable(cls, model: nn.Module, sample: torch.Tensor) -> str | None:
        """Why this method cannot explain ``model`` (probed on a ``sample`` batch), or ``None``
        when it can; the check leaves such a method out and says why."""
        return None

    @abstractmethod
    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Attributions for class ``target[i]`` of sample ``x[i]``: signed, in the input's shape,
        or a map ``(N, H, W)`` of evidence for the class (see :func:`to_maps`)."""

    def explain(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Importance of each pixel (``(N, H, W)``) or feature (``(N, F)``) for class
        ``target[i]`` of sample ``x[i]``, non-negative and scaled so each sample's max is 1."""
        return to_maps(self.attribute(x, target), x)
