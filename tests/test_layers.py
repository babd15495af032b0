"""Imports run one way: result model -> loading/data -> methods -> checks -> runner/report ->
applications. Every import in audit/ is read from the source (top-level, lazy inside functions
and TYPE_CHECKING alike), so a cycle cannot hide behind a late import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "audit"

# Lowest layer first. A module's layer is the one of its longest matching prefix; in an area
# package the check-side modules (check, findings, section) sit above the methods.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundation", ["audit.errors", "audit.io", "audit.result", "audit._lazy", "audit.paths",
                    "audit.plugins", "audit.params", "audit.config.write", "audit.version",
                    "audit.stats", "audit.display", "audit.policy",
                    "audit.history_kinds", "audit.seeds",
                    "audit.sample_budget", "audit.store"]),
    ("loading and data", ["audit.card", "audit.subject", "audit.loading", "audit.datasets",
                          "audit.budget", "audit.devices", "audit.cost", "audit.distributed",
                          "audit.figures"]),
    ("methods", ["audit.saliency", "audit.surrogate", "audit.robustness", "audit.fairness",
                 "audit.certified", "audit.training", "audit.drift",
                 "audit.slices"]),
    ("checks", ["audit.checks", "audit.performance", "audit.config", "audit.crosscheck",
                "*.check", "*.findings",
                "*.section"]),
    ("runner and report", ["audit.runner", "audit.resume", "audit.execution", "audit.isolation",
                           "audit.report"]),
    ("applications", ["audit.cli", "audit.apps", "audit.zoo", "audit.__main__", "audit"]),
]
AREAS = ("saliency", "surrogate", "robustness", "fairness", "certified", "drift", "slices")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] in AREAS and parts[2] in ("check", "findings", "section"):
        return 3
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    assert best is not None, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return best


def imports_of(path: Path) -> set[str]:
    """Every audit module that ``path`` imports, resolved to the deepest existing module."""
    return imports_in(path.read_text(encoding="utf-8"), module_name(path),
                      path.name == "__init__.py")


def imports_in(source: str, me: str, is_package: bool) -> set[str]:
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = me.split(".") if is_package else me.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for n in names:
            if n == "audit" or n.startswith("audit."):
                found.add(_existing(n))
    found.discard(me)
    return found


def _existing(name: str) -> str:
    parts = name.split(".")
    while len(parts) > 1:
        p = PACKAGE.parent.joinpath(*parts)
        if p.with_suffix(".py").exists() or (p / "__init__.py").exists():
            return ".".join(parts)
        parts.pop()
    return "audit"


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_imports_a_higher_layer():
    bad = []
    for mod, deps in graph().items():
        for dep in sorted(deps):
            if dep == "audit" and mod != "audit":
                bad.append(f"{mod} imports the package root (import from the module instead)")
            elif layer_of(dep) > layer_of(mod):
                bad.append(f"{mod} ({LAYERS[layer_of(mod)][0]}) imports {dep} "
                           f"({LAYERS[layer_of(dep)][0]})")
    assert not bad, "layer violations:\n" + "\n".join(bad)


def _package(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else mod


def test_packages_form_no_cycle():
    edges: dict[str, set[str]] = {}
    for mod, deps in graph().items():
        for dep in deps:
            a, b = _package(mod), _package(dep)
            if a != b and a != "audit":
                edges.setdefault(a, set()).add(b)
    cycles = []
    for start in edges:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "package cycles:\n" + "\n".join(sorted(set(cycles)))


def test_the_result_model_and_renderers_do_not_need_torch():
    """``audit report`` renders a JSON file: nothing on that path may import torch."""
    import subprocess
    import sys

    code = ("import sys, audit.report.render, audit.report.markdown, audit.report.junit, "
            "audit.report.diff, audit.result; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("module", "layer"), [
    ("audit.robustness.check", "checks"), ("audit.robustness.attacks", "methods"),
    ("audit.report.view", "runner and report"), ("audit.cli.run", "applications"),
    ("audit.result", "foundation"), ("audit.loading.checkpoint", "loading and data"),
])
def test_layer_map(module: str, layer: str):
    assert LAYERS[layer_of(module)][0] == layer


def test_the_checker_sees_lazy_relative_and_type_only_imports():
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
              "    from audit.runner import x\n"
              "def f():\n    from ..report.render import render_html\n    import audit.cli.run\n"
              "from . import evaluate\n")
    found = imports_in(source, "audit.robustness.check", is_package=False)
    for wanted in ("audit.runner", "audit.report.render", "audit.cli", "audit.robustness"):
        assert any(m == wanted or m.startswith(wanted + ".") for m in found), wanted
    assert layer_of("audit.report.render") > layer_of("audit.robustness.check")
