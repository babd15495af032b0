"""The severity policy: every finding is built through a declared kind whose category bounds
its severity; the table is printed by ``audit config --policy`` and kept in the README."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.config.docs import policy_markdown
from audit.policy import Category, kind, kind_of, kinds
from audit.result import Severity

ROOT = Path(__file__).resolve().parents[1]
# the result model itself, and the report's reading of saved results, build Finding objects
ALLOWED = {"audit/result.py", "audit/policy.py"}


def test_no_finding_is_built_outside_a_kind() -> None:
    """A finding built with ``Finding(...)`` would escape the policy: none may be."""
    offenders = []
    for path in sorted((ROOT / "audit").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED or rel.startswith("audit/report/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding":
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


def test_every_check_declares_kinds_and_the_table_lists_them() -> None:
    from audit.checks import all_checks

    text = policy_markdown()
    patterns = [k.pattern for k in kinds()]
    for name in all_checks():
        assert any(p.startswith(f"{name}.") for p in patterns), name
    for k in kinds():
        assert f"| `{k.pattern}` | {k.category.value} |" in text
    for s in Severity:
        assert f"| {s.value} |" in text


@pytest.fixture
def scratch_kinds() -> Iterator[None]:
    """Kinds declared by a test are forgotten after it (the registry is global)."""
    from audit import policy

    saved = dict(policy._KINDS)
    try:
        yield
    finally:
        policy._KINDS.clear()
        policy._KINDS.update(saved)


def test_category_bounds_hold(scratch_kinds: None) -> None:
    method = kind("test-only.method-limit", Category.METHOD, "a limit")
    with pytest.raises(ValueError, match="info..low"):
        method(Severity.MEDIUM, "t", "d")
    assert method(Severity.LOW, "t", "d").severity is Severity.LOW
    assert method.clamp(Severity.HIGH) is Severity.LOW
    claim = kind("test-only.claim.{key}", Category.CLAIM, "a claim")
    assert claim(Severity.HIGH, "t", "d", key="x.y").id == "test-only.claim.x.y"
    with pytest.raises(ValueError):
        claim(Severity.INFO, "t", "d", key="x")
    with pytest.raises(ValueError, match="twice"):
        kind("test-only.method-limit", Category.DEFECT, "other")


def test_explanation_limits_never_fail_a_model() -> None:
    policy_markdown()  # imports every check
    for fid in ("surrogate.unfaithful", "surrogate.unfaithful.tree",
                "saliency.unfaithful.gradcam", "saliency.insensitive.lime"):
        k = kind_of(fid)
        assert k is not None and k.category is Category.METHOD, fid
        assert k.category.severities[1] is Severity.LOW


def test_readme_holds_the_policy_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- policy:start -->\n", "<!-- policy:end -->"
    assert start in readme and end in readme, "README lacks the policy markers"
    block = readme.split(start, 1)[1].split(end, 1)[0]
    # in a fresh process, as a user runs it: tests declare kinds of their own in this one
    printed = subprocess.run([sys.executable, "-m", "audit", "config", "--policy"],
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert block.strip() == printed.strip(), \
        "README's policy table is stale: paste `audit config --policy` between the markers"


def test_example_reports_follow_the_policy_and_the_cards() -> None:
    """Every finding of the committed example reports has a kind within its bounds, and each
    bundled model's verdict is the one its card states."""
    policy_markdown()
    reports = sorted((ROOT / "reports").glob("*.json"))
    assert reports
    for path in reports:
        doc = json.loads(path.read_text(encoding="utf-8"))
        for sec in doc["sections"]:
            for f in sec["findings"]:
                k = kind_of(f["id"])
                assert k is not None, (path.name, f["id"])
                lo, hi = k.category.severities
                assert lo.rank <= Severity(f["severity"]).rank <= hi.rank, (path.name, f["id"])
        expected = (doc.get("card") or {}).get("verdict")
        # the card's verdict is about its default audit, not a chosen subset (drift examples)
        default = doc["config"].get("selection", "default") == "default"
        if expected and default and "mitigation" not in path.name:
            assert doc["summary"]["status"] == expected["expected"], path.name


def test_readme_lists_each_bundled_models_expected_verdict() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    cards = sorted((ROOT / "models").glob("*/card.json"))
    assert cards
    for card in cards:
        d = json.loads(card.read_text(encoding="utf-8"))
        v = d.get("verdict")
        assert v, f"{card} states no verdict"
        assert f"| `{d['name']}` | {v['expected'].upper()} | {v['reason']} |" in readme
