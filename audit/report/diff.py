"""Compare two audit results: verdicts, severity counts, new and fixed findings (matched by
finding id), severity changes, and metric deltas per check; rendered as HTML and Markdown.

``audit diff A.json B.json --out D.html`` writes ``D.html`` and ``D.md``. A is the baseline
("before"), B the candidate ("after"): a *new* finding is in B but not in A, a *fixed* one in A
but not in B.

Rates (metrics with an interval, ``<name>_ci_low``/``_ci_high``, or with per-sample outcomes)
are tested for a change beyond noise at :data:`ALPHA`: with McNemar's exact test when both
results recorded per-sample outcomes on the same samples of the same data (the sections'
``outcomes``: equal data sha256 and evaluated rows), otherwise with the unpaired
two-proportion test, and the comparison says which.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.io import atomic_write_text
from audit.report.diff_rates import ALPHA, RateTest, rate_tests
from audit.report.formats import as_document
from audit.report.view import (
    FindingView,
    ReportView,
    build_view,
    fmt_number,
    severity_rank,
    slug,
)
from audit.result import AuditResult, Severity


@dataclass
class MetricDelta:
    """One metric in A and B; ``delta`` is B - A when both are finite."""

    name: str
    a: float | None
    b: float | None
    a_text: str
    b_text: str
    delta: float | None
    delta_text: str
    changed: bool

    @property
    def direction(self) -> int:
        """+1 when higher is better, -1 when lower is better, 0 when the name does not say
        (:func:`metric_direction`)."""
        return metric_direction(self.name)

    @property
    def judgement(self) -> str:
        """``better``, ``worse`` or empty (no change, no direction, or not both measured)."""
        if not self.changed or self.delta is None or self.delta == 0 or not self.direction:
            return ""
        return "better" if self.delta * self.direction > 0 else "worse"

    @property
    def headline(self) -> bool:
        """A quality metric with a direction (accuracies, gaps, calibration errors), not an
        interval bound, a count or a setting: what the comparison ranks first."""
        return bool(self.direction) and not self.name.endswith(
            ("_ci_low", "_ci_high", ".ci_low", ".ci_high"))

    @property
    def size(self) -> float:
        """How much it changed: |B - A| / max(|A|, |B|, 1) in [0, 2]: the absolute change for
        rates and shares (values within [-1, 1], so 0 -> 0.01 stays small), the relative change
        for larger quantities; 2 when it appeared or vanished; 0 when unchanged."""
        if not self.changed:
            return 0.0
        if self.a is None or self.b is None:
            return 2.0
        return abs(self.b - self.a) / max(abs(self.a), abs(self.b), 1.0)


@dataclass
class FindingChange:
    """A finding id in A, B or both. ``kind``: new, fixed, worse, better or same."""

    kind: str
    id: str
    check: str
    section_title: str
    a: FindingView | None
    b: FindingView | None

    @property
    def current(self) -> FindingView:
        """The finding as it is now (B), or as it was (A) when fixed."""
        found = self.b or self.a
        assert found is not None
        return found


@dataclass
class SectionDiff:
    """One check in A and/or B: statuses, metric deltas and the rates' tests."""

    check: str
    title: str
    anchor: str
    status_a: str
    status_b: str
    metrics: list[MetricDelta]
    tests: list[RateTest] = field(default_factory=list)

    @property
    def changed_metrics(self) -> list[MetricDelta]:
        return [m for m in self.metrics if m.changed]


