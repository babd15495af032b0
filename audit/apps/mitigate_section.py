"""The report section of the mitigation experiment (:mod:`audit.apps.mitigate`): the trade-off
table and plot, and one finding per method saying what it bought and what it cost.

The first variant is the reference everything is compared with: your model (the model under
audit) when the experiment has it, else the retrained baseline. A retrained baseline beside your
model is a labelled row of its own: it shows what retraining alone changes. With slices, every
row also shows each slice's error rate and its gap to the rest, with a 95% interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from audit.fairness.findings import MITIGATION_RESULT
from audit.fairness.groups import INTERSECTION
from audit.fairness.metrics import FairnessResult
from audit.fairness.mitigation_slices import SliceGap
from audit.fairness.plots import tradeoff_figure
from audit.result import Finding, Section, Severity, Table

if TYPE_CHECKING:
    from audit.apps.mitigate import TrainingSettings

__all__ = ["BASELINE", "GAPS", "METHODS", "YOURS", "Variant", "mitigation_section"]

YOURS = "your-model"
"""The method key of the model under audit, as loaded."""
BASELINE = "baseline"
"""The method key of the architecture retrained without mitigation."""
LABELS = {YOURS: "your model", BASELINE: "retrained baseline"}

METHODS: dict[str, str] = {
    "reweighing": "reweighing (Kamiran & Calders)",
    "reweighing-slice": "reweighing by slice (the slice carries half the loss)",
    "correlation-remover": "correlation remover (Fairlearn)",
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
    slices: list[SliceGap] = field(default_factory=list)
    """Each slice's error rate and gap to the rest (empty without slices)."""

    @property
    def key(self) -> str:
        return self.method + (f"[{self.setting}]" if self.setting else "")

    @property
    def label(self) -> str:
        """The row's name in tables and texts (``your model``, ``retrained baseline``, or
        the method)."""
        return LABELS.get(self.method, self.method)

    @property
    def mitigated(self) -> bool:
        """Whether the variant is a mitigation (not your model nor the retrained baseline)."""
        return self.method not in LABELS

    @property
    def constant(self) -> bool:
        """Whether the variant (almost) always predicts the same class: a collapsed model
        whose zero gaps mean nothing."""
        rate = self.result.overall["selection_rate"]
        return rate < 0.005 or rate > 0.995


GAPS = (("demographic_parity_difference", "DP diff"),
        ("equalized_odds_difference", "EO diff"))


def mitigation_section(variants: list[Variant], settings: TrainingSettings,
                       sensitive: Sequence[str], target: Sequence[str], *,
                       positive: str = "") -> Section:
    """The report section: trade-off table and plot, and a finding per method saying what it
    bought and what it cost against ``variants[0]`` (your model, or the retrained baseline).
    ``positive`` names the favourable class of a multi-class model (its accuracies are that
    decision's)."""
    ref = variants[0]
    groupings = [g.name for g in ref.result.groupings]
    keys = {g.name: g.key for g in ref.result.groupings}
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
        for i, sg in enumerate(v.slices):  # the rules: params["slices"][i]
            metrics.update({f"{v.key}.slice{i}.error_rate": sg.error,
                            f"{v.key}.slice{i}.gap": sg.gap,
                            f"{v.key}.slice{i}.gap_ci_low": sg.ci_low,
                            f"{v.key}.slice{i}.gap_ci_high": sg.ci_high})
    base = next((v for v in variants[1:] if v.method == BASELINE), None)
    findings = [_slice_finding([v for v in variants if v.method == method], ref, base)
                if method == "reweighing-slice" else
                _method_finding(method, [v for v in variants if v.method == method], ref,
                                base, shown[-1])
                for method in dict.fromkeys(v.method for v in variants[1:] if v.mitigated)]
    params: dict[str, Any] = ({"slices": [{"rule": sg.rule, "rows": sg.rows}
                                          for sg in ref.slices]} if ref.slices else {})
    return Section(check="mitigation", title="Bias mitigation: fairness against accuracy",
                   summary=_summary(variants, tkey, shown[-1]),
                   reading=_reading(settings, ref, positive),
                   metrics=metrics, findings=findings, params=params,
                   figures=[tradeoff_figure(_points(variants), panels)],
                   tables=[_table(variants, groupings, target_name, positive),
                           _changes_table(variants, target_name)],
                   duration_s=sum(v.seconds for v in variants))


