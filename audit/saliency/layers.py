"""Choosing the Grad-CAM target layer of a model never seen before, by tracing shapes.

One forward and one backward pass with hooks on every submodule record, in the order modules
finish, each module's output shape, how often it ran, and whether the top logit's gradient
reaches its output's grid. The target is the last module to finish whose output is a grid over
the image (:mod:`audit.saliency.grids`: a feature map ``(N, C, h, w)``, channels-last
``(N, h, w, C)`` as in Swin or ConvNeXt blocks, or transformer tokens ``(N, k + h*w, C)`` with
``k`` class or distillation tokens) and whose grid the gradient reaches. Because a container
finishes after its children, this picks the outermost module holding the last spatial
computation: the ``features`` ``Sequential`` of a plain CNN, the last residual block (output
after the skip addition) of a ResNet. In a class-token ViT the patch tokens after the last
attention no longer reach the logits (the head reads the class token), so their gradient is
exactly zero and the last layer the gradient does reach is inside the last block's attention,
where pytorch-grad-cam's users are told to look by hand. Modules that ran more than once (a
shared ``ReLU``) and adaptive pooling heads (they shrink maps to a few cells for the
classifier) are not candidates.

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
from audit.saliency.grids import Layout, layout_of

_HEAD_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d,
               nn.AdaptiveMaxPool1d)
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
    """A traced module: its dotted name, the module, per-sample output shape, call count, the
    grid layout of its output (``None``: no grid) and whether the top logit's gradient reaches
    that grid (``None``: not measured)."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]
    calls: int
    layout: Layout | None = None
    reached: bool | None = None

    @property
    def spatial(self) -> bool:
        """True when the output is a grid over the image with more than one cell."""
        return self.layout is not None


def trace_layers(model: nn.Module, sample: torch.Tensor) -> list[LayerInfo]:
    """Every submodule with a tensor output, in the order they finish on ``sample`` (a batch of
    one or more inputs). Returns ``[]`` when the model does not support hooks (a TorchScript
    module in memory; loaded TorchScript and exported models do)."""
    order: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    grads: dict[str, torch.Tensor] = {}
    per_window: set[str] = set()  # outputs whose first axis is not the batch
    modules = dict(model.named_modules())
    is_image = sample.ndim >= 3  # grids and their gradients only matter for image models
    image = (int(sample.shape[-2]), int(sample.shape[-1])) if is_image else (1, 1)
    handles = []

    def keep_grad(name: str) -> Any:
        def fn(g: torch.Tensor) -> None:
            grads[name] = g.detach()
        return fn

    def hook(name: str) -> Any:
        def fn(module: nn.Module, args: Any, out: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(int(s) for s in out.shape[1:])
                if out.ndim and out.shape[0] != len(sample):
                    per_window.add(name)  # (N * windows, ...) inside Swin's attention
                if out.requires_grad and is_image:
                    out.register_hook(keep_grad(name))
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
        with torch.enable_grad() if is_image else torch.no_grad():
            x = sample.detach().clone().requires_grad_(is_image)
            out = model(x)
            if is_image:
                _top_logit_gradient(out, x)
    finally:
        for h in handles:
            h.remove()
    infos = []
    for n in order:
        layout = layout_of(shapes[n], image) if is_image and n not in per_window else None
        reached = _reaches(grads.get(n), layout) if layout is not None and grads else None
        infos.append(LayerInfo(n, modules[n], shapes[n], calls[n], layout, reached))
    return infos


def _top_logit_gradient(out: Any, x: torch.Tensor) -> None:
    """Backpropagate each sample's top logit to the input (firing the output hooks on the way,
    and leaving the parameters' ``.grad`` untouched), when the output is a logit tensor."""
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or not out.requires_grad:
        return
    try:
        torch.autograd.grad(out.max(dim=1).values.sum(), x, allow_unused=True)
    except RuntimeError:  # e.g. an in-place op the hooks cannot follow: no gradient facts
        return


def _reaches(grad: torch.Tensor | None, layout: Layout) -> bool:
    """Whether ``grad`` (of a module's output) is non-zero on its grid; for tokens, in every
    channel: a fused ``qkv`` projection, whose patch queries no longer reach a class-token
    head, is a part of the attention, not the token stream the CAM should read."""
    if grad is None:
        return False
    per_channel = layout.to_map(grad).abs().amax(dim=(0, 2, 3))
    return bool(per_channel.amin() > 0) if layout.kind == "tokens" else \
        bool(per_channel.amax() > 0)


def _candidate(li: LayerInfo) -> bool:
    return (li.spatial and li.calls == 1 and li.reached is not False
            and not _is_head_pool(li.module))


def spatial_layers(model: nn.Module, sample: torch.Tensor) -> list[LayerInfo]:
    """Grad-CAM candidates in finishing order: a grid output the top logit's gradient
    reaches, ran once, not a pooling head."""
    return [li for li in trace_layers(model, sample) if _candidate(li)]


def find_target_layer(model: nn.Module, sample: torch.Tensor,
                      name: str | None = None) -> LayerInfo | None:
    """The Grad-CAM target layer: the module called ``name`` (``--layer``) or, by default, the
    last spatial module (see the module doc). ``None`` when the model has no spatial layer.

    Raises :class:`UsageError` when ``name`` is not a module of the model, its output is not a
    grid over the image or the logits' gradient does not reach it, listing the candidates.
    """
    traced = trace_layers(model, sample)
    candidates = [li for li in traced if _candidate(li)]
    if name is None:
        return candidates[-1] if candidates else None
    why = unavailable_reason(model) if not candidates else None
    hint = ", ".join(li.name for li in candidates[-8:]) or (
        f"none ({why})" if why else "none (no module outputs a grid over the image)")
    by_name = {li.name: li for li in traced}
    if name not in dict(model.named_modules()) or not name:
        raise UsageError(f"--layer {name!r} is not a module of the model; spatial layers: "
                         f"{hint}")
    found = by_name.get(name)
    if found is None or not found.spatial:
        shape = ("no tensor (or never ran)" if found is None else f"shape {found.shape}")
        raise UsageError(f"--layer {name!r} outputs {shape}, not a grid over the image "
                         f"((C, h, w), (h, w, C) or tokens); spatial layers: {hint}")
    if found.reached is False:
        raise UsageError(f"--layer {name!r}: the logits' gradient does not reach its grid (as "
                         "for patch tokens after a class-token ViT's last attention), so its "
                         f"class activation map would be empty; spatial layers: {hint}")
    if found.calls != 1:
        raise UsageError(f"--layer {name!r} runs {found.calls} times per forward pass, so its "
                         f"gradients are ambiguous; spatial layers: {hint}")
    return found
