"""What an example is and what it may use: the context (where to write, the seed, helpers that
audit and compare) and the registry of extra examples, filled by the plugin modules."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.io import atomic_write_text
from audit.plugins import import_plugins
from audit.report.diff import diff_results, write_diff
from audit.report.markdown import render_markdown
from audit.report.render import load_result, write_report
from audit.result import AuditResult

# Modules that register extra examples when imported (the hardening before/after needs none:
# it is the automatic comparison of digits-cnn-robust with its card's parent, digits-cnn).
_EXAMPLE_MODULES: list[str] = ["audit.apps.examples.mitigation", "audit.apps.examples.drift"]

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
            return self._write(AuditResult.from_dict(load_result(saved)), name)
        from audit.runner import run_audit  # torch and the checks: only when auditing

        command = f"audit run {model if isinstance(model, str | Path) else name} " \
                  f"--seed {self.seed}{' --quick' if self.quick else ''} " \
                  f"--out {self.out_dir.as_posix()}/{name}.html"
        result = run_audit(model, seed=self.seed, quick=self.quick or None,
                           progress=self.progress or False, command=command, **kwargs)
        relative_model_path(result)
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
    """Registered extra examples by name (importing the example modules first; a listed module
    that does not exist raises :class:`~audit.plugins.PluginError`)."""
    import_plugins(_EXAMPLE_MODULES)
    return dict(_EXTRA)


def relative_model_path(result: AuditResult) -> None:
    """Show a bundled model's path relative to the working folder in committed examples."""
    path = result.model.get("path")
    if isinstance(path, str):
        with contextlib.suppress(ValueError):
            result.model["path"] = Path(path).resolve().relative_to(Path.cwd()).as_posix()
