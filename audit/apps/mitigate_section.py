"""The report section of the mitigation experiment (:mod:`audit.apps.mitigate`): the trade-off
table and plot, and one finding per method saying what it bought and what it cost."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from audit.fairness.findings import MITIGATION_RESULT
from audit.fairness.groups import INTERSECTION
from audit.fairness.metrics import FairnessResult
from audit.fairness.plots import tradeoff_figure
from audit.result import Finding, Section, Severity, Table

if TYPE_CHECKING:
    from audit.apps.mitigate import TrainingSettings

__all__ = ["GAPS", "METHODS", "Variant", "mitigation_section"]

METHODS: dict[str, str] = {
    "reweighing": "reweighing (Kamiran & Calders)",
    "penalty-dp": "fairness penalty: demographic parity",
    "penalty-eo": "fairness penalty: equalized odds",
    "thresholds-dp": "group thresholds: demographic parity",
    "thresholds-eo": "group thresholds: equalized odds",
}


@dataclass
class Variant:
    """One mitigated model measured on the evaluation data."""

    method: str
    setting: str
    accuracy: float
    result: FairnessResult
    seconds: float

    @property
    def key(self) -> str:
        return self.method + (f"[{self.setting}]" if self.setting else "")

    @property
    def constant(self) -> bool:
        """Whether the variant (almost) always predicts the same class: a collapsed model
        whose zero gaps mean nothing."""
        rate = self.result.overall["selection_rate"]
        return rate < 0.005 or rate > 0.995


GAPS = (("demographic_parity_difference", "DP diff"),
        ("equalized_odds_difference", "EO diff"))


def mitigation_section(variants: list[Variant], settings: TrainingSettings,
                       sensitive: Sequence[str], target: Sequence[str]) -> Section:
    """The report section: trade-off table and plot, and a finding per method saying what it
    bought and what it cost."""
    groupings = [g.name for g in variants[0].result.groupings]
    keys = {g.name: g.key for g in variants[0].result.groupings}
    target_name = INTERSECTION.join(target)
    # the first sensitive column alone and the groups the mitigations act on
    shown = list(dict.fromkeys(g for g in (groupings[0], target_name) if g in keys))
    panels = [(f"{keys[gname]}.{k}", f"{label} by {gname}") for gname in shown
              for k, label in GAPS]
    tkey = keys[shown[-1]]
    metrics: dict[str, float] = {}
    for v in variants:
        metrics[f"{v.key}.accuracy"] = v.accuracy
        for k, _ in GAPS:
            metrics[f"{v.key}.{tkey}.{k}"] = _gap(v, tkey, k)
    findings = [_method_finding(method, [v for v in variants if v.method == method],
                                variants[0], shown[-1])
                for method in dict.fromkeys(v.method for v in variants[1:])]
    return Section(check="mitigation", title="Bias mitigation: fairness against accuracy",
                   summary=_summary(variants, tkey, shown[-1]), reading=_reading(settings),
                   metrics=metrics, findings=findings,
                   figures=[tradeoff_figure(_points(variants), panels)],
                   tables=[_table(variants, groupings, target_name),
                           _changes_table(variants, target_name)],
                   duration_s=sum(v.seconds for v in variants))


def _table(variants: list[Variant], groupings: list[str], target_name: str) -> Table:
    """Accuracy and both gaps by every grouping, one row per variant, and every metric that got
    worse than the baseline's beyond noise (the side effects, :func:`_changes`)."""
    cols = ["method", "setting", "accuracy"]
    for gname in groupings:
        cols += [f"{label} ({gname})" for _, label in GAPS]
    cols += ["worse than the baseline", "seconds", "note"]
    rows: list[list[Any]] = []
    base = variants[0]
    for v in variants:
        row: list[Any] = [v.method, v.setting, round(v.accuracy, 4)]
        for gname in groupings:
            g = next(x for x in v.result.groupings if x.name == gname)
            row += [_r(g.disparities[k].value) for k, _ in GAPS]
        row += [_worse(v, base) if v is not base else "",
                round(v.seconds, 1), "collapsed: predicts one class for everyone"
                if v.constant else ""]
        rows.append(row)
    return Table(id="mitigation", title="Mitigation: accuracy and fairness gaps per method",
                 columns=cols, rows=rows,
                 caption=("Every variant is measured on the same held-out data. DP diff: "
                          "demographic parity difference; EO diff: equalized odds difference "
                          f"(lower is fairer). Mitigations act on the groups of {target_name}. "
                          "Worse than the baseline: accuracy and the DP and EO gaps (by every "
                          "grouping, targeted or not) that moved the wrong way by more than "
                          "the baseline's noise, and how many other disparities did; the next "
                          "table shows every metric."))


