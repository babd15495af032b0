"""Regenerate the example reports in ``reports/`` with one command: ``audit examples``.

Every bundled model (``audit.loading.bundled_models()``) is audited with the default checks and
the given seed, and written as ``reports/<name>.html`` + ``.json`` + ``.md``. Every bundled
model whose card names a bundled ``parent`` (a hardened model made by ``audit harden`` from
``digits-cnn`` says ``"parent": {"name": "digits-cnn", ...}``) also gets a before/after
comparison, ``reports/<parent>-vs-<name>.html`` + ``.md``, with no extra code, unless a
registered extra example (which runs first) already compared the two. ``reports/README.md``
indexes them all. Progress is shown
with rich on stderr.

Adding any other example: in a module listed in ``_EXAMPLE_MODULES``, call::

    from audit.report.examples import Example, ExampleContext, register_example

    def make(ctx: ExampleContext) -> list[Path]:
        before = ctx.audit("digits-cnn", "digits-cnn")          # or reuse ctx.results[...]
        after = ctx.audit(hardened_model_folder, "digits-cnn-hardened")
        return ctx.diff(before, after, "hardening-digits-cnn", ("before", "after"))

    register_example(Example("hardening-digits-cnn", "digits-cnn before/after hardening",
                             make, after_models=True))
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import AuditError, UsageError
from audit.io import atomic_write_text
from audit.plugins import import_plugins
from audit.report.diff import write_diff
from audit.report.markdown import md, render_markdown
from audit.report.render import write_report
from audit.report.view import SEVERITY_ORDER
from audit.result import AuditResult

# Modules that register extra examples when imported (the hardening before/after needs none:
# it is the automatic comparison of digits-cnn-robust with its card's parent, digits-cnn).
_EXAMPLE_MODULES: list[str] = ["audit.fairness.examples"]

ProgressFn = Callable[[str, float], None]


@dataclass
class ExampleContext:
    """What an example needs: where to write, the seed, and helpers that audit and compare."""

    out_dir: Path
    seed: int = 0
    quick: bool = False
    progress: ProgressFn | None = None
    render_only: bool = False
    results: dict[str, AuditResult] = field(default_factory=dict)
    written: dict[str, list[Path]] = field(default_factory=dict)
    compared: set[tuple[str, str]] = field(default_factory=set)
    headlines: dict[str, str] = field(default_factory=dict)

    def audit(self, model: str | Path | Any, name: str, **kwargs: Any) -> AuditResult:
        """Audit ``model`` (bundled name, folder, file or LoadedModel) and write
        ``<out>/<name>.html``, ``.json`` and ``.md``; results are cached by ``name``."""
        if name in self.results:
            return self.results[name]
        saved = self.out_dir / f"{name}.json"
        if self.render_only and saved.is_file():
            from audit.report.render import load_result

            return self._write(AuditResult.from_dict(load_result(saved)), name)
        from audit.runner import run_audit

        command = f"audit run {model if isinstance(model, str | Path) else name} " \
                  f"--seed {self.seed}{' --quick' if self.quick else ''} " \
                  f"--out {self.out_dir.as_posix()}/{name}.html"
        result = run_audit(model, seed=self.seed, quick=self.quick or None,
                           progress=self.progress or False, command=command, **kwargs)
        _relative_model_path(result)
        return self._write(result, name)

    def _write(self, result: AuditResult, name: str) -> AuditResult:
        html, json_path = write_report(result, self.out_dir / f"{name}.html")
        md_path = self.out_dir / f"{name}.md"
        atomic_write_text(md_path, render_markdown(result))
        self.results[name] = result
        self.written[name] = [html, json_path, md_path]
        return result

    def diff(self, before: AuditResult, after: AuditResult, name: str,
             labels: tuple[str, str] = ("before", "after")) -> list[Path]:
        """Write ``<out>/<name>.html`` and ``.md`` comparing two results."""
        from audit.report.diff import diff_results

        self.headlines[name] = diff_results(before, after, labels).headline
        html, md_path = write_diff(before, after, self.out_dir / f"{name}.html", labels)
        self.compared.add((str(before.model.get("name")), str(after.model.get("name"))))
        self.written[name] = [html, md_path]
        return [html, md_path]


@dataclass(frozen=True)
class Example:
    """An extra example: ``make(ctx)`` writes files under ``ctx.out_dir`` and returns them.

    ``after_models``: run after the bundled models' reports (so it can reuse their results).
    """

    name: str
    description: str
    make: Callable[[ExampleContext], list[Path]]
    after_models: bool = True


_EXTRA: dict[str, Example] = {}


def register_example(example: Example) -> Example:
    """Add an extra example to ``audit examples``."""
    _EXTRA[example.name] = example
    return example


def extra_examples() -> dict[str, Example]:
    """Registered extra examples by name (importing the planned example modules first)."""
    import_plugins(_EXAMPLE_MODULES)
    return dict(_EXTRA)


def _relative_model_path(result: AuditResult) -> None:
    """Show bundled model paths relative to the working folder in committed examples."""
    path = result.model.get("path")
    if isinstance(path, str):
        with contextlib.suppress(ValueError):
            result.model["path"] = Path(path).resolve().relative_to(Path.cwd()).as_posix()


@dataclass
class ExampleOutcome:
    """What one example produced, for the index and the terminal."""

    name: str
    description: str
    files: list[Path]
    result: AuditResult | None
    seconds: float
    error: str = ""
    headline: str = ""


def parent_name(card_path: Path) -> str | None:
    """The name of the model a bundled model was derived from (its card's ``parent``), if
    any: ``"parent": {"name": "digits-cnn", ...}`` or ``"parent": "digits-cnn"``."""
    try:
        parent = json.loads(card_path.read_text(encoding="utf-8")).get("parent")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(parent, dict):
        parent = parent.get("name")
    return parent if isinstance(parent, str) and parent else None


def planned_examples(only: list[str] | None = None) -> list[tuple[str, str, Callable[[
        ExampleContext], list[Path]]]]:
    """(name, description, make) for every example, bundled models first."""
    from audit.loading import bundled_models

    items: list[tuple[str, str, Callable[[ExampleContext], list[Path]]]] = []
    extras = extra_examples()
    for ex in extras.values():
        if not ex.after_models:
            items.append((ex.name, ex.description, ex.make))
    for name in bundled_models():
        def make(ctx: ExampleContext, name: str = name) -> list[Path]:
            ctx.audit(name, name)
            return ctx.written[name]
        items.append((name, f"bundled model {name}", make))
    for ex in extras.values():
        if ex.after_models:
            items.append((ex.name, ex.description, ex.make))
    bundled = bundled_models()
    for name, folder in bundled.items():
        parent = parent_name(folder / "card.json")
        if parent and parent in bundled and parent != name:
            def compare(ctx: ExampleContext, name: str = name, parent: str = parent
                        ) -> list[Path]:
                before = ctx.audit(parent, parent)
                after = ctx.audit(name, name)
                pair = (str(before.model.get("name")), str(after.model.get("name")))
                if pair in ctx.compared:  # a registered example already compares them
                    return []
                return ctx.diff(before, after, f"{parent}-vs-{name}", (parent, name))
            items.append((f"{parent}-vs-{name}", f"before/after: {parent} → {name}",
                          compare))
    if only:
        known = [n for n, _, _ in items]
        unknown = [n for n in only if n not in known]
        if unknown:
            raise UsageError(f"unknown example {unknown[0]!r}; examples: "
                             f"{', '.join(known) or 'none'}")
        items = [it for it in items if it[0] in only]
    return items


def regenerate_examples(out_dir: str | Path = "reports", *, only: list[str] | None = None,
                        seed: int = 0, quick: bool = False, show_progress: bool = True,
                        console: Any = None, render_only: bool = False) -> list[ExampleOutcome]:
    """Regenerate every example report under ``out_dir`` and its ``README.md`` index.

    One failing example is reported and the others still run. ``render_only`` re-renders
    from the JSON results already in ``out_dir`` (after a change to the renderers) and audits
    only the models that have none.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    out = Path(out_dir)
    console = console or Console(stderr=True)
    items = planned_examples(only)
    if not items:
        raise UsageError("no bundled models found (set AUDIT_MODELS_DIR?) and no examples "
                         "registered")
    outcomes: list[ExampleOutcome] = []
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=True, disable=not show_progress)
    with progress:
        overall = progress.add_task("examples", total=len(items))
        checks = progress.add_task("", total=100, visible=False)

        def on_check(description: str, fraction: float) -> None:
            progress.update(checks, description=f"  {description}",
                            completed=round(fraction * 100), visible=True)

        ctx = ExampleContext(out_dir=out, seed=seed, quick=quick, progress=on_check,
                             render_only=render_only)
        for name, description, make in items:
            progress.update(overall, description=f"examples: {name}")
            progress.update(checks, completed=0, description="  starting")
            start = time.perf_counter()
            try:
                files = make(ctx)
                error = ""
            except AuditError as e:
                files, error = [], e.message
            seconds = time.perf_counter() - start
            progress.advance(overall)
            if not files and not error:
                continue  # nothing to do (e.g. a comparison another example already wrote)
            outcome = ExampleOutcome(name, description, files, ctx.results.get(name),
                                     seconds, error, ctx.headlines.get(name, ""))
            outcomes.append(outcome)
            console.print(_line(outcome), highlight=False)
    atomic_write_text(out / "README.md", index_markdown(_with_others(outcomes, out, only),
                                                        seed, quick))
    return outcomes


