"""Transformer-native explanations read off the model's own attention.

:class:`AttentionCapture` is a ``TorchFunctionMode``: during one forward pass it sees every
``softmax`` and ``scaled_dot_product_attention`` call, whatever module makes it, so it finds the
attention of ViT, DeiT, BEiT-style models and ones the tests never saw, with no layer names.
A fused ``scaled_dot_product_attention`` hides its probabilities, so the mode computes that call
explicitly (``softmax(q k^T * scale + mask) v``, the function's documented definition) and keeps
the probabilities; a ``softmax`` whose output is a ``(N, heads, T, T)`` row-stochastic matrix is
kept as it is. ``nn.MultiheadAttention`` (torchvision's ViT) calls one composite function
the mode cannot see into, so the mode asks it for its per-head weights, which it then computes
explicitly too. Only global attention over one image's tokens counts: windowed attention (Swin's
``(N * windows, heads, 49, 49)``) and matrices whose ``T`` is no token grid are left out, and an
explainer that finds none says why instead of producing maps.

Two methods, one class each:

* :class:`AttentionRollout` (Abnar & Zuidema 2020): heads averaged, the residual connection as
  ``(A + I) / 2`` renormalised, layers multiplied; class-agnostic by construction.
* :class:`AttentionGradient` (Chefer, Gur & Wolf 2021, "Generic attention-model explainability",
  eqs. 5-6): each layer's attention weighted by the explained logit's gradient,
  ``A_bar = mean_h (grad(A) * A)^+``, accumulated as ``R <- R + A_bar R`` from ``R = I``.

The relevance of the patch tokens is the class token's row of ``R`` (the mean row when the model
has no class token and pools its tokens), reshaped to the token grid and upsampled to the image.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution
from torch import nn
from torch.overrides import TorchFunctionMode

from audit.saliency.base import ExplainContext, Explainer, Modality, batches, model_device
from audit.saliency.grids import token_grid

_SOFTMAXES: frozenset[Callable[..., Any]] = frozenset(
    {torch.softmax, F.softmax, torch.Tensor.softmax, torch.special.softmax})

NO_ATTENTION = ("no global self-attention over the image's patches was seen in the forward "
                "pass (a CNN, windowed attention as in Swin, or attention run where Python "
                "cannot see it, as in TorchScript)")


class AttentionCapture(TorchFunctionMode):
    """Keeps the attention probabilities ``(N, heads, T, T)`` of every global self-attention in
    a forward pass over a batch of ``batch`` samples, with the tensors in the graph that
    gradients are taken of (``sources``)."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch
        self.maps: list[torch.Tensor] = []
        self.sources: list[torch.Tensor] = []
        """The tensors each map is a view of, in the graph: what gradients are taken of."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self._attention(*args, **kwargs)
        if func is F.multi_head_attention_forward:
            return self._multi_head(func, args, kwargs)
        out = func(*args, **kwargs)
        if func in _SOFTMAXES and isinstance(out, torch.Tensor):
            self._keep(out)
        return out

    def _multi_head(self, func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        wanted, average = kwargs.get("need_weights", True), kwargs.get("average_attn_weights",
                                                                        True)
        out, weights = func(*args, **{**kwargs, "need_weights": True,
                                      "average_attn_weights": False})
        # the per-head weights are a view of the softmax output the values were mixed with
        self._keep(weights, weights._base if weights._base is not None else weights)
        if not wanted:
            return out, None
        return out, weights.mean(dim=1) if average else weights

    def _attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                   is_causal: bool = False, scale: float | None = None,
                   enable_gqa: bool = False) -> torch.Tensor:
        """``F.scaled_dot_product_attention`` as its documentation defines it."""
        if enable_gqa and key.shape[-3] != query.shape[-3]:
            rep = query.shape[-3] // key.shape[-3]
            key, value = key.repeat_interleave(rep, -3), value.repeat_interleave(rep, -3)
        scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
        scores = query @ key.transpose(-2, -1) * scale
        if is_causal:
            keep = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~keep, float("-inf"))
        if attn_mask is not None:
            scores = (scores.masked_fill(~attn_mask, float("-inf"))
                      if attn_mask.dtype == torch.bool else scores + attn_mask)
        probs = torch.softmax(scores, dim=-1)
        self._keep(probs)
        if dropout_p > 0:
            probs = F.dropout(probs, dropout_p)
        return probs @ value

    def _keep(self, p: torch.Tensor, source: torch.Tensor | None = None) -> None:
        source = p if source is None else source
        if p.ndim == 3 and p.shape[0] % self.batch == 0:
            p = p.reshape(self.batch, -1, *p.shape[1:])  # (N * heads, T, T), as MHA gives
        if p.ndim != 4 or p.shape[0] != self.batch or p.shape[-1] != p.shape[-2] \
                or p.shape[-1] < 2:
            return
        rows = p.detach()[:1, :1].float().sum(-1)
        if not torch.allclose(rows, torch.ones_like(rows), atol=1e-3):
            return  # a softmax over another axis: not attention rows
        self.maps.append(p)
        self.sources.append(source)


def global_attention(capture: AttentionCapture, image: tuple[int, int]
                     ) -> tuple[list[int], int, tuple[int, int]] | None:
    """The indices of the captured matrices over the last one's token count, when those
    tokens are a grid over ``image``: ``(indices, prefix tokens, grid)``; ``None`` otherwise."""
    if not capture.maps:
        return None
    tokens = capture.maps[-1].shape[-1]
    found = token_grid(tokens, image)
    if found is None:
        return None
    return ([i for i, m in enumerate(capture.maps) if m.shape[-1] == tokens],
            found[0], found[1])


class AttentionExplainer(Explainer):
    """The shared part: capture, read the class token's row, reshape, upsample; subclasses
    write :meth:`relevance` (and set ``needs_gradient``)."""

    modalities: ClassVar[frozenset[Modality]] = frozenset({"image"})
    needs_gradient: ClassVar[bool] = False

    def __init__(self, model: nn.Module, batch_size: int = 16) -> None:
        super().__init__(model)
        self.batch_size = batch_size

    @classmethod
    def build(cls, model: nn.Module, ctx: ExplainContext) -> Self:
        return cls(model, batch_size=ctx.gradient_batch or 16)

    @classmethod
    def unavailable(cls, model: nn.Module, sample: torch.Tensor) -> str | None:
        capture = AttentionCapture(len(sample))
        with torch.enable_grad(), capture:  # with gradients: no fused fast path hides the call
            model(sample.to(model_device(model)).detach().requires_grad_())
        image = (int(sample.shape[-2]), int(sample.shape[-1]))
        return None if global_attention(capture, image) is not None else NO_ATTENTION

    @abstractmethod
    def relevance(self, probs: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
        """``R`` ``(N, T, T)``: how much each token (columns) feeds each token (rows) at the
        output, from the layers' attention ``probs`` and, if needed, their ``grads``."""

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Non-negative maps ``(N, H, W)`` of the patch tokens' relevance."""
        device = model_device(self.model)
        image = (int(x.shape[-2]), int(x.shape[-1]))
        out = []
        for s in batches(len(x), self.batch_size):
            xb, tb = x[s].to(device), target[s].to(device)
            capture = AttentionCapture(len(xb))
            # with gradients even for rollout: eval-mode fast paths (nn.TransformerEncoderLayer's
            # fused kernel) skip the attention call the capture reads
            with torch.enable_grad(), capture:
                logits = self.model(xb.detach().requires_grad_())
            found = global_attention(capture, image)
            if found is None:
                raise ValueError(f"{self.title}: {NO_ATTENTION}")
            kept, prefix, (h, w) = found
            probs = [capture.maps[i] for i in kept]
            grads: list[torch.Tensor] = []
            if self.needs_gradient:
                picked = logits.gather(1, tb.view(-1, 1)).sum()
                raw = torch.autograd.grad(picked, [capture.sources[i] for i in kept],
                                          allow_unused=True, materialize_grads=True)
                grads = [g.reshape(p.shape) for g, p in zip(raw, probs, strict=True)]
            with torch.no_grad():
                r = self.relevance([p.detach().float() for p in probs],
                                   [g.detach().float() for g in grads])
                # without a class token, the mean row over tokens, less each token's own
                # starting identity
                row = r[:, 0] if prefix else (r - _identity(r)).mean(dim=1)
                grid = row[:, prefix:].reshape(len(xb), 1, h, w).clamp(min=0)
            up = LayerAttribution.interpolate(grid, image, interpolate_mode="bilinear")
            out.append(up[:, 0])
        return torch.cat(out).cpu()  # one copy, after the loop


def _identity(p: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(p.shape[-1], dtype=p.dtype, device=p.device)
    return eye.expand(p.shape[0], -1, -1)


class AttentionRollout(AttentionExplainer):
    """Attention rollout: ``R = prod_l norm((mean_h A_l + I) / 2)``; the same map for every
    class, so it shows where the model looks, not what decides a class."""

    name = "attention-rollout"
    title = "Attention rollout"

    def relevance(self, probs: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
        r = _identity(probs[0])
        for p in probs:
            a = p.mean(dim=1) + _identity(p)
            r = (a / a.sum(dim=-1, keepdim=True)) @ r
        return r


class AttentionGradient(AttentionExplainer):
    """Gradient-weighted attention (Chefer et al. 2021): ``R <- R + mean_h (dA * A)^+ R``
    from ``R = I``; class-specific through the explained logit's gradient."""

    name = "attention-gradient"
    title = "Attention x gradient"
    default_for: ClassVar[frozenset[Modality]] = frozenset({"image"})
    needs_gradient: ClassVar[bool] = True

    def relevance(self, probs: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
        r = _identity(probs[0]).clone()
        for p, g in zip(probs, grads, strict=True):
            r = r + (g * p).clamp(min=0).mean(dim=1) @ r
        return r
