"""torch.export programs (``.pt2``) as modules with hookable layers, at any batch size.

``ExportedProgram.module()`` is one flat graph: its submodules only hold parameters and never
run, so a hook on them never fires. :func:`torch.export.unflatten` rebuilds the module tree
from the program's call signatures (each layer an ``InterpreterModule`` running its part of
the graph, called through ``nn.Module.__call__``), so forward hooks work on the real
computation. Each layer's class name (``original_name``) comes from the graph's
``nn_module_stack``.

A program exported with a fixed batch size (no ``dynamic_shapes`` for dim 0) refuses any other
(``Guard failed: x.size()[0] == 2``). :class:`ChunkedExport` runs it in chunks of that size,
the last one padded with copies of its last sample, and keeps the real rows; its layers are
:class:`~audit.loading.proxies.LayerProxy` stand-ins whose hooks fire once per forward pass
with the layer's output for the whole batch, joined over the chunks.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audit.errors import CheckpointError, ModelError
from audit.loading.pickles import check_export_archive
from audit.loading.proxies import Hook, Rehosted, Tap, hooks, tensor_args

_DYNAMIC_HINT = ('export with dynamic_shapes={"x": {0: torch.export.Dim("batch")}} so the '
                 "program takes any batch size")


def load_export(path: Path, trust: bool) -> tuple[nn.Module, str]:
    """The program in ``path`` as a module, and its format string (which says when it runs in
    chunks of a fixed batch)."""
    if not trust:
        check_export_archive(path)
    try:
        program = torch.export.load(str(path))
    except Exception as e:
        raise CheckpointError(f"{path} could not be loaded as torch.export: "
                              f"{type(e).__name__}: {str(e).splitlines()[0][:160]}") from None
    return from_program(program)


def from_program(program: Any) -> tuple[nn.Module, str]:
    """An ExportedProgram as :class:`ExportedModel`, or as :class:`ChunkedExport` when it has a
    fixed batch size."""
    batch = fixed_batch(program)
    if batch is None:
        return ExportedModel(program), "torch.export"
    return (ChunkedExport(program, batch),
            f"torch.export (exported with fixed batch {batch}; run in chunks of {batch})")


def fixed_batch(program: Any) -> int | None:
    """The batch size the program was specialised to, or ``None`` when dim 0 of its first
    input is dynamic (or there is no tensor input)."""
    from torch.export.graph_signature import InputKind

    names = [getattr(s.arg, "name", None) for s in program.graph_signature.input_specs
             if s.kind == InputKind.USER_INPUT]
    node = next((n for n in program.graph.nodes if n.op == "placeholder" and names
                 and n.name == names[0]), None)
    val = node.meta.get("val") if node is not None else None
    if not isinstance(val, torch.Tensor) or val.ndim == 0:
        return None
    size = val.shape[0]
    return int(size) if isinstance(size, int) else None


def layer_types(program: Any) -> dict[str, str]:
    """Class name of each layer by dotted name, from the graph's ``nn_module_stack``."""
    out: dict[str, str] = {}
    for node in program.graph.nodes:
        for entry in (node.meta.get("nn_module_stack") or {}).values():
            path, kind = entry[0], entry[1]
            name = kind if isinstance(kind, str) else getattr(kind, "__qualname__", str(kind))
            out.setdefault(str(path), name.rsplit(".", 1)[-1])
    return out


def unflatten(program: Any, state: dict[str, torch.Tensor] | None = None
              ) -> tuple[nn.Module, str | None]:
    """The program's module tree (and ``None``), or its flat module and why layers are not
    available. With ``state``, every parameter and buffer is a fresh copy of ``state``'s."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own deprecation notes inside unflatten
            inner: nn.Module = torch.export.unflatten(program)
        note = None
    except Exception as e:  # unflatten does not support every program
        inner = program.module()
        note = ("torch.export: the program's layers could not be recovered "
                f"(torch.export.unflatten: {type(e).__name__}: {str(e).splitlines()[0][:100]})")
    if state is not None:  # a copy: it must share storage with neither the program nor others
        clones: dict[int, torch.Tensor] = {}  # by the tensor replaced, so tied weights stay tied
        for path, mod in inner.named_modules(remove_duplicate=False):
            prefix = f"{path}." if path else ""
            for table in (mod._parameters, mod._buffers):
                for name, t in list(table.items()):
                    if t is None:
                        continue
                    if id(t) not in clones:
                        src = state.get(prefix + name, t).detach().clone()
                        clones[id(t)] = nn.Parameter(src, t.requires_grad) \
                            if isinstance(t, nn.Parameter) else src
                    table[name] = clones[id(t)]
    types = layer_types(program)
    for path, mod in inner.named_modules():
        if path in types and note is None:
            mod.__dict__["original_name"] = types[path]
    return inner, note


class _Flat:
    """``program.module()`` (generated code: faster than the unflattened modules, which
    interpret their graphs) running on the unflattened modules' very tensors, for the forward
    passes no hook watches; ``module`` is ``None`` when the two do not match by name."""

    def __init__(self, program: Any, inner: nn.Module, note: str | None) -> None:
        self.module: nn.Module | None = None if note else program.module()
        self.share(inner)

    def share(self, inner: nn.Module) -> None:
        """Point the flat module at ``inner``'s current tensors (after a copy or a move)."""
        if self.module is None:
            return
        own = _state(inner)
        for path, mod in self.module.named_modules(remove_duplicate=False):
            prefix = f"{path}." if path else ""
            for table in (mod._parameters, mod._buffers):
                for name, t in list(table.items()):
                    real = own.get(prefix + name)
                    if t is None:
                        continue
                    if real is None or real.shape != t.shape:
                        self.module = None
                        return
                    table[name] = real


