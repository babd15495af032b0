"""Gradient attributions from captum: Integrated Gradients (Sundararajan et al. 2017) and
SmoothGrad (Smilkov et al. 2017, captum's ``NoiseTunnel`` over ``Saliency``).

Both work on images ``(N, C, H, W)`` (maps ``(N, H, W)``: absolute attribution summed over
channels) and on tabular rows ``(N, F)`` (maps ``(N, F)``). :meth:`attribute` returns the raw,
signed attributions in the input's shape (tables of feature effects read their sign); the base's
``explain`` post-processes them into maps.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from torch import nn

from audit.saliency.base import ExplainContext, Explainer, Modality, batches, model_device

_BOTH: frozenset[Modality] = frozenset({"image", "tabular"})


def _batch(ctx: ExplainContext) -> dict[str, Any]:
    return {} if ctx.gradient_batch is None else {"batch_size": ctx.gradient_batch}


MAX_PATH_VALUES = 2 ** 20
"""Most input values in one IG forward/backward over the path (4 MiB of float32). Chunking the
``len(x) * steps`` path points bounds memory at 224 px, and is faster on CPU too
(``bench/bench_ig_internal_batch.py``)."""


def internal_batch(x: torch.Tensor, steps: int) -> int:
    """Captum's ``internal_batch_size`` for ``x``: the path points of the batch, at most
    :data:`MAX_PATH_VALUES` input values at once, and never fewer than ``len(x)`` (captum's
    minimum)."""
    per_sample = max(int(x[0].numel()), 1) if len(x) else 1
    return max(len(x), 1, min(len(x) * steps, MAX_PATH_VALUES // per_sample))


class IntegratedGradientsExplainer(Explainer):
    """Integrated Gradients from ``baseline`` (a tensor broadcastable to one input, e.g. the data
    mean) with ``steps`` Riemann steps; attributions sum to ``f(x) - f(baseline)``."""

    name = "integrated-gradients"
    title = "Integrated Gradients"
    modalities: ClassVar[frozenset[Modality]] = _BOTH
    default_for: ClassVar[frozenset[Modality]] = _BOTH

    def __init__(self, model: nn.Module, baseline: torch.Tensor | float = 0.0, steps: int = 32,
                 batch_size: int = 32) -> None:
        super().__init__(model)
        self.baseline = baseline
        self.steps = steps
        self.batch_size = batch_size

    @classmethod
    def build(cls, model: nn.Module, ctx: ExplainContext) -> Self:
        return cls(model, ctx.baseline, steps=ctx.settings.ig_steps, **_batch(ctx))

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Signed attributions with the shape of ``x``."""
        dev = model_device(self.model)
        ig = IntegratedGradients(self.model)
        out = []
        for s in batches(len(x), self.batch_size):
            xb = x[s].to(dev)
            base = (torch.as_tensor(self.baseline, dtype=xb.dtype, device=dev)
                    .expand_as(xb).contiguous())
            with torch.enable_grad():
                a = ig.attribute(xb, baselines=base, target=target[s].to(dev),
                                 n_steps=self.steps,
                                 internal_batch_size=internal_batch(xb, self.steps))
            out.append(a.detach())
        return torch.cat(out).cpu()  # one copy, after the loop


class SmoothGrad(Explainer):
    """SmoothGrad: the absolute input gradient averaged over ``samples`` copies of the input with
    Gaussian noise of standard deviation ``noise`` (in input units)."""

    name = "smoothgrad"
    title = "SmoothGrad"
    modalities: ClassVar[frozenset[Modality]] = _BOTH
    default_for: ClassVar[frozenset[Modality]] = frozenset({"image"})

    def __init__(self, model: nn.Module, noise: float = 0.15, samples: int = 16,
                 batch_size: int = 64) -> None:
        super().__init__(model)
        self.noise = noise
        self.samples = samples
        self.batch_size = batch_size

    @classmethod
    def build(cls, model: nn.Module, ctx: ExplainContext) -> Self:
        return cls(model, noise=ctx.noise, samples=ctx.settings.smoothgrad_samples,
                   **_batch(ctx))

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean absolute gradients with the shape of ``x`` (noise from torch's global RNG)."""
        dev = model_device(self.model)
        nt = NoiseTunnel(Saliency(self.model))
        out = []
        for s in batches(len(x), self.batch_size):
            xb = x[s].to(dev)
            with torch.enable_grad():
                a = nt.attribute(xb, nt_type="smoothgrad", nt_samples=self.samples,
                                 nt_samples_batch_size=len(xb) * self.samples,
                                 stdevs=self.noise, target=target[s].to(dev))
            out.append(a.detach())
        return torch.cat(out).cpu()  # one copy, after the loop
