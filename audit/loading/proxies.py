"""Hookable stand-ins for the layers of models whose own layers cannot take forward hooks.

Grad-CAM, layer tracing and captum's layer methods put forward hooks on submodules. A
TorchScript module refuses them, and a model run in chunks (a ``.pt2`` exported with a fixed
batch size) would call each hook once per chunk. :class:`Rehosted` stands between: it mirrors
the real model's module tree with :class:`LayerProxy` modules of the same dotted names, which
own the real layers' parameters and buffers (the very tensors, so optimisers, in-place
randomisation and ``state_dict`` act on the model that runs). When a forward pass finds hooks on
some proxies, the subclass runs the real model *tapped* at those layers, returning each call's
inputs and output in the order the calls finished; every proxy is then called with them and
returns that output, so ``nn.Module`` fires its hooks on tensors of the real autograd graph:
gradients taken with respect to them are the real layer's. A hook's replacement output cannot
flow back into the real model (it has already run) and is ignored.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class LayerProxy(nn.Module):
    """Stands for the real submodule of the same dotted name; ``original_name`` is its class
    name (as TorchScript's ``original_name``), e.g. ``Conv2d``."""

    def __init__(self, original_name: str) -> None:
        super().__init__()
        self.original_name = original_name
        self.replay: list[Any] = []

    def forward(self, *args: Any) -> Any:
        return self.replay.pop(0)

    def extra_repr(self) -> str:
        return self.original_name


@dataclass
class Tap:
    """One call of a tapped layer: its dotted name, positional inputs and output."""

    path: str
    args: tuple[Any, ...]
    output: Any


class Rehosted(nn.Module):
    """A model run by ``impl`` (not a child module: its own layers are not hookable) with
    :class:`LayerProxy` children mirroring its layers. Subclasses give the layer tree, how to
    run, how to run tapped, and how to copy.

    ``layer_note`` says why layers are unavailable when tapping cannot work (else ``None``).
    """

    def __init__(self, impl: Any) -> None:
        super().__init__()
        self.__dict__["impl"] = impl
        self.layer_note: str | None = None
        self._proxies: dict[str, LayerProxy] = {}
        for path, kind in self.layer_tree():
            parent_path, _, leaf = path.rpartition(".")
            parent = self._proxies[parent_path] if parent_path else self
            proxy = LayerProxy(kind)
            parent.add_module(leaf, proxy)
            self._proxies[path] = proxy
        self.bind()

    impl: Any
    _real: dict[str, Any]
    """The real model's modules by dotted name; subclasses set it before ``__init__``."""

    def layer_tree(self) -> Iterator[tuple[str, str]]:
        """``(dotted name, class name)`` of each real layer, parents before children."""
        for path, mod in self._real.items():
            if path:
                yield path, str(getattr(mod, "original_name", type(mod).__name__))

    def real_tensors(self, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The real parameters and buffers owned by the layer ``path`` ("" for the root)."""
        mod = self._real[path]
        return ({k: v for k, v in mod._parameters.items() if v is not None},
                {k: v for k, v in mod._buffers.items() if v is not None})

    @abstractmethod
    def run(self, *args: Any) -> Any:
        """The real model's output."""

    @abstractmethod
    def run_tapped(self, args: tuple[Any, ...], paths: list[str]) -> tuple[Any, list[Tap]]:
        """The output and every call of the layers ``paths``, in the order the calls
        finished; each tap's output must be a tensor the output was computed from."""

    @abstractmethod
    def copy_model(self) -> Rehosted:
        """An independent copy (its own real model, with the current parameters)."""

    @abstractmethod
    def serialize(self) -> Any:
        """A picklable form of the real model with its current parameters."""

    @classmethod
    @abstractmethod
    def restore(cls, data: Any) -> Rehosted:
        """The model back from :meth:`serialize`."""

    def bind(self) -> None:
        """(Re)point every proxy at the real layer's current tensors."""
        for path, owner in [("", self), *self._proxies.items()]:
            params, buffers = self.real_tensors(path)
            owner._parameters.clear()
            owner._buffers.clear()
            # plain dict writes: TorchScript parameters are plain tensors, not nn.Parameter
            owner._parameters.update(params)
            owner._buffers.update(buffers)

    def forward(self, *args: Any) -> Any:
        hooked = [p for p, m in self._proxies.items() if m._forward_hooks or m._forward_pre_hooks]
        if not hooked:
            return self.run(*args)
        out, taps = self.run_tapped(args, hooked)
        try:
            for tap in taps:
                proxy = self._proxies[tap.path]
                proxy.replay.append(tap.output)
                proxy(*tap.args)
        finally:
            for proxy in self._proxies.values():
                proxy.replay.clear()
        return out

    def train(self, mode: bool = True) -> Rehosted:
        super().train(mode)
        self.impl.train(mode)
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> Rehosted:
        # moves and casts act on the real model; the proxies then point at its new tensors
        self.impl._apply(fn)
        self.bind()
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Rehosted:
        # the real model is copied its own way (TorchScript modules and exported programs do
        # not deep-copy like Python modules); hooks are not copied
        new = self.copy_model()
        new.train(self.training)
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled for an isolated check's child process: the real model travels serialised
        return (_restore, (type(self), self.serialize(), self.training))


def _restore(cls: type[Rehosted], data: Any, training: bool) -> Rehosted:
    new = cls.restore(data)
    new.train(training)
    return new


Hook = Callable[[nn.Module, tuple[Any, ...], Any], Any]


@contextmanager
def hooks(modules: dict[str, nn.Module], make: Callable[[str], Hook]) -> Iterator[None]:
    """Forward hooks ``make(path)`` on the real ``modules`` while the block runs."""
    handles = [m.register_forward_hook(make(p)) for p, m in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def tensor_args(args: tuple[Any, ...], rows: slice) -> tuple[Any, ...]:
    """``args`` with every tensor argument cut to ``rows`` (the others as they are)."""
    return tuple(a[rows] if isinstance(a, torch.Tensor) and a.ndim else a for a in args)
