"""Helpers shared by the ``audit`` commands: the two consoles, option parsing, report paths,
the command line being run, the summary block and the verdict's exit code."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from audit.errors import EXIT_FINDINGS, EXIT_OK, UsageError

FailOn = Annotated[str | None, typer.Option(
    "--fail-on", help="Exit 1 when a finding is at or above this severity: info, low, medium, "
                      "high (default), critical.")]
"""The ``--fail-on`` option of every command that ends with the audit's verdict."""

EXIT_CODES_HELP = (
    "Exit codes: 0 no finding at or above --fail-on; 1 findings at or above it; 2 error (bad "
    "input, failed run, unwritable output); 3 unsafe checkpoint refused (needs "
    "--trust-checkpoint); 4 usage error (bad flags, unknown check, invalid audit.toml); "
    "130 interrupted."
)

out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

_argv: list[str] = []


def split(value: str | None) -> list[str] | None:
    """The items of a comma-separated option, stripped; ``None`` when there are none."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


def safe_name(name: str) -> str:
    """A file name made of ``name``: letters, digits and ``-_.``; never empty."""
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".-")
    return keep or "model"


def set_command_line(args: Sequence[str]) -> None:
    """Remember the arguments of this invocation (``main`` does, before running a command)."""
    _argv[:] = list(args)


def command_line() -> str:
    """This invocation as one shell-quoted line, recorded in the result."""
    return "audit " + " ".join(shlex.quote(a) for a in _argv)


def require_html(path: Path, option: str = "--out", why: str = "") -> None:
    """A :class:`UsageError` unless ``path`` ends in ``.html``/``.htm``; ``why`` is appended
    in brackets (what else is written beside it)."""
    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"{option} {path} must end in .html" + (f" ({why})" if why else ""))


def check_report_out(out: Path | None) -> None:
    """Validate an audit command's ``--out``: an HTML path whose folder can be written."""
    from audit.io import check_writable

    if out is not None:
        require_html(out, why="the JSON result is written beside it")
        check_writable(out)


def show_progress(progress: bool) -> bool:
    """Whether to draw progress: asked for, and stderr is a terminal (or AUDIT_PROGRESS set)."""
    return progress and (err_console.is_terminal or bool(os.environ.get("AUDIT_PROGRESS")))


def print_summary(result: Any, html: Path | None, json_path: Path | None) -> None:
    """One short block on stdout: verdict, counts, where the report is."""
    s = result.summary
    counts = ", ".join(f"{s['counts'][k]} {k}" for k in ("critical", "high", "medium", "low",
                                                          "info") if s["counts"][k])
    colour = "green" if s["status"] == "pass" else "red"
    out_console.print(f"[bold {colour}]{s['status'].upper()}[/] {result.model['name']}: "
                      f"{counts or 'no findings'} (fail on {s['fail_on']}; "
                      f"{s['duration_s']:.1f} s)", highlight=False)
    for sec in result.sections:
        if sec.status == "error":
            out_console.print(f"  [red]check {sec.check} errored:[/] {sec.error}",
                              highlight=False, markup=True)
    if html is not None:
        out_console.print(f"report: {html}\nresult: {json_path}", highlight=False)


def verdict_code(result: Any) -> int:
    """The exit code of an audit's verdict: 1 when it failed (a finding at or above
    ``--fail-on``), else 0."""
    return EXIT_FINDINGS if result.summary["status"] == "fail" else EXIT_OK


def exit_with_verdict(result: Any) -> typer.Exit:
    """The :class:`typer.Exit` a command raises to end with the verdict's exit code."""
    return typer.Exit(verdict_code(result))
