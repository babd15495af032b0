"""The Markdown summary: content and escaping, checked by rendering it with a CommonMark +
GFM-tables renderer (markdown-it-py, as GitHub renders pull-request comments: raw HTML on)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt
from report_samples import HOSTILE, hostile_result, rich_result

from audit.report.markdown import md, render_markdown
from audit.result import AuditResult

ALLOWED_TAGS = {"h2", "h3", "p", "strong", "em", "code", "table", "thead", "tbody", "tr", "th",
                "td", "br", "details", "summary", "sub", "blockquote", "a"}


def to_html(text: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


class Tags(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.parts: list[str] = []
        self.rows: list[int] = []
        self._cells = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self._cells = 0
        if tag in ("td", "th"):
            self._cells += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self.rows.append(self._cells)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


@pytest.fixture(scope="session")
def rich(digits_performance: AuditResult) -> AuditResult:
    return rich_result(digits_performance)


def test_summary_has_verdict_counts_top_findings_and_metrics(rich: AuditResult) -> None:
    text = render_markdown(rich)
    lines = text.splitlines()
    assert lines[0].startswith("## ") and "FAIL" in lines[0] and "digits-cnn" in lines[0]
    counts = rich.summary["counts"]
    assert "| " + " | ".join(str(counts[s]) for s in ("critical", "high", "medium", "low",
                                                        "info")) + " |" in lines
    top = text[text.index("### Top findings"):text.index("### Checks")]
    order = [top.index(f"A {s} finding") for s in ("critical", "high", "medium", "low", "info")]
    assert order == sorted(order)
    assert "**CRITICAL**" in top and "| MEDIUM |" in top  # bold = fails the audit
    assert "Do the critical thing." in top
    for sec in rich.sections:
        assert md(sec.title) in text
        if sec.metrics:
            assert f"<details><summary>{sec.title}: {len(sec.metrics)} metrics</summary>" in text
    assert "accuracy" in text and "0.9972" in text


def test_markdown_renders_to_clean_tables(rich: AuditResult) -> None:
    page = Tags(to_html(render_markdown(rich)))
    assert {t for t, _ in page.tags} <= ALLOWED_TAGS
    assert page.rows  # every table row has as many cells as its header
    html = to_html(render_markdown(rich))
    for table in html.split("<table>")[1:]:
        t = Tags("<table>" + table.split("</table>")[0] + "</table>")
        assert len(set(t.rows)) == 1, t.rows


def test_hostile_strings_stay_text() -> None:
    result = hostile_result()
    doc = result.to_dict()
    doc["sections"][0]["findings"] += [  # each string alone, short enough not to be cut
        {"id": f"x.{i}", "severity": "critical", "title": s, "detail": "", "evidence": {},
         "recommendation": s} for i, s in enumerate(HOSTILE)]
    text = render_markdown(doc)
    html = to_html(text)
    page = Tags(html)
    tags = {t for t, _ in page.tags}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    assert not any(k.startswith("on") for _, a in page.tags for k in a)
    assert not [a for t, a in page.tags if t == "a"]  # no link smuggled in via [text](url)
    for s in HOSTILE:
        assert " ".join(s.split()) in page.text
    for table in html.split("<table>")[1:]:
        t = Tags("<table>" + table.split("</table>")[0] + "</table>")
        assert len(set(t.rows)) == 1, t.rows  # a "|" in a name never adds a column


def test_md_escaping_is_one_line_and_cut_before_escaping() -> None:
    assert md("a\nb | c") == "a b \\| c"
    assert md("<x>" * 100, limit=10).endswith("…")
    assert "&lt;x" in md("<x>" * 100, limit=10)
    assert "&" not in md("<x>" * 100, limit=10).replace("&lt;", "").replace("&gt;", "")


def test_no_findings_and_no_sections() -> None:
    doc = {"schema_version": "1.0", "tool": {"name": "audit", "version": "0"},
           "model": {"name": "m"}, "data": {}, "config": {}, "summary": {"status": "pass",
                                                                          "fail_on": "high"},
           "sections": []}
    text = render_markdown(doc)
    assert "PASS" in text and "No findings" in text and "No checks ran." in text
