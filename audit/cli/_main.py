"""The ``audit`` application: the Typer app, its command modules, and ``main``, which runs a
command and maps every error to its documented exit code. Users see one-line errors;
``--debug`` shows the traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
import warnings
from typing import Any

import typer
from typer.exceptions import TyperException

from audit.cli.common import EXIT_CODES_HELP, err_console, set_command_line
from audit.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, AuditError, Interrupted
from audit.plugins import import_plugins

app = typer.Typer(
    name="audit",
    help="Audit PyTorch models for explainability, robustness and fairness, and harden them.\n\n"
         + EXIT_CODES_HELP + "\n\nAdd --debug anywhere to see full tracebacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Modules that add commands with a ``register(app)`` function, in the order ``audit --help``
# lists them. A new verb group adds its module here.
COMMAND_MODULES: list[str] = [
    "audit.cli.run",        # audit run, models, report, train
    "audit.cli.harden",     # audit harden
    "audit.cli.fairness",   # audit fairness, mitigate
    "audit.cli.drift",      # audit drift
    "audit.cli.tools",      # audit diff, examples, config
    "audit.cli.history",    # audit history
    "audit.cli.card",       # audit card --init
]

_INTERRUPTED = "nothing new was written; previous reports and checkpoints are intact"


def _register_commands() -> None:
    import_plugins(COMMAND_MODULES)
    for name in COMMAND_MODULES:
        sys.modules[name].register(app)


_register_commands()


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
    set_command_line(args)
    with warnings.catch_warnings():
        if not debug:  # library warnings are noise on a user's terminal; --debug shows them
            warnings.simplefilter("ignore")
        return _run(args, debug)


def _run(args: list[str], debug: bool) -> int:
    previous_handlers = _install_signal_handlers()
    try:
        code = app(args=args, prog_name="audit", standalone_mode=False)
        return int(code or 0)
    except (Exception, KeyboardInterrupt) as e:
        return exit_code_of(e, debug)
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


def exit_code_of(e: BaseException, debug: bool = False) -> int:
    """Print the one-line message of an error that ended a command; return its exit code."""
    if isinstance(e, typer.Exit):  # raised by commands to set the exit code
        return int(e.exit_code)
    if isinstance(e, TyperException):  # typer's own usage errors (bad flags, missing arguments)
        return _usage_error(e)
    if isinstance(e, typer.Abort):
        err_console.print("interrupted; nothing was written", highlight=False)
        return EXIT_INTERRUPTED
    if debug:
        traceback.print_exception(e)
    if isinstance(e, Interrupted):
        err_console.print(f"interrupted by {e.message}: {_INTERRUPTED}", highlight=False,
                          markup=False)
        return e.exit_code
    if isinstance(e, AuditError):
        err_console.print(f"error: {e.message}", highlight=False, markup=False)
        return e.exit_code
    if isinstance(e, KeyboardInterrupt):
        err_console.print(f"interrupted: {_INTERRUPTED}", highlight=False)
        return EXIT_INTERRUPTED
    msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    err_console.print(f"internal error: {type(e).__name__}: {msg} (run again with --debug "
                      "for the traceback, and please report it)", highlight=False,
                      markup=False)
    return EXIT_ERROR


def _usage_error(e: TyperException) -> int:
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


def entry() -> None:
    """``python -m audit`` and the console script."""
    sys.exit(main())
