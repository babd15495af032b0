"""Core data model: severities, summaries, JSON conversion, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audit.errors import UsageError
from audit.result import (
    AuditResult,
    Finding,
    Section,
    Severity,
    jsonable,
    section_status,
    summarize,
)
from audit.subject import derive_seed


def test_severity_order_and_parse() -> None:
    assert [s.rank for s in Severity] == [0, 1, 2, 3, 4]
    assert Severity.parse("HIGH") is Severity.HIGH
    assert Severity.parse(Severity.LOW) is Severity.LOW
    with pytest.raises(UsageError, match="use one of: info, low, medium, high, critical"):
        Severity.parse("severe")


def _sec(*sevs: Severity, status: str = "pass") -> Section:
    return Section(check="x", title="X", status=status,  # type: ignore[arg-type]
                   findings=[Finding(id=f"x.{i}", severity=s, title="t", detail="d")
                             for i, s in enumerate(sevs)])


def test_section_status_follows_fail_on() -> None:
    assert section_status(_sec(), Severity.HIGH) == "pass"
    assert section_status(_sec(Severity.INFO), Severity.HIGH) == "pass"
    assert section_status(_sec(Severity.MEDIUM), Severity.HIGH) == "warn"
    assert section_status(_sec(Severity.HIGH), Severity.HIGH) == "fail"
    assert section_status(_sec(Severity.MEDIUM), Severity.MEDIUM) == "fail"
    assert section_status(_sec(Severity.HIGH, status="error"), Severity.HIGH) == "error"


def test_summarize_counts_and_verdict() -> None:
    secs = [_sec(Severity.LOW, Severity.HIGH), _sec(Severity.MEDIUM)]
    s = summarize(secs, Severity.HIGH, 1.23456)
    assert s["status"] == "fail" and s["failing_findings"] == 1
    assert s["counts"] == {"info": 0, "low": 1, "medium": 1, "high": 1, "critical": 0}
    assert summarize(secs, Severity.CRITICAL, 0.0)["status"] == "pass"
    assert summarize(secs, Severity.LOW, 0.0)["failing_findings"] == 3


def test_jsonable_converts_numpy_torch_and_nan() -> None:
    out = jsonable({"a": np.float32(0.5), "b": np.int64(3), "c": torch.tensor([1.0, 2.0]),
                    "d": (1, 2), "e": math.nan, "f": Severity.LOW, "g": np.bool_(True)})
    assert out == {"a": 0.5, "b": 3, "c": [1.0, 2.0], "d": [1, 2], "e": None, "f": "low",
                   "g": True}


def test_result_round_trip(digits_performance: AuditResult) -> None:
    d = digits_performance.to_dict()
    again = AuditResult.from_dict(d).to_dict()
    assert again == d


def test_derive_seed_is_stable_and_salted() -> None:
    assert derive_seed(0, "robustness") == derive_seed(0, "robustness")
    assert derive_seed(0, "robustness") != derive_seed(0, "saliency")
    assert derive_seed(0, "a") != derive_seed(1, "a")
    # fixed value: must not depend on PYTHONHASHSEED or platform
    assert derive_seed(0, "a") == int.from_bytes(
        __import__("hashlib").sha256(b"0:a").digest()[:8], "little") & ((1 << 63) - 1)


def test_one_severity_order_everywhere():
    from typing import get_args

    from audit.report.view import SEVERITY_ORDER, severity_rank
    from audit.result import SEVERITIES, Severity, SeverityName

    assert [s.rank for s in SEVERITIES] == [0, 1, 2, 3, 4]
    assert tuple(s.value for s in sorted(Severity, key=lambda s: -s.rank)) == SEVERITY_ORDER
    assert all(severity_rank(s.value) == s.rank for s in Severity)
    assert get_args(SeverityName) == tuple(s.value for s in SEVERITIES)


def test_a_registry_naming_a_missing_module_fails_loudly():
    from audit.plugins import PluginError, import_plugins

    import_plugins(["audit.result", "json"])  # present modules import quietly
    with pytest.raises(PluginError, match="audit.nosuch.check"):
        import_plugins(["audit.result", "audit.nosuch.check"])
    with pytest.raises(PluginError, match="audit.performanse"):
        import_plugins(["audit.performanse"])


def test_a_plugin_whose_own_import_fails_is_not_reported_as_missing(tmp_path, monkeypatch):
    from audit.plugins import PluginError, import_plugins

    (tmp_path / "broken_plugin.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        import_plugins(["broken_plugin"])
    assert not isinstance(info.value, PluginError)
    assert info.value.name == "no_such_dependency_xyz"


def test_report_order_does_not_depend_on_import_order():
    import subprocess
    import sys

    code = ("import audit.fairness.check, audit.robustness.check\n"
            "from audit.checks import _CHECK_MODULES, all_checks\n"
            "mods = [c.__module__ for c in all_checks().values()]\n"
            "print(mods == [m for m in _CHECK_MODULES if m in mods])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
