"""The comparison of two audit results (:class:`~audit.report.diff.ResultDiff`) as one
self-contained HTML page and as compact Markdown for a pull request."""

from __future__ import annotations

from audit.report.diff import ALPHA, ResultDiff, signed
from audit.report.view import SEVERITY_ORDER

__all__ = ["render_diff_html", "render_diff_markdown"]


def render_diff_html(diff: ResultDiff) -> str:
    """The comparison as one self-contained HTML page (same CSP and CSS as the report)."""
    from audit.report.render import _css, _env

    template = _env().get_template("diff.html.j2")
    return template.render(d=diff, css=_css(), severities=SEVERITY_ORDER, alpha=f"{ALPHA:g}")


def render_diff_markdown(diff: ResultDiff, limit: int = 25) -> str:
    """The comparison as compact Markdown for a pull request."""
    from audit.report.markdown import STATUS_ICON, code_id, md

    a, b = diff.a, diff.b
    out = [f"## Audit comparison: {md(diff.label_a)} {STATUS_ICON.get(a.status, '')} → "
           f"{md(diff.label_b)} {STATUS_ICON.get(b.status, '')}", "", f"**{md(diff.headline)}**",
           ""]
    for note in diff.notes:
        out.append(f"> {md(note)}")
    if diff.notes:
        out.append("")
    out += ["| | " + " | ".join(SEVERITY_ORDER) + " |", "|---|" + "---:|" * len(SEVERITY_ORDER)]
    out.append(f"| {md(diff.label_a)} | " + " | ".join(str(a.counts[s]) for s in SEVERITY_ORDER)
               + " |")
    out.append(f"| {md(diff.label_b)} | " + " | ".join(str(b.counts[s]) for s in SEVERITY_ORDER)
               + " |")
    out.append("| change | " + " | ".join(signed(b.counts[s] - a.counts[s])
                                         for s in SEVERITY_ORDER) + " |")
    out.append("")
    deciding = diff.deciding
    out += [f"### What {md(diff.label_b)}'s verdict rests on ({len(deciding)})", ""]
    if deciding:
        out += [f"{md(diff.label_b)} is {b.status.upper()}: these findings are at or above its "
                f"`--fail-on {md(b.fail_on)}`, changed or not.", "",
                "| Severity | Finding | Check |", "|---|---|---|"]
        out += [f"| {f.severity.upper()} | {md(f.title, 160)}<br>{code_id(f.id)} | "
                f"{md(f.section_title, 60)} |" for f in deciding[:limit]]
        if len(deciding) > limit:
            out.append(f"| | …{len(deciding) - limit} more in the HTML comparison | |")
    else:
        out.append(f"No finding is at or above `--fail-on {md(b.fail_on)}`.")
    out.append("")
    for title, items in (("New findings", diff.new), ("Fixed findings", diff.fixed),
                         ("More severe", diff.worse), ("Less severe", diff.better)):
        if not items:
            continue
        out += [f"### {title} ({len(items)})", "", "| Severity | Finding | Check |",
                "|---|---|---|"]
        for c in items[:limit]:
            f = c.current
            sev = (f"{c.a.severity} → {c.b.severity}" if c.a and c.b and c.kind != "same"
                   else f.severity)
            out.append(f"| {sev.upper()} | {md(f.title, 160)}<br>{code_id(f.id)} | "
                       f"{md(c.section_title, 60)} |")
        if len(items) > limit:
            out.append(f"| | …{len(items) - limit} more in the HTML comparison | |")
        out.append("")
    changed = diff.largest_changes(n=10**9)
    if changed:
        out += [f"### Metric changes ({len(changed)}: quality metrics first, then by size)", "",
                "| Check | Metric | "
                f"{md(diff.label_a)} | {md(diff.label_b)} | Δ |", "|---|---|---:|---:|---:|"]
        for s, m in changed[: limit * 2]:
            judged = f" ({m.judgement})" if m.judgement else ""
            out.append(f"| {md(s.title, 50)} | {md(m.name, 80)} | {md(m.a_text)} | "
                       f"{md(m.b_text)} | {md(m.delta_text)}{judged} |")
        if len(changed) > limit * 2:
            out.append(f"| | …{len(changed) - limit * 2} more in the HTML comparison | | | |")
        out.append("")
    else:
        out += ["No metric changed.", ""]
    tests = diff.rate_tests
    if tests:
        out += [f"### Rate changes against noise ({len(tests)})", "",
                md(f"{diff.noise_summary} Each rate is tested on its own."), "",
                f"| Check | Rate | {md(diff.label_a)} | {md(diff.label_b)} | Δ | Verdict | Test |",
                "|---|---|---:|---:|---:|---|---|"]
        for s, t in tests[: limit * 2]:
            out.append(f"| {md(s.title, 50)} | {md(t.name, 80)} | {t.a_text} | {t.b_text} | "
                       f"{t.delta_text} | {md(t.change.verdict)} | {md(t.how, 160)} |")
        if len(tests) > limit * 2:
            out.append(f"| | …{len(tests) - limit * 2} more in the HTML comparison | | | | | |")
        out.append("")
    return "\n".join(out) + "\n"
