"""The ``audit`` command line: a thin layer that parses arguments, calls the library, and maps
errors to exit codes. Users see one-line errors; ``--debug`` shows the traceback."""

from __future__ import annotations

import contextlib
import importlib
import os
import shlex
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table as RichTable
from typer.exceptions import TyperException

from audit.errors import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AuditError,
    Interrupted,
    UsageError,
)

EXIT_CODES_HELP = (
    "Exit codes: 0 no finding at or above --fail-on; 1 findings at or above it; 2 error (bad "
    "input, failed run, unwritable output); 3 unsafe checkpoint refused (needs "
    "--trust-checkpoint); 4 usage error (bad flags, unknown check, invalid audit.toml); "
    "130 interrupted."
)

app = typer.Typer(
    name="audit",
    help="Audit PyTorch models for explainability, robustness and fairness, and harden them.\n\n"
         + EXIT_CODES_HELP + "\n\nAdd --debug anywhere to see full tracebacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Modules that add commands with a ``register(app)`` function. A new verb adds its module here.
_COMMAND_MODULES: list[str] = [
    "audit.robustness.cli",   # audit harden
    "audit.fairness.cli",     # audit fairness, audit mitigate
    "audit.report.cli",       # audit diff
]

out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


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


@app.command("run", epilog=EXIT_CODES_HELP)
def run_cmd(
    model: Annotated[str, typer.Argument(help="Bundled model name, model folder, or checkpoint "
                                              "file (.safetensors, .pt, .pt2, TorchScript).")],
    data: Annotated[str | None, typer.Option(help="Bundled dataset name or a .npz/.csv file "
                                                  "(default: the card's dataset, test split).")
                    ] = None,
    checks: Annotated[str | None, typer.Option(help="Comma-separated checks to run "
                                                    "(default: every check that applies).")
                      ] = None,
    out: Annotated[Path | None, typer.Option(help="HTML report path; the JSON result is "
                                                  "written beside it (default: "
                                                  "reports/<model>.html).")] = None,
    fail_on: Annotated[str | None, typer.Option(
        "--fail-on", help="Exit 1 when a finding is at or above this severity: info, low, "
                          "medium, high (default), critical.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the whole audit (default 0).")
                    ] = None,
    config: Annotated[Path | None, typer.Option(help="audit.toml with checks, parameters "
                                                     "and thresholds.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smaller budgets for a fast look.")
                     ] = False,
    target: Annotated[str | None, typer.Option(help="Label column of a CSV file.")] = None,
    sensitive: Annotated[str | None, typer.Option(help="Comma-separated sensitive columns "
                                                       "for the fairness check.")] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture 'module:Class' for a "
                                                  "state-dict checkpoint.")] = None,
    card: Annotated[Path | None, typer.Option(help="card.json describing the model (input "
                                                   "shape, range, classes).")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer for Grad-CAM (default: the last "
                                                   "layer with a spatial output).")] = None,
    trust_checkpoint: Annotated[bool, typer.Option(
        "--trust-checkpoint", help="Allow full pickle loading, which can run code from the "
                                   "checkpoint. Only for files you trust.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress on stderr.")] = True,
    md: Annotated[Path | None, typer.Option("--md", help="Also write a Markdown summary "
                                                         "(for pull requests) here.")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Also write JUnit XML here "
                                                               "(one testcase per finding; "
                                                               "failures at or above "
                                                               "--fail-on).")] = None,
) -> None:
    """Audit a model and write an HTML report plus its JSON result."""
    from audit.io import check_writable
    from audit.report.render import write_outputs, write_report
    from audit.result import Severity
    from audit.runner import run_audit

    if fail_on is not None:
        Severity.parse(fail_on)
    if out is not None:
        if out.suffix.lower() not in (".html", ".htm"):
            raise UsageError(f"--out {out} must end in .html (the JSON result is written "
                             "beside it)")
        check_writable(out)
    for extra in (md, junit):
        if extra is not None:
            check_writable(extra)
    params: dict[str, dict[str, Any]] = {}
    if layer:
        params["saliency"] = {"layer": layer}
    result = run_audit(
        model, data=data, checks=_split(checks), config=config, seed=seed,
        quick=quick or None, fail_on=fail_on, target=target, sensitive=_split(sensitive),
        arch=arch, card=card, trust_checkpoint=trust_checkpoint, params=params or None,
        progress=progress and (err_console.is_terminal or bool(os.environ.get("AUDIT_PROGRESS"))),
        command=_command_line())
    target_html = out or Path("reports") / f"{_safe_name(result.model['name'])}.html"
    html, json_path = write_report(result, target_html)
    for path in write_outputs(result, md=md, junit=junit):
        out_console.print(f"{'junit' if path == junit else 'markdown'}: {path}", highlight=False)
    print_summary(result, html, json_path)
    raise typer.Exit(EXIT_FINDINGS if result.summary["status"] == "fail" else EXIT_OK)


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".-")
    return keep or "model"


_argv: list[str] = []


def _command_line() -> str:
    return "audit " + " ".join(shlex.quote(a) for a in _argv)


@app.command("models")
def models_cmd() -> None:
    """List the bundled models with their headline metrics."""
    from audit.card import ModelCard
    from audit.loading import bundled_models

    table = RichTable(title="Bundled models")
    for col in ("name", "architecture", "data", "input", "headline metrics"):
        table.add_column(col)
    found = bundled_models()
    for name, folder in found.items():
        try:
            c = ModelCard.load(folder / "card.json")
        except AuditError as e:
            table.add_row(name, "-", "-", "-", f"[red]invalid card: {e}[/]")
            continue
        metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in c.metrics.items() if not k.endswith("seconds"))
        table.add_row(name, c.arch.split(":")[-1], c.dataset or "-",
                      f"{c.input.kind} {'x'.join(map(str, c.input.shape))}", metrics or "-")
    if not found:
        err_console.print("no bundled models found (set AUDIT_MODELS_DIR?)")
    out_console.print(table)