def _worse(v: Variant, base: Variant) -> str:
    """The side effects of ``v`` in one cell: accuracy and the DP/EO gaps that got worse by
    name, then how many other metrics of the changes table did."""
    worse = [c for c in _changes(v, base) if c.verdict == "worse"]
    named = [c for c in worse if c.headline]
    text = "; ".join(f"{c.short} {c.text(c.base)} → {c.text(c.value)}" for c in named)
    rest = len(worse) - len(named)
    if rest:
        text += f"{'; ' if text else ''}{rest} other metric(s) (next table)"
    return text or "none"


@dataclass(frozen=True)
class Change:
    """One metric of a variant against the baseline's: ``verdict`` is ``worse`` or ``better``
    when the move exceeds the noise, else empty."""

    title: str
    grouping: str
    short: str
    percent: bool
    base: float
    value: float
    verdict: str
    headline: bool = False
    """Accuracy or one of :data:`GAPS` (named in the main table when worse)."""

    def text(self, x: float) -> str:
        if not math.isfinite(x):
            return "n/a"
        return f"{x:.1%}" if self.percent else f"{x:.3f}"

    def cell(self) -> str:
        if not (math.isfinite(self.base) and math.isfinite(self.value)):
            return self.text(self.value)
        d = self.value - self.base
        delta = f"{100 * d:+.1f} pts" if self.percent else f"{d:+.3f}"
        mark = {"worse": ", WORSE", "better": ", better"}.get(self.verdict, "")  # worse stands out
        return f"{self.text(self.value)} ({delta}{mark})"


NOISE_FLOOR = 0.01
"""Smallest change of a disparity marked better or worse (and the whole margin when the
baseline has no bootstrap interval: twice this)."""


def _verdict(base: float, value: float, higher_is_better: bool, noise: float) -> str:
    if not (math.isfinite(base) and math.isfinite(value)) or abs(value - base) <= noise:
        return ""
    return "better" if (value > base) == higher_is_better else "worse"


def _changes(v: Variant, base: Variant) -> list[Change]:
    """Accuracy and every disparity of the fairness table (by every grouping) of ``v`` against
    ``base``. A disparity counts as moved when it leaves the baseline's 95% bootstrap interval
    on that side (and by at least :data:`NOISE_FLOOR`); accuracy when it moves by more than
    1.96 binomial standard errors of the baseline's."""
    n = max(base.result.n, 1)
    se = 1.96 * math.sqrt(max(base.accuracy * (1 - base.accuracy), 0.0) / n)
    out = [Change("Accuracy", "", "accuracy", True, base.accuracy, v.accuracy,
                  _verdict(base.accuracy, v.accuracy, True, max(se, 0.005)), True)]
    short = dict(GAPS)
    for bg in base.result.groupings:
        vg = next((x for x in v.result.groupings if x.key == bg.key), None)
        if vg is None:
            continue
        for name, bd in bg.disparities.items():
            if not bd.spec.table or name not in vg.disparities:
                continue
            value = vg.disparities[name].value
            higher = bd.spec.kind == "ratio"  # ratios: 1 is parity; differences: 0 is
            edge = bd.ci_high if (value > bd.value) else bd.ci_low
            noise = (max(abs(edge - bd.value), NOISE_FLOOR) if math.isfinite(edge)
                     else 2 * NOISE_FLOOR)
            out.append(Change(bd.spec.title, bg.name,
                              f"{short.get(name, bd.spec.short)} ({bg.name})", False,
                              bd.value, value, _verdict(bd.value, value, higher, noise),
                              name in short))
    return out


def _targets(method: str, target_name: str) -> str:
    """What ``method`` reduces: ``targets DP diff by sex_x_race``."""
    label = "EO diff" if method.endswith("-eo") else "DP diff"
    return f"targets {label} by {target_name}"


def _changes_table(variants: list[Variant], target_name: str) -> Table:
    """Every metric (rows) of every variant (columns) against the baseline: the side effects
    of each mitigation next to what it targets."""
    base, others = variants[0], variants[1:]
    per = [{(c.title, c.grouping): c for c in _changes(v, base)} for v in others]
    rows: list[list[Any]] = []
    for c in _changes(base, base):  # a metric a variant lacks (no scores: calibration): n/a
        rows.append([c.title, c.grouping, c.text(c.base),
                     *(ch[(c.title, c.grouping)].cell() if (c.title, c.grouping) in ch
                       else "n/a" for ch in per)])
    heads = [f"{v.key}: {_targets(v.method, target_name)}" for v in others]
    worse = sum(ch.verdict == "worse" for changes in per for ch in changes.values())
    return Table(
        id="mitigation-changes",
        title="Every metric against the baseline (side effects included)",
        columns=["metric", "by", "baseline", *heads], rows=rows,
        caption=("Each cell: the variant's value (its change from the baseline; WORSE or "
                 "better when the move is beyond noise). A disparity moved beyond noise when it "
                 "left the baseline's 95% bootstrap interval on that side and by at least "
                 f"{NOISE_FLOOR:g}; accuracy when it moved by more than 1.96 standard errors. "
                 "Differences are fairer when lower, ratios when higher (1 is parity). "
                 f"{worse} metric value(s) got worse than the baseline's."))


