"""Reports in headless Chromium (Playwright driving Debian's chromium, one browser per session):
every example report and the diff load with no console error, no request leaving the page,
every image decoded and every contents link resolving; hostile names show as text and run
nothing, even with the Content-Security-Policy switched off. Full-page screenshots go to
tests/artifacts/ (gitignored) for a person to look at."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import PageReport, ReportBrowser, shared_browser
from report_samples import HOSTILE, hostile_result, rich_result

from audit.report.diff import write_diff
from audit.report.render import render_html, write_report
from audit.result import AuditResult

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
EXAMPLES = sorted((ROOT / "reports").glob("*.html"))

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def browser() -> Iterator[ReportBrowser]:
    yield shared_browser()


def assert_clean(rep: PageReport, images: int | None = None) -> None:
    assert rep.console_errors == [] and rep.page_errors == []
    assert rep.requests == [], rep.requests  # nothing but the file itself
    assert rep.failed_requests == []
    assert rep.broken_images == [], rep.broken_images
    if images is not None:
        assert rep.image_count == images
    assert rep.extra["toc_anchors"], "the page has a table of contents"
    assert rep.broken_anchors == [], rep.broken_anchors
    assert rep.dialogs == [] and rep.extra["scripts"] == 0
    assert rep.extra["event_handlers"] == 0 and rep.extra["pwned"] is None


#: Example reports loaded in the default run: an image model, a tabular one, a comparison. The
#: others (the same renderer on other models' results) are marked slow: ~3 s of Chromium each.
DEFAULT_EXAMPLES = {"digits-cnn", "adult-mlp", "digits-cnn-vs-digits-cnn-robust"}


@pytest.mark.parametrize("html", [
    pytest.param(p, id=p.stem, marks=() if p.stem in DEFAULT_EXAMPLES else pytest.mark.slow)
    for p in EXAMPLES])
def test_example_report_loads_clean(browser: ReportBrowser, html: Path) -> None:
    rep = browser.open(html, ARTIFACTS / f"example-{html.stem}.png")
    assert_clean(rep)
    if html.with_suffix(".json").is_file():  # a model's report
        assert "Top findings" in rep.text and "Reproducibility" in rep.text
    else:  # a before/after comparison
        assert "New findings" in rep.text and "Metric changes" in rep.text


def test_example_reports_exist() -> None:
    assert {p.stem for p in EXAMPLES} >= DEFAULT_EXAMPLES


@pytest.fixture(scope="session")
def rich_html(digits_performance: AuditResult, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, AuditResult]:
    result = rich_result(digits_performance)
    html, _ = write_report(result, tmp_path_factory.mktemp("rich") / "rich.html")
    return html, result


def test_rich_report_screenshots(browser: ReportBrowser, rich_html: tuple[Path, AuditResult]
                                 ) -> None:
    html, result = rich_html
    figures = sum(len(s.figures) for s in result.sections)
    rep = browser.open(html, ARTIFACTS / "rich.png")
    assert_clean(rep, images=figures)
    assert rep.text.index("FAIL") < rep.text.index("Top findings") < rep.text.index(
        "Performance and calibration")
    narrow = browser.open(html, ARTIFACTS / "rich-narrow.png", width=420)
    assert_clean(narrow, images=figures)
    evidence_visible = ("() => Array.from(document.querySelectorAll('details table'))"
                        ".map(e => e.checkVisibility())")
    nav_visible = "() => document.querySelector('nav.toc').checkVisibility()"
    screen = browser.open(html, probes={"evidence": evidence_visible, "nav": nav_visible})
    assert screen.extra["evidence"] and not any(screen.extra["evidence"])  # folded on screen
    assert screen.extra["nav"]
    printed = browser.open(html, ARTIFACTS / "rich-print.png", media="print",
                           probes={"evidence": evidence_visible, "nav": nav_visible},
                           pdf=ARTIFACTS / "rich.pdf")
    assert_clean(printed, images=figures)
    assert all(printed.extra["evidence"])  # printing unfolds evidence and settings
    assert not printed.extra["nav"]  # and drops the contents sidebar
    assert (ARTIFACTS / "rich.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["csp", "no-csp"])
def test_hostile_names_are_text_and_run_nothing(browser: ReportBrowser, tmp_path: Path,
                                                bypass_csp: bool) -> None:
    """Even without the CSP (as if a viewer ignored it), escaping alone keeps it inert."""
    result = hostile_result()
    html = tmp_path / "hostile.html"
    html.write_text(render_html(result), encoding="utf-8")
    shot = ARTIFACTS / f"hostile{'-no-csp' if bypass_csp else ''}.png"
    rep = browser.open(html, shot, bypass_csp=bypass_csp)
    assert_clean(rep, images=sum(len(s.figures) for s in result.sections))
    for s in HOSTILE:
        assert " ".join(s.split()) in " ".join(rep.text.split())


def test_diff_page_loads_clean(browser: ReportBrowser, rich_html: tuple[Path, AuditResult],
                               tmp_path: Path) -> None:
    _, result = rich_html
    before = result.to_dict()
    after = copy.deepcopy(before)
    after["sections"][1]["findings"] = after["sections"][1]["findings"][1:]
    after["sections"][0]["metrics"]["accuracy"] = 0.9
    html, _ = write_diff(before, after, tmp_path / "diff.html", ("before", "after"))
    rep = browser.open(html, ARTIFACTS / "diff.png")
    assert_clean(rep, images=0)
    assert "Fixed findings" in rep.text and "A critical finding" in rep.text
    hostile = hostile_result().to_dict()
    html, _ = write_diff(hostile, before, tmp_path / "hostile-diff.html", (HOSTILE[0],
                                                                           HOSTILE[2]))
    rep = browser.open(html, ARTIFACTS / "diff-hostile.png", bypass_csp=True)
    assert_clean(rep, images=0)
    assert HOSTILE[0] in rep.text and HOSTILE[2] in rep.text
