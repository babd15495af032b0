"""The history of one model's audits: the JSON results of earlier ``audit run``s in a folder,
in time order, with each headline metric as a series over the runs (torch-free).

Headline metrics are every metric that carries an interval (``<name>_ci_low``/``_ci_high`` or
``<name>.ci_low``/``.ci_high`` companions: accuracies, robust accuracies, agreement, fairness
gaps, ...), every metric of a ``drift`` section (each is a drift score; :data:`DRIFT_HEADLINE`
are the ones plotted) and every metric a ``--threshold`` names.

The latest run is compared with the previous one metric by metric. A rate (a metric with
``_ci_low``/``_ci_high``) is tested as ``audit diff`` tests it
(:func:`audit.report.diff_rates.rate_tests`: McNemar's exact test when both runs recorded
per-sample outcomes on the same samples, else the unpaired two-proportion test); another
metric with an interval (a bootstrap interval of a fairness gap) by a z-test on the two
intervals' widths. With three runs or more, each rate's trend over all runs is tested with the
Cochran-Armitage test (:mod:`audit.report.history_stats`). Findings are made by
:mod:`audit.report.history_findings`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit.display import shorten
from audit.errors import DataError, UsageError
from audit.report.diff import metric_direction
from audit.report.diff_rates import ALPHA, RateTest, rate_tests
from audit.report.history_findings import (
    Threshold,
    history_findings,
    thresholds_for,
)
from audit.report.history_stats import Change, Point, Trend, compare, trend_test
from audit.report.text import fmt_number, nice_time, text
from audit.result import Finding, Severity
from audit.stats import Outcomes

__all__ = ["ALPHA", "DRIFT_CHECK", "DRIFT_HEADLINE", "HISTORY_KIND", "Change", "History",
           "Point", "Run", "Series", "Trend", "build_history", "read_results"]

DRIFT_CHECK = "drift"
"""The check whose every metric is a drift score."""
DRIFT_HEADLINE = ("drift_share", "c2st_auc", "mmd", "estimated_accuracy",
                  "prediction_drift_p_value")
"""Drift scores that are plotted (with any other drift metric that has an interval); every
other drift score is in the table only."""
HISTORY_KIND = "audit-history"
"""The ``kind`` of the JSON that ``audit history --json`` writes (skipped when it is found
among the results)."""


@dataclass(frozen=True)
class Run:
    """One audit result of the history, at its place in time (``index`` from 1)."""

    index: int
    file: str
    created_at: str
    model: str
    model_sha256: str
    data: str
    data_sha256: str
    seed: str
    status: str
    tool: str
    doc: dict[str, Any] = field(repr=False, compare=False)

    @property
    def created(self) -> str:
        return nice_time(self.created_at)

    def section(self, check: str) -> dict[str, Any] | None:
        """The run's first section of ``check`` (None when it did not run that check)."""
        return next((s for s in self.doc.get("sections") or []
                     if isinstance(s, dict) and s.get("check") == check), None)


@dataclass
class Series:
    """One headline metric over the runs (``points[i]`` is run ``i + 1``, None if absent)."""

    check: str
    metric: str
    title: str
    direction: int
    drift: bool
    rate: bool
    plotted: bool
    points: list[Point | None]
    change: Change | None = None
    trend: Trend | None = None
    thresholds: list[Threshold] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.check}.{self.metric}"

    @property
    def latest(self) -> Point | None:
        return self.points[-1]

    @property
    def direction_text(self) -> str:
        return {1: "higher is better", -1: "lower is better"}.get(self.direction, "")


