"""Choosing the Grad-CAM target layer of a model never seen before, by tracing shapes.

One forward pass with a forward hook on every submodule records, in the order modules finish,
each module's output shape and how often it ran. The target is the last module to finish whose
output is a spatial feature map ``(N, C, h, w)`` with ``h * w > 1``. Because a container finishes
after its children, this picks the outermost module holding the last spatial computation: the
``features`` ``Sequential`` of a plain CNN, the last residual block (output after the skip
addition) of a ResNet. Modules that ran more than once (a shared ``ReLU``) and adaptive pooling
heads (they shrink maps to a few cells for the classifier) are not candidates.

TorchScript and torch.export models loaded by :mod:`audit.loading` have hookable layers of the
original names (stand-ins that the real model feeds, see :mod:`audit.loading.proxies`); a
module's class is its ``original_name`` there. A model that cannot expose its layers says why
in a ``layer_note`` attribute, which the messages here repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from audit.errors import UsageError

_HEAD_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_HEAD_POOL_NAMES = frozenset(c.__name__ for c in _HEAD_POOLS)


def _is_head_pool(module: nn.Module) -> bool:
    # stand-ins of TorchScript/exported layers are not instances but keep the class name
    return isinstance(module, _HEAD_POOLS) or \
        getattr(module, "original_name", None) in _HEAD_POOL_NAMES


def unavailable_reason(model: nn.Module) -> str | None:
    """Why ``model`` exposes no layers to hook, when it knows (else ``None``)."""
    if isinstance(model, torch.jit.ScriptModule):
        return ("a TorchScript module in memory cannot take forward hooks; save it with "
                "torch.jit.save and audit the file, or wrap it with audit.loading.hookable")
    for mod in model.modules():
        note = getattr(mod, "layer_note", None)
        if isinstance(note, str) and note:
            return note
    return None


@dataclass(frozen=True)
class LayerInfo:
    """A traced module: its dotted name, the module, per-sample output shape, call count."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]
    calls: int

    @property
    def spatial(self) -> bool:
        """True when the output is a ``(C, h, w)`` feature map with more than one cell."""
        return len(self.shape) == 3 and self.shape[1] * self.shape[2] > 1


def trace_layers(model: nn.Module, sample: torch.Tensor) -> list[LayerInfo]:
    """Every submodule with a tensor output, in the order they finish on ``sample`` (a batch of
    one or more inputs). Returns ``[]`` when the model does not support hooks (a TorchScript
    module in memory; loaded TorchScript and exported models do)."""
    order: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    modules = dict(model.named_modules())
    handles = []

    def hook(name: str) -> Any:
        def fn(module: nn.Module, args: Any, out: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(int(s) for s in out.shape[1:])
                if name in order:
                    order.remove(name)
                order.append(name)
        return fn

    try:
        for name, mod in modules.items():
            if name:
                handles.append(mod.register_forward_hook(hook(name)))
    except (RuntimeError, AttributeError, NotImplementedError):
        for h in handles:
            h.remove()
        return []
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in handles:
            h.remove()
    return [LayerInfo(n, modules[n], shapes[n], calls[n]) for n in order]


def spatial_layers(model: nn.Module, sample: torch.Tensor) -> list[LayerInfo]:
    """Grad-CAM candidates in finishing order: spatial output, ran once, not a pooling head."""
    return [li for li in trace_layers(model, sample)
            if li.spatial and li.calls == 1 and not _is_head_pool(li.module)]


def find_target_layer(model: nn.Module, sample: torch.Tensor,
                      name: str | None = None) -> LayerInfo | None:
    """The Grad-CAM target layer: the module called ``name`` (``--layer``) or, by default, the
    last spatial module (see the module doc). ``None`` when the model has no spatial layer.

    Raises :class:`UsageError` when ``name`` is not a module of the model or its output is not a
    spatial feature map, listing the candidates.
    """
    traced = trace_layers(model, sample)
    candidates = [li for li in traced
                  if li.spatial and li.calls == 1 and not _is_head_pool(li.module)]
    if name is None:
        return candidates[-1] if candidates else None
    why = unavailable_reason(model) if not candidates else None
    hint = ", ".join(li.name for li in candidates[-8:]) or (
        f"none ({why})" if why else "none (no module outputs a (C, h, w) feature map)")
    by_name = {li.name: li for li in traced}
    if name not in dict(model.named_modules()) or not name:
        raise UsageError(f"--layer {name!r} is not a module of the model; spatial layers: "
                         f"{hint}")
    found = by_name.get(name)
    if found is None or not found.spatial:
        shape = ("no tensor (or never ran)" if found is None else f"shape {found.shape}")
        raise UsageError(f"--layer {name!r} outputs {shape}, not a (C, h, w) feature map; "
                         f"spatial layers: {hint}")
    if found.calls != 1:
        raise UsageError(f"--layer {name!r} runs {found.calls} times per forward pass, so its "
                         f"gradients are ambiguous; spatial layers: {hint}")
    return found