def _with_others(outcomes: list[ExampleOutcome], out: Path, only: list[str] | None
                 ) -> list[ExampleOutcome]:
    """The outcomes of this run plus, with ``only``, the examples already on disk."""
    if not only:
        return outcomes
    ran = {o.name: o for o in outcomes}
    merged = []
    for name, description, _ in planned_examples(None):
        if name in ran:
            merged.append(ran[name])
            continue
        files = [p for p in (out / f"{name}.html", out / f"{name}.json", out / f"{name}.md")
                 if p.is_file()]
        if not files:
            continue
        result = None
        if (out / f"{name}.json").is_file():
            from audit.report.render import load_result

            with contextlib.suppress(AuditError):
                result = AuditResult.from_dict(load_result(out / f"{name}.json"))
        merged.append(ExampleOutcome(name, description, files, result, 0.0))
    return merged


def _line(o: ExampleOutcome) -> str:
    if o.error:
        return f"[red]failed[/] {o.name}: {o.error}"
    verdict = ""
    if o.result is not None:
        s = o.result.summary
        colour = "green" if s["status"] == "pass" else "red"
        counts = ", ".join(f"{s['counts'][k]} {k}" for k in SEVERITY_ORDER if s["counts"][k])
        verdict = f"[bold {colour}]{s['status'].upper()}[/] {counts or 'no findings'} "
    elif o.headline:
        verdict = f"{o.headline} "
    files = ", ".join(p.as_posix() for p in o.files if p.suffix == ".html")
    return f"{o.name}: {verdict}-> {files} ({o.seconds:.1f} s)"


