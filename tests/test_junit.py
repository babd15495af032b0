"""JUnit XML: the structure CI consumers (Jenkins, GitLab, GitHub test reporters) read, and
which findings fail."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from report_samples import HOSTILE, hostile_result, rich_result

from audit.report.junit import render_junit, xml_text
from audit.result import AuditResult, Severity

COUNTS = ("tests", "failures", "errors", "skipped")


@pytest.fixture(scope="session")
def rich(digits_performance: AuditResult) -> AuditResult:
    return rich_result(digits_performance)


def validate_junit(text: str) -> ET.Element:
    """Structural validation against the common JUnit schema (Ant/Jenkins/GitLab dialect)."""
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites"
    totals = dict.fromkeys(COUNTS, 0)
    for suite in root:
        assert suite.tag == "testsuite"
        assert suite.get("name")
        float(suite.get("time", "x"))
        seen = dict.fromkeys(COUNTS, 0)
        children = [c.tag for c in suite]
        assert set(children) <= {"properties", "testcase", "system-out", "system-err"}
        assert children.count("properties") <= 1
        for prop in suite.iter("property"):
            assert prop.get("name") is not None and prop.get("value") is not None
        for case in suite.findall("testcase"):
            seen["tests"] += 1
            assert case.get("name") and case.get("classname")
            float(case.get("time", "x"))
            kinds = [c.tag for c in case]
            assert set(kinds) <= {"failure", "error", "skipped", "system-out", "system-err"}
            outcome = [k for k in kinds if k in ("failure", "error", "skipped")]
            assert len(outcome) <= 1
            for k in outcome:
                el = case.find(k)
                assert el is not None
                if k != "skipped":
                    assert el.get("message") and el.get("type")
                seen[{"failure": "failures", "error": "errors", "skipped": "skipped"}[k]] += 1
        for k in COUNTS:
            assert int(suite.get(k, "-1")) == seen[k], (suite.get("name"), k)
            totals[k] += seen[k]
    for k in COUNTS:
        assert int(root.get(k, "-1")) == totals[k]
    return root


def _failed(root: ET.Element) -> list[str]:
    return [str(c.get("name")) for c in root.iter("testcase") if c.find("failure") is not None]


def test_one_testcase_per_finding_and_per_check(rich: AuditResult) -> None:
    root = validate_junit(render_junit(rich))
    suites = [s.get("name") for s in root]
    assert suites == [f"audit.{s.check}" for s in rich.sections]
    names = [str(c.get("name")) for c in root.iter("testcase")]
    for sec in rich.sections:
        assert f"{sec.check}: check ran" in names
        for f in sec.findings:
            if sec.status != "error":
                assert f.id in names
    # failures are exactly the findings at or above the audit's threshold (high)
    assert _failed(root) == ["demo.critical", "demo.high"]
    errored = [c for c in root.iter("testcase") if c.find("error") is not None]
    assert [c.get("name") for c in errored] == ["broken: check ran"]
    assert [c.get("name") for c in root.iter("testcase")
            if c.find("skipped") is not None] == ["skipper: check ran"]
    failure = next(c for c in root.iter("testcase") if c.get("name") == "demo.critical"
                   ).find("failure")
    assert failure is not None and failure.get("type") == "critical"
    assert "What to do: Do the critical thing." in (failure.text or "")
    # failing testcases + errors = the audit's failing findings (the error finding included)
    assert len(_failed(root)) + len(errored) == rich.summary["failing_findings"]


@pytest.mark.parametrize("fail_on, failed", [
    ("critical", ["demo.critical"]),
    ("medium", ["demo.critical", "demo.high", "demo.medium"]),
    ("info", ["demo.critical", "demo.high", "demo.medium", "demo.low", "demo.info"]),
])
def test_fail_on_decides_failures(rich: AuditResult, fail_on: str, failed: list[str]) -> None:
    root = validate_junit(render_junit(rich, fail_on))
    assert _failed(root) == failed
    below = [c for c in root.iter("testcase") if c.get("name", "").startswith("demo.")
             and c.find("failure") is None]
    assert all(c.find("system-out") is not None for c in below)  # still visible
    assert {p.get("value") for p in root.iter("property") if p.get("name") == "fail_on"} == \
        {Severity.parse(fail_on).value}


def test_clean_audit_passes(digits_performance: AuditResult) -> None:
    root = validate_junit(render_junit(digits_performance))
    assert root.get("failures") == "0" and root.get("errors") == "0"
    assert root.get("tests") == str(len(digits_performance.sections)
                                    + sum(len(s.findings) for s in digits_performance.sections))


def test_hostile_and_control_characters_round_trip() -> None:
    result = hostile_result()
    doc: dict[str, Any] = result.to_dict()
    doc["sections"][0]["findings"].append(
        {"id": "ctl.\x00\x1b\x7f", "severity": "critical", "title": "nul\x00 esc\x1b [0m",
         "detail": "surrogate-free \ufffe\uffff ok", "evidence": {}, "recommendation": "x"})
    text = render_junit(doc)
    root = validate_junit(text)
    names = [str(c.get("name")) for c in root.iter("testcase")]
    assert "ctl.\\x00\\x1b\\x7f" in names  # control characters shown as escapes, not obeyed
    messages = " ".join(str(c.find("failure").get("message")) for c in root.iter("testcase")
                        if c.find("failure") is not None)  # type: ignore[union-attr]
    for s in HOSTILE:
        assert s in messages  # exact text, escaped by the XML writer and parsed back
    assert xml_text("a\x00b\x08c\td") == "abc\td"