@dataclass
class History:
    """Everything ``audit history`` shows: the runs, the series, the findings."""

    folder: str
    runs: list[Run]
    series: list[Series]
    findings: list[Finding]
    fail_on: Severity
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.runs[-1].model

    def blocking(self) -> list[Finding]:
        """Findings at or above ``fail_on``: what the exit code rests on."""
        return [f for f in self.findings if f.severity.rank >= self.fail_on.rank]

    @property
    def status(self) -> str:
        return "fail" if self.blocking() else "pass"

    @property
    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Severity}
        for f in self.findings:
            out[f.severity.value] += 1
        return out

    @property
    def headline(self) -> str:
        """One sentence: runs, span, findings, and how the latest run compares."""
        worse = sum(1 for s in self.series if s.change and s.change.regression)
        tested = sum(1 for s in self.series if s.change and s.change.method)
        counts = ", ".join(f"{n} {k}" for k, n in reversed(self.counts.items()) if n)
        return (f"{len(self.runs)} runs of {shorten(self.model, 80)} from "
                f"{self.runs[0].created} to {self.runs[-1].created}. Findings: {counts or 'none'}. "
                f"Latest run against the previous one: {worse} of {tested} tested metrics "
                f"worse beyond noise (alpha {ALPHA:g}).")


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def read_results(folder: str | Path, skip: Iterable[str | Path] = ()
                 ) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The audit results (``*.json``) in ``folder``, validated against the result schema, and
    the names of the files skipped as ``audit history``'s own JSON (or named in ``skip``).
    :class:`DataError` names a file that cannot be read or is not an audit result."""
    from audit.report.render import load_result

    root = Path(folder)
    if not root.exists():
        raise DataError(f"results folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass the folder holding the JSON results of "
                        "earlier 'audit run's")
    own = {Path(p).resolve() for p in skip}
    out, skipped = [], []
    for path in sorted(p for p in root.glob("*.json") if p.is_file()):
        if path.resolve() in own:
            skipped.append(path.name)
            continue
        try:
            out.append((path.name, load_result(path)))
        except DataError:
            if not _is_history(path):
                raise
            skipped.append(path.name)
    return out, skipped


def _is_history(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("kind") == HISTORY_KIND


def _created(name: str, doc: dict[str, Any]) -> datetime:
    raw = _get(doc, "run", "created_at")
    try:
        when = datetime.fromisoformat(str(raw))
    except ValueError:
        raise DataError(f"{name} has no valid run.created_at ({shorten(text(raw), 40)!r}): "
                        "cannot place it in time; re-run its audit") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _runs(results: Sequence[tuple[str, dict[str, Any]]]) -> list[Run]:
    ordered = sorted(results, key=lambda r: (_created(*r), r[0]))
    return [Run(index=i + 1, file=name, created_at=text(_get(doc, "run", "created_at")),
                model=text(_get(doc, "model", "name")) or "model",
                model_sha256=text(_get(doc, "model", "sha256")),
                data=text(_get(doc, "data", "name")), data_sha256=text(_get(doc, "data", "sha256")),
                seed=fmt_number(_get(doc, "run", "seed")),
                status=text(_get(doc, "summary", "status")) or "?",
                tool=f"{text(_get(doc, 'tool', 'name'))} {text(_get(doc, 'tool', 'version'))}",
                doc=doc)
            for i, (name, doc) in enumerate(ordered)]


def _mixed(runs: list[Run], folder: str) -> str:
    """Empty when every run audits the same model (name and sha256), else the one-line
    reason naming two files that differ."""
    first = runs[0]
    other = next((r for r in runs if (r.model, r.model_sha256) !=
                  (first.model, first.model_sha256)), None)
    if other is None:
        return ""
    models = len({(r.model, r.model_sha256) for r in runs})

    def who(r: Run) -> str:
        return f"{r.file} audits {shorten(r.model, 60)!r} (sha256 {r.model_sha256[:12]})"

    return f"{folder} holds results of {models} different models: {who(first)}, {who(other)}"


def _interval(metrics: dict[str, Any], name: str) -> tuple[float | None, float | None]:
    for lo, hi in ((f"{name}_ci_low", f"{name}_ci_high"), (f"{name}.ci_low", f"{name}.ci_high")):
        if lo in metrics and hi in metrics:
            return _num(metrics[lo]), _num(metrics[hi])
    return None, None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


_BOUNDS = ("_ci_low", "_ci_high", ".ci_low", ".ci_high")


def _has_interval(metrics: dict[str, Any], name: str) -> bool:
    return any(f"{name}{lo}" in metrics and f"{name}{hi}" in metrics
               for lo, hi in (("_ci_low", "_ci_high"), (".ci_low", ".ci_high")))


def drift_direction(name: str) -> int:
    """Which way a drift score is better: a p-value up (less evidence of drift), a quality
    estimate as its name says (``estimated_accuracy`` up), counts of what was tested
    (``samples_current``, ``columns_tested``) undirected, every other score down (more drift
    is worse)."""
    low = name.lower()
    if low.endswith(("p_value", "p_adjusted")):
        return +1
    if any(w in low for w in ("samples", "rows", "tested", "size")):  # how much was looked at
        return 0
    return metric_direction(name) or -1


def _candidates(runs: list[Run]) -> list[tuple[str, str, str, bool]]:
    """(check, metric, section title, drift) of every headline metric, latest run's sections
    first, then metrics met only in earlier runs."""
    seen: dict[tuple[str, str], tuple[str, str, str, bool]] = {}
    for run in reversed(runs):
        for sec in run.doc.get("sections") or []:
            check, metrics = text(sec.get("check")), sec.get("metrics") or {}
            drift = check == DRIFT_CHECK
            for name in metrics:
                if name.endswith(_BOUNDS) or (check, name) in seen:
                    continue
                if drift or _has_interval(metrics, name):
                    seen[(check, name)] = (check, name, text(sec.get("title")) or check, drift)
    return list(seen.values())


def _series(runs: list[Run], check: str, metric: str, title: str, drift: bool) -> Series:
    points: list[Point | None] = []
    rate = False
    for run in runs:
        sec = run.section(check)
        metrics = (sec or {}).get("metrics") or {}
        if metric not in metrics:
            points.append(None)
            continue
        lo, hi = _interval(metrics, metric)
        rate = rate or (f"{metric}_ci_low" in metrics)
        points.append(Point(_num(metrics[metric]), lo, hi))
    direction = drift_direction(metric) if drift else metric_direction(metric)
    plotted = not drift or metric in DRIFT_HEADLINE or any(p and p.low is not None
                                                           for p in points)
    return Series(check, metric, title, direction, drift, rate, plotted, points)


def _samples(sec: dict[str, Any] | None) -> int | None:
    """How many samples a section's rates were measured on (its outcomes or ``samples``)."""
    if sec is None:
        return None
    o = Outcomes.read(sec.get("outcomes"))
    n = o.samples if o is not None else _num((sec.get("metrics") or {}).get("samples"))
    return int(n) if n is not None and n > 0 else None


