"""The result as JUnit XML, so CI systems list the audit's findings as test results.

Layout (the common Ant/Jenkins/GitLab dialect)::

    <testsuites name="audit MODEL" tests failures errors skipped time>
      <testsuite name="audit.CHECK" ...>            one per check
        <properties/>                               model, data, seed, fail_on, status
        <testcase classname="audit.CHECK" name="CHECK: check ran"/>
            error when the check crashed, skipped when it did not apply
        <testcase classname="audit.CHECK" name="FINDING.ID"/>
            one per finding: a failure when its severity is at or above --fail-on,
            a passing test (severity and detail in system-out) when below

A finding is the audit's "threshold crossed" event: each check turns its configurable
thresholds into findings with a severity, so one testcase per finding with the ``--fail-on``
threshold deciding failure gives CI one red line per problem, named by the finding's stable id
(so CI history tracks it across runs), and a green line per check that ran clean.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from audit.report.formats import as_document
from audit.report.view import FindingView, ReportView, SectionView, build_view, severity_rank
from audit.result import AuditResult, Severity

_INVALID_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: Any) -> str:
    """Text safe for XML 1.0: characters XML cannot carry (NUL, most controls) are dropped."""
    return _INVALID_XML.sub("", str(value if value is not None else ""))


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: Any) -> ET.Element:
    e = ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})
    if text:
        e.text = xml_text(text)
    return e


def _finding_text(f: FindingView) -> str:
    lines = [f"[{f.severity}] {f.title}", "", f.detail]
    if f.recommendation:
        lines += ["", f"What to do: {f.recommendation}"]
    if f.evidence:
        lines += ["", "Evidence:"] + [f"  {kv.key}: {kv.value}" for kv in f.evidence
                                      if not kv.block]
    return "\n".join(lines).strip() + "\n"


def render_junit(result: AuditResult | dict[str, Any], fail_on: str | Severity | None = None
                 ) -> str:
    """JUnit XML of a result; ``fail_on`` defaults to the threshold the audit ran with."""
    doc = as_document(result)
    view = build_view(doc)
    threshold = Severity.parse(fail_on).value if fail_on is not None else view.fail_on
    run = doc.get("run") if isinstance(doc.get("run"), dict) else {}
    run = run or {}
    root = ET.Element("testsuites", name=xml_text(f"audit {view.model['name']}"))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for sec in view.sections:
        counts = _suite(root, view, sec, threshold, run)
        for k, n in counts.items():
            totals[k] += n
        total_time += sec.seconds
    for k, n in totals.items():
        root.set(k, str(n))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root, space="  ")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + ET.tostring(root, encoding="unicode") + "\n")


def _suite(root: ET.Element, view: ReportView, sec: SectionView, threshold: str,
           run: dict[str, Any]) -> dict[str, int]:
    """Add the testsuite of one check; returns its counts."""
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    suite = _el(root, "testsuite", name=f"audit.{sec.check}")
    props = _el(suite, "properties")
    for name, value in (("model", view.model["name"]), ("model_sha256", view.model["sha256"]),
                        ("data", view.data["name"]), ("fail_on", threshold),
                        ("status", sec.status), ("seed", run.get("seed", ""))):
        _el(props, "property", name=name, value=value)
    classname = f"audit.{sec.check}"
    ran = _el(suite, "testcase", classname=classname, name=f"{sec.check}: check ran",
              time=f"{sec.seconds:.3f}")
    counts["tests"] += 1
    if sec.status == "error":
        _el(ran, "error", f"{sec.title} could not run: {sec.error}\n",
            message=sec.error or "check failed", type="error")
        counts["errors"] += 1
    elif sec.status == "skipped":
        _el(ran, "skipped", message=sec.summary or "check did not apply")
        counts["skipped"] += 1
    elif sec.summary:
        _el(ran, "system-out", sec.summary + "\n")
    rank = severity_rank(threshold)
    for f in sec.findings:
        if sec.status == "error" and f.id == f"{sec.check}.error":
            continue  # reported as the check's <error> above
        case = _el(suite, "testcase", classname=classname, name=f.id, time="0")
        counts["tests"] += 1
        if severity_rank(f.severity) >= rank:
            _el(case, "failure", _finding_text(f),
                message=f"{f.title} [{f.severity} >= fail-on {threshold}]", type=f.severity)
            counts["failures"] += 1
        else:
            _el(case, "system-out", _finding_text(f))
    for k, n in counts.items():
        suite.set(k, str(n))
    suite.set("time", f"{sec.seconds:.3f}")
    stamp = str(run.get("created_at", ""))[:19]
    if stamp:
        suite.set("timestamp", xml_text(stamp))
    return counts