def _watched(modules: Iterator[nn.Module]) -> bool:
    """Whether any of ``modules`` has a hook (then the unflattened modules must run)."""
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
               or m._backward_pre_hooks for m in modules)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = dict(module.named_parameters(remove_duplicate=False))
    out.update(module.named_buffers(remove_duplicate=False))
    return out


def _program_bytes(program: Any) -> bytes:
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def _program_from(data: bytes) -> Any:
    # our own serialisation of a program already checked when it was loaded
    return torch.export.load(io.BytesIO(data))


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, tuple | list) else out


def _call(module: nn.Module, *args: Any) -> Any:
    """Run an exported module; a shape guard becomes a one-line error with the fix."""
    try:
        return _first(module(*args))
    except (AssertionError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "Guard failed" in msg or "Expected input at" in msg:
            raise ModelError(f"the exported program rejects this input ({msg[:120]}); "
                             f"{_DYNAMIC_HINT}") from None
        raise


class ExportedModel(nn.Module):
    """An exported program whose layers are the unflattened modules, as children.

    The unflattened root (``inner``) is not a child, so layer names are the original ones
    (``block.conv1``); its children are, and the root's own tensors are registered here."""

    def __init__(self, program: Any, inner: nn.Module | None = None,
                 note: str | None = None) -> None:
        super().__init__()
        if inner is None:
            inner, note = unflatten(program)
        self.__dict__["program"] = program
        self.__dict__["inner"] = inner
        self.__dict__["flat"] = _Flat(program, inner, note)
        self.layer_note = note
        for name, child in inner.named_children():
            self.add_module(name, child)
        self._adopt_root()

    program: Any
    inner: nn.Module
    flat: _Flat

    def _adopt_root(self) -> None:
        self._parameters.clear()
        self._buffers.clear()
        self._parameters.update({k: v for k, v in self.inner._parameters.items() if v is not None})
        self._buffers.update({k: v for k, v in self.inner._buffers.items() if v is not None})

    def forward(self, *args: Any) -> Any:
        if self.flat.module is not None and \
                not _watched(m for c in self.children() for m in c.modules()):
            return _call(self.flat.module, *args)
        return _call(self.inner, *args)

    def _apply(self, fn: Any, recurse: bool = True) -> ExportedModel:
        self.inner._apply(fn)  # moves the children too: they are the same modules
        self._adopt_root()
        self.flat.share(self.inner)
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ExportedModel:
        # an ExportedProgram (fake tensors in its metadata) cannot be deep-copied
        inner, note = unflatten(self.program, _state(self.inner))
        new = ExportedModel(self.program, inner, note)
        new.train(self.training)
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_exported, (_program_bytes(self.program), _state(self.inner),
                                    self.training))


def _restore_exported(data: bytes, state: dict[str, torch.Tensor],
                      training: bool) -> ExportedModel:
    program = _program_from(data)
    inner, note = unflatten(program, state)
    new = ExportedModel(program, inner, note)
    new.train(training)
    return new


