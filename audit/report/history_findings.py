"""What ``audit history`` finds, as findings of declared kinds (:mod:`audit.policy`), and the
``--threshold`` bars they judge.

A regression's severity follows what the metric is about, as the checks' own findings do:
high for the model's quality (performance, fairness, certified and other checks' metrics),
medium for robustness (mostly outside the card's threat model; claims are judged by the
audit's cross-checks), low for explanation methods (saliency, surrogate: method limits never
fail a model). A drift score is about the data, not the model: an exposure, medium. A user's
threshold is a bar the user set: high. The module is light (no numpy beyond the result model)
because the command line imports it at start-up to declare the kinds for ``audit config
--policy``.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from audit.errors import UsageError
from audit.history_kinds import DRIFT, MIXED, REGRESSION, THRESHOLD, TREND
from audit.report.text import fmt_number
from audit.result import Finding, Severity

if TYPE_CHECKING:
    from audit.report.history import History, Run, Series

__all__ = ["DRIFT", "MIXED", "REGRESSION", "THRESHOLD", "TREND", "Threshold",
           "history_findings", "parse_threshold", "thresholds_for"]

METHOD_CHECKS = ("saliency", "surrogate")
"""Checks whose metrics describe an explanation method, not the model."""
EXPOSURE_CHECKS = ("robustness",)
"""Checks whose metrics are mostly outside the card's stated use."""


@dataclass(frozen=True)
class Threshold:
    """A bar for the metrics ``key`` names: ``min`` (at least ``bound``), ``max`` (at most),
    or ``auto`` (``METRIC=VALUE``: at least when higher is better, else at most)."""

    key: str
    bound: float
    side: Literal["min", "max", "auto"] = "auto"

    def minimum(self, direction: int) -> bool:
        """Whether the bar is a minimum for a metric of ``direction``."""
        return self.side == "min" or (self.side == "auto" and direction > 0)

    def past(self, value: float, direction: int) -> bool:
        return value < self.bound if self.minimum(direction) else value > self.bound

    def text(self, direction: int) -> str:
        return f"{'≥' if self.minimum(direction) else '≤'} {fmt_number(self.bound)}"

    def matches(self, check: str, metric: str) -> bool:
        """``check.metric`` itself, a bare ``metric`` of any check, or ``check.suffix``
        naming the last dotted parts (``fairness.demographic_parity_difference`` is every
        sensitive attribute's gap)."""
        key = self.key
        if key in (f"{check}.{metric}", metric):
            return True
        rest = key[len(check) + 1:] if key.startswith(f"{check}.") else ""
        return bool(rest) and metric.endswith(f".{rest}")


# the last operator splits: a metric name may hold "=", "<" or ">" itself
_THRESHOLD = re.compile(r"^\s*(?P<key>.+?)\s*(?P<op>>=|<=|=)\s*(?P<value>[^=<>]+?)\s*$")


def parse_threshold(spec: str) -> Threshold:
    """``METRIC=VALUE``, ``METRIC>=VALUE`` or ``METRIC<=VALUE``; :class:`UsageError` else."""
    m = _THRESHOLD.match(spec)
    value = math.nan
    if m:
        with contextlib.suppress(ValueError):  # not a number: the message below says so
            value = float(m["value"])
    if not m or not math.isfinite(value):
        raise UsageError(f"--threshold {spec!r}: write METRIC=VALUE (or METRIC>=VALUE, "
                         "METRIC<=VALUE) with a number, e.g. performance.accuracy=0.9")
    side: Literal["min", "max", "auto"] = (
        "min" if m["op"] == ">=" else "max" if m["op"] == "<=" else "auto")
    return Threshold(m["key"], value, side)


def thresholds_for(thresholds: Sequence[Threshold], metrics: Iterable[tuple[str, str]]
                   ) -> dict[tuple[str, str], list[Threshold]]:
    """The thresholds that apply to each (check, metric) of the latest run;
    :class:`UsageError` for one that names none of them (a misspelt bar never passes
    silently)."""
    metrics = list(metrics)
    out: dict[tuple[str, str], list[Threshold]] = {}
    for t in thresholds:
        hits = [cm for cm in metrics if t.matches(*cm)]
        if not hits:
            raise UsageError(f"--threshold {t.key}: no metric of the latest result is called "
                             "that; metrics are named CHECK.METRIC, e.g. performance.accuracy")
        for cm in hits:
            out.setdefault(cm, []).append(t)
    return out


def _severity(check: str, high: Severity) -> Severity:
    if check in METHOD_CHECKS:
        return Severity.LOW
    if check in EXPOSURE_CHECKS:
        return Severity.MEDIUM
    return high