def index_markdown(outcomes: list[ExampleOutcome], seed: int, quick: bool) -> str:
    """``reports/README.md``: one row per example with its verdict and files."""
    lines = ["# Example reports", "",
             "Regenerate them all with `audit examples` (seed "
             f"{seed}{', quick mode' if quick else ''}). Each model's report is an HTML file "
             "(open it in a browser; it is self-contained and works offline), the JSON result "
             "it was rendered from, and a Markdown summary.", "",
             "| Example | Verdict | Findings | Files |", "|---|---|---|---|"]
    for o in outcomes:
        if o.error:
            lines.append(f"| {md(o.name)} | failed | {md(o.error, 200)} | |")
            continue
        verdict, counts = "–", "–"
        if o.result is not None:
            s = o.result.summary
            verdict = f"{s['status'].upper()} (fail on {s['fail_on']})"
            counts = ", ".join(f"{s['counts'][k]} {k}" for k in SEVERITY_ORDER
                               if s["counts"][k]) or "none"
        elif o.headline or any(p.suffix == ".html" for p in o.files):
            verdict, counts = "comparison", md(o.headline) or "see the comparison"
        files = " · ".join(f"[{p.suffix.lstrip('.')}]({p.name})" for p in o.files)
        lines.append(f"| {md(o.name)}: {md(o.description)} | {verdict} | {counts} | {files} |")
    return "\n".join(lines) + "\n"
