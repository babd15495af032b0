"""The HTML report: what it shows, that it is self-contained and safe, and that it survives
odd results. Browser checks are in test_browser_report.py."""

from __future__ import annotations

import base64
import copy
import json
import tomllib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from report_samples import HOSTILE, hostile_result, rich_result

from audit.checks import all_checks, make_params
from audit.config import parse_config
from audit.config.write import config_toml
from audit.loading import bundled_models
from audit.report.render import (
    load_result,
    render_html,
    validate_result,
    word_breaks,
    write_outputs,
)
from audit.report.view import build_view, slug
from audit.result import AuditResult, Severity, rejudged

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"


class Page(HTMLParser):
    """Tags, attributes, ids, links and text of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: list[str] = []
        self.links: list[str] = []
        self.text_parts: list[str] = []
        self._in_style = False
        self.feed(text.replace("<wbr>", ""))  # a break opportunity, not a word boundary

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        self.tags.append((tag, d))
        if d.get("id"):
            self.ids.append(str(d["id"]))
        if tag == "a" and d.get("href"):
            self.links.append(str(d["href"]))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if not self._in_style:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())



@pytest.fixture(scope="session")
def rich(digits_performance: AuditResult) -> AuditResult:
    return rich_result(digits_performance)


@pytest.fixture(scope="session")
def hostile() -> AuditResult:
    return hostile_result()


def assert_self_contained(page: Page) -> None:
    """No script, no event handler, no resource or link leaving the page."""
    for tag, attrs in page.tags:
        assert tag not in ("script", "iframe", "object", "embed", "link", "base", "form"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href", "srcset", "action", "poster", "data"):
                assert value is not None
                assert value.startswith(("#", "data:image/png;base64,",
                                         "data:image/svg+xml;base64,")), (tag, name, value[:80])
    csp = [a for t, a in page.tags if t == "meta" and a.get("http-equiv") ==
           "Content-Security-Policy"]
    assert len(csp) == 1
    policy = str(csp[0]["content"])
    assert "default-src 'none'" in policy and "img-src data:" in policy
    assert "script-src" not in policy  # so scripts fall back to 'none'


def test_report_shows_verdict_counts_and_top_findings_first(rich: AuditResult) -> None:
    html = render_html(rich)
    page = Page(html)
    text = page.text
    head = text[: text.index("Top findings")]
    assert "FAIL" in head and "fails on findings at or above high" in head
    for sev, n in rich.summary["counts"].items():
        assert f"{n} {sev}" in head
    # the top findings table lists the most severe first, with what to do
    top = html[html.index('id="top-findings"'):html.index('id="checks"')]
    order = [top.index(f"A {s} finding") for s in ("critical", "high", "medium", "low")]
    assert order == sorted(order)
    assert "Do the critical thing." in top and "fails the audit" in top


def test_every_section_says_what_was_measured_and_what_to_do(rich: AuditResult) -> None:
    html = render_html(rich)
    view = build_view(rich.to_dict())
    for sec in rich.sections:
        anchor = next(s.anchor for s in view.sections if s.check == sec.check)
        start = html.index(f'<section id="{anchor}"')
        body = html[start:html.index("</section>", start)]
        if sec.reading:
            assert "What was measured and how to read it" in body
            assert escape(sec.reading) in body
        for f in sec.findings:
            assert escape(f.title) in body
            assert "What to do:" in body
            assert escape(f.recommendation) in body
        for m in sec.metrics:
            assert f"<code>{word_breaks(m)}</code>" in body
        assert len(sec.figures) == body.count("<figure")


def test_contents_anchors_resolve_and_ids_are_unique(rich: AuditResult) -> None:
    page = Page(render_html(rich))
    assert len(page.ids) == len(set(page.ids))
    internal = [h[1:] for h in page.links if h.startswith("#")]
    assert internal and all(i in page.ids for i in internal)
    for s in rich.sections:
        assert s.title in page.text


def test_model_card_and_reproducibility_footer(rich: AuditResult) -> None:
    html = render_html(rich)
    card = Page(html[html.index('<section id="model-card"'):html.index('<footer')]).text
    for label in ("Intended use", "Limitations", "Data", "Training recipe",
                  "Metrics claimed by the card"):
        assert label in card
    assert "Demonstration and testing of audits" in card and "test_accuracy" in card
    foot = Page(html[html.index('<footer'):]).text
    for needle in ("audit 0.1.0", "Seed", rich.model["sha256"], rich.data["sha256"],
                   rich.run["python"], "Effective configuration"):
        assert needle in foot


def test_effective_configuration_reproduces_the_settings(rich: AuditResult) -> None:
    """The audit.toml printed in the footer loads and gives the exact parameters used."""
    doc = rich.to_dict()
    doc["sections"] = doc["sections"][:1]  # the registered performance check only
    doc["config"]["params"] = {"performance": doc["sections"][0]["params"]}
    doc["config"]["checks"] = ["performance"]
    text = config_toml(doc["config"])
    cfg = parse_config(tomllib.loads(text), where="footer")
    assert cfg.checks == ["performance"] and cfg.seed == rich.config["seed"]
    params = make_params(all_checks()["performance"], cfg.params["performance"], quick=False)
    assert vars(params) == doc["sections"][0]["params"]
    # and it is in the page, escaped
    assert str(escape(text)).strip() in render_html(doc)


def test_report_is_self_contained_and_has_no_script(rich: AuditResult) -> None:
    page = Page(render_html(rich))
    assert_self_contained(page)
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) == sum(len(s.figures) for s in rich.sections)
    for a in imgs:
        b64 = str(a["src"]).split(",", 1)[1]
        raw = base64.b64decode(b64, validate=True)
        assert raw.startswith((b"\x89PNG", b"<?xml", b"<svg"))


def test_hostile_names_are_text_and_never_markup(hostile: AuditResult) -> None:
    html = render_html(hostile)
    page = Page(html)
    assert_self_contained(page)
    assert [t for t, _ in page.tags].count("img") == sum(len(s.figures)
                                                          for s in hostile.sections)
    for s in HOSTILE:
        assert s.split()[0] in page.text  # decoded text shows the raw characters
        assert " ".join(s.split()) in page.text
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert "</script" not in html.lower().replace("&lt;/script", "")
    # JSON result (written beside the HTML) stays valid and schema-conform
    validate_result(json.loads(json.dumps(hostile.to_dict())))


def _mangled(doc: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(doc)
    sec = bad["sections"][0]
    sec["status"] = "bogus\"><b>"
    sec["findings"].append({"id": "x", "severity": "apocalyptic", "title": None,
                            "detail": 3, "evidence": [1, 2]})
    sec["findings"].append("not a finding")
    sec["figures"].append({"id": "f", "title": "bad", "mime": "text/html",
                           "data": "PHNjcmlwdD4="})
    sec["figures"].append({"id": "g", "title": "not b64", "mime": "image/png",
                           "data": "\"><script>alert(1)</script>"})
    sec["tables"].append({"id": "t", "title": "ragged", "columns": ["a"],
                          "rows": [[1, 2, 3], "x", [None]]})
    sec["metrics"]["weird"] = "text"
    del bad["run"]
    del bad["card"]
    bad["model"].pop("input")
    bad["sections"].append({"check": "", "findings": None})
    return bad


def test_renders_malformed_results_without_failing(rich: AuditResult) -> None:
    html = render_html(_mangled(rich.to_dict()))
    page = Page(html)
    assert_self_contained(page)
    assert "Figure not shown: unsupported image type 'text/html'" in page.text
    assert "Figure not shown: image data is not base64" in page.text
    assert len(page.ids) == len(set(page.ids))
    assert all(h[1:] in page.ids for h in page.links if h.startswith("#"))


def test_duplicate_and_colliding_ids_get_unique_anchors(rich: AuditResult) -> None:
    doc = rich.to_dict()
    f = doc["sections"][1]["findings"][0]
    doc["sections"][1]["findings"] += [dict(f), dict(f, id=f["id"].replace(".", "-")),
                                      dict(f, id="ü" * 80)]
    doc["sections"].append(dict(doc["sections"][1]))  # the same check twice
    page = Page(render_html(doc))
    assert len(page.ids) == len(set(page.ids))
    assert all(h[1:] in page.ids for h in page.links if h.startswith("#"))
    assert slug("ü" * 80) == "x" and slug("a.b") == slug("a-b") == "a-b"


def test_write_outputs_and_report_command(tmp_path: Path, rich: AuditResult) -> None:
    from audit.cli import main

    written = write_outputs(rich, md=tmp_path / "r.md", junit=tmp_path / "r.xml")
    assert [p.name for p in written] == ["r.md", "r.xml"]
    src = tmp_path / "r.json"
    src.write_text(json.dumps(rich.to_dict()))
    code = main(["report", str(src), "--out", str(tmp_path / "x.html"), "--md",
                 str(tmp_path / "x.md"), "--junit", str(tmp_path / "x.xml"), "--fail-on",
                 "critical"])
    assert code == 1  # judged again at critical: the one critical finding fails it
    assert (tmp_path / "x.html").read_text() == \
        render_html(rejudged(load_result(src), Severity.CRITICAL))
    assert 'failures="1"' in (tmp_path / "x.xml").read_text()  # only the critical one
    md = (tmp_path / "x.md").read_text()
    assert "at or above **critical**" in md and md != (tmp_path / "r.md").read_text()
    # every format follows the threshold asked for, not only the JUnit file
    quiet = rejudged(load_result(src), Severity.CRITICAL)
    quiet["sections"] = [dict(s, findings=[f for f in s["findings"]
                                           if f["severity"] != "critical"])
                         for s in quiet["sections"]]
    src.write_text(json.dumps(quiet))
    assert main(["report", str(src), "--md", str(tmp_path / "q.md"), "--fail-on",
                 "critical"]) == 0
    assert "PASS" in (tmp_path / "q.md").read_text().splitlines()[0]
    assert main(["report", str(src), "--md", str(tmp_path / "q.md"), "--fail-on",
                 "low"]) == 1
    assert "FAIL" in (tmp_path / "q.md").read_text().splitlines()[0]
    assert main(["report", str(src)]) == 4
    assert main(["report", str(src), "--junit", str(tmp_path / "y.xml"), "--fail-on",
                 "severe"]) == 4


# --- the committed example reports -----------------------------------------------------------

def _example_jsons() -> list[Path]:
    return sorted(p for p in REPORTS.glob("*.json"))


def test_every_bundled_model_has_a_current_example_report() -> None:
    """``audit examples`` was run after the last renderer change and for every model."""
    for name in bundled_models():
        assert (REPORTS / f"{name}.html").is_file(), f"run: audit examples --only {name}"
        assert (REPORTS / f"{name}.json").is_file()
        assert (REPORTS / f"{name}.md").is_file()
    for path in _example_jsons():
        doc = load_result(path)
        html = path.with_suffix(".html")
        assert html.read_text(encoding="utf-8") == render_html(doc), \
            f"{html} is stale: run audit examples"


def test_default_digits_report_is_under_5_mb() -> None:
    html = REPORTS / "digits-cnn.html"
    doc = load_result(REPORTS / "digits-cnn.json")
    assert doc["run"]["quick"] is False  # the default audit, not a quick one
    assert [s["check"] for s in doc["sections"]] == [*all_checks(), "crosscheck"]  # all ran
    assert html.stat().st_size < 5 * 1024 * 1024
    assert len(render_html(doc).encode()) < 5 * 1024 * 1024


@pytest.mark.slow
def test_fresh_default_digits_audit_report_is_under_5_mb(tmp_path: Path) -> None:
    from audit.report.render import write_report
    from audit.runner import run_audit

    html, _ = write_report(run_audit("digits-cnn", seed=0), tmp_path / "d.html")
    assert html.stat().st_size < 5 * 1024 * 1024


def test_run_writes_markdown_and_junit(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from audit.cli import main

    out, md, xml = tmp_path / "r.html", tmp_path / "pr" / "r.md", tmp_path / "ci" / "r.xml"
    code = main(["run", "digits-cnn", "--checks", "performance", "--out", str(out), "--md",
                 str(md), "--junit", str(xml), "--no-progress"])
    assert code == 0
    doc = load_result(out.with_suffix(".json"))
    from audit.report.junit import render_junit
    from audit.report.markdown import render_markdown

    assert md.read_text() == render_markdown(doc)
    assert xml.read_text() == render_junit(doc)
    assert ET.fromstring(xml.read_bytes()).get("failures") == "0"
