"""Tool commands: ``audit diff`` (compare two results), ``audit examples`` (regenerate the
example reports) and ``audit config`` (the audit.toml reference and validator)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audit.cli.common import ShowProgress, err_console, out_console, require_html
from audit.errors import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, UsageError


def diff_cmd(
    a: Annotated[Path, typer.Argument(metavar="A.json", help="Baseline JSON result (before).")],
    b: Annotated[Path, typer.Argument(metavar="B.json", help="Candidate JSON result (after).")],
    out: Annotated[Path, typer.Option(help="HTML file to write; the Markdown is written beside "
                                           "it (.md).")] = Path("audit-diff.html"),
    labels: Annotated[str, typer.Option(help="Names of A and B in the comparison, "
                                             "comma-separated.")] = "A,B",
    fail_on_new: Annotated[str | None, typer.Option(
        "--fail-on-new", help="Exit 1 when B has a new or more severe finding at or above this "
                              "severity (a regression gate for CI).")] = None,
) -> None:
    """Compare two results side by side: new and fixed findings, severity changes, metric
    deltas (HTML and Markdown)."""
    from audit.io import check_writable
    from audit.report.diff import diff_results
    from audit.report.render import load_result
    from audit.result import Severity

    require_html(out, why="the Markdown is written beside it")
    parts = [p.strip() for p in labels.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"--labels needs two names separated by a comma, got {labels!r}")
    if fail_on_new is not None:
        Severity.parse(fail_on_new)
    check_writable(out)
    doc_a, doc_b = load_result(a), load_result(b)
    d = diff_results(doc_a, doc_b, (parts[0], parts[1]))
    html, md_path = d.write(out)
    out_console.print(f"{d.headline}\ndiff: {html}\nmarkdown: {md_path}", highlight=False,
                      markup=False)
    if fail_on_new is not None and d.regressions(fail_on_new):
        raise typer.Exit(EXIT_FINDINGS)
    raise typer.Exit(EXIT_OK)


def examples_cmd(
    out: Annotated[Path, typer.Option(help="Folder to write the example reports into.")
                   ] = Path("reports"),
    only: Annotated[str | None, typer.Option(help="Comma-separated examples to regenerate "
                                                  "(default: all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every audit.")] = 0,
    quick: Annotated[bool, typer.Option("--quick", help="Smaller budgets (not for the "
                                                        "committed examples).")] = False,
    progress: ShowProgress = True,
    render_only: Annotated[bool, typer.Option(
        "--render-only", help="Re-render from the JSON results already there (after a "
                              "renderer change); audit only models that have none.")] = False,
) -> None:
    """Regenerate the example report of every bundled model (and the registered extra
    examples) under reports/: HTML, JSON and Markdown, plus reports/README.md."""
    from audit.apps.examples import regenerate_examples
    from audit.io import check_writable

    check_writable(out / "README.md")
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    outcomes = regenerate_examples(out, only=names, seed=seed, quick=quick,
                                   show_progress=progress, console=err_console,
                                   render_only=render_only)
    failed = [o for o in outcomes if o.error]
    out_console.print(f"wrote {len(outcomes) - len(failed)} example(s) to {out} "
                      f"(index: {out / 'README.md'})", highlight=False, markup=False)
    if failed:
        err_console.print(f"error: {len(failed)} example(s) failed: "
                          f"{', '.join(o.name for o in failed)}", highlight=False,
                          markup=False)
        raise typer.Exit(EXIT_ERROR)


def config_cmd(
    file: Annotated[Path | None, typer.Argument(
        metavar="[FILE]", help="An audit.toml to validate (default: print every default).")
                    ] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the reference as "
                                                              "Markdown tables.")] = False,
    policy: Annotated[bool, typer.Option("--policy", help="Print the severity policy: what "
                                         "each severity means and every finding id's "
                                         "category.")] = False,
) -> None:
    """Print an audit.toml holding every check's settings at their defaults (or the Markdown
    reference with --markdown, or the severity policy with --policy); with FILE, validate it
    and print the effective settings."""
    from audit.config.docs import defaults_markdown, defaults_toml, policy_markdown

    if policy:
        if file is not None or markdown:
            raise UsageError("--policy prints the severity policy; drop FILE and --markdown")
        out_console.print(policy_markdown(), highlight=False, markup=False, end="",
                          soft_wrap=True)
        return
    if file is None:
        text = defaults_markdown() if markdown else defaults_toml()
        out_console.print(text, highlight=False, markup=False, end="", soft_wrap=True)
        return
    if markdown:
        raise UsageError("--markdown prints the defaults reference; drop FILE or --markdown")
    from audit.checks import get_check, make_params
    from audit.config import load_config
    from audit.config.docs import check_docs
    from audit.config.write import config_toml

    cfg = load_config(file)
    doc = cfg.to_dict()
    doc["params"] = {d.name: _asdict(make_params(get_check(d.name), cfg.params.get(d.name),
                                                 cfg.quick, str(file)))
                     for d in check_docs()}
    out_console.print(f"# {file} is valid; effective settings:\n" + config_toml(doc),
                      highlight=False, markup=False, end="", soft_wrap=True)


def _asdict(params: object) -> dict[str, object]:
    import dataclasses

    return dataclasses.asdict(params)  # type: ignore[call-overload]


def register(app: typer.Typer) -> None:
    """Add ``diff``, ``examples`` and ``config`` to the ``audit`` command line."""
    app.command("diff")(diff_cmd)
    app.command("examples")(examples_cmd)
    app.command("config")(config_cmd)