def _trend(s: Series, runs: list[Run]) -> Trend | None:
    """The trend test of a rate over the runs that measured it with a sample count."""
    if not s.rate or not s.direction:
        return None
    cells = [(i, p.value, n) for i, (p, run) in enumerate(zip(s.points, runs, strict=True))
             if p is not None and p.value is not None
             and (n := _samples(run.section(s.check))) is not None]
    return trend_test(cells, s.direction)


def _change(s: Series, rates: dict[str, RateTest]) -> Change | None:
    """The latest run against the previous one (None unless both measured the metric)."""
    a, b = (s.points[-2], s.points[-1]) if len(s.points) >= 2 else (None, None)
    if a is None or b is None or a.value is None or b.value is None:
        return None
    return compare(a, b, s.direction, rates.get(s.metric))


def _notes(runs: list[Run], skipped: list[str], mixed: str) -> list[str]:
    notes = []
    if mixed:
        notes.append(f"{mixed}; they are tracked as one history (--allow-mixed).")
    a, b = runs[-2], runs[-1]
    if a.data_sha256 != b.data_sha256:
        notes.append(f"The last two runs audited different data ({a.data} vs {b.data}): their "
                     "changes mix model and data effects, and no test can pair their samples.")
    if len({r.tool for r in runs}) > 1:
        notes.append("The runs were made by different tool versions: "
                     + ", ".join(dict.fromkeys(r.tool for r in runs)) + ".")
    if skipped:
        notes.append("Not read as results: " + ", ".join(skipped) + " (this command's own "
                     "output).")
    return notes


def build_history(results: Sequence[tuple[str, dict[str, Any]]], *,
                  thresholds: Sequence[Threshold] = (), fail_on: str | Severity = "high",
                  allow_mixed: bool = False, folder: str = "results",
                  skipped: Sequence[str] = ()) -> History:
    """The history of ``results`` (file name, result document): runs ordered by
    ``run.created_at`` (ties by file name), one series per headline metric, the latest run
    tested against the previous one, trends, thresholds and the findings.
    :class:`DataError` when there are fewer than two results, or results of different models
    without ``allow_mixed``; :class:`~audit.errors.UsageError` for a threshold that names no
    metric of the latest run."""
    if len(results) < 2:
        names = ", ".join(n for n, _ in results)
        raise DataError(f"{folder} holds {len(results)} audit result"
                        f"{'' if len(results) == 1 else 's'}{f' ({names})' if names else ''}; "
                        "a history needs at least 2 (the .json files 'audit run' writes)")
    runs = _runs(results)
    mixed = _mixed(runs, folder)
    if mixed and not allow_mixed:
        raise DataError(f"{mixed}; pass --allow-mixed to track them as one history, or keep "
                        "one model's results per folder")
    latest = runs[-1]
    all_latest = [(text(sec.get("check")), name) for sec in latest.doc.get("sections") or []
                  for name in sec.get("metrics") or {} if not name.endswith(_BOUNDS)]
    chosen = thresholds_for(thresholds, all_latest)
    keys = _candidates(runs)
    known = {(c, m) for c, m, _, _ in keys}
    for check, metric in chosen:
        if (check, metric) not in known:
            sec = latest.section(check) or {}
            keys.append((check, metric, text(sec.get("title")) or check, check == DRIFT_CHECK))
            known.add((check, metric))
    series = [_series(runs, *k) for k in keys]
    prev = runs[-2]
    tests: dict[str, dict[str, RateTest]] = {}
    for s in series:
        if s.check not in tests:
            sa, sb = prev.section(s.check), latest.section(s.check)
            tests[s.check] = ({t.name: t for t in rate_tests(sa, sb)}
                              if sa is not None and sb is not None else {})
        s.change = _change(s, tests[s.check])
        s.trend = _trend(s, runs)
        s.thresholds = chosen.get((s.check, s.metric), [])
        auto = next((t for t in s.thresholds if t.side == "auto"), None)
        if auto is not None and not s.direction:
            raise UsageError(f"--threshold {auto.key}: {s.name} has no known better direction; "
                             f"write {auto.key}>=VALUE or {auto.key}<=VALUE")
    history = History(folder=folder, runs=runs, series=series, findings=[],
                      fail_on=Severity.parse(fail_on), notes=_notes(runs, list(skipped), mixed))
    history.findings = history_findings(history)
    return history
