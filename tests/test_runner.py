"""The runner: failing checks are isolated, skipped checks are reported, runs are
reproducible, and the JSON result follows the published schema."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from audit.checks import _REGISTRY, Check, register
from audit.errors import DataError, UsageError
from audit.loading import LoadedModel
from audit.report.render import result_schema, validate_result
from audit.result import AuditResult, Section, Severity
from audit.runner import run_audit
from audit.subject import Subject


@dataclass
class BoomParams:
    when: str = "always"


@pytest.fixture
def extra_checks() -> Iterator[None]:
    class Boom(Check):
        name = "boom"
        title = "Exploding check"
        Params = BoomParams

        def run(self, subject: Subject) -> Section:
            raise ZeroDivisionError("division by zero inside the check")

    class NeverApplies(Check):
        name = "never"
        title = "Inapplicable check"

        def applies(self, subject: Subject) -> str | None:
            return "needs something this model lacks"

        def run(self, subject: Subject) -> Section:
            raise AssertionError("must not run")

    register(Boom)
    register(NeverApplies)
    try:
        yield
    finally:
        _REGISTRY.pop("boom", None)
        _REGISTRY.pop("never", None)


def test_failing_check_is_an_errored_section(extra_checks: None,
                                             digits_loaded: LoadedModel) -> None:
    res = run_audit(digits_loaded, checks=["boom", "performance", "never"])
    boom, perf, never = res.sections
    assert boom.status == "error" and "division by zero" in (boom.error or "")
    assert boom.findings[0].id == "boom.error" and boom.findings[0].severity is Severity.HIGH
    assert perf.status == "pass" and perf.metrics["accuracy"] > 0.98
    assert never.status == "skipped" and "lacks" in never.summary
    assert never.findings[0].severity is Severity.INFO
    assert res.summary["status"] == "fail"
    assert res.summary["sections"] == {"error": 1, "pass": 1, "skipped": 1}
    validate_result(res.to_dict())


def _strip_volatile(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["run"].pop("created_at")
    doc["summary"].pop("duration_s")
    for s in doc["sections"]:
        s.pop("duration_s")
    return doc


def test_same_seed_same_json(digits_loaded: LoadedModel) -> None:
    a = run_audit(digits_loaded, checks=["performance"], seed=3).to_dict()
    b = run_audit(digits_loaded, checks=["performance"], seed=3).to_dict()
    assert json.dumps(_strip_volatile(a)) == json.dumps(_strip_volatile(b))


def test_schema_accepts_result_and_rejects_broken(digits_performance: AuditResult) -> None:
    doc = digits_performance.to_dict()
    validate_result(doc)
    top = set(result_schema()["required"])
    assert {"schema_version", "tool", "model", "data", "config", "summary",
            "sections"} <= top
    for key in ("name", "path", "sha256", "arch", "parameters", "input", "classes"):
        assert key in doc["model"]
    assert doc["data"]["size"] == 360 and len(doc["data"]["sha256"]) == 64
    broken = copy.deepcopy(doc)
    broken["sections"][0]["metrics"]["accuracy"] = "high"
    with pytest.raises(DataError, match="sections/0/metrics/accuracy"):
        validate_result(broken)
    broken = copy.deepcopy(doc)
    del broken["summary"]
    with pytest.raises(DataError, match="summary"):
        validate_result(broken)
    broken = copy.deepcopy(doc)
    broken["sections"][0]["findings"] = [{"id": "x", "severity": "severe", "title": "",
                                          "detail": "", "evidence": {}}]
    with pytest.raises(DataError, match="severity"):
        validate_result(broken)


def test_unknown_check_and_params(digits_loaded: LoadedModel) -> None:
    with pytest.raises(UsageError, match="unknown check 'nope'"):
        run_audit(digits_loaded, checks=["nope"])
    with pytest.raises(UsageError, match="unknown key 'bogus' in \\[checks.performance\\]"):
        run_audit(digits_loaded, checks=["performance"],
                  params={"performance": {"bogus": 1}})


def test_params_change_thresholds(digits_loaded: LoadedModel) -> None:
    res = run_audit(digits_loaded, checks=["performance"],
                    params={"performance": {"weak_recall_medium": 0.99999}})
    ids = {f.id for f in res.sections[0].findings}
    # digits-cnn's only imperfect recall is class 9 (35/36)
    assert ids == {"performance.weak-class.9"}
    assert res.sections[0].params["weak_recall_medium"] == 0.99999


def test_a_check_declares_its_settings_in_the_class_line_and_its_description_in_the_docstring(
) -> None:
    from audit.checks import make_params

    @dataclass
    class Settings:
        size: int = 10
        quick: ClassVar[dict[str, Any]] = {"size": 2}

    class Sized(Check[Settings]):
        """Counts samples,
        in one sentence.

        Details that the listing does not show."""

        name, title = "sized", "Sized"

        def run(self, subject: Subject) -> Section:
            return self.section(summary="")

    assert Sized.Params is Settings and Sized().params == Settings()
    assert Sized.quick == {"size": 2} and Sized.quick is not Settings.quick
    assert Sized.description == "Counts samples, in one sentence."
    assert make_params(Sized, None, quick=True).size == 2
    assert make_params(Sized, {"size": 5}, quick=True).size == 5
    assert make_params(Sized, None, quick=False).size == 10

    class Explicit(Check[Settings]):
        name, title, description, quick = "explicit", "Explicit", "set by hand", {}
        Params = BoomParams

        def run(self, subject: Subject) -> Section:
            return self.section(summary="")

    assert Explicit.Params is BoomParams and Explicit.quick == {}
    assert Explicit.description == "set by hand"
    assert Check.Params.__name__ == "NoParams"


def test_run_audit_takes_a_module_and_arrays(tmp_path: Path) -> None:
    """A user's own nn.Module and (x, y) numpy arrays, with or without a card."""
    import numpy as np

    from audit.datasets import load_dataset
    from audit.loading import load_model
    from audit.paths import models_dir

    net = load_model("digits-cnn").model  # any nn.Module of the user's
    test = load_dataset("digits", "test")
    xy = (test.x.numpy(), test.y.numpy().astype(np.int32))
    res = run_audit(net, data=xy, checks=["performance"])
    assert res.model["format"] == "module" and res.model["arch"].endswith(":DigitsCNN")
    assert res.data["size"] == len(test) and res.sections[0].metrics["accuracy"] > 0.9
    card = models_dir() / "digits-cnn" / "card.json"
    carded = run_audit(net, data=xy, card=card, checks=["performance"])
    assert carded.model["classes"] == [str(i) for i in range(10)]
    assert carded.summary["status"] == "pass"
    with pytest.raises(UsageError, match="model must be"):
        run_audit(42, data=xy)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="differ in length"):
        run_audit(net, data=(xy[0], xy[1][:5]))
