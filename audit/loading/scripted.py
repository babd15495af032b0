"""TorchScript models with hookable layers.

``register_forward_hook`` raises on a ScriptModule, and a loaded archive has no Python code to
hook. But its module tree survives (``named_modules`` with each layer's ``original_name``), and
so does its forward graph, where every layer call is a ``prim::CallMethod[name="forward"]`` on
a chain of ``prim::GetAttr`` from ``self`` (scripted and traced modules alike).
:class:`ScriptedModel` taps it: to see layer ``block.conv1`` it copies the forward graph,
inlines the calls on the path to it (``block``: a copy of that layer's own graph, since layers
of one type share theirs), makes each call of a wanted layer (its inputs and output) extra
outputs of the graph, and compiles that graph into a function run by TorchScript as before. The
tapped outputs are the real intermediate tensors of the real computation, so gradients with
respect to them are exact; the values are the model's own. Calls inside ``if``/loop bodies of
the graph are not tapped (such a layer is reported as never running).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from audit.errors import CheckpointError
from audit.loading.proxies import Rehosted, Tap


def load_torchscript(path: Path) -> ScriptedModel:
    """A TorchScript archive as a :class:`ScriptedModel` (its code runs in TorchScript)."""
    try:
        script = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise CheckpointError(f"{path} is a damaged TorchScript archive: "
                              f"{str(e).splitlines()[0][:160] if str(e) else type(e).__name__}"
                              ) from None
    return ScriptedModel(script)


@dataclass
class _Record:
    path: str
    args: list[int]  # indices into the tapped function's outputs
    output: int
    depth: int


class ScriptedModel(Rehosted):
    """A TorchScript module (``impl``) whose layers are :class:`LayerProxy` children."""

    def __init__(self, impl: Any) -> None:
        self._compiled: dict[frozenset[str], tuple[Any, list[_Record]]] = {}
        self._real = dict(impl.named_modules())
        super().__init__(impl)

    def run(self, *args: Any) -> Any:
        return self.impl(*args)

    def run_tapped(self, args: tuple[Any, ...], paths: list[str]) -> tuple[Any, list[Tap]]:
        key = frozenset(paths)
        if key not in self._compiled:
            try:
                self._compiled[key] = tapped_forward(self.impl, self._real, key)
            except Exception as e:  # internal graph API: say why instead of failing the audit
                self.layer_note = ("TorchScript: its layers could not be tapped "
                                   f"({type(e).__name__}: {str(e).splitlines()[0][:120]})")
                self._compiled[key] = (None, [])
        fn, records = self._compiled[key]
        if fn is None:
            return self.impl(*args), []
        # unoptimised: the optimising executor fuses the graph into one differentiable node
        # whose outputs are siblings, so gradients would not reach the tapped outputs
        with torch.jit.optimized_execution(False):
            res = fn(self.impl._c, *args)
        taps = [Tap(r.path, tuple(res[i] for i in r.args), res[r.output]) for r in records]
        return res[0], taps

    def copy_model(self) -> ScriptedModel:
        return ScriptedModel(copy.deepcopy(self.impl))

    def serialize(self) -> bytes:
        buf = io.BytesIO()
        torch.jit.save(self.impl, buf)
        return buf.getvalue()

    @classmethod
    def restore(cls, data: Any) -> ScriptedModel:
        return cls(torch.jit.load(io.BytesIO(data), map_location="cpu"))


def _module_path(value: Any, self_value: Any) -> str | None:
    """The dotted name of the layer a graph value holds (a ``GetAttr`` chain from ``self``)."""
    names: list[str] = []
    while value.unique() != self_value.unique():
        node = value.node()
        if node.kind() != "prim::GetAttr":
            return None
        names.append(node.s("name"))
        value = node.inputsAt(0)
    return ".".join(reversed(names))


def _layer_calls(graph: Any, self_value: Any) -> Iterator[tuple[Any, str]]:
    for node in graph.nodes():  # the top block only: calls inside if/loop bodies are not tapped
        if node.kind() == "prim::CallMethod" and node.s("name") == "forward":
            path = _module_path(node.inputsAt(0), self_value)
            if path is not None:
                yield node, path


def tapped_forward(script: Any, modules: dict[str, Any], wanted: frozenset[str]
                   ) -> tuple[Any, list[_Record]]:
    """The forward of ``script`` compiled with each call of the ``wanted`` layers (inputs, then
    output) as extra outputs, and where each is: ``fn(script._c, *args)`` returns the model's
    output first. Records are in the order the calls finished."""
    graph = script.forward.graph.copy()
    self_value = next(iter(graph.inputs()))
    outputs = 1
    records: list[_Record] = []

    def record(path: str, args: list[Any], out: Any) -> None:
        nonlocal outputs
        idx = []
        for v in [*args, out]:
            # a graph output is a use of the value, so later inlining keeps it up to date
            graph.registerOutput(v)
            idx.append(outputs)
            outputs += 1
        records.append(_Record(path, idx[:-1], idx[-1], path.count(".")))

    changed = True
    while changed:  # inline the calls of layers that hold a wanted layer, outermost first
        changed = False
        for node, path in _layer_calls(graph, self_value):
            if not any(w.startswith(path + ".") for w in wanted):
                continue
            callee = modules[path].forward.graph.copy()
            with graph.insert_point_guard(node):
                outs = graph.insertGraph(callee, list(node.inputs()))
            args = list(node.inputs())[1:]
            node.output().replaceAllUsesWith(outs[0])
            node.destroy()
            if path in wanted:
                record(path, args, outs[0])
            changed = True
            break
    for node, path in _layer_calls(graph, self_value):
        if path in wanted:
            record(path, list(node.inputs())[1:], node.output())
    position = {v.unique(): -1 for v in graph.inputs()}
    for i, node in enumerate(graph.nodes()):
        for v in node.outputs():
            position[v.unique()] = i
    returned = list(graph.return_node().inputs())
    # a layer finishes when its output is made; a child whose output is its parent's (the
    # last layer of a Sequential) finishes first
    records.sort(key=lambda r: (position[returned[r.output].unique()], -r.depth))
    graph.makeMultiOutputIntoTuple()
    graph.lint()
    fn = torch._C._create_function_from_graph("audit_tapped_forward", graph)
    return fn, records
