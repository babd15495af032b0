"""The result as compact Markdown for pull requests and CI summaries (GitHub-flavoured).

Verdict, severity counts, the top findings with what to do, one line per check, and each
check's metrics folded in ``<details>``. Every string from the result is escaped: markup
characters become HTML entities and Markdown punctuation is backslash-escaped, so names such
as ``<script>`` or ``|`` show as text and cannot break a table.
"""

from __future__ import annotations

import html
import re
from typing import Any

from audit.display import shorten
from audit.report.formats import as_document
from audit.report.text import text
from audit.report.view import (
    SEVERITY_ORDER,
    FindingView,
    ReportView,
    SectionView,
    build_view,
)
from audit.result import AuditResult

_MD_PUNCT = re.compile(r"([\\`*_\[\]|~])")
_SIMPLE_ID = re.compile(r"^[A-Za-z0-9._:/-]+$")
STATUS_ICON = {"pass": "✅", "fail": "❌", "warn": "⚠️", "error": "💥", "skipped": "⏭️"}


def md(value: Any, limit: int = 0) -> str:
    """Inline Markdown text: one line, control characters visible, entities for ``& < >``,
    Markdown punctuation escaped."""
    s = html.escape(shorten(" ".join(text(value).split()), limit), quote=False)
    return _MD_PUNCT.sub(r"\\\1", s)


def html_inline(value: Any, limit: int = 0) -> str:
    """Text inside raw HTML (``<summary>``): one line, control characters visible,
    HTML-escaped, no Markdown escapes."""
    return html.escape(shorten(" ".join(text(value).split()), limit), quote=True)


def code_id(value: str) -> str:
    """A finding id in a code span when it is plain, else escaped text."""
    return f"`{value}`" if _SIMPLE_ID.match(value) else md(value)


def render_markdown(result: AuditResult | dict[str, Any], *, top: int = 10,
                    metrics_per_section: int = 30) -> str:
    """The Markdown summary of a result (an :class:`AuditResult` or its JSON dict)."""
    doc = as_document(result)
    v = build_view(doc)
    out: list[str] = []
    icon = STATUS_ICON.get(v.status, "")
    out.append(f"## {icon} Audit {v.status.upper()}: {md(v.model['name'])}")
    out.append("")
    out.append(f"**{md(v.headline)}** Fails on findings at or above **{v.fail_on}**.")
    out.append("")
    if v.expectation:
        out += [md(v.expectation), ""]
    out.append("| " + " | ".join(SEVERITY_ORDER) + " |")
    out.append("|" + "---:|" * len(SEVERITY_ORDER))
    out.append("| " + " | ".join(str(v.counts[s]) for s in SEVERITY_ORDER) + " |")
    out.append("")
    out.extend(_top_findings(v, top))
    out.extend(_checks(v))
    out.extend(_metrics(v, metrics_per_section))
    out.append(_footer(v, doc))
    return "\n".join(out) + "\n"


def _top_findings(v: ReportView, top: int) -> list[str]:
    if not v.findings:
        return ["No findings: every check stayed within its thresholds.", ""]
    shown = v.findings[:top]
    lines = ["### Top findings", "",
             "| Severity | Finding | Check | What to do |", "|---|---|---|---|"]
    for f in shown:
        lines.append(f"| {_sev(f)} | {md(f.title, 160)}<br>{code_id(f.id)} | "
                     f"{md(f.section_title, 60)} | {md(f.recommendation, 220) or '–'} |")
    if len(v.findings) > len(shown):
        lines.append("")
        lines.append(f"…and {len(v.findings) - len(shown)} more in the HTML report.")
    lines.append("")
    return lines


def _sev(f: FindingView) -> str:
    label = f.severity.upper()
    return f"**{label}**" if f.blocking else label


def _checks(v: ReportView) -> list[str]:
    lines = ["### Checks", "", "| Check | Status | Findings | Summary |", "|---|---|---|---|"]
    for s in v.sections:
        counts = ", ".join(f"{s.counts[k]} {k}" for k in SEVERITY_ORDER if s.counts[k]) or "–"
        summary = f"Could not run: {s.error}" if s.status == "error" else s.summary
        lines.append(f"| {md(s.title, 80)} | {STATUS_ICON.get(s.status, '')} {s.status} | "
                     f"{counts} | {md(summary, 240) or '–'} |")
    if not v.sections:
        lines.append("| – | – | – | No checks ran. |")
    lines.append("")
    return lines


def _metrics(v: ReportView, limit: int) -> list[str]:
    lines: list[str] = []
    for s in v.sections:
        if not s.metrics:
            continue
        lines.extend(_section_metrics(s, limit))
    return lines


def _section_metrics(s: SectionView, limit: int) -> list[str]:
    lines = [f"<details><summary>{html_inline(s.title, 80)}: "
             f"{len(s.metrics)} metric{'s' if len(s.metrics) != 1 else ''}</summary>", "",
             "| Metric | Value |", "|---|---:|"]
    for m in s.metrics[:limit]:
        lines.append(f"| {md(m.name, 80)} | {md(m.value)} |")
    if len(s.metrics) > limit:
        lines.append(f"| …{len(s.metrics) - limit} more in the HTML report | |")
    lines.extend(["", "</details>", ""])
    return lines


def _footer(v: ReportView, doc: dict[str, Any]) -> str:
    run = doc.get("run") or {}
    parts = [md(v.tool)]
    if isinstance(run, dict) and run.get("seed") is not None:
        parts.append(f"seed {md(run.get('seed'))}")
    if v.model.get("sha256"):
        parts.append(f"model sha256 {md(str(v.model['sha256'])[:12])}…")
    if v.data.get("sha256"):
        parts.append(f"data {md(v.data['name'], 60)} sha256 {md(str(v.data['sha256'])[:12])}…")
    if v.created:
        parts.append(md(v.created))
    return "<sub>" + " · ".join(parts) + "</sub>"
