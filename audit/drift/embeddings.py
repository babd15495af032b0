"""The audited model's own representation of its inputs: the input of its classification head.

The head is found by tracing, as the Grad-CAM layer is (:func:`audit.saliency.layers.
trace_layers`): walking back from the last module to finish, over the modules whose output
carries the logits (their shape up to singleton dimensions, as a final ``Linear`` and any
softmax after it; or one map per class, as a 1x1-convolution head before its pooling), the
earliest of them is the head, and what it receives is the penultimate representation. A
spatial input (into a 1x1-convolution head) is averaged over its cells; anything else is
flattened. A model whose layers cannot be hooked, or whose head takes no single tensor, falls
back to its logits, and the result says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from audit.distributed import current
from audit.saliency.layers import LayerInfo, trace_layers, unavailable_reason
from audit.subject import Subject

__all__ = ["Embedder", "find_head"]


def _carries_logits(shape: tuple[int, ...], classes: int) -> bool:
    """Whether a per-sample output of ``shape`` is the logits (up to singleton dimensions) or
    one map per class (``(classes, h, w)`` before a pooling)."""
    return math.prod(shape) == classes or (len(shape) == 3 and shape[0] == classes)


def find_head(model: nn.Module, sample: torch.Tensor) -> LayerInfo | None:
    """The classification head of ``model``: the earliest of the trailing modules whose output
    carries the logits (see the module doc), or ``None`` when none can be hooked."""
    traced = [li for li in trace_layers(model, sample)
              if li.calls == 1 and not list(li.module.children())]
    if not traced:
        return None
    with torch.no_grad():
        classes = int(math.prod(model(sample).shape[1:]))
    head = None
    for li in reversed(traced):
        if not _carries_logits(li.shape, classes):
            break
        head = li
    return head


@dataclass
class Embedder:
    """Penultimate-layer embeddings of a subject's model; ``layer`` names the head whose input
    they are, ``note`` says why the logits stand in when no head could be hooked."""

    subject: Subject
    layer: str | None
    note: str = ""

    @classmethod
    def of(cls, subject: Subject) -> Embedder:
        """The embedder of ``subject``'s model (head found on two audit samples)."""
        sample = subject.data.x[:2].to(subject.device)
        head = find_head(subject.model, sample)
        if head is None:
            why = unavailable_reason(subject.model) or "no module of the model produces the logits"
            return cls(subject, None, f"the logits stand in for the embeddings ({why})")
        return cls(subject, head.name)

    @property
    def source(self) -> str:
        """What the embeddings are, for the report."""
        return f"input of {self.layer}" if self.layer else "logits"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(N, D)`` of ``x`` (float32 on the CPU), in the subject's batches."""
        return self.with_logits(x)[0]

    def with_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and logits of ``x`` from the same forward passes (in a distributed
        audit each rank embeds a block of the batches, :mod:`audit.distributed`)."""
        if self.layer is None:
            logits = self.subject.logits(x)
            return logits, logits
        module = dict(self.subject.model.named_modules())[self.layer]

        def unit(_: int, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
            outs: list[torch.Tensor] = []

            def grab(_: nn.Module, args: Any) -> None:
                feats = args[0] if args and isinstance(args[0], torch.Tensor) else None
                if feats is None:
                    raise TypeError("the head's input is not a tensor")
                if feats.ndim == 4:  # (N, C, h, w) into a 1x1-convolution head: pool the cells
                    feats = feats.mean(dim=(2, 3))
                outs.append(feats.detach().reshape(feats.shape[0], -1).float().cpu())

            handle = module.register_forward_pre_hook(grab)
            try:
                logits = self.subject.logits(x[rows])  # one process's batches inside the map
            finally:
                handle.remove()
            return (torch.cat(outs) if outs else torch.empty(0, 0)), logits

        parts = current().map(unit, int(x.shape[0]), self.subject.batch_size)
        if not parts:
            return torch.empty(0, 0), self.subject.logits(x)
        return torch.cat([e for e, _ in parts]), torch.cat([lg for _, lg in parts])
