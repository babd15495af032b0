"""The secondary output options of the commands (``--md``, ``--junit``, ...), one per format
of :data:`audit.report.formats.FORMATS`: a new format needs no change here."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

import typer

from audit.cli.common import check_report_out, exit_with_verdict, out_console, print_summary, safe
from audit.report.formats import HelpKind, option_formats

Outputs = Mapping[str, Path | None]
"""The paths given to the format options, keyed by the format's ``dest`` (``md``, ``junit``)."""

NO_OUTPUTS: Outputs = MappingProxyType({})
"""The placeholder default of a command's ``outputs`` parameter, which the options replace."""


def format_options(kind: HelpKind) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Replace a command's ``outputs: Outputs`` parameter by one ``--OPTION PATH`` per
    registered format, in registry order, with the help text of this kind of command.

    Typer reads options from the signature, so the wrapper states the expanded one and hands
    the command the collected paths.
    """

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        params = list(signature.parameters.values())
        at = [p.name for p in params].index("outputs")
        params[at:at + 1] = [
            inspect.Parameter(f.dest, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                              annotation=Annotated[Path | None,
                                                   typer.Option(f.option, help=f.help(kind))])
            for f in option_formats()]

        @functools.wraps(command)
        def with_outputs(**kwargs: Any) -> None:
            outputs = {f.dest: kwargs.pop(f.dest) for f in option_formats()}
            command(**kwargs, outputs=outputs)

        with_outputs.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        with_outputs.__annotations__ = {p.name: p.annotation for p in params}
        return with_outputs

    return decorate


def given(outputs: Outputs) -> list[Path]:
    """The paths the user asked for, in registry order."""
    return [p for p in outputs.values() if p is not None]


def check_outputs(outputs: Outputs) -> None:
    """Fail before any work when a requested output's folder cannot be written."""
    from audit.io import check_writable

    for path in given(outputs):
        check_writable(path)


def check_audit_options(fail_on: str | None, out: Path | None, outputs: Outputs) -> None:
    """Validate an audit command's shared options before any work: ``--fail-on``, ``--out``
    and every format output's folder."""
    from audit.result import Severity

    if fail_on is not None:
        Severity.parse(fail_on)
    check_report_out(out)
    check_outputs(outputs)


def finish_audit(result: Any, html: Path, outputs: Outputs, *, announce: bool = True
                 ) -> typer.Exit:
    """Write the report at ``html`` (its JSON result beside it) and every requested format,
    print the summary; the :class:`typer.Exit` with the verdict's code, for the command to
    raise."""
    from audit.report.render import write_report

    html_path, json_path = write_report(result, html)
    write_formats(result, outputs, announce=announce)
    print_summary(result, html_path, json_path)
    return exit_with_verdict(result)


def write_formats(result: Any, outputs: Outputs, fail_on: str | None = None, *,
                  announce: bool = True) -> None:
    """Write every requested format of ``result``; ``announce`` prints ``NAME: PATH`` each."""
    from audit.report.formats import write_outputs

    write_outputs(result, fail_on=fail_on, **outputs)
    if announce:
        for fmt in option_formats():
            path = outputs.get(fmt.dest)
            if path is not None:
                out_console.print(f"{fmt.name}: {safe(path)}")


def options_hint() -> str:
    """The format options as a usage hint: ``--md X.md and/or --junit X.xml``."""
    names = [f"{f.option} X{f.suffix}" for f in option_formats()]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and/or {names[-1]}"