@app.command("report")
def report_cmd(
    result: Annotated[Path, typer.Argument(help="A JSON result written by 'audit run'.")],
    out: Annotated[Path | None, typer.Option(help="HTML file to write.")] = None,
    md: Annotated[Path | None, typer.Option("--md", help="Markdown summary to write.")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="JUnit XML to write.")] = None,
    fail_on: Annotated[str | None, typer.Option(
        "--fail-on", help="Severity at or above which findings are JUnit failures (default: "
                          "the threshold the audit ran with).")] = None,
) -> None:
    """Re-render a saved JSON result as HTML, Markdown and/or JUnit XML."""
    from audit.io import atomic_write_text, check_writable
    from audit.report.render import load_result, render_html, write_outputs
    from audit.result import Severity

    if out is None and md is None and junit is None:
        raise UsageError("nothing to write: pass --out X.html, --md X.md and/or --junit X.xml")
    if out is not None and out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out {out} must end in .html")
    if fail_on is not None:
        Severity.parse(fail_on)
    for path in (out, md, junit):
        if path is not None:
            check_writable(path)
    doc = load_result(result)
    if out is not None:
        atomic_write_text(out, render_html(doc))
        out_console.print(f"report: {out}", highlight=False)
    for path in write_outputs(doc, md=md, junit=junit, fail_on=fail_on):
        out_console.print(f"{'junit' if path == junit else 'markdown'}: {path}", highlight=False)


@app.command("train")
def train_cmd(
    name: Annotated[str, typer.Argument(help="Bundled model to reproduce from its recipe.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: models/NAME).")
                   ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the recipe's).")] = None,
) -> None:
    """Reproduce a bundled model from its recipe (writes model.safetensors + card.json)."""
    import time

    from audit.paths import models_dir
    from audit.zoo import get_recipe

    recipe = get_recipe(name)
    target = out or models_dir() / name
    start = time.perf_counter()
    with err_console.status(f"training {name} ({recipe.description})"):
        card = recipe.train(target, recipe.default_seed if seed is None else seed, False)
    metrics = ", ".join(f"{k} {v}" for k, v in card.metrics.items())
    out_console.print(f"trained {name} in {time.perf_counter() - start:.1f} s: {metrics}\n"
                      f"wrote {target}", highlight=False)


_registered = False
_INTERRUPTED = "nothing new was written; previous reports and checkpoints are intact"


def _register_commands() -> None:
    global _registered
    from importlib.util import find_spec

    if _registered:
        return
    _registered = True
    for mod in _COMMAND_MODULES:
        if find_spec(mod.rsplit(".", 1)[0]) is not None and find_spec(mod) is not None:
            importlib.import_module(mod).register(app)


def _install_signal_handlers() -> dict[int, Any]:
    """Turn SIGINT/SIGTERM into :class:`Interrupted`; returns the previous handlers."""

    def on_signal(signum: int, frame: Any) -> None:
        # our own error type: typer would swallow a KeyboardInterrupt into a silent exit 130
        raise Interrupted(signal.Signals(signum).name)

    previous: dict[int, Any] = {}
    with contextlib.suppress(ValueError):  # not in the main thread
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    return previous


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``audit`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("AUDIT_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    _argv[:] = args
    _register_commands()
    with warnings.catch_warnings():
        if not debug:  # library warnings are noise on a user's terminal; --debug shows them
            warnings.simplefilter("ignore")
        return _main(args, debug)


def _main(args: list[str], debug: bool) -> int:
    previous_handlers = _install_signal_handlers()
    try:
        code = app(args=args, prog_name="audit", standalone_mode=False)
        return int(code or 0)
    except typer.Exit as e:  # raised by commands to set the exit code
        return int(e.exit_code)
    except TyperException as e:  # typer's own usage errors (bad flags, missing arguments)
        if type(e).__name__ == "NoArgsIsHelpError":
            show = getattr(e, "show", None)
            if callable(show):
                show()
            return EXIT_USAGE
        ctx = getattr(e, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        message = " ".join(str(e.format_message()).split())
        err_console.print(f"usage error: {message}{hint}", highlight=False, markup=False)
        return EXIT_USAGE
    except typer.Abort:
        err_console.print("interrupted; nothing was written", highlight=False)
        return EXIT_INTERRUPTED
    except Interrupted as e:
        if debug:
            traceback.print_exc()
        err_console.print(f"interrupted by {e.message}: {_INTERRUPTED}", highlight=False,
                          markup=False)
        return e.exit_code
    except AuditError as e:
        if debug:
            traceback.print_exc()
        err_console.print(f"error: {e.message}", highlight=False, markup=False)
        return e.exit_code
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        err_console.print(f"interrupted: {_INTERRUPTED}", highlight=False)
        return EXIT_INTERRUPTED
    except Exception as e:
        if debug:
            traceback.print_exc()
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        err_console.print(f"internal error: {type(e).__name__}: {msg} (run again with --debug "
                          "for the traceback, and please report it)", highlight=False,
                          markup=False)
        return EXIT_ERROR
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


def entry() -> None:
    """``python -m audit`` and the console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