NOTES = {
    YOURS: "the model under audit, as loaded: what every row is compared with",
    BASELINE: "your architecture retrained without mitigation: reweighing, the correlation "
              "remover and the penalties are retrained too, so this row separates the effect "
              "of the mitigation from the effect of retraining",
}


def _table(variants: list[Variant], groupings: list[str], target_name: str,
           positive: str = "") -> Table:
    """Accuracy and both gaps by every grouping, one row per variant, and every metric that got
    worse than the reference's beyond noise (the side effects, :func:`_changes`)."""
    ref = variants[0]
    cols = ["method", "setting", "accuracy"]
    for gname in groupings:
        cols += [f"{label} ({gname})" for _, label in GAPS]
    for sg in ref.slices:
        cols += [f"error ({sg.rule})", f"gap to rest ({sg.rule})",
                 f"gap 95% CI ({sg.rule})"]
    cols += [f"worse than {ref.label}", "seconds", "note"]
    rows: list[list[Any]] = []
    for v in variants:
        row: list[Any] = [v.label, v.setting, round(v.accuracy, 4)]
        for gname in groupings:
            g = next(x for x in v.result.groupings if x.name == gname)
            row += [_r(g.disparities[k].value) for k, _ in GAPS]
        for sg in v.slices:
            row += [_r(sg.error), _r(sg.gap), _ci(sg)]
        # the labels explain themselves only beside your model (the retrained baseline alone
        # is the reference when there is no model to compare with)
        notes = [NOTES[v.method]] if v.method in NOTES and ref.method == YOURS else []
        if v.constant:
            notes.append("collapsed: predicts one class for everyone")
        row += [_worse(v, ref) if v is not ref else "", round(v.seconds, 1), "; ".join(notes)]
        rows.append(row)
    decision = (f" Accuracy is that of the decision {positive!r} against the other classes."
                if positive else "")
    return Table(id="mitigation", title="Mitigation: accuracy and fairness gaps per method",
                 columns=cols, rows=rows,
                 caption=(f"Every variant is measured on the same held-out data as {ref.label}."
                          f"{decision} DP diff: demographic parity difference; EO diff: "
                          "equalized odds difference (lower is fairer). Mitigations act on the "
                          f"groups of {target_name}. Worse than {ref.label}: accuracy and the "
                          "DP and EO gaps (by every grouping, targeted or not) that moved the "
                          f"wrong way by more than {ref.label}'s noise, and how many other "
                          "disparities did; the next table shows every metric."
                          + (" Per slice: its error rate, its gap to the rest of the rows "
                             "(error inside − outside; lower is better) and the gap's 95% "
                             "interval (Newcombe's hybrid score)." if ref.slices else "")))


def _ci(sg: SliceGap) -> str:
    return (f"{sg.ci_low:+.3f} to {sg.ci_high:+.3f}"
            if math.isfinite(sg.ci_low) and math.isfinite(sg.ci_high) else "–")


def _worse(v: Variant, ref: Variant) -> str:
    """The side effects of ``v`` in one cell: accuracy and the DP/EO gaps that got worse than
    ``ref``'s by name, then how many other metrics of the changes table did."""
    worse = [c for c in _changes(v, ref) if c.verdict == "worse"]
    named = [c for c in worse if c.headline]
    text = "; ".join(f"{c.short} {c.text(c.base)} → {c.text(c.value)}" for c in named)
    rest = len(worse) - len(named)
    if rest:
        text += f"{'; ' if text else ''}{rest} other metric(s) (next table)"
    return text or "none"


