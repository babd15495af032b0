"""Regenerate every example report: plan them (bundled models, registered extras, before/after
comparisons from the cards' ``parent``), run them with progress on stderr, and index them in
``README.md``."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.apps.examples.registry import ExampleContext, extra_examples
from audit.errors import AuditError, UsageError
from audit.io import atomic_write_text
from audit.report.markdown import md
from audit.report.render import load_result
from audit.report.text import SEVERITY_ORDER
from audit.result import AuditResult

MakeFn = Callable[[ExampleContext], list[Path]]


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


Planned = tuple[str, str, MakeFn]
"""(name, description, make) of one example."""


def planned_examples(only: list[str] | None = None) -> list[Planned]:
    """(name, description, make) for every example: registered extras marked to run first,
    the bundled models, the other extras, then the before/after comparisons."""
    from audit.loading import bundled_models

    extras = extra_examples()
    bundled = bundled_models()
    items: list[Planned] = [(ex.name, ex.description, ex.make) for ex in extras.values()
                            if not ex.after_models]
    items += [(name, f"bundled model {name}", _audit_bundled(name)) for name in bundled]
    items += [(ex.name, ex.description, ex.make) for ex in extras.values() if ex.after_models]
    for name, folder in bundled.items():
        parent = parent_name(folder / "card.json")
        if parent and parent in bundled and parent != name:
            items.append((f"{parent}-vs-{name}", f"before/after: {parent} → {name}",
                          _compare(parent, name)))
    return _select(items, only) if only else items


def _audit_bundled(name: str) -> MakeFn:
    def make(ctx: ExampleContext) -> list[Path]:
        ctx.audit(name, name)
        return ctx.written[name]
    return make


def _compare(parent: str, name: str) -> MakeFn:
    def compare(ctx: ExampleContext) -> list[Path]:
        before = ctx.audit(parent, parent)
        after = ctx.audit(name, name)
        pair = (str(before.model.get("name")), str(after.model.get("name")))
        if pair in ctx.compared:  # a registered example already compares them
            return []
        return ctx.diff(before, after, f"{parent}-vs-{name}", (parent, name))
    return compare


def _select(items: list[Planned], only: list[str]) -> list[Planned]:
    known = [n for n, _, _ in items]
    unknown = [n for n in only if n not in known]
    if unknown:
        raise UsageError(f"unknown example {unknown[0]!r}; examples: "
                         f"{', '.join(known) or 'none'}")
    return [it for it in items if it[0] in only]


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
            outcome = _run(ctx, name, description, make)
            progress.advance(overall)
            if outcome is not None:
                outcomes.append(outcome)
                console.print(_line(outcome), highlight=False)
    atomic_write_text(out / "README.md", index_markdown(_with_others(outcomes, out, only),
                                                        seed, quick, out))
    return outcomes


def _run(ctx: ExampleContext, name: str, description: str, make: MakeFn
         ) -> ExampleOutcome | None:
    """Make one example; an :class:`AuditError` is its outcome, not the end of the run."""
    start = time.perf_counter()
    try:
        files = make(ctx)
        error = ""
    except AuditError as e:
        files, error = [], e.message
    if not files and not error:
        return None  # nothing to do (e.g. a comparison another example already wrote)
    return ExampleOutcome(name, description, files, ctx.results.get(name),
                          time.perf_counter() - start, error, ctx.headlines.get(name, ""))


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


def _link(path: Path, out: Path | None) -> str:
    """``path`` relative to the index's folder (data files sit in sub-folders)."""
    if out is not None:
        with contextlib.suppress(ValueError):
            return path.resolve().relative_to(out.resolve()).as_posix()
    return path.name


def index_markdown(outcomes: list[ExampleOutcome], seed: int, quick: bool,
                   out: Path | None = None) -> str:
    """``reports/README.md`` (in ``out``): one row per example with its verdict and files."""
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
        files = " · ".join(f"[{p.suffix.lstrip('.')}]({_link(p, out)})" for p in o.files)
        lines.append(f"| {md(o.name)}: {md(o.description)} | {verdict} | {counts} | {files} |")
    return "\n".join(lines) + "\n"
