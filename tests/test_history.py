"""``audit history DIR``: earlier results of one model over time, regressions beyond noise,
trends, thresholds, and the errors a user can cause (mixed models, bad files, too few)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_samples import HOSTILE, IMG, SCRIPT
from test_markdown import ALLOWED_TAGS, Tags, to_html
from test_report import Page, assert_self_contained

from audit.loading import LoadedModel
from audit.report.history import build_history, read_results
from audit.report.history_findings import parse_threshold
from audit.report.history_render import (
    history_document,
    render_history_html,
    render_history_markdown,
)
from audit.report.text import fmt_number
from audit.result import AuditResult
from audit.runner import run_audit
from audit.stats import clopper_pearson, pack_bits, unpack_bits

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path("/tmp/history_shots")
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def base(digits_performance: AuditResult) -> dict[str, Any]:
    """A real result (the performance check on digits-cnn: 359 of 360 right, per-sample
    outcomes recorded), made once per session by conftest."""
    return digits_performance.to_dict()


@pytest.fixture(scope="module")
def reseeded(digits_loaded: LoadedModel) -> dict[str, Any]:
    """A real second run of the same audit with another seed."""
    return run_audit(digits_loaded, checks=["performance"], seed=1).to_dict()


def _section(doc: dict[str, Any], check: str) -> dict[str, Any]:
    return next(s for s in doc["sections"] if s["check"] == check)


def with_rate(doc: dict[str, Any], k: int, when: str, *, paired: bool = True,
              check: str = "performance", rate: str = "accuracy") -> dict[str, Any]:
    """A copy of ``doc`` whose ``rate`` is ``k`` successes, as a run would record it: the
    metric, its exact interval and the per-sample outcomes (``k`` of the samples succeed;
    dropped when not ``paired``)."""
    doc = copy.deepcopy(doc)
    sec = _section(doc, check)
    m, o = sec["metrics"], sec.get("outcomes")
    n = o["samples"] if o else int(m["samples"])
    m[rate] = k / n
    m[f"{rate}_ci_low"], m[f"{rate}_ci_high"] = clopper_pearson(k, n)
    if o and rate in o["rates"]:
        bits = unpack_bits(o["rates"][rate], n)
        have = int(bits.sum())
        if k < have:  # the first successes fail now; the rest stay as they were
            bits[np.flatnonzero(bits)[: have - k]] = False
        else:
            bits[np.flatnonzero(~bits)[: k - have]] = True
        o["rates"][rate] = pack_bits(bits)
    if not paired:
        sec.pop("outcomes", None)
    doc["run"]["created_at"] = when
    return doc


def day(d: int) -> str:
    return f"2026-03-{d:02d}T09:00:00+00:00"


def folder_of(tmp: Path, docs: dict[str, dict[str, Any]]) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    for name, doc in docs.items():
        (tmp / name).write_text(json.dumps(doc), encoding="utf-8")
    return tmp


def history_of(folder: Path, **kwargs: Any) -> Any:
    results, skipped = read_results(folder)
    return build_history(results, folder=str(folder), skipped=skipped, **kwargs)


def acc(h: Any) -> Any:
    return next(s for s in h.series if s.name == "performance.accuracy")


def test_runs_are_ordered_by_created_at_then_file_name(tmp_path: Path,
                                                       base: dict[str, Any]) -> None:
    folder = folder_of(tmp_path, {
        "a-latest.json": with_rate(base, 355, day(9)),
        "z-first.json": with_rate(base, 359, day(1)),
        "m-tie.json": with_rate(base, 358, day(5)),
        "b-tie.json": with_rate(base, 357, day(5)),
    })
    h = history_of(folder)
    assert [r.file for r in h.runs] == ["z-first.json", "b-tie.json", "m-tie.json",
                                        "a-latest.json"]
    assert [r.index for r in h.runs] == [1, 2, 3, 4]
    values = [p.value for p in acc(h).points]
    assert values == pytest.approx([359 / 360, 357 / 360, 358 / 360, 355 / 360])


def test_the_table_holds_each_value_with_its_interval(tmp_path: Path,
                                                      base: dict[str, Any]) -> None:
    docs = {"r1.json": with_rate(base, 359, day(1)), "r2.json": with_rate(base, 356, day(2))}
    h = history_of(folder_of(tmp_path, docs))
    s = acc(h)
    for p, doc in zip(s.points, docs.values(), strict=True):
        m = _section(doc, "performance")["metrics"]
        assert (p.value, p.low, p.high) == (m["accuracy"], m["accuracy_ci_low"],
                                            m["accuracy_ci_high"])
    assert s.direction == 1 and s.rate and s.plotted
    md = render_history_markdown(h)
    row = next(line for line in md.splitlines() if line.startswith("| performance.accuracy"))
    texts = [f"{fmt_number(m['accuracy'])} [{fmt_number(m['accuracy_ci_low'])}, "
             f"{fmt_number(m['accuracy_ci_high'])}]"
             for m in (_section(d, "performance")["metrics"] for d in docs.values())]
    assert texts[1].startswith("0.9889 [")
    for t in texts:
        assert t.replace("[", "\\[").replace("]", "\\]") in row
    assert "within noise" in row and "McNemar" in row
    doc = history_document(h)
    assert [r["file"] for r in doc["runs"]] == ["r1.json", "r2.json"]
    got = next(m for m in doc["metrics"] if m["name"] == "performance.accuracy")
    assert got["values"][1]["value"] == pytest.approx(356 / 360)
    assert got["latest_vs_previous"]["test"] == "McNemar exact (paired)"
    html = Page(render_history_html(h))
    assert all(t in html.text for t in texts)
    assert_self_contained(html)


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
def test_a_drop_beyond_noise_is_a_finding(tmp_path: Path, base: dict[str, Any], cli: Cli,
                                          paired: bool) -> None:
    folder = folder_of(tmp_path / "r", {
        "r1.json": with_rate(base, 359, day(1), paired=paired),
        "r2.json": with_rate(base, 340, day(2), paired=paired)})
    h = history_of(folder)
    c = acc(h).change
    assert c.judgement == "worse" and c.outside and c.distinguishable and c.regression
    assert c.method == ("McNemar exact (paired)" if paired else
                        "two-proportion z-test (unpaired)")
    (f,) = h.findings
    assert f.id == "history.regression.performance.accuracy" and f.severity.value == "high"
    assert f.category == "defect" and c.method in f.detail
    code, out, err = cli("history", str(folder), "--out", str(tmp_path / "h.html"))
    assert code == 1, err
    assert "history.regression.performance.accuracy" in out
    assert cli("history", str(folder), "--out", str(tmp_path / "h.html"),
               "--fail-on", "critical")[0] == 0


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
@pytest.mark.parametrize("k", [356, 354], ids=["inside-interval", "outside-interval"])
def test_a_drop_within_noise_is_no_finding(tmp_path: Path, base: dict[str, Any], cli: Cli,
                                           paired: bool, k: int) -> None:
    """356/360 stays in the previous interval; 354/360 leaves it but the test cannot tell
    the change from noise (McNemar 5 vs 0: p=0.06; unpaired p=0.09): neither is a finding."""
    folder = folder_of(tmp_path / "r", {
        "r1.json": with_rate(base, 359, day(1), paired=paired),
        "r2.json": with_rate(base, k, day(2), paired=paired)})
    h = history_of(folder)
    c = acc(h).change
    assert c.judgement == "worse" and c.outside == (k == 354)
    assert c.method and not c.distinguishable and not c.regression
    assert ("paired" in c.method) and (("unpaired" in c.method) != paired)
    assert h.findings == []
    assert cli("history", str(folder), "--out", str(tmp_path / "h.html"))[0] == 0


def test_a_real_run_with_another_seed_changes_nothing(tmp_path: Path, base: dict[str, Any],
                                                      reseeded: dict[str, Any]) -> None:
    folder = folder_of(tmp_path, {"seed0.json": base, "seed1.json": reseeded})
    h = history_of(folder)
    assert {r.seed for r in h.runs} == {"0", "1"}
    c = acc(h).change
    assert c.method == "McNemar exact (paired)" and c.p_value == 1.0
    assert h.findings == [] and h.status == "pass"


def test_a_worsening_trend_over_runs(tmp_path: Path, base: dict[str, Any]) -> None:
    # each step is within noise of the one before, the run of them is not
    docs = {f"r{i}.json": with_rate(base, k, day(i + 1), paired=False)
            for i, k in enumerate((359, 356, 353, 350))}
    h = history_of(folder_of(tmp_path, docs))
    s = acc(h)
    assert not s.change.regression
    assert s.trend is not None and s.trend.worse and s.trend.significant and s.trend.runs == 4
    (f,) = h.findings
    assert f.id == "history.trend.performance.accuracy" and f.severity.value == "medium"


def test_thresholds(tmp_path: Path, base: dict[str, Any], cli: Cli) -> None:
    folder = folder_of(tmp_path / "r", {"r1.json": with_rate(base, 359, day(1)),
                                        "r2.json": with_rate(base, 355, day(2))})
    out = str(tmp_path / "h.html")
    h = history_of(folder, thresholds=[parse_threshold("accuracy=0.99")])
    (f,) = h.findings
    assert f.id == "history.threshold.performance.accuracy" and f.severity.value == "high"
    assert "≥ 0.99" in f.title and "interval still reaches the bar" in f.detail
    assert history_of(folder, thresholds=[parse_threshold("performance.accuracy>=0.9")]
                      ).findings == []
    # a lower-is-better metric: ece at most the bar
    h = history_of(folder, thresholds=[parse_threshold("performance.ece=0.001")])
    assert [f.id for f in h.findings] == ["history.threshold.performance.ece"]
    assert [s.name for s in h.series] == ["performance.accuracy", "performance.ece"]
    code, stdout, _ = cli("history", str(folder), "--out", out, "--threshold",
                          "performance.accuracy=0.99", "--threshold", "performance.ece<=1")
    assert code == 1 and "history.threshold.performance.accuracy" in stdout
    for bad, words in (("nonsense.metric=1", "no metric of the latest result"),
                       ("accuracy=high", "write METRIC=VALUE"),
                       ("performance.samples=3", "no known better direction")):
        code, _, err = cli("history", str(folder), "--out", out, "--threshold", bad)
        assert code == 4 and words in err and len(err.strip().splitlines()) == 1, err


def test_fairness_thresholds_match_every_attribute(tmp_path: Path) -> None:
    adult = json.loads((ROOT / "reports" / "adult-mlp.json").read_text())
    later = copy.deepcopy(adult)
    later["run"]["created_at"] = day(2)
    h = history_of(folder_of(tmp_path, {"a.json": adult, "b.json": later}),
                   thresholds=[parse_threshold("fairness.demographic_parity_difference=0.1")])
    assert sorted(f.id for f in h.findings) == [
        f"history.threshold.fairness.{g}.demographic_parity_difference"
        for g in ("race", "sex", "sex_x_race")]
    # gaps with bootstrap intervals (".ci_low") are headline metrics, tested on intervals
    gap = next(s for s in h.series if s.name == "fairness.sex.demographic_parity_difference")
    assert gap.direction == -1 and not gap.rate and gap.change.method.startswith("interval")


def test_drift_scores(tmp_path: Path, base: dict[str, Any]) -> None:
    def drifted(doc: dict[str, Any], share: float, est: float, when: str) -> dict[str, Any]:
        doc = with_rate(doc, 359, when)
        lo, hi = clopper_pearson(est * 360, 360)
        doc["sections"].append({
            "check": "drift", "title": "Data drift", "status": "pass", "findings": [],
            "figures": [], "metrics": {
                "drift_share": share, "drifted_columns": share * 10, "c2st_auc": 0.5 + share,
                "c2st_p_value": 0.5, "estimated_accuracy": est, "estimated_accuracy_ci_low": lo,
                "estimated_accuracy_ci_high": hi, "new_score": 1.0, "samples_current": 360.0,
                "columns_tested": 10.0, "mmd_p_adjusted": 0.5}})
        return doc

    folder = folder_of(tmp_path, {"r1.json": drifted(base, 0.1, 0.99, day(1)),
                                  "r2.json": drifted(base, 0.4, 0.90, day(2))})
    h = history_of(folder, thresholds=[parse_threshold("drift.drift_share=0.3")])
    drift = {s.metric: s for s in h.series if s.check == "drift"}
    assert set(drift) == {"drift_share", "drifted_columns", "c2st_auc", "c2st_p_value",
                          "estimated_accuracy", "new_score", "samples_current",
                          "columns_tested", "mmd_p_adjusted"}
    directions = {k: v.direction for k, v in drift.items()}
    assert directions == {"drift_share": -1, "drifted_columns": -1, "c2st_auc": -1,
                          "c2st_p_value": 1, "estimated_accuracy": 1, "new_score": -1,
                          "samples_current": 0, "columns_tested": 0, "mmd_p_adjusted": 1}
    assert drift["drift_share"].plotted and not drift["drifted_columns"].plotted
    assert {f.id: f.severity.value for f in h.findings} == {
        "history.threshold.drift.drift_share": "high",
        "history.drift.drift.estimated_accuracy": "medium"}


def test_results_of_different_models_are_refused(tmp_path: Path, base: dict[str, Any],
                                                 cli: Cli) -> None:
    other = with_rate(base, 359, day(2))
    other["model"]["sha256"] = "1" * 64
    folder = folder_of(tmp_path / "r", {"r1.json": with_rate(base, 359, day(1)),
                                        "r2.json": other})
    out = str(tmp_path / "h.html")
    code, _, err = cli("history", str(folder), "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "2 different models" in err and "r2.json" in err and "--allow-mixed" in err
    code, stdout, _ = cli("history", str(folder), "--out", out, "--allow-mixed")
    assert code == 0 and "history.mixed-models" in stdout


@pytest.mark.parametrize(("content", "words"), [
    ("{not json", "is not valid JSON"), ('{"schema_version": 1}', "is not an audit result"),
    (b"\xff\xfe\x00", "cannot read")], ids=["syntax", "schema", "encoding"])
def test_a_bad_file_is_named_in_one_line(tmp_path: Path, base: dict[str, Any], cli: Cli,
                                         content: str | bytes, words: str) -> None:
    folder = folder_of(tmp_path / "r", {"r1.json": with_rate(base, 359, day(1)),
                                        "r2.json": with_rate(base, 359, day(2))})
    bad = folder / "broken.json"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, err = cli("history", str(folder), "--out", str(tmp_path / "h.html"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "broken.json" in err and words in err and "Traceback" not in err + out


def test_too_few_results(tmp_path: Path, base: dict[str, Any], cli: Cli) -> None:
    out = str(tmp_path / "h.html")
    one = folder_of(tmp_path / "one", {"only.json": base})
    (tmp_path / "empty").mkdir()
    for folder, words in ((one, "holds 1 audit result (only.json)"),
                          (tmp_path / "empty", "holds 0 audit results"),
                          (tmp_path / "missing", "results folder not found")):
        code, _, err = cli("history", str(folder), "--out", out)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_own_outputs_in_the_folder_are_skipped(tmp_path: Path, base: dict[str, Any],
                                               cli: Cli) -> None:
    folder = folder_of(tmp_path, {"r1.json": with_rate(base, 359, day(1)),
                                  "r2.json": with_rate(base, 358, day(2))})
    args = ["history", str(folder), "--out", str(folder / "h.html"), "--json",
            str(folder / "h.json"), "--md", str(folder / "h.md")]
    assert cli(*args)[0] == 0
    assert json.loads((folder / "h.json").read_text())["kind"] == "audit-history"
    (folder / "old-history.json").write_text((folder / "h.json").read_text())
    code, _, err = cli(*args)
    assert code == 0, err
    h = history_of(folder)
    assert len(h.runs) == 2 and any("old-history.json" in n for n in h.notes)


def hostile_history(tmp_path: Path, base: dict[str, Any]) -> Any:
    def evil(doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        doc["model"]["name"] = "evil " + " ".join(HOSTILE)
        doc["data"]["name"] = f"data {IMG}"
        m = {}
        for i, s in enumerate(HOSTILE):
            m[f"m{i} {s}"] = 0.5
            m[f"m{i} {s}_ci_low"], m[f"m{i} {s}_ci_high"] = 0.4, 0.6
        doc["sections"].append({"check": f"check {SCRIPT}", "title": f"Title {IMG}",
                                "status": "pass", "metrics": m, "findings": [],
                                "figures": []})
        return doc

    first, later = evil(with_rate(base, 359, day(1))), evil(with_rate(base, 340, day(2)))
    folder = folder_of(tmp_path, {f"a {IMG}.json": first, "b | *x*.json": later})
    return history_of(folder, thresholds=[parse_threshold(f"m0 {SCRIPT}>=0.9")])


def test_hostile_strings_are_text(tmp_path: Path, base: dict[str, Any]) -> None:
    h = hostile_history(tmp_path, base)
    assert {f.id.split(".")[1] for f in h.findings} == {"regression", "threshold"}
    html = render_history_html(h)
    page = Page(html)
    assert_self_contained(page)
    assert SCRIPT not in html and IMG not in html
    for s in HOSTILE:
        assert s in page.text
    md_html = to_html(render_history_markdown(h))
    tags = Tags(md_html)
    assert {t for t, _ in tags.tags} <= ALLOWED_TAGS
    assert not [a for t, a in tags.tags if t == "a"]
    for table in md_html.split("<table>")[1:]:
        t = Tags("<table>" + table.split("</table>")[0] + "</table>")
        assert len(set(t.rows)) == 1, t.rows  # a "|" in a name never adds a column


def test_the_terminal_shows_hostile_names_as_text(tmp_path: Path, base: dict[str, Any],
                                                  cli: Cli) -> None:
    doc = with_rate(base, 359, day(1))
    doc["model"]["name"] = "evil \x1b[31m[bold]red[/bold]"
    later = with_rate(doc, 340, day(2))
    folder = folder_of(tmp_path / "r", {"r1.json": doc, "r2.json": later})
    code, out, _ = cli("history", str(folder), "--out", str(tmp_path / "h.html"))
    assert code == 1 and "\x1b" not in out and "\\x1b[31m[bold]red[/bold]" in out


def test_the_policy_lists_the_history_kinds() -> None:
    from audit.config.docs import policy_markdown

    text = policy_markdown()
    for k in ("regression", "drift", "trend", "threshold"):
        assert f"| `history.{k}.{{metric}}` |" in text
    assert "| `history.mixed-models` | coverage |" in text


@pytest.mark.browser
def test_history_page_in_a_browser(tmp_path: Path, base: dict[str, Any]) -> None:
    """A realistic history (the committed digits-cnn example audit, four runs with a drop in
    robust accuracy) and the hostile one, wide and narrow, saved under /tmp/history_shots."""
    from browser import shared_browser

    full = json.loads((ROOT / "reports" / "digits-cnn.json").read_text())
    runs = {}
    for i, (k_acc, k_rob) in enumerate(((359, None), (358, None), (357, None), (349, -40))):
        doc = with_rate(full, k_acc, day(i + 1))
        if k_rob is not None:
            rob = _section(doc, "robustness")
            n = (rob.get("outcomes") or {}).get("samples") or int(rob["metrics"]["samples"])
            k = round(rob["metrics"]["robust_accuracy_linf_0.1"] * n) + k_rob
            doc = with_rate(doc, k, day(i + 1), check="robustness",
                            rate="robust_accuracy_linf_0.1")
        runs[f"digits-cnn-{i + 1}.json"] = doc
    folder = folder_of(tmp_path / "digits", runs)
    h = history_of(folder, thresholds=[parse_threshold("performance.accuracy=0.98")])
    assert {f.id for f in h.findings} >= {
        "history.regression.performance.accuracy",
        "history.regression.robustness.robust_accuracy_linf_0.1"}
    pages = {"digits": h, "hostile": hostile_history(tmp_path / "evil", base)}
    browser = shared_browser()
    overflow = "() => document.scrollingElement.scrollWidth - window.innerWidth"
    for name, hist in pages.items():
        html = tmp_path / f"{name}.html"
        html.write_text(render_history_html(hist), encoding="utf-8")
        for width in (1400, 390):
            shot = SHOTS / f"history-{name}-{width}.png"
            rep = browser.open(html, shot, width=width, probes={"overflow": overflow})
            assert not rep.console_errors and not rep.page_errors and not rep.requests
            assert not rep.broken_images and not rep.broken_anchors
            assert rep.extra["pwned"] is None and rep.extra["scripts"] == 0
            assert rep.extra["overflow"] <= 0, (name, width, rep.extra["overflow"])
            assert shot.is_file()