@dataclass(frozen=True)
class Change:
    """One metric of a variant against the reference's (``base``: your model's, or the
    retrained baseline's): ``verdict`` is ``worse`` or ``better`` when the move exceeds the
    noise, else empty."""

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
reference has no bootstrap interval: twice this)."""


def _verdict(base: float, value: float, higher_is_better: bool, noise: float) -> str:
    if not (math.isfinite(base) and math.isfinite(value)) or abs(value - base) <= noise:
        return ""
    return "better" if (value > base) == higher_is_better else "worse"


def _changes(v: Variant, base: Variant) -> list[Change]:
    """Accuracy and every disparity of the fairness table (by every grouping) of ``v`` against
    ``base`` (the reference). A disparity counts as moved when it leaves the reference's 95%
    bootstrap interval on that side (and by at least :data:`NOISE_FLOOR`); accuracy when it
    moves by more than 1.96 binomial standard errors of the reference's."""
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


def _targets(v: Variant, target_name: str) -> str:
    """What ``v``'s method reduces: ``targets DP diff by sex_x_race``."""
    if v.method == "reweighing-slice":
        return f"targets the error gap of {v.setting}"
    if v.method == "correlation-remover":
        return f"removes the inputs' correlation with {target_name}"
    label = "EO diff" if v.method.endswith("-eo") else "DP diff"
    return f"targets {label} by {target_name}"


def _changes_table(variants: list[Variant], target_name: str) -> Table:
    """Every metric (rows) of every variant (columns) against the reference: the side effects
    of each mitigation next to what it targets."""
    ref, others = variants[0], variants[1:]
    per = [{(c.title, c.grouping): c for c in _changes(v, ref)} for v in others]
    rows: list[list[Any]] = []
    for c in _changes(ref, ref):  # a metric a variant lacks (no scores: calibration): n/a
        rows.append([c.title, c.grouping, c.text(c.base),
                     *(ch[(c.title, c.grouping)].cell() if (c.title, c.grouping) in ch
                       else "n/a" for ch in per)])
    heads = [f"{v.key}: {_targets(v, target_name)}" if v.mitigated
             else f"{v.label}: no mitigation" for v in others]
    worse = sum(ch.verdict == "worse" for changes in per for ch in changes.values())
    return Table(
        id="mitigation-changes",
        title=f"Every metric against {ref.label} (side effects included)",
        columns=["metric", "by", ref.label, *heads], rows=rows,
        caption=(f"Each cell: the variant's value (its change from {ref.label}; WORSE or "
                 "better when the move is beyond noise). A disparity moved beyond noise when it "
                 f"left {ref.label}'s 95% bootstrap interval on that side and by at least "
                 f"{NOISE_FLOOR:g}; accuracy when it moved by more than 1.96 standard errors. "
                 "Differences are fairer when lower, ratios when higher (1 is parity). "
                 f"{worse} metric value(s) got worse than {ref.label}'s."))


def _points(variants: list[Variant]) -> list[dict[str, Any]]:
    """The trade-off plot's points: accuracy and every gap (with its interval) per variant;
    the first (the reference) is drawn as a star."""
    points = []
    for v in variants:
        p: dict[str, Any] = {"method": v.label if not v.mitigated else v.method,
                             "setting": v.setting, "accuracy": v.accuracy}
        for g in v.result.groupings:
            for k, _ in GAPS:
                d = g.disparities[k]
                p[f"{g.key}.{k}"] = d.value
                p[f"{g.key}.{k}.ci"] = (d.ci_low, d.ci_high)
        points.append(p)
    return points


def _describe(v: Variant, tkey: str, tname: str) -> str:
    return (f"accuracy {v.accuracy:.1%}, DP diff {_gap(v, tkey, GAPS[0][0]):.3f} and EO diff "
            f"{_gap(v, tkey, GAPS[1][0]):.3f} by {tname}")