@dataclass
class ResultDiff:
    """Everything the comparison shows."""

    a: ReportView
    b: ReportView
    label_a: str
    label_b: str
    new: list[FindingChange]
    fixed: list[FindingChange]
    worse: list[FindingChange]
    better: list[FindingChange]
    same: list[FindingChange]
    sections: list[SectionDiff]
    notes: list[str] = field(default_factory=list)
    identity: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def rate_tests(self) -> list[tuple[SectionDiff, RateTest]]:
        """Every tested rate with its check, in check order."""
        return [(s, t) for s in self.sections for t in s.tests]

    @property
    def noise_summary(self) -> str:
        """One sentence: how many rate changes are distinguishable from noise, and how."""
        tests = [t for _, t in self.rate_tests]
        if not tests:
            return ""
        yes = sum(t.change.distinguishable for t in tests)
        paired = sum(t.change.paired for t in tests)
        how = ("all paired (McNemar, same samples)" if paired == len(tests) else
               f"{paired} paired (McNemar), {len(tests) - paired} unpaired" if paired else
               "unpaired (two-proportion test; no shared per-sample outcomes)")
        return (f"Rate changes distinguishable from noise (alpha {ALPHA:g}): {yes} of "
                f"{len(tests)}, {how}.")

    def largest_changes(self, n: int = 10) -> list[tuple[SectionDiff, MetricDelta]]:
        """The ``n`` metrics that changed most, any check: quality metrics with a direction
        first (:attr:`MetricDelta.headline`), then by relative change, then absolute."""
        items = [(s, m) for s in self.sections for m in s.changed_metrics]
        items.sort(key=lambda sm: (not sm[1].headline, -sm[1].size, -abs(sm[1].delta or 0.0)))
        return items[:n]

    @property
    def deciding(self) -> list[FindingView]:
        """B's findings at or above its ``--fail-on``: what its verdict rests on, shown whether
        or not they changed."""
        return [f for f in self.b.findings if f.blocking]

    @property
    def headline(self) -> str:
        """One sentence: verdicts and what changed."""
        parts = [f"{len(self.new)} new", f"{len(self.fixed)} fixed"]
        if self.worse:
            parts.append(f"{len(self.worse)} more severe")
        if self.better:
            parts.append(f"{len(self.better)} less severe")
        parts.append(f"{len(self.same)} unchanged")
        changed = sum(len(s.changed_metrics) for s in self.sections)
        noise = self.noise_summary
        return (f"{self.label_a} {self.a.status.upper()} → {self.label_b} "
                f"{self.b.status.upper()}. Findings: {', '.join(parts)}. "
                f"{changed} metric{'s' if changed != 1 else ''} changed."
                + (f" {noise}" if noise else ""))

    def write(self, out: str | Path) -> tuple[Path, Path]:
        """Write the comparison as ``out`` (HTML) and the Markdown beside it (``.md``),
        atomically; returns (html_path, markdown_path)."""
        from audit.report.diff_render import render_diff_html, render_diff_markdown

        out = Path(out)
        md_path = out.with_suffix(".md")
        atomic_write_text(md_path, render_diff_markdown(self))
        atomic_write_text(out, render_diff_html(self))
        return out, md_path

    def regressions(self, at_least: str | Severity) -> list[FindingChange]:
        """New or more severe findings in B at or above ``at_least``."""
        rank = severity_rank(Severity.parse(at_least).value)
        return [c for c in (*self.new, *self.worse)
                if c.b is not None and severity_rank(c.b.severity) >= rank]


# Which way is better, by the words of a metric's name (checked in this order, so
# "demographic_parity_ratio" is a ratio before "parity" could say anything).
_DIRECTION_WORDS: tuple[tuple[str, int], ...] = (
    ("success_rate", -1), ("overconfidence", -1), ("_ratio", +1), ("ratio_", +1),
    ("difference", -1), ("gap", -1), ("ece", -1), ("mce", -1), ("nll", -1), ("brier", -1),
    ("loss", -1), ("deletion", -1), ("error", -1), ("accuracy", +1), ("agreement", +1),
    ("fidelity", +1), ("precision", +1), ("recall", +1), ("f1", +1), ("insertion", +1),
    ("certified", +1), ("radius", +1),
)


def metric_direction(name: str) -> int:
    """+1 when a higher value of metric ``name`` is better, -1 when lower is, 0 unknown."""
    parts = name.lower()
    if parts.startswith("random."):  # a reference baseline, not the model's quality
        return 0
    for word, sign in _DIRECTION_WORDS:
        if word in parts:
            return sign
    return 0


def _delta_text(d: float | None) -> str:
    if d is None:
        return "–"
    if d == 0:
        return "0"
    return ("+" if d > 0 else "−") + fmt_number(abs(d))


def signed(n: int) -> str:
    return f"+{n}" if n > 0 else (f"−{-n}" if n < 0 else "0")


def _metric_deltas(a: dict[str, float | None], b: dict[str, float | None],
                   texts_a: dict[str, str], texts_b: dict[str, str]) -> list[MetricDelta]:
    names = list(b) + [n for n in a if n not in b]
    out = []
    for n in names:
        va, vb = a.get(n), b.get(n)
        delta = vb - va if va is not None and vb is not None else None
        present_a, present_b = n in a, n in b
        changed = (present_a != present_b or (va is None) != (vb is None)
                   or (delta is not None and not math.isclose(va or 0.0, vb or 0.0,
                                                              rel_tol=1e-9, abs_tol=1e-12)))
        out.append(MetricDelta(n, va, vb, texts_a.get(n, "absent") if present_a else "absent",
                               texts_b.get(n, "absent") if present_b else "absent", delta,
                               _delta_text(delta if changed or delta is None else 0.0),
                               changed))
    return out