def _points(variants: list[Variant]) -> list[dict[str, Any]]:
    """The trade-off plot's points: accuracy and every gap (with its interval) per variant."""
    points = []
    for v in variants:
        p: dict[str, Any] = {"method": v.method, "setting": v.setting, "accuracy": v.accuracy}
        for g in v.result.groupings:
            for k, _ in GAPS:
                d = g.disparities[k]
                p[f"{g.key}.{k}"] = d.value
                p[f"{g.key}.{k}.ci"] = (d.ci_low, d.ci_high)
        points.append(p)
    return points


def _summary(variants: list[Variant], tkey: str, tname: str) -> str:
    base = variants[0]
    usable = [v for v in variants if not v.constant] or variants
    best = min(usable, key=lambda v: _gap(v, tkey, "demographic_parity_difference"))
    return (f"{len(variants)} variants on {variants[0].result.n} held-out rows. Baseline: "
            f"accuracy {base.accuracy:.1%}, DP diff {_gap(base, tkey, GAPS[0][0]):.3f} and EO "
            f"diff {_gap(base, tkey, GAPS[1][0]):.3f} by {tname}. Smallest DP diff: "
            f"{_gap(best, tkey, GAPS[0][0]):.3f} ({best.key}) at accuracy "
            f"{best.accuracy:.1%}."
            + (f" {sum(v.constant for v in variants)} variant(s) collapsed to predicting "
               "one class." if any(v.constant for v in variants) else ""))


def _reading(settings: TrainingSettings) -> str:
    return (
        "Each mitigation is run from the same seed with the model's own training settings "
        f"(epochs {settings.epochs}, lr {settings.lr:g}, batch {settings.batch_size}, weight "
        f"decay {settings.weight_decay:g}, seed {settings.seed}) and measured on held-out data. "
        "Reweighing gives each (group, label) cell the weight P(group)P(label)/P(group, label) "
        "so that the label is independent of the group in training. The fairness penalty adds "
        "λ × the batch's soft demographic-parity (or equalized-odds) gap to the loss: larger λ "
        "trades more accuracy for a smaller gap. Group thresholds keep the baseline model and "
        "pick one (randomised) threshold per group with Fairlearn's ThresholdOptimizer; tol is "
        "the constraint violation allowed. Read the plot from the baseline: a good mitigation "
        "moves left (smaller gap) without dropping far (accuracy). Gaps have bootstrap "
        "intervals (bars); a move smaller than the bars may be noise.")


def _r(v: float) -> float | None:
    return round(v, 4) if math.isfinite(v) else None


def _gap(v: Variant, key: str, metric: str) -> float:
    g = next(x for x in v.result.groupings if x.key == key)
    value = g.disparities[metric].value
    return value if math.isfinite(value) else math.inf


def _method_finding(method: str, runs: list[Variant], base: Variant, gname: str) -> Finding:
    key = next(g.key for g in base.result.groupings if g.name == gname)
    metric = ("equalized_odds_difference" if method.endswith("-eo")
              else "demographic_parity_difference")
    label = "EO diff" if metric.startswith("equalized") else "DP diff"
    b = _gap(base, key, metric)
    best = min([v for v in runs if not v.constant] or runs, key=lambda v: _gap(v, key, metric))
    g = _gap(best, key, metric)
    return MITIGATION_RESULT(
        Severity.INFO, method=method,
        title=(f"{METHODS[method]}: {label} {b:.3f} → {g:.3f} at accuracy "
               f"{best.accuracy:.1%} (baseline {base.accuracy:.1%})"),
        detail=(f"By {gname}, {METHODS[method]} ({best.setting or 'default'}) changes the "
                f"{label} from {b:.3f} to {g:.3f} and accuracy from {base.accuracy:.1%} to "
                f"{best.accuracy:.1%}. Every grouping: "
                + "; ".join(f"{x.name} {label} {_gap(base, x.key, metric):.3f} → "
                            f"{_gap(best, x.key, metric):.3f}"
                            for x in base.result.groupings) + ". Worse than the baseline "
                "beyond noise: " + _worse(best, base) + "."),
        evidence={"method": method, "setting": best.setting, "grouping": gname,
                  "metric": metric, "baseline_gap": b, "gap": g,
                  "baseline_accuracy": base.accuracy, "accuracy": best.accuracy,
                  "worse": _worse(best, base)},
        recommendation="Pick the variant whose gap and accuracy fit the use; check its full "
                       "fairness section before deploying it.")