def _summary(variants: list[Variant], tkey: str, tname: str) -> str:
    ref = variants[0]
    text = (f"{len(variants)} variants on {ref.result.n} held-out rows. "
            f"{ref.label.capitalize()}: {_describe(ref, tkey, tname)}.")
    base = next((v for v in variants[1:] if v.method == BASELINE), None)
    if base is not None:  # retraining's own effect, apart from any mitigation
        text += (f" Retrained baseline (no mitigation; the starting point of the retrained "
                 f"methods): {_describe(base, tkey, tname)}.")
    mitigated = [v for v in variants if v.mitigated]
    usable = [v for v in mitigated if not v.constant] or mitigated
    if usable:
        best = min(usable, key=lambda v: _gap(v, tkey, GAPS[0][0]))
        text += (f" Smallest DP diff of a mitigation: {_gap(best, tkey, GAPS[0][0]):.3f} "
                 f"({best.key}) at accuracy {best.accuracy:.1%}, against "
                 f"{_gap(ref, tkey, GAPS[0][0]):.3f} at {ref.accuracy:.1%} for {ref.label}.")
    collapsed = sum(v.constant for v in variants)
    return text + (f" {collapsed} variant(s) collapsed to predicting one class."
                   if collapsed else "")


def _reading(settings: TrainingSettings, ref: Variant, positive: str = "") -> str:
    yours = ref.method == YOURS
    return (
        ("Every variant is compared with your model (the model under audit, as loaded) on "
         "the same held-out data. " if yours else "")
        + "Reweighing, the correlation remover and the penalties retrain the architecture "
        "from the same seed with the "
        f"model's own training settings (epochs {settings.epochs}, lr {settings.lr:g}, batch "
        f"{settings.batch_size}, weight decay {settings.weight_decay:g}, seed {settings.seed})"
        + ("; the retrained baseline is that training without mitigation, so the difference "
           "between it and your model is the effect of retraining, and between it and a "
           "variant the effect of the mitigation. " if yours else ". ")
        + "Reweighing gives each (group, label) cell the weight P(group)P(label)/P(group, "
        "label) so that the label is independent of the group in training. The fairness "
        "penalty adds λ × the batch's soft demographic-parity (or equalized-odds) gap to the "
        "loss: larger λ trades more accuracy for a smaller gap. Group thresholds keep "
        f"{ref.label} and pick one (randomised) threshold per group with Fairlearn's "
        "ThresholdOptimizer; tol is the constraint violation allowed. "
        "Reweighing by slice upweights the rows of one slice (a rule) so that it carries half "
        "of the training loss; the correlation remover (Fairlearn's CorrelationRemover, the "
        "decorrelation baseline) replaces the inputs by their residuals after a least-squares "
        "projection on the sensitive groups (α of the way; the sensitive inputs themselves "
        "zeroed) and the model is trained and measured on those inputs. "
        + (f"The decision judged is {positive!r} against the other classes. " if positive
           else "")
        + f"Read the plot from {ref.label} (the star): a good mitigation moves left (smaller "
        "gap) without dropping far (accuracy). Gaps have bootstrap intervals (bars); a move "
        "smaller than the bars may be noise.")


def _r(v: float) -> float | None:
    return round(v, 4) if math.isfinite(v) else None


def _gap(v: Variant, key: str, metric: str) -> float:
    g = next(x for x in v.result.groupings if x.key == key)
    value = g.disparities[metric].value
    return value if math.isfinite(value) else math.inf