def diff_results(a: AuditResult | dict[str, Any], b: AuditResult | dict[str, Any],
                 labels: tuple[str, str] = ("A", "B")) -> ResultDiff:
    """Compare result ``a`` (baseline) with ``b`` (candidate)."""
    da, db = as_document(a), as_document(b)
    va, vb = build_view(da), build_view(db)
    by_id_a: dict[str, list[FindingView]] = defaultdict(list)
    for f in sorted(va.findings, key=lambda f: f.order):
        by_id_a[f.id].append(f)
    changes: dict[str, list[FindingChange]] = defaultdict(list)
    for fb in sorted(vb.findings, key=lambda f: f.order):
        fa = by_id_a[fb.id].pop(0) if by_id_a.get(fb.id) else None
        if fa is None:
            kind = "new"
        elif severity_rank(fb.severity) > severity_rank(fa.severity):
            kind = "worse"
        elif severity_rank(fb.severity) < severity_rank(fa.severity):
            kind = "better"
        else:
            kind = "same"
        changes[kind].append(FindingChange(kind, fb.id, fb.check, fb.section_title, fa, fb))
    for left in by_id_a.values():
        for fa in left:
            changes["fixed"].append(FindingChange("fixed", fa.id, fa.check, fa.section_title,
                                                  fa, None))
    for kind in changes:
        changes[kind].sort(key=lambda c: (-severity_rank(c.current.severity), c.current.order))

    secs_a = {s.check: s for s in va.sections}
    secs_b = {s.check: s for s in vb.sections}
    raw_a = {s.get("check"): s for s in da.get("sections", [])}
    raw_b = {s.get("check"): s for s in db.get("sections", [])}
    sections = []
    used: set[str] = set()
    for check in list(secs_b) + [c for c in secs_a if c not in secs_b]:
        sa, sb = secs_a.get(check), secs_b.get(check)
        ref = sb or sa
        assert ref is not None
        anchor = f"d-{slug(check)}"
        while anchor in used:
            anchor += "-x"
        used.add(anchor)
        metrics = _metric_deltas({m.name: m.raw for m in sa.metrics} if sa else {},
                                 {m.name: m.raw for m in sb.metrics} if sb else {},
                                 {m.name: m.value for m in sa.metrics} if sa else {},
                                 {m.name: m.value for m in sb.metrics} if sb else {})
        tests = (rate_tests(raw_a[check], raw_b[check])
                 if check in raw_a and check in raw_b else [])
        sections.append(SectionDiff(check, ref.title, anchor, sa.status if sa else "absent",
                                    sb.status if sb else "absent", metrics, tests))
    return ResultDiff(a=va, b=vb, label_a=labels[0], label_b=labels[1],
                      new=changes["new"], fixed=changes["fixed"], worse=changes["worse"],
                      better=changes["better"], same=changes["same"], sections=sections,
                      notes=_notes(da, db, va, vb, labels), identity=_identity(da, db, va, vb))


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _notes(da: dict[str, Any], db: dict[str, Any], va: ReportView, vb: ReportView,
           labels: tuple[str, str]) -> list[str]:
    notes = []
    if va.data.get("sha256") != vb.data.get("sha256"):
        notes.append(f"{labels[0]} and {labels[1]} were audited on different data "
                     f"({va.data.get('name')} vs {vb.data.get('name')}): metric changes mix "
                     "model and data effects.")
    if va.model.get("sha256") and va.model.get("sha256") == vb.model.get("sha256"):
        notes.append("Both results audit the same model weights (same sha256); differences "
                     "come from data, settings or the tool version.")
    for key, label in (("seed", "seed"), ("fail_on", "fail-on threshold"), ("quick", "quick "
                                                                                   "mode")):
        x, y = _get(da, "config", key), _get(db, "config", key)
        if x != y:
            notes.append(f"Different {label}: {fmt_number(x)} vs {fmt_number(y)}.")
    if _get(da, "config", "params") != _get(db, "config", "params"):
        notes.append("Check parameters differ; compare the effective configurations in the "
                     "two reports.")
    ta, tb = _get(da, "tool", "version"), _get(db, "tool", "version")
    if ta != tb:
        notes.append(f"Different tool versions: {ta} vs {tb}.")
    only_a = [s.title for s in va.sections if s.check not in {t.check for t in vb.sections}]
    only_b = [s.title for s in vb.sections if s.check not in {t.check for t in va.sections}]
    if only_a:
        notes.append(f"Checks only in {labels[0]}: {', '.join(only_a)}.")
    if only_b:
        notes.append(f"Checks only in {labels[1]}: {', '.join(only_b)}.")
    return notes


def _identity(da: dict[str, Any], db: dict[str, Any], va: ReportView, vb: ReportView
              ) -> list[tuple[str, str, str]]:
    def run(d: dict[str, Any], key: str) -> str:
        v = _get(d, "run", key)
        return "" if v is None else str(v)

    return [
        ("Model", va.model["name"], vb.model["name"]),
        ("Model sha256", va.model["sha256"], vb.model["sha256"]),
        ("Architecture", va.model["arch"], vb.model["arch"]),
        ("Parameters", va.model["parameters"], vb.model["parameters"]),
        ("Data", va.data["name"], vb.data["name"]),
        ("Data sha256", va.data["sha256"], vb.data["sha256"]),
        ("Verdict", f"{va.status} (fail on {va.fail_on})", f"{vb.status} (fail on {vb.fail_on})"),
        ("Seed", run(da, "seed"), run(db, "seed")),
        ("Command", run(da, "command"), run(db, "command")),
        ("Created", va.created, vb.created),
        ("Tool", va.tool, vb.tool),
    ]


def write_diff(a: AuditResult | dict[str, Any], b: AuditResult | dict[str, Any],
               out: str | Path, labels: tuple[str, str] = ("A", "B")) -> tuple[Path, Path]:
    """Compare ``a`` with ``b`` and write ``out`` (HTML) and the Markdown beside it (``.md``);
    :meth:`ResultDiff.write` does the same for a comparison already made."""
    return diff_results(a, b, labels).write(out)
