"""A check that crashes its process natively (SIGSEGV, SIGABRT) is reported as errored, with the
signal named, and the audit still writes the other sections and a complete report; an isolated
check gives the same section JSON as one run in-process (issue 20, part 4)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audit.checks import _REGISTRY, Check, register
from audit.errors import UsageError
from audit.isolation import ISOLATE_ENV, crashed_section, isolated_checks
from audit.loading import LoadedModel
from audit.report.render import validate_result, write_report
from audit.result import AuditResult, Section, Severity
from audit.runner import run_audit
from audit.subject import Subject

ROOT = Path(__file__).resolve().parents[1]


# Module-level classes: an isolated child imports them by name (``test_crash`` is importable
# because tests/ is on sys.path, which the child inherits).
class SegfaultCheck(Check):
    """Kills its own process with SIGSEGV, as a native fault would."""

    name = "segfault"
    title = "Segfaulting check"

    def run(self, subject: Subject) -> Section:
        os.kill(os.getpid(), signal.SIGSEGV)
        raise AssertionError("unreachable")


class AbortCheck(Check):
    """Aborts its process (SIGABRT), as a failed C assertion would."""

    name = "abort"
    title = "Aborting check"

    def run(self, subject: Subject) -> Section:
        os.abort()


class UsageErrorCheck(Check):
    """Raises a usage error, which must stop the audit in both modes."""

    name = "badusage"
    title = "Usage error check"

    def run(self, subject: Subject) -> Section:
        raise UsageError("--layer names no layer of this model")


class RaisesCheck(Check):
    """Raises an ordinary exception: an errored section in both modes."""

    name = "raises"
    title = "Raising check"

    def run(self, subject: Subject) -> Section:
        raise ValueError("bad value inside the check")


_TEST_CHECKS = (SegfaultCheck, AbortCheck, UsageErrorCheck, RaisesCheck)


@pytest.fixture
def crash_checks() -> Iterator[None]:
    for cls in _TEST_CHECKS:
        register(cls)
    try:
        yield
    finally:
        for cls in _TEST_CHECKS:
            _REGISTRY.pop(cls.name, None)


def _section_json(sec: Section) -> dict[str, Any]:
    d = copy.deepcopy(sec.to_dict())
    d.pop("duration_s", None)
    return d


def test_isolated_checks_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["performance", "saliency", "robustness"]
    monkeypatch.delenv(ISOLATE_ENV, raising=False)
    assert isolated_checks(names, ["saliency"]) == {"saliency"}
    assert isolated_checks(names, ["saliency"], True) == set(names)
    assert isolated_checks(names, ["saliency"], False) == set()
    assert isolated_checks(names, ["saliency"], ["robustness", "other"]) == {"robustness"}
    monkeypatch.setenv(ISOLATE_ENV, "none")
    assert isolated_checks(names, ["saliency"]) == set()
    monkeypatch.setenv(ISOLATE_ENV, "all")
    assert isolated_checks(names, ["saliency"]) == set(names)
    monkeypatch.setenv(ISOLATE_ENV, "performance, robustness")
    assert isolated_checks(names, ["saliency"]) == {"performance", "robustness"}
    assert isolated_checks(names, ["saliency"], False) == set()  # the argument wins


def test_saliency_runs_isolated_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from audit.checks import all_checks

    monkeypatch.delenv(ISOLATE_ENV, raising=False)
    checks = all_checks()
    declared = [n for n, c in checks.items() if getattr(c, "isolate", False)]
    assert declared == ["saliency"]
    assert isolated_checks(checks, declared) == {"saliency"}


def test_unpicklable_check_falls_back_to_in_process(digits_loaded: LoadedModel) -> None:
    class Local(Check):  # defined in a function: cannot be pickled for the child
        name = "local"
        title = "Local check"

        def run(self, subject: Subject) -> Section:
            return self.section(summary="ran", metrics={"pid": float(os.getpid())})

    register(Local)
    try:
        with pytest.warns(RuntimeWarning, match="not isolated"):
            res = run_audit(digits_loaded, checks=["local"], isolate=True)
    finally:
        _REGISTRY.pop("local", None)
    assert res.sections[0].status == "pass"
    assert res.sections[0].metrics["pid"] == float(os.getpid())


def test_crashed_section_names_the_signal() -> None:
    stderr = ("noise\nFatal Python error: Segmentation fault\n\nCurrent thread 0x1 (most recent "
              "call first):\n  File \"lime_base.py\", line 1 in fit\n")
    sec = crashed_section(SegfaultCheck(), -11, stderr)
    assert sec.status == "error"
    assert sec.error == "check crashed with signal 11 (SIGSEGV)"
    (f,) = sec.findings
    assert f.id == "segfault.crashed" and f.severity is Severity.HIGH
    assert f.evidence["signal"] == "SIGSEGV" and f.evidence["exit_status"] == -11
    assert f.evidence["stack"].startswith("Fatal Python error: Segmentation fault")
    assert "lime_base.py" in f.evidence["stack"]
    killed = crashed_section(SegfaultCheck(), -9)
    assert "SIGKILL" in (killed.error or "") and "out-of-memory" in (killed.error or "")
    exited = crashed_section(SegfaultCheck(), 3)
    assert exited.error == "check process exited with status 3 without a result"


def test_native_crash_is_an_errored_section_and_the_audit_completes(
        crash_checks: None, digits_loaded: LoadedModel, tmp_path: Path) -> None:
    res = run_audit(digits_loaded, checks=["segfault", "performance"], isolate=["segfault"])
    seg, perf = res.sections
    assert seg.status == "error" and seg.error == "check crashed with signal 11 (SIGSEGV)"
    assert seg.findings[0].id == "segfault.crashed"
    assert seg.findings[0].severity is Severity.HIGH
    # faulthandler's report of the child, down to the line that crashed
    assert "Fatal Python error: Segmentation fault" in seg.findings[0].evidence["stack"]
    assert "test_crash.py" in seg.findings[0].evidence["stack"]
    assert perf.status == "pass" and perf.metrics["accuracy"] > 0.98
    assert res.summary["sections"] == {"error": 1, "pass": 1}
    assert res.summary["status"] == "fail"
    doc = res.to_dict()
    validate_result(doc)
    html, json_path = write_report(res, tmp_path / "crash.html")
    saved = json.loads(Path(json_path).read_text())
    assert [s["check"] for s in saved["sections"]] == ["segfault", "performance"]
    assert "SIGSEGV" in Path(html).read_text()


@pytest.mark.slow
def test_abort_is_an_errored_section(crash_checks: None, digits_loaded: LoadedModel) -> None:
    (sec,) = run_audit(digits_loaded, checks=["abort"], isolate=True).sections
    assert sec.status == "error" and sec.error == "check crashed with signal 6 (SIGABRT)"
    assert "Fatal Python error: Aborted" in sec.findings[0].evidence["stack"]


def test_isolated_usage_error_stops_the_audit(crash_checks: None,
                                              digits_loaded: LoadedModel) -> None:
    with pytest.raises(UsageError, match="names no layer"):
        run_audit(digits_loaded, checks=["badusage"], isolate=True)


@pytest.mark.slow
def test_isolated_exception_is_the_same_errored_section(crash_checks: None,
                                                        digits_loaded: LoadedModel) -> None:
    iso = run_audit(digits_loaded, checks=["raises"], isolate=True).sections[0]
    own = run_audit(digits_loaded, checks=["raises"], isolate=False).sections[0]
    assert iso.status == own.status == "error"
    assert iso.error == own.error == "bad value inside the check"
    assert _section_json(iso) == _section_json(own)


@pytest.mark.slow
def test_isolated_section_equals_in_process(digits_loaded: LoadedModel,
                                            digits_performance: AuditResult) -> None:
    iso = run_audit(digits_loaded, checks=["performance"], seed=0, isolate=True)
    assert _section_json(iso.sections[0]) == _section_json(digits_performance.sections[0])


@pytest.mark.slow
def test_isolated_saliency_equals_in_process(digits_loaded: LoadedModel) -> None:
    params = {"saliency": {"samples": 6, "sanity_samples": 3, "gallery": 1,
                           "featvis_steps": 8}}
    own = run_audit(digits_loaded, checks=["saliency"], seed=3, quick=True, params=params,
                    isolate=False)
    iso = run_audit(digits_loaded, checks=["saliency"], seed=3, quick=True, params=params,
                    isolate=True)
    assert own.sections[0].status != "error"
    assert _section_json(iso.sections[0]) == _section_json(own.sections[0])


@pytest.mark.slow  # two interpreter start-ups; the library path is tested fast above
def test_cli_reports_a_crashed_check_and_writes_the_report(tmp_path: Path) -> None:
    """``audit run`` with a check that segfaults: exit 1 (the crash is a high finding), every
    output written, the other check's section complete."""
    script = textwrap.dedent("""
        import sys
        from audit.checks import register
        import test_crash
        register(test_crash.SegfaultCheck)
        from audit.cli._main import main
        sys.exit(main(sys.argv[1:]))
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent),
           "AUDIT_MODELS_DIR": str(ROOT / "models"), ISOLATE_ENV: "segfault"}
    proc = subprocess.run([sys.executable, "-c", script, "run", "digits-cnn", "--checks",
                           "segfault,performance", "--out", str(tmp_path / "r.html"), "--md",
                           str(tmp_path / "r.md"), "--no-progress"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "r.json").read_text())
    validate_result(doc)
    seg, perf = doc["sections"]
    assert seg["status"] == "error" and "signal 11 (SIGSEGV)" in seg["error"]
    assert perf["status"] == "pass"
    assert (tmp_path / "r.html").exists() and "SIGSEGV" in (tmp_path / "r.md").read_text()
    assert "Fatal Python error: Segmentation fault" in proc.stderr  # the child's own report
