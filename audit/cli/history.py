"""``audit history DIR``: one model's earlier audit results over time (plots, a table, and
findings for regressions beyond noise, worsening trends and thresholds)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audit.cli.common import FailOn, out_console, require_html, safe
from audit.errors import EXIT_FINDINGS, EXIT_OK


def history_cmd(
    folder: Annotated[Path, typer.Argument(
        metavar="DIR", help="Folder holding the JSON results of earlier 'audit run's of one "
                            "model.")],
    out: Annotated[Path, typer.Option(help="HTML page to write.")] = Path("history.html"),
    md: Annotated[Path | None, typer.Option("--md", metavar="X.md",
                                            help="Also write Markdown here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", metavar="X.json",
                                                  help="Also write the history as JSON "
                                                       "here.")] = None,
    fail_on: FailOn = None,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", metavar="METRIC=VALUE",
        help="A bar for the latest run, repeatable: CHECK.METRIC=VALUE (at least VALUE when "
             "higher is better, at most when lower is), or METRIC>=VALUE / METRIC<=VALUE; a "
             "bare METRIC matches that metric of every check.")] = None,
    allow_mixed: Annotated[bool, typer.Option(
        "--allow-mixed", help="Track results of different models (name or weights) as one "
                              "history instead of refusing them.")] = False,
) -> None:
    """Plot and tabulate one model's headline metrics over its earlier audits; find
    regressions beyond noise, worsening trends and metrics past --threshold bars."""
    from audit.io import check_writable
    from audit.report.history import build_history, read_results
    from audit.report.history_findings import parse_threshold
    from audit.report.history_render import write_history
    from audit.result import Severity

    require_html(out)
    bars = [parse_threshold(t) for t in threshold or []]
    severity = Severity.parse(fail_on or "high")
    outputs = [p for p in (out, md, json_out) if p is not None]
    for p in outputs:
        check_writable(p)
    results, skipped = read_results(folder, skip=outputs)
    h = build_history(results, thresholds=bars, fail_on=severity, allow_mixed=allow_mixed,
                      folder=str(folder), skipped=skipped)
    written = write_history(h, out, md, json_out)
    colour = "green" if h.status == "pass" else "red"
    out_console.print(f"[bold {colour}]{h.status.upper()}[/] {safe(h.headline, 400)}")
    for f in h.findings:
        out_console.print(f"  {f.severity.value.upper()} {safe(f.title, 200)} "
                          f"[dim]({safe(f.id, 120)})[/]")
    for label, path in zip(("history", "markdown", "json"), (out, md, json_out), strict=True):
        if path in written:
            out_console.print(f"{label}: {safe(path)}")
    raise typer.Exit(EXIT_FINDINGS if h.blocking() else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add ``history`` to the ``audit`` command line."""
    app.command("history")(history_cmd)