class ChunkedExport(Rehosted):
    """A program exported with a fixed ``batch`` size, run in chunks of it (``impl`` is its
    unflattened module)."""

    def __init__(self, program: Any, batch: int, inner: nn.Module | None = None,
                 note: str | None = None) -> None:
        if inner is None:
            inner, note = unflatten(program)
        self.__dict__["program"] = program
        self.__dict__["flat"] = _Flat(program, inner, note)
        self.batch = batch
        self._real = dict(inner.named_modules())
        super().__init__(inner)
        self.layer_note = note

    program: Any
    flat: _Flat

    def _apply(self, fn: Any, recurse: bool = True) -> ChunkedExport:
        super()._apply(fn, recurse)
        self.flat.share(self.impl)
        return self

    def train(self, mode: bool = True) -> ChunkedExport:
        nn.Module.train(self, mode)  # the graph is fixed; only the flags follow
        return self

    def _chunks(self, x: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
        out = []
        for i in range(0, len(x), self.batch):
            chunk = x[i:i + self.batch]
            k = len(chunk)
            if k < self.batch:  # padding rows: copies of a real sample, dropped afterwards
                chunk = torch.cat([chunk, chunk[-1:].expand(self.batch - k, *chunk.shape[1:])])
            out.append((chunk, k))
        return out

    def run(self, *args: Any) -> Any:
        x, rest = args[0], args[1:]
        module = self.flat.module if self.flat.module is not None else self.impl
        return torch.cat([_call(module, c, *rest)[:k] for c, k in self._chunks(x)])

    def run_tapped(self, args: tuple[Any, ...], paths: list[str]) -> tuple[Any, list[Tap]]:
        x, rest = args[0], args[1:]
        chunks = self._chunks(x)
        modules = {p: self._real[p] for p in paths}
        if len(chunks) == 1:
            return self._one_chunk(chunks[0], rest, modules)
        # first each chunk's layer outputs, joined over the chunks; then the model again, each
        # layer's output replaced by its rows of the joined one (the same values), so the
        # output is computed from the joined tensors and gradients reach them
        per_chunk: list[list[Tap]] = []
        for chunk, k in chunks:
            calls: list[Tap] = []
            per_chunk.append(calls)
            with hooks(modules, partial(_recorder, calls=calls, k=k)):
                _call(self.impl, chunk, *rest)
        if any(len(c) != len(per_chunk[0]) for c in per_chunk):
            return self.run(*args), []  # the chunks took different paths: no taps
        joined = [_join([c[j] for c in per_chunk]) for j in range(len(per_chunk[0]))]
        outs, row = [], 0
        for chunk, k in chunks:
            # one counter for all hooked layers: they fire in the order pass one recorded
            replace = _replacer(joined, iter(range(len(joined))), row, k)
            with hooks(modules, partial(_same_hook, replace)):
                outs.append(_call(self.impl, chunk, *rest)[:k])
            row += k
        return torch.cat(outs), joined

    def _one_chunk(self, chunk: tuple[torch.Tensor, int], rest: tuple[Any, ...],
                   modules: dict[str, nn.Module]) -> tuple[Any, list[Tap]]:
        x, k = chunk
        taps: list[Tap] = []

        def make(path: str) -> Hook:
            def fn(mod: nn.Module, a: tuple[Any, ...], out: Any) -> Any:
                if not isinstance(out, torch.Tensor):
                    taps.append(Tap(path, a, out))
                    return None
                kept = out[:k]  # the real rows; the rest of the model runs on them
                taps.append(Tap(path, tensor_args(a, slice(0, k)), kept))
                return kept if k == len(out) else torch.cat([kept, out[k:]])
            return fn

        with hooks(modules, make):
            out = _call(self.impl, x, *rest)[:k]
        return out, taps

    def copy_model(self) -> ChunkedExport:
        inner, note = unflatten(self.program, _state(self.impl))
        return ChunkedExport(self.program, self.batch, inner, note)

    def serialize(self) -> tuple[bytes, dict[str, torch.Tensor], int]:
        return _program_bytes(self.program), _state(self.impl), self.batch

    @classmethod
    def restore(cls, data: Any) -> ChunkedExport:
        raw, state, batch = data
        program = _program_from(raw)
        inner, note = unflatten(program, state)
        return cls(program, batch, inner, note)


def _recorder(path: str, *, calls: list[Tap], k: int) -> Hook:
    def fn(mod: nn.Module, a: tuple[Any, ...], out: Any) -> None:
        kept = out[:k] if isinstance(out, torch.Tensor) else out
        calls.append(Tap(path, tensor_args(a, slice(0, k)), kept))
    return fn


def _same_hook(hook: Hook, path: str) -> Hook:
    return hook


def _join(parts: list[Tap]) -> Tap:
    first = parts[0]
    if not isinstance(first.output, torch.Tensor):
        return first
    args = tuple(torch.cat([p.args[i] for p in parts]) if isinstance(a, torch.Tensor) and a.ndim
                 else a for i, a in enumerate(first.args))
    return Tap(first.path, args, torch.cat([p.output for p in parts]))


def _replacer(joined: list[Tap], counter: Iterator[int], row: int, k: int) -> Hook:
    def fn(mod: nn.Module, a: tuple[Any, ...], out: Any) -> Any:
        tap = joined[next(counter)]
        if not isinstance(out, torch.Tensor):
            return None
        kept = tap.output[row:row + k]
        return kept if k == len(out) else torch.cat([kept, out[k:]])
    return fn
