"""``audit diff``: new and fixed findings matched by id, severity changes, metric deltas."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_samples import HOSTILE, hostile_result, rich_result
from test_markdown import ALLOWED_TAGS, Tags, to_html
from test_report import Page, assert_self_contained

from audit.cli import main
from audit.report.diff import diff_results
from audit.report.diff_render import render_diff_html, render_diff_markdown
from audit.result import AuditResult


@pytest.fixture(scope="session")
def before(digits_performance: AuditResult) -> dict[str, Any]:
    return rich_result(digits_performance).to_dict()


def _finding(doc: dict[str, Any], fid: str) -> dict[str, Any]:
    return next(f for s in doc["sections"] for f in s["findings"] if f["id"] == fid)


@pytest.fixture(scope="session")
def after(before: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(before)
    demo = doc["sections"][1]
    demo["findings"] = [f for f in demo["findings"] if f["id"] != "demo.critical"]  # fixed
    _finding(doc, "demo.high")["severity"] = "medium"                             # better
    _finding(doc, "demo.low")["severity"] = "critical"                            # worse
    demo["findings"].append(dict(_finding(doc, "demo.info"), id="demo.new", severity="high"))
    doc["sections"][0]["metrics"]["accuracy"] = 0.9
    doc["sections"][0]["metrics"]["only_after"] = 1.0
    del demo["metrics"]["clean_accuracy"]
    return doc


def test_findings_are_matched_by_id(before: dict[str, Any], after: dict[str, Any]) -> None:
    d = diff_results(before, after, ("before", "after"))
    assert [c.id for c in d.new] == ["demo.new"]
    assert [c.id for c in d.fixed] == ["demo.critical"]
    assert [(c.id, c.a and c.a.severity, c.b and c.b.severity) for c in d.worse] == \
        [("demo.low", "low", "critical")]
    assert [(c.id, c.a and c.a.severity, c.b and c.b.severity) for c in d.better] == \
        [("demo.high", "high", "medium")]
    assert sorted(c.id for c in d.same) == ["broken.error", "demo.info", "demo.medium"]
    assert [c.id for c in d.regressions("high")] == ["demo.new", "demo.low"]
    assert [c.id for c in d.regressions("critical")] == ["demo.low"]
    assert "1 new, 1 fixed, 1 more severe, 1 less severe, 3 unchanged" in d.headline


def test_metric_deltas(before: dict[str, Any], after: dict[str, Any]) -> None:
    d = diff_results(before, after)
    perf = next(s for s in d.sections if s.check == "performance")
    acc = next(m for m in perf.metrics if m.name == "accuracy")
    assert acc.a == before["sections"][0]["metrics"]["accuracy"] and acc.b == 0.9
    assert acc.delta == pytest.approx(0.9 - acc.a) and acc.changed
    assert acc.delta_text.startswith("−")
    new = next(m for m in perf.metrics if m.name == "only_after")
    assert new.a_text == "absent" and new.changed and new.delta is None
    gone = next(m for s in d.sections if s.check == "demo" for m in s.metrics
                if m.name == "clean_accuracy")
    assert gone.b_text == "absent" and gone.changed
    missing = next(m for s in d.sections if s.check == "demo" for m in s.metrics
                   if m.name == "missing")  # NaN in both: not a change
    assert not missing.changed and missing.delta_text == "–"
    unchanged = [m for m in perf.metrics if not m.changed]
    assert all(m.delta_text == "0" for m in unchanged)
    assert {m.name for s in d.sections for m in s.changed_metrics} == \
        {"accuracy", "only_after", "clean_accuracy"}
    largest = [m.name for _, m in d.largest_changes()]
    # quality metrics with a direction first (by size), then the rest
    assert largest == ["clean_accuracy", "accuracy", "only_after"]
    assert acc.judgement == "worse" and new.judgement == "" and gone.judgement == ""
    assert acc.size == pytest.approx(abs(0.9 - acc.a))  # a rate: the absolute change


def test_identical_results_have_no_changes(before: dict[str, Any]) -> None:
    d = diff_results(before, copy.deepcopy(before))
    assert not d.new and not d.fixed and not d.worse and not d.better
    assert all(not s.changed_metrics for s in d.sections)
    assert any("same model weights" in n for n in d.notes)


def test_duplicate_ids_pair_in_order(before: dict[str, Any]) -> None:
    a = copy.deepcopy(before)
    dup = _finding(a, "demo.info")
    a["sections"][1]["findings"].append(dict(dup))
    b = copy.deepcopy(before)  # one demo.info fewer than a
    d = diff_results(a, b)
    assert [c.id for c in d.fixed] == ["demo.info"] and not d.new


def test_notes_warn_about_different_data_and_settings(before: dict[str, Any]) -> None:
    b = copy.deepcopy(before)
    b["data"]["sha256"] = "f" * 64
    b["config"]["seed"] = 7
    b["sections"] = b["sections"][:2]
    notes = " ".join(diff_results(before, b, ("base", "new")).notes)
    assert "different data" in notes and "Different seed: 0 vs 7" in notes
    assert "Checks only in base: Broken check, Skipped check." in notes


def test_html_and_markdown(before: dict[str, Any], after: dict[str, Any]) -> None:
    d = diff_results(before, after, ("before", "after"))
    page = Page(render_diff_html(d))
    assert_self_contained(page)
    assert all(h[1:] in page.ids for h in page.links if h.startswith("#"))
    assert len(page.ids) == len(set(page.ids))
    text = page.text
    assert text.index("New findings") < text.index("A info finding")  # demo.new's title
    assert "FAIL → FAIL" in text
    md = render_diff_markdown(d)
    assert "### New findings (1)" in md and "### Fixed findings (1)" in md
    assert "| Performance and calibration | accuracy |" in md
    assert "LOW → CRITICAL" in md
    assert "| change | 0 | 0 | +1 | −1 | 0 |" in md
    tags = Tags(to_html(md))
    assert {t for t, _ in tags.tags} <= ALLOWED_TAGS


def test_hostile_diff_is_text() -> None:
    a = hostile_result().to_dict()
    b = copy.deepcopy(a)
    b["sections"][1]["findings"] = b["sections"][1]["findings"][1:]
    d = diff_results(a, b, (HOSTILE[0], HOSTILE[2]))
    page = Page(render_diff_html(d))
    assert_self_contained(page)
    for s in HOSTILE:
        assert s in page.text
    tags = Tags(to_html(render_diff_markdown(d)))
    assert {t for t, _ in tags.tags} <= ALLOWED_TAGS


def test_diff_command(tmp_path: Path, before: dict[str, Any], after: dict[str, Any]) -> None:
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(before))
    pb.write_text(json.dumps(after))
    out = tmp_path / "d" / "diff.html"
    assert main(["diff", str(pa), str(pb), "--out", str(out), "--labels", "old,new"]) == 0
    assert out.is_file() and out.with_suffix(".md").is_file()
    assert out.with_suffix(".md").read_text() == render_diff_markdown(
        diff_results(before, after, ("old", "new")))
    assert main(["diff", str(pa), str(pb), "--out", str(out), "--fail-on-new", "high"]) == 1
    assert main(["diff", str(pb), str(pa), "--out", str(out), "--fail-on-new", "high"]) == 1
    assert main(["diff", str(pa), str(pa), "--out", str(out), "--fail-on-new", "info"]) == 0
    assert main(["diff", str(pa), str(pb), "--out", str(tmp_path / "x.txt")]) == 4
    assert main(["diff", str(pa), str(pb), "--labels", "one"]) == 4
    assert main(["diff", str(pa), str(tmp_path / "missing.json")]) == 2


def test_change_size_ranks_rates_by_absolute_change() -> None:
    from audit.report.diff import MetricDelta

    def md(a: float, b: float) -> MetricDelta:
        return MetricDelta("m", a, b, "", "", b - a, "", True)

    # robust accuracy 0.39 -> 0.88 matters more than a rate appearing 0 -> 0.02
    assert md(0.39, 0.88).size > md(0.0, 0.02).size
    assert md(0.0, 0.02).size == pytest.approx(0.02)
    # counts and other large quantities are compared relatively
    assert md(58, 121).size == pytest.approx(63 / 121)
    assert md(1000.0, 1001.0).size < md(0.5, 0.6).size


def _rated(before: dict[str, Any], clean: np.ndarray, robust: np.ndarray,
           sha: str = "a" * 64) -> dict[str, Any]:
    """``before`` with one robustness section whose clean and robust accuracies are the means
    of the per-sample outcomes given (rows 0, 2, 4, ... of a 2n-row dataset)."""
    from audit.result import Section
    from audit.stats import outcomes_block

    n = len(clean)
    m: dict[str, float] = {"samples": float(n)}
    for name, ok in (("clean_accuracy", clean), ("robust_accuracy_linf_0.1", robust)):
        m[name], m[f"{name}_ci_low"], m[f"{name}_ci_high"] = float(ok.mean()), 0.0, 1.0
    sec = Section("robustness", "Robustness", metrics=m, outcomes=outcomes_block(
        sha, 2 * n, np.arange(0, 2 * n, 2),
        {"clean_accuracy": clean, "robust_accuracy_linf_0.1": robust}))
    doc = copy.deepcopy(before)
    doc["sections"] = [sec.to_dict()]
    doc["data"]["sha256"] = sha
    return doc


def test_rate_changes_are_tested_against_noise(before: dict[str, Any]) -> None:
    """Hardening-like change: robust accuracy rises on 30 of 200 samples (falls on none):
    distinguishable; clean accuracy moves by 1 sample each way and back: noise."""
    from scipy.stats import binomtest

    rng = np.random.default_rng(0)
    clean_a = rng.random(200) < 0.95
    robust_a = clean_a & (rng.random(200) < 0.4)
    robust_b = robust_a.copy()
    robust_b[np.nonzero(clean_a & ~robust_a)[0][:30]] = True
    clean_b = clean_a.copy()
    flip = [int(np.nonzero(clean_a)[0][0]), int(np.nonzero(~clean_a)[0][0])]
    clean_b[flip] = ~clean_b[flip]
    d = diff_results(_rated(before, clean_a, robust_a), _rated(before, clean_b, robust_b),
                     ("before", "after"))
    tests = {t.name: t for _, t in d.rate_tests}
    assert list(tests) == ["clean_accuracy", "robust_accuracy_linf_0.1"]
    rob, clean = tests["robust_accuracy_linf_0.1"], tests["clean_accuracy"]
    assert rob.change.paired and (rob.change.only_a, rob.change.only_b) == (0, 30)
    assert rob.change.p_value == pytest.approx(binomtest(0, 30, 0.5).pvalue)
    assert rob.change.distinguishable and clean.change.paired
    assert (clean.change.only_a, clean.change.only_b) == (1, 1)
    assert not clean.change.distinguishable
    assert "Rate changes distinguishable from noise (alpha 0.05): 1 of 2, all paired" \
        in d.headline
    md = render_diff_markdown(d)
    assert "| Robustness | robust\\_accuracy\\_linf\\_0.1 |" in md
    assert "distinguishable from noise: yes, p=1.9e-09" in md
    assert "distinguishable from noise: no, p=1.000" in md
    page = Page(render_diff_html(d))
    assert "Change or noise?" in page.text and "#rates" in page.links
    assert "McNemar exact (paired), 200 paired samples: 0 succeed only in A, 30 only in B" \
        in page.text


def test_rates_on_other_samples_fall_back_to_the_unpaired_test(before: dict[str, Any]) -> None:
    ok = np.arange(200) % 4 != 0  # 75%
    moved = _rated(before, ok, ok, sha="b" * 64)  # same outcomes, other data
    d = diff_results(_rated(before, ok, ok), moved)
    t = next(t for _, t in d.rate_tests if t.name == "clean_accuracy")
    assert not t.change.paired and t.note == "different data (sha256)"
    assert t.change.p_value == pytest.approx(1.0) and "unpaired" in d.noise_summary
    gone = copy.deepcopy(moved)
    del gone["sections"][0]["outcomes"]  # an older result: intervals, no outcomes
    t = next(t for _, t in diff_results(_rated(before, ok, ok), gone).rate_tests)
    assert not t.change.paired and t.note == "no per-sample outcomes recorded"
    assert (t.change.n_a, t.change.n_b) == (200, 200)  # from the samples metric


def test_performance_accuracy_is_paired_on_the_same_data(before: dict[str, Any]) -> None:
    """The bundled digits model against itself: every sample agrees, p = 1; the hand-edited
    accuracy of the ``after`` fixture no longer matches its outcomes, so it is unpaired."""
    d = diff_results(before, copy.deepcopy(before))
    (t,) = [t for s, t in d.rate_tests if s.check == "performance"]
    assert t.name == "accuracy" and t.change.paired and t.change.p_value == 1.0
    edited = copy.deepcopy(before)
    edited["sections"][0]["metrics"]["accuracy"] = 0.9
    (t,) = [t for s, t in diff_results(before, edited).rate_tests if s.check == "performance"]
    assert not t.change.paired and t.note == "per-sample outcomes do not match the metric"


def test_metric_direction_judgement_and_what_the_verdict_rests_on(
        before: dict[str, Any], after: dict[str, Any]) -> None:
    from audit.report.diff import MetricDelta, metric_direction
    from audit.report.diff_render import render_diff_markdown

    assert [metric_direction(n) for n in (
        "robust_accuracy_linf_0.1", "sex.demographic_parity_ratio",
        "sex.demographic_parity_difference", "ece", "attack_success_rate", "tree_leaves",
        "samples", "random.deletion_auc", "lime.deletion_auc")] == [1, 1, -1, -1, -1, 0, 0, 0, -1]

    def delta(name: str, a: float, b: float) -> MetricDelta:
        return MetricDelta(name, a, b, str(a), str(b), b - a, f"{b - a:+g}", a != b)

    assert delta("ece", 0.1, 0.05).judgement == "better"
    assert delta("robust_accuracy_linf_0.1", 0.38, 0.86).judgement == "better"
    assert delta("tree_leaves", 26, 86).judgement == "" and not delta("tree_leaves", 1, 2).headline
    assert not delta("accuracy_ci_low", 0.9, 0.8).headline
    d = diff_results(before, after)
    assert d.deciding == [f for f in d.b.findings if f.blocking]
    md = render_diff_markdown(d)
    assert "verdict rests on" in md and "(worse)" in md
