"""A :class:`~audit.report.history.History` as one self-contained HTML page (the report's
template machinery, CSS and Content-Security-Policy), as Markdown for a pull request or CI
summary, and as JSON.

The findings go through :func:`audit.report.view.build_view` like a result's, so they are
ranked, anchored, judged against ``--fail-on`` and formatted exactly as in the reports.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.io import atomic_write_text
from audit.report.diff_rates import ALPHA
from audit.report.history import HISTORY_KIND, History, Point, Series
from audit.report.history_figures import series_panel
from audit.report.view import SEVERITY_ORDER, FindingView, build_view, fmt_number

__all__ = ["history_document", "render_history_html", "render_history_json",
           "render_history_markdown", "write_history"]

MD_RUNS = 8
"""Most runs the Markdown table shows (the latest ones); the HTML shows them all."""


@dataclass
class Cell:
    """One metric in one run, ready to show; ``mark``: ``worse`` (a finding is about it),
    ``past`` (past a threshold) or empty."""

    value: str
    interval: str
    mark: str = ""


@dataclass
class Row:
    """One series as the page shows it."""

    s: Series
    cells: list[Cell]
    change: str
    change_mark: str
    src: str
    flagged: bool


def _cell(p: Point | None, s: Series, last: bool, flagged: bool) -> Cell:
    if p is None:
        return Cell("absent", "")
    interval = (f"[{fmt_number(p.low)}, {fmt_number(p.high)}]"
                if p.low is not None and p.high is not None else "")
    past = p.value is not None and any(t.past(p.value, s.direction) for t in s.thresholds)
    return Cell(fmt_number(p.value), interval,
                "worse" if last and flagged else "past" if past else "")


_SHORT_METHOD = (("McNemar", "McNemar, paired"), ("two-proportion", "two-proportion, unpaired"),
                 ("interval", "interval z-test"))


def _change_text(s: Series) -> str:
    """``−0.0222 worse, beyond noise (p=0.008, McNemar, paired), out of interval``: short
    enough for a table cell; the finding holds the long form."""
    c = s.change
    if c is None:
        return "–"
    d = c.delta
    if d == 0:
        out = "unchanged"
    else:
        out = ("+" if d > 0 else "−") + fmt_number(abs(d))
        out += f" {c.judgement}" if c.judgement else ""
        if c.method:
            short = next((v for k, v in _SHORT_METHOD if k in c.method), c.method)
            out += (f", {'beyond' if c.distinguishable else 'within'} noise "
                    f"(p={fmt_number(c.p_value, 2)}, {short})")
        else:
            out += ", not tested"
        if c.outside:
            out += ", out of the previous interval"
    if s.trend is not None and s.trend.significant:
        out += (f"; trend {'worse' if s.trend.worse else 'better'} over {s.trend.runs} runs "
                f"(p={fmt_number(s.trend.p_value, 2)})")
    return out


def _rows(h: History, panels: bool) -> list[Row]:
    # a finding's id is history.<kind>.<check.metric>: the metric it is about
    flagged = {f.id.split(".", 2)[2] for f in h.findings if f.id.count(".") >= 2}
    rows = []
    for s in h.series:
        bad = s.name in flagged
        src = ""
        if panels and s.plotted:
            fig = series_panel(s, bad)
            src = f"data:{fig.mime};base64,{fig.data}"
        cells = [_cell(p, s, i == len(s.points) - 1, bad) for i, p in enumerate(s.points)]
        mark = "worse" if s.change is not None and s.change.regression else (
            "better" if s.change is not None and s.change.judgement == "better" else "")
        rows.append(Row(s, cells, _change_text(s), mark, src, bad))
    return rows


def _panels(rows: list[Row]) -> list[Row]:
    """The plotted rows, those a finding is about first (what a reader looks for)."""
    return sorted((r for r in rows if r.src), key=lambda r: not r.flagged)


def finding_views(h: History) -> list[FindingView]:
    """The findings as the reports show them (ranked, anchored, judged at ``fail_on``)."""
    doc = {"summary": {"fail_on": h.fail_on.value},
           "sections": [{"check": "history", "title": "History",
                         "findings": [f.to_dict() for f in h.findings]}]}
    return build_view(doc).findings


def render_history_html(h: History) -> str:
    """The history as one self-contained HTML page (same CSP and CSS as the report)."""
    from audit.report.render import _css, _env

    template = _env().get_template("history.html.j2")
    rows = _rows(h, panels=True)
    return template.render(h=h, rows=rows, panels=_panels(rows), findings=finding_views(h),
                           css=_css(), severities=SEVERITY_ORDER, alpha=f"{ALPHA:g}")


def render_history_markdown(h: History, limit: int = 40) -> str:
    """The history as compact Markdown: verdict, findings, the metrics table (latest
    :data:`MD_RUNS` runs) and the runs."""
    from audit.report.markdown import STATUS_ICON, code_id, md

    out = [f"## Audit history {STATUS_ICON.get(h.status, '')} {md(h.model)}: "
           f"{len(h.runs)} runs", "", f"**{md(h.headline)}**", ""]
    out += [f"> {md(n)}" for n in h.notes] + ([""] if h.notes else [])
    views = finding_views(h)
    out += [f"### Findings ({len(views)})", ""]
    if views:
        out += ["| Severity | Finding | Detail |", "|---|---|---|"]
        out += [f"| {f.severity.upper()} | {md(f.title, 160)}<br>{code_id(f.id)} | "
                f"{md(f.detail, 400)} |" for f in views[:limit]]
        if len(views) > limit:
            out.append(f"| | …{len(views) - limit} more in the HTML page | |")
    else:
        out.append("No findings.")
    runs = h.runs[-MD_RUNS:]
    first = len(h.runs) - len(runs)
    out += ["", f"### Metrics over time ({len(h.series)})", ""]
    if first:
        out += [f"The latest {len(runs)} of {len(h.runs)} runs; the HTML page shows all.", ""]
    out += ["| Metric | " + " | ".join(f"#{r.index} {md(r.created)}" for r in runs)
            + " | Latest vs previous |", "|---|" + "---:|" * len(runs) + "---|"]
    for row in _rows(h, panels=False)[: limit * 2]:
        cells = " | ".join(("**" + md(c.value) + "**" if c.mark else md(c.value))
                           + (f" {md(c.interval)}" if c.interval else "")
                           for c in row.cells[first:])
        out.append(f"| {md(row.s.name, 100)} | {cells} | {md(row.change, 200)} |")
    if len(h.series) > limit * 2:
        out.append(f"| …{len(h.series) - limit * 2} more in the HTML page |"
                   + " |" * (len(runs) + 1))
    out += ["", "### Runs", "", "| # | File | Created | Data | Seed | Verdict |",
            "|---:|---|---|---|---:|---|"]
    out += [f"| {r.index} | {md(r.file, 80)} | {md(r.created)} | {md(r.data, 60)} | "
            f"{md(r.seed)} | {md(r.status)} |" for r in h.runs]
    return "\n".join(out) + "\n"


def _num(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def history_document(h: History) -> dict[str, Any]:
    """The history as a JSON-ready dict (``kind`` :data:`HISTORY_KIND`)."""
    def point(p: Point | None) -> dict[str, Any] | None:
        return None if p is None else {"value": _num(p.value), "ci_low": _num(p.low),
                                       "ci_high": _num(p.high)}

    metrics = []
    for s in h.series:
        c, t = s.change, s.trend
        metrics.append({
            "name": s.name, "check": s.check, "metric": s.metric, "direction": s.direction,
            "drift": s.drift, "values": [point(p) for p in s.points],
            "latest_vs_previous": None if c is None else {
                "judgement": c.judgement, "outside_previous_interval": c.outside,
                "test": c.method, "p_value": _num(c.p_value), "detail": c.how,
                "beyond_noise": c.distinguishable},
            "trend": None if t is None else {"z": _num(t.z), "p_value": _num(t.p_value),
                                             "runs": t.runs, "worse": t.worse},
            "thresholds": [{"key": x.key, "bound": x.bound, "required": x.text(s.direction)}
                           for x in s.thresholds]})
    return {"kind": HISTORY_KIND, "version": 1, "folder": h.folder, "model": h.model,
            "status": h.status, "fail_on": h.fail_on.value, "counts": h.counts,
            "alpha": ALPHA, "notes": list(h.notes),
            "runs": [{"index": r.index, "file": r.file, "created_at": r.created_at,
                      "model": {"name": r.model, "sha256": r.model_sha256},
                      "data": {"name": r.data, "sha256": r.data_sha256}, "seed": r.seed,
                      "status": r.status, "tool": r.tool} for r in h.runs],
            "metrics": metrics, "findings": [f.to_dict() for f in h.findings]}


def render_history_json(h: History) -> str:
    return json.dumps(history_document(h), indent=1, allow_nan=False, ensure_ascii=False) + "\n"


def write_history(h: History, out: Path | None = None, md: Path | None = None,
                  json_path: Path | None = None) -> list[Path]:
    """Write the HTML page, Markdown and JSON that are asked for, atomically; returns their
    paths (in that order)."""
    written = []
    for path, render in ((out, render_history_html), (md, render_history_markdown),
                         (json_path, render_history_json)):
        if path is not None:
            atomic_write_text(path, render(h))
            written.append(path)
    return written