def _runs_text(a: Run, b: Run) -> str:
    return f"run {a.index} ({a.file}, {a.created}) → run {b.index} ({b.file}, {b.created})"


def _regression(s: Series, a: Run, b: Run) -> Finding:
    c = s.change
    assert c is not None and c.previous.value is not None and c.latest.value is not None
    side = "below its low end" if s.direction > 0 else "above its high end"
    detail = (f"{s.name} ({s.title}; {s.direction_text}) went from {c.previous.text} to "
              f"{c.latest.text}: {side} of the previous run's interval, and the "
              f"{c.method} finds the change beyond noise (p={fmt_number(c.p_value, 2)}; "
              f"{c.how}). {_runs_text(a, b)}.")
    if a.data_sha256 != b.data_sha256:
        detail += " The two runs audited different data: the change mixes model and data."
    evidence = {"previous": c.previous.value, "latest": c.latest.value,
                "previous_interval": [c.previous.low, c.previous.high],
                "latest_interval": [c.latest.low, c.latest.high], "test": c.method,
                "p_value": c.p_value, "previous_file": a.file, "latest_file": b.file}
    if s.drift:
        return DRIFT(Severity.MEDIUM, f"Drift score {s.name} worse than in the previous run",
                     detail, evidence=evidence, metric=s.name,
                     recommendation="Compare the latest data with the reference and the "
                                    "previous run's data; retrain or recalibrate if the shift "
                                    "is real and lasting.")
    return REGRESSION(_severity(s.check, Severity.HIGH),
                      f"{s.name} worse than in the previous run, beyond noise", detail,
                      evidence=evidence, metric=s.name,
                      recommendation="Find what changed between the two runs (weights, data, "
                                     "settings: see the runs table); roll back, or record why "
                                     "the drop is accepted.")


def _trend(s: Series) -> Finding:
    t = s.trend
    assert t is not None
    values = ", ".join(fmt_number(p.value) if p else "–" for p in s.points)
    return TREND(_severity(s.check, Severity.MEDIUM), f"{s.name} trends worse over {t.runs} runs",
                 f"{s.name} ({s.title}; {s.direction_text}) over the runs: {values}. The "
                 f"Cochran-Armitage test of a trend in run order gives z={t.z:.2f}, "
                 f"p={fmt_number(t.p_value, 2)}; it treats the runs as independent samples, "
                 "which is conservative for runs on the same data.",
                 evidence={"z": t.z, "p_value": t.p_value, "runs": t.runs}, metric=s.name,
                 recommendation="Look for a slow change across the runs (data, retraining "
                                "recipe) before it crosses a bar.")


def _threshold(s: Series, t: Threshold, run: Run) -> Finding | None:
    p = s.latest
    if p is None or p.value is None or not t.past(p.value, s.direction):
        return None
    bar = t.text(s.direction)
    beyond = (p.high is not None and p.high < t.bound) if t.minimum(s.direction) else \
        (p.low is not None and p.low > t.bound)
    interval = ("" if p.low is None else
                " Its whole interval is past the bar." if beyond else
                " Its interval still reaches the bar: more data would say whether it is past.")
    return THRESHOLD(Severity.HIGH, f"{s.name} is {fmt_number(p.value)}, past the bar {bar}",
                     f"In the latest run (run {run.index}, {run.file}, {run.created}) "
                     f"{s.name} is {p.text}; --threshold {t.key} requires {bar}.{interval}",
                     evidence={"value": p.value, "interval": [p.low, p.high],
                               "threshold": t.bound, "required": bar}, metric=s.name,
                     recommendation="Fix the model or the data before use, or change the bar "
                                    "where it was set.")


def history_findings(h: History) -> list[Finding]:
    """Every finding of a history, most severe first (then in series order)."""
    a, b = h.runs[-2], h.runs[-1]
    out: list[Finding] = []
    if len({(r.model, r.model_sha256) for r in h.runs}) > 1:
        out.append(MIXED(Severity.INFO, "The results audit different models",
                         "; ".join(f"run {r.index} ({r.file}): {r.model} "
                                   f"{r.model_sha256[:12]}" for r in h.runs)
                         + ". Metric changes mix the models' differences with everything else.",
                         evidence={"models": len({r.model_sha256 for r in h.runs})}))
    for s in h.series:
        if s.change is not None and s.change.regression:
            out.append(_regression(s, a, b))
        if s.trend is not None and s.trend.significant and s.trend.worse:
            out.append(_trend(s))
        # one finding per metric (its id is the metric's): the first bar it is past
        found = next((f for t in s.thresholds if (f := _threshold(s, t, b)) is not None), None)
        if found is not None:
            out.append(found)
    order = {id(f): i for i, f in enumerate(out)}
    return sorted(out, key=lambda f: (-f.severity.rank, order[id(f)]))
