"""Helpers shared by the ``audit`` commands: the two consoles, option parsing, report paths,
the command line being run, the summary block and the verdict's exit code."""

from __future__ import annotations

import hashlib
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

TrustCheckpoint = Annotated[bool, typer.Option(
    "--trust-checkpoint", help="Allow full pickle loading, which can run code from the "
                               "checkpoint. Only for files you trust.")]
"""The ``--trust-checkpoint`` flag of every command that loads a model (default False)."""

DeviceOpt = Annotated[str, typer.Option(
    help="Device to run on: auto (CUDA when present), cpu, cuda or cuda:N.")]
"""The ``--device`` option of the audit commands (default ``auto``)."""

AmpOpt = Annotated[bool, typer.Option(
    "--amp", help="Mixed precision (torch.autocast: float16 on CUDA, bfloat16 on the CPU) for "
                  "the forward passes where exactness is not needed (performance, slices, "
                  "drift, corruptions). Gradient-based attacks, explainers and certification "
                  "stay in full precision, so their numbers are exact.")]
"""The ``--amp`` flag of ``audit run`` (default False)."""

ShowProgress = Annotated[bool, typer.Option(help="Show progress on stderr.")]
"""The ``--progress/--no-progress`` flag (default True)."""

EXIT_CODES_HELP = (
    "Exit codes: 0 no finding at or above --fail-on; 1 findings at or above it; 2 error (bad "
    "input, failed run, unwritable output); 3 unsafe checkpoint refused (needs "
    "--trust-checkpoint); 4 usage error (bad flags, unknown check, invalid audit.toml); "
    "130 interrupted."
)

class _Console(Console):
    """A console with no emoji codes (":warning:" in a card string stays text) and no
    automatic highlighting; a line printed with ``markup=False`` has its control characters
    made visible (lines with markup escape their data with :func:`safe`)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if kwargs.get("markup") is False:
            from audit.display import shown

            objects = tuple(shown(o) if isinstance(o, str) else o for o in objects)
        super().print(*objects, **kwargs)


out_console = _Console(soft_wrap=True, emoji=False, highlight=False)
err_console = _Console(stderr=True, soft_wrap=True, emoji=False, highlight=False)


def safe(value: object, limit: int = 0) -> str:
    """A string from a model, card, data or path for a terminal line that has Rich markup:
    control characters (ANSI escapes) and bidi controls made visible, markup escaped, at most
    ``limit`` characters (0: no limit)."""
    from rich.markup import escape

    from audit.display import shorten, shown

    return escape(shorten(shown(str(value)), limit))

_argv: list[str] = []


def split(value: str | None) -> list[str] | None:
    """The items of a comma-separated option, stripped; ``None`` when there are none."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


MAX_NAME = 80
"""Longest default file name stem made from a model name (file systems allow 255 bytes)."""


def safe_name(name: str) -> str:
    """A file name made of ``name``: ASCII letters, digits and ``-_.``, at most
    :data:`MAX_NAME` characters (a longer name keeps its start and a hash of the whole);
    never empty."""
    keep = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "-"
                   for c in name).strip(".-")
    if len(keep) > MAX_NAME:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        keep = f"{keep[: MAX_NAME - 11].rstrip('.-')}-{digest}"
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
    """Validate an audit command's ``--out``: an HTML path whose folder can be written (without
    ``--out``: the default folder, ``reports/``)."""
    from audit.io import check_writable

    if out is not None:
        require_html(out, why="the JSON result is written beside it")
        check_writable(out)
    else:  # the default, reports/<name>.html: its folder too, before any check runs
        check_writable(Path("reports") / "report.html")


def show_progress(progress: bool) -> bool:
    """Whether to draw progress: asked for, and stderr is a terminal (or AUDIT_PROGRESS set)."""
    return progress and (err_console.is_terminal or bool(os.environ.get("AUDIT_PROGRESS")))


def print_summary(result: Any, html: Path | None, json_path: Path | None) -> None:
    """One short block on stdout: verdict, counts, where the report is."""
    s = result.summary
    counts = ", ".join(f"{s['counts'][k]} {k}" for k in ("critical", "high", "medium", "low",
                                                          "info") if s["counts"][k])
    colour = "green" if s["status"] == "pass" else "red"
    out_console.print(f"[bold {colour}]{safe(s['status']).upper()}[/] "
                      f"{safe(result.model['name'], 200)}: {counts or 'no findings'} "
                      f"(fail on {safe(s['fail_on'])}; {s['duration_s']:.1f} s)")
    for sec in result.sections:
        if sec.status == "error":
            out_console.print(f"  [red]check {safe(sec.check)} errored:[/] {safe(sec.error)}")
    if html is not None:
        out_console.print(f"report: {safe(html)}\nresult: {safe(json_path)}")


def verdict_code(result: Any) -> int:
    """The exit code of an audit's verdict: 1 when it failed (a finding at or above
    ``--fail-on``), else 0."""
    return EXIT_FINDINGS if result.summary["status"] == "fail" else EXIT_OK


def exit_with_verdict(result: Any) -> typer.Exit:
    """The :class:`typer.Exit` a command raises to end with the verdict's exit code."""
    return typer.Exit(verdict_code(result))