def _method_finding(method: str, runs: list[Variant], ref: Variant, base: Variant | None,
                    gname: str) -> Finding:
    """What ``method``'s best run bought and cost against ``ref`` (your model); for a
    retrained method, also how much of it is retraining alone (``base``)."""
    key = next(g.key for g in ref.result.groupings if g.name == gname)
    metric = ("equalized_odds_difference" if method.endswith("-eo")
              else "demographic_parity_difference")
    label = "EO diff" if metric.startswith("equalized") else "DP diff"
    r = _gap(ref, key, metric)
    best = min([v for v in runs if not v.constant] or runs, key=lambda v: _gap(v, key, metric))
    g = _gap(best, key, metric)
    retraining = ""
    if base is not None and not method.startswith("thresholds-"):
        retraining = (f" The retrained baseline (the same training without mitigation) has "
                      f"{label} {_gap(base, key, metric):.3f} and accuracy "
                      f"{base.accuracy:.1%}: the move from {ref.label} to it is retraining, "
                      "from it to this variant the mitigation.")
    evidence: dict[str, Any] = {
        "method": method, "setting": best.setting, "grouping": gname, "metric": metric,
        "reference": ref.label, "reference_gap": r, "gap": g,
        "reference_accuracy": ref.accuracy, "accuracy": best.accuracy,
        "worse": _worse(best, ref)}
    if base is not None:
        evidence.update(retrained_baseline_gap=_gap(base, key, metric),
                        retrained_baseline_accuracy=base.accuracy)
    return MITIGATION_RESULT(
        Severity.INFO, method=method,
        title=(f"{METHODS[method]}: {label} {r:.3f} → {g:.3f} at accuracy "
               f"{best.accuracy:.1%} ({ref.label} {ref.accuracy:.1%})"),
        detail=(f"By {gname}, {METHODS[method]} ({best.setting or 'default'}) changes the "
                f"{label} from {r:.3f} ({ref.label}) to {g:.3f} and accuracy from "
                f"{ref.accuracy:.1%} to {best.accuracy:.1%}.{retraining} Every grouping: "
                + "; ".join(f"{x.name} {label} {_gap(ref, x.key, metric):.3f} → "
                            f"{_gap(best, x.key, metric):.3f}"
                            for x in ref.result.groupings)
                + f". Worse than {ref.label} beyond noise: " + _worse(best, ref) + "."),
        evidence=evidence,
        recommendation="Pick the variant whose gap and accuracy fit the use; check its full "
                       "fairness section before deploying it.")


def _slice_text(sg: SliceGap) -> str:
    return (f"error {sg.error:.1%} against {sg.rest_error:.1%}, gap {sg.gap:+.3f} "
            f"({_ci(sg)})")


def _slice_finding(runs: list[Variant], ref: Variant, base: Variant | None) -> Finding:
    """What reweighing each slice did to that slice's error gap (the run's setting is its
    rule), against ``ref`` and the retrained baseline."""
    parts, evidence = [], []
    for v in runs:
        i = next(i for i, sg in enumerate(v.slices) if sg.rule == v.setting)
        r, g = ref.slices[i], v.slices[i]
        b = base.slices[i] if base is not None else None
        parts.append(f"{v.setting}: {ref.label} {_slice_text(r)}"
                     + (f"; retrained baseline {_slice_text(b)}" if b is not None else "")
                     + f"; reweighed {_slice_text(g)}, accuracy {v.accuracy:.1%}")
        evidence.append({"rule": v.setting, "reference_gap": r.gap, "gap": g.gap,
                         "gap_ci_low": g.ci_low, "gap_ci_high": g.ci_high,
                         "retrained_baseline_gap": b.gap if b is not None else None,
                         "accuracy": v.accuracy, "worse": _worse(v, ref)})
    first = runs[0].slices[next(i for i, sg in enumerate(runs[0].slices)
                                if sg.rule == runs[0].setting)]
    r0 = next(sg for sg in ref.slices if sg.rule == first.rule)
    more = f" (and {len(runs) - 1} more slice(s))" if len(runs) > 1 else ""
    return MITIGATION_RESULT(
        Severity.INFO, method="reweighing-slice",
        title=(f"{METHODS['reweighing-slice']}: gap of {first.rule} {r0.gap:+.3f} → "
               f"{first.gap:+.3f} at accuracy {runs[0].accuracy:.1%}{more}"),
        detail=("Error gap of each reweighed slice to the rest of the rows (95% interval): "
                + "; ".join(parts) + ". A gap whose interval overlaps the baseline's may not "
                "have moved."),
        evidence={"method": "reweighing-slice", "reference": ref.label,
                  "reference_accuracy": ref.accuracy, "slices": evidence},
        recommendation="Keep the reweighed model only if the slice's gap fell beyond its "
                       "interval and the other rows' metrics (worse-than column) stay "
                       "acceptable; otherwise the slice needs more or better data.")
