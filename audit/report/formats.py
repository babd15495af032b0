"""Every file format of an audit result, in one registry.

A format is one :class:`OutputFormat`: a name, a file suffix and a renderer ``result -> str``
(``(result, fail_on) -> str`` when the threshold matters to it). ``write_report`` (in
:mod:`audit.report.render`) writes the two primary ones, the HTML report and the JSON result
beside it; the others carry a command-line option (``--md``, ``--junit``) and
:func:`write_outputs` writes them. The ``audit`` commands build those options from this
registry, so a new format is one renderer module plus one line in :data:`FORMATS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the command line imports this registry at start-up: keep numpy out
    from audit.result import AuditResult

HelpKind = Literal["audit", "brief", "render"]


def as_document(result: AuditResult | dict[str, Any]) -> dict[str, Any]:
    """The JSON dict of a result (an :class:`AuditResult` or already a dict)."""
    from audit.result import AuditResult

    return result.to_dict() if isinstance(result, AuditResult) else result


@dataclass(frozen=True)
class OutputFormat:
    """One rendering of a result.

    ``renderer`` is ``"module:function"``, imported on first use: the command line builds its
    options from this registry at start-up and must not pay for importing Jinja2 then.
    ``option`` is the command-line flag of a secondary format (``None`` for HTML and JSON,
    which ``--out`` names). The three help texts are the option's help on a command that
    audits and writes its report too (``audit run``), the short form of the same (``audit
    fairness``), and on a command that re-renders a saved result (``audit report``); each
    defaults to a sentence built from ``title``.
    """

    name: str
    suffix: str
    renderer: str
    title: str
    option: str | None = None
    takes_fail_on: bool = False
    help_audit: str = ""
    help_brief: str = ""
    help_render: str = ""

    @property
    def dest(self) -> str:
        """The keyword of :func:`write_outputs` (and the command's parameter): ``--md`` -> md."""
        return (self.option or self.name).lstrip("-").replace("-", "_")

    def help(self, kind: HelpKind) -> str:
        """The option's help text on a command of this kind."""
        given = {"audit": self.help_audit, "brief": self.help_brief,
                 "render": self.help_render}[kind]
        if given:
            return given
        if kind == "render":
            return f"{self.title[:1].upper()}{self.title[1:]} to write."
        return f"Also write {self.title} here." if kind == "audit" else f"Also write {self.title}."

    def render(self, result: AuditResult | dict[str, Any], fail_on: str | None = None) -> str:
        """The text of ``result`` in this format; ``fail_on`` overrides the audit's threshold
        for formats that mark failures (JUnit)."""
        module, _, attr = self.renderer.partition(":")
        function: Callable[..., str] = getattr(importlib.import_module(module), attr)
        doc = as_document(result)
        return function(doc, fail_on) if self.takes_fail_on else function(doc)


FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat("html", ".html", "audit.report.render:render_html", "an HTML report"),
    OutputFormat("json", ".json", "audit.report.render:result_json", "the JSON result"),
    OutputFormat("markdown", ".md", "audit.report.markdown:render_markdown",
                 "a Markdown summary", option="--md",
                 help_audit="Also write a Markdown summary (for pull requests) here.",
                 help_render="Markdown summary to write."),
    OutputFormat("junit", ".xml", "audit.report.junit:render_junit", "JUnit XML",
                 option="--junit", takes_fail_on=True,
                 help_audit="Also write JUnit XML here (one testcase per finding; failures "
                            "at or above --fail-on)."),
)


def get_format(name: str) -> OutputFormat:
    """The registered format called ``name``."""
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise KeyError(f"no output format {name!r}; known: {', '.join(f.name for f in FORMATS)}")


def option_formats() -> tuple[OutputFormat, ...]:
    """The secondary formats, each written where its command-line option says."""
    return tuple(f for f in FORMATS if f.option is not None)


def write_outputs(result: AuditResult | dict[str, Any], *, fail_on: str | None = None,
                  **paths: str | Path | None) -> list[Path]:
    """Write the secondary formats of a result (atomically), keyed by their ``dest``
    (``md=``, ``junit=``); returns the paths written, in registry order.

    ``fail_on`` sets which findings are JUnit failures (default: the audit's own threshold).
    """
    from audit.io import atomic_write_text

    formats = option_formats()
    unknown = set(paths) - {f.dest for f in formats}
    if unknown:
        raise TypeError(f"write_outputs() got unknown format(s) {', '.join(sorted(unknown))}; "
                        f"known: {', '.join(f.dest for f in formats)}")
    doc = as_document(result)
    written = []
    for fmt in formats:
        target = paths.get(fmt.dest)
        if target is not None:
            atomic_write_text(Path(target), fmt.render(doc, fail_on))
            written.append(Path(target))
    return written
