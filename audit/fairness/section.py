"""Turn a :class:`~audit.fairness.metrics.FairnessResult` into a report section: findings with
severities from configurable thresholds, per-group tables, charts, and a plain-language reading.

Shared by the ``fairness`` check (a model on data) and ``audit fairness`` (a predictions file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from audit.fairness.groups import MISSING
from audit.fairness.metrics import (
    CALIBRATION,
    DENOMINATORS,
    RATES,
    Disparity,
    FairnessResult,
    GroupingResult,
)
from audit.fairness.plots import disparity_figure, group_rates_figure
from audit.result import Finding, Section, Severity, Table


@dataclass
class FairnessParams:
    """Settings and thresholds of the fairness check (``[checks.fairness]`` in audit.toml)."""

    sensitive: list[str] = field(default_factory=list)
    """Sensitive columns; empty: ``--sensitive``, else the data's, else the card's."""
    positive_class: str = ""
    """The favourable class (name or index); empty: the second class of a binary model."""
    intersectional: bool = True
    """Also assess the intersection of all sensitive columns (e.g. sex × race)."""
    min_group_size: int = 30
    """A group's rate enters a disparity only when its denominator has this many rows."""
    max_groups: int = 40
    """Groupings with more groups are skipped with a finding (a continuous column?)."""
    n_boot: int = 1000
    """Bootstrap resamples for the confidence intervals (0: none)."""
    ci_level: float = 0.95
    """Confidence level of the bootstrap intervals."""
    alpha: float = 0.05
    """A gap is distinguishable from zero when the test of equal rates gives p < alpha."""
    gap_low: float = 0.05
    """Demographic-parity, equalized-odds or accuracy difference at or above: low."""
    gap_medium: float = 0.10
    """... at or above: medium (accuracy gaps stay at most medium)."""
    gap_high: float = 0.20
    """... at or above: high."""
    four_fifths: float = 0.8
    """Demographic-parity ratio below this fails the four-fifths rule (medium)."""
    ratio_high: float = 0.5
    """Demographic-parity ratio below this is high."""
    calibration_medium: float = 0.05
    """Calibration difference (spread of mean score − observed rate) at or above: medium."""
    calibration_bins: int = 10
    """Equal-width score bins of the per-group expected calibration error (ECE)."""


QUICK = {"n_boot": 200}

SHORT = {"selection_rate": "selection rate", "true_positive_rate": "TPR",
         "false_positive_rate": "FPR", "precision": "precision", "accuracy": "accuracy",
         CALIBRATION: "calibration"}

HEADLINE = ("demographic_parity_difference", "demographic_parity_ratio",
            "equal_opportunity_difference", "equalized_odds_difference",
            "equalized_odds_ratio", "accuracy_score_difference", "calibration_difference")

GUIDE: list[tuple[str, str, str]] = [
    ("selection rate", "Share of the group that gets the favourable prediction.",
     "Groups should not differ much unless the difference is justified."),
    ("true positive rate (TPR)", "Of the group's members who truly deserve the favourable "
     "outcome, the share the model gives it to.", "A low TPR means qualified members are "
     "missed."),
    ("false positive rate (FPR)", "Of the group's members who do not deserve it, the share "
     "who still get the favourable outcome.", "A high FPR means the group is favoured in "
     "error."),
    ("precision", "Of the group's favourable predictions, the share that were right.",
     "Low precision: favourable decisions for this group are less trustworthy."),
    ("accuracy", "Share of correct predictions in the group.", "Differences show whom the "
     "model serves worse."),
    ("calibration", "Mean predicted probability against the observed rate in the group; ECE "
     "is the average gap over score bins.", "A positive gap: the model overestimates the "
     "group; negative: underestimates."),
    ("demographic_parity_difference", "Largest minus smallest selection rate across groups.",
     "0 means every group is selected equally often."),
    ("demographic_parity_ratio", "Smallest divided by largest selection rate.",
     "1 is parity; below 0.8 fails the four-fifths rule of US hiring guidance."),
    ("equal_opportunity_difference", "Largest minus smallest true positive rate.",
     "0 means deserving members of every group are found equally often."),
    ("equalized_odds_difference", "The larger of the TPR difference and the FPR difference.",
     "0 means the model's errors fall on every group alike."),
    ("equalized_odds_ratio", "The smaller of the TPR ratio and the FPR ratio.",
     "1 is parity."),
    ("accuracy_score_difference", "Largest minus smallest accuracy.", "0 means the model is "
     "equally accurate for every group."),
    ("calibration_difference", "Spread (max − min) of the groups' mean score minus observed "
     "rate.", "0 means the scores mean the same thing for every group."),
]


def _pct(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:.1%}"


def _num(v: float, digits: int = 3) -> str:
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def _ci(d: Disparity) -> str:
    if not (math.isfinite(d.ci_low) and math.isfinite(d.ci_high)):
        return "no interval"
    return f"95% CI {d.ci_low:.3f}–{d.ci_high:.3f}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _significance(d: Disparity, alpha: float) -> tuple[bool, str]:
    sig = d.p_value < alpha
    if sig:
        return True, f"distinguishable from zero (p={d.p_value:.2g} < {alpha:g})"
    return False, (f"not statistically distinguishable from zero (p={d.p_value:.2g} ≥ "
                   f"{alpha:g}); it may be sampling noise")


def _gap_severity(value: float, p: FairnessParams) -> Severity | None:
    if not math.isfinite(value):
        return None
    if value >= p.gap_high:
        return Severity.HIGH
    if value >= p.gap_medium:
        return Severity.MEDIUM
    if value >= p.gap_low:
        return Severity.LOW
    return None


def _cap(sev: Severity, significant: bool) -> Severity:
    """A gap that may be noise is at most ``low``."""
    return sev if significant or sev.rank <= Severity.LOW.rank else Severity.LOW


def _evidence(g: GroupingResult, d: Disparity, alpha: float) -> dict[str, Any]:
    return {"grouping": g.name, "metric": d.name, "value": d.value, "ci_low": d.ci_low,
            "ci_high": d.ci_high, "p_value": d.p_value, "significant": d.p_value < alpha,
            "rate": d.rate, "highest_group": d.high_group, "highest": d.high_value,
            "lowest_group": d.low_group, "lowest": d.low_value, "groups_compared": d.groups_used}


def _between(d: Disparity, rate_name: str) -> str:
    return (f"{rate_name} {_pct(d.high_value)} for {d.high_group} against "
            f"{_pct(d.low_value)} for {d.low_group}")


def findings(res: FairnessResult, p: FairnessParams) -> list[Finding]:
    """Findings of one assessment (stable ids ``fairness.KIND.GROUPING``)."""
    out: list[Finding] = []
    for col, n_missing in res.missing.items():
        if n_missing:
            out.append(Finding(
                id=f"fairness.missing-sensitive.{_slug(col)}", severity=Severity.LOW,
                title=f"{n_missing} row(s) have no value for {col}",
                detail=(f"{n_missing} of {res.n} rows ({n_missing / res.n:.1%}) have a missing "
                        f"{col}; they are assessed as the group {MISSING} rather than dropped."),
                evidence={"column": col, "missing": n_missing, "rows": res.n},
                recommendation="Find out why the attribute is missing: if it is missing more "
                               "often for one group, the audit under-counts that group."))
    for name, count in res.skipped.items():
        out.append(Finding(
            id=f"fairness.too-many-groups.{_slug(name)}", severity=Severity.MEDIUM,
            title=f"{name} has {count} groups; not assessed",
            detail=(f"{name} splits the data into {count} groups, more than max_groups="
                    f"{p.max_groups}; most would be too small to compare."),
            evidence={"grouping": name, "groups": count, "max_groups": p.max_groups},
            recommendation="Bin the column into a few meaningful ranges (e.g. age bands) and "
                           "assess again, or raise [checks.fairness] max_groups."))
    for g in res.groupings:
        out.extend(_grouping_findings(g, res, p))
    return out


def _grouping_findings(g: GroupingResult, res: FairnessResult, p: FairnessParams
                       ) -> list[Finding]:
    out: list[Finding] = []
    key = _slug(g.key)
    small = g.small_groups(p.min_group_size)
    if small:
        sizes = {lab: int(n) for lab, n in zip(g.labels, g.rows, strict=True) if lab in small}
        shown = ", ".join(f"{k} ({v})" for k, v in list(sizes.items())[:8])
        out.append(Finding(
            id=f"fairness.small-groups.{key}", severity=Severity.LOW,
            title=f"{len(small)} group(s) of {g.name} too small to compare",
            detail=(f"{shown}{' …' if len(sizes) > 8 else ''} have fewer than min_group_size="
                    f"{p.min_group_size} rows: their rates are shown in the table but do not "
                    "enter the disparities, whose intervals would be too wide to judge."),
            evidence={"grouping": g.name, "groups": sizes, "min_group_size": p.min_group_size},
            recommendation="Collect more data for these groups before relying on the model "
                           "for them, or merge groups where that is meaningful."))
    d = g.disparities["demographic_parity_difference"]
    if d.groups_used < 2:
        out.append(Finding(
            id=f"fairness.not-assessable.{key}", severity=Severity.MEDIUM,
            title=f"{g.name}: fewer than two groups large enough to compare",
            detail=(f"Only {d.groups_used} group(s) of {g.name} have at least "
                    f"{p.min_group_size} rows, so no disparity can be measured."),
            evidence={"grouping": g.name, "groups": len(g.labels),
                      "min_group_size": p.min_group_size},
            recommendation="Audit on more data, or lower [checks.fairness] min_group_size "
                           "knowing the numbers will be noisy."))
        return out
    sev = _gap_severity(d.value, p)
    if sev is not None:
        sig, sig_text = _significance(d, p.alpha)
        out.append(Finding(
            id=f"fairness.demographic-parity.{key}", severity=_cap(sev, sig),
            title=f"Demographic parity difference {d.value:.3f} by {g.name}",
            detail=(f"The model selects groups of {g.name} at different rates: "
                    f"{_between(d, 'selection rate')}. The gap is {d.value:.3f} ({_ci(d)}), "
                    f"{sig_text}."),
            evidence=_evidence(g, d, p.alpha),
            recommendation="Check whether the gap is justified by the task; if not, mitigate "
                           "(audit mitigate: reweighing, a fairness penalty in training, or "
                           "group thresholds) and weigh the accuracy cost."))
    r = g.disparities["demographic_parity_ratio"]
    if math.isfinite(r.value) and r.value < p.four_fifths:
        sig, sig_text = _significance(r, p.alpha)
        base = Severity.HIGH if r.value < p.ratio_high else Severity.MEDIUM
        out.append(Finding(
            id=f"fairness.four-fifths.{key}", severity=_cap(base, sig),
            title=f"Four-fifths rule fails for {g.name}: ratio {r.value:.2f}",
            detail=(f"{r.low_group} is selected at {_pct(r.low_value)}, {r.value:.0%} of the "
                    f"rate of {r.high_group} ({_pct(r.high_value)}); the four-fifths rule asks "
                    f"for at least {p.four_fifths:.0%}. Ratio {r.value:.3f} ({_ci(r)}), "
                    f"{sig_text}."),
            evidence=_evidence(g, r, p.alpha),
            recommendation="Under US employment guidance a ratio below 0.8 is evidence of "
                           "adverse impact; review the decision rule for this group."))
    eo = g.disparities["equalized_odds_difference"]
    sev = _gap_severity(eo.value, p)
    if sev is not None:
        sig, sig_text = _significance(eo, p.alpha)
        tpr = g.disparities["equal_opportunity_difference"]
        fpr = g.disparities["false_positive_rate_difference"]
        out.append(Finding(
            id=f"fairness.equalized-odds.{key}", severity=_cap(sev, sig),
            title=f"Equalized odds difference {eo.value:.3f} by {g.name}",
            detail=(f"Errors fall unevenly on groups of {g.name}: the TPR difference is "
                    f"{tpr.value:.3f} and the FPR difference {fpr.value:.3f}; the larger, "
                    f"{RATES[eo.rate]}, is {_pct(eo.high_value)} for {eo.high_group} against "
                    f"{_pct(eo.low_value)} for {eo.low_group}. Gap {eo.value:.3f} ({_ci(eo)}), "
                    f"{sig_text}."),
            evidence=_evidence(g, eo, p.alpha),
            recommendation="Group-specific thresholds (audit mitigate, post-processing) can "
                           "equalize error rates; retraining with an equalized-odds penalty "
                           "is the alternative."))
    acc = g.disparities["accuracy_score_difference"]
    sev = _gap_severity(acc.value, p)
    if sev is not None:
        sig, sig_text = _significance(acc, p.alpha)
        out.append(Finding(
            id=f"fairness.accuracy-gap.{key}", severity=_cap(min(sev, Severity.MEDIUM,
                                                                 key=lambda s: s.rank), sig),
            title=f"Accuracy differs by {acc.value:.3f} across {g.name}",
            detail=(f"{_between(acc, 'Accuracy')}; gap {acc.value:.3f} ({_ci(acc)}), "
                    f"{sig_text}. Part of such a gap can come from different base rates."),
            evidence=_evidence(g, acc, p.alpha),
            recommendation="Look at the group with the lowest accuracy: more or better data "
                           "for it usually helps more than changing the model."))
    cal = g.disparities.get("calibration_difference")
    if cal is not None and math.isfinite(cal.value) and cal.value >= p.calibration_medium:
        sig, sig_text = _significance(cal, p.alpha)
        out.append(Finding(
            id=f"fairness.calibration.{key}", severity=_cap(Severity.MEDIUM, sig),
            title=f"Scores are calibrated differently across {g.name} ({cal.value:.3f})",
            detail=(f"Mean score minus observed rate is {cal.high_value:+.3f} for "
                    f"{cal.high_group} and {cal.low_value:+.3f} for {cal.low_group}; spread "
                    f"{cal.value:.3f} ({_ci(cal)}), {sig_text}."),
            evidence=_evidence(g, cal, p.alpha),
            recommendation="Do not compare raw scores across these groups; recalibrate per "
                           "group (or globally) on held-out data before using scores."))
    return out


def tables(res: FairnessResult, p: FairnessParams) -> list[Table]:
    """Per-group tables (one per grouping), the disparity table and the metric guide."""
    out: list[Table] = []
    for g in res.groupings:
        out.append(_group_table(g, res, p))
    rows: list[list[Any]] = []
    for g in res.groupings:
        for name in (*HEADLINE, "false_positive_rate_difference", "precision_difference"):
            d = g.disparities.get(name)
            if d is None:
                continue
            ci = (f"{d.ci_low:.3f}–{d.ci_high:.3f}" if math.isfinite(d.ci_low)
                  and math.isfinite(d.ci_high) else "–")
            rows.append([g.name, d.name, _round(d.value, 3), ci, float(f"{d.p_value:.2g}"),
                         "yes" if d.p_value < p.alpha else "no", plain_reading(d)])
    out.append(Table(
        id="disparities", title="Disparities across groups",
        columns=["grouping", "metric", "value", "95% CI", "p-value", "≠ 0", "reading"],
        rows=rows,
        caption=(f"Differences are max − min over groups, ratios min / max (Fairlearn's "
                 f"definitions); {res.ci_level:.0%} percentile bootstrap intervals from "
                 f"{res.n_boot} resamples of the rows. The p-value tests that the rates are "
                 f"equal across the compared groups (chi-square; Cochran's Q for calibration); "
                 f"below {p.alpha:g} the gap is distinguishable from zero (≠ 0: yes).")))
    out.append(Table(id="metric-guide", title="How to read each metric",
                     columns=["metric", "what it measures", "how to read it"],
                     rows=[list(r) for r in GUIDE]))
    return out


def _round(v: float, digits: int = 4) -> float | None:
    return round(float(v), digits) if math.isfinite(v) else None


def _group_table(g: GroupingResult, res: FairnessResult, p: FairnessParams) -> Table:
    cols = ["group", "rows", "base rate", "selection rate", "95% CI", "TPR", "FPR",
            "precision", "accuracy"]
    if g.calibration:
        cols += ["mean score", "ECE"]
    cols.append("note")
    rows: list[list[Any]] = []
    for i, label in enumerate(g.labels):
        lo, hi = g.rate_ci["selection_rate"][i]
        ci = f"{lo:.3f}–{hi:.3f}" if math.isfinite(lo) and math.isfinite(hi) else "–"
        row: list[Any] = [label, int(g.rows[i]), _round(g.base_rate[i], 3),
                          _round(g.rates["selection_rate"][i], 3), ci,
                          _round(g.rates["true_positive_rate"][i], 3),
                          _round(g.rates["false_positive_rate"][i], 3),
                          _round(g.rates["precision"][i], 3), _round(g.rates["accuracy"][i], 3)]
        if g.calibration:
            row += [_round(g.calibration["mean_score"][i], 3),
                    _round(g.calibration["ece"][i], 3)]
        if g.rows[i] < p.min_group_size:
            note = f"too small (< {p.min_group_size}): not compared"
        else:
            thin = [f"{SHORT[k]} ({int(g.denominators[k][i])} {DENOMINATORS[k]})"
                    for k in RATES if not g.counted[k][i]]
            note = ("not compared: " + ", ".join(thin)) if thin else ""
        row.append(note)
        rows.append(row)
    return Table(id=f"groups-{_slug(g.key)}", title=f"Per-group metrics by {g.name}",
                 columns=cols, rows=rows,
                 caption=("Base rate: share of the group whose true label is favourable (the "
                          "observed rate). Selection rate: share predicted favourable, with its "
                          "bootstrap interval. TPR: favourable predictions among the truly "
                          "favourable; FPR: among the truly unfavourable. Mean score against "
                          "base rate and ECE show calibration."))


def plain_reading(d: Disparity) -> str:
    """One sentence that says what a disparity means, with the groups and their rates."""
    if not math.isfinite(d.value) or d.high_group is None:
        return "not measurable: fewer than two groups large enough"
    rate = RATES.get(d.rate, "mean score − observed rate")
    if d.spec.kind == "ratio":
        return (f"{d.low_group} gets {d.value:.0%} of the {rate} of {d.high_group} "
                f"({_pct(d.low_value)} vs {_pct(d.high_value)})")
    if d.rate == CALIBRATION:
        return (f"mean score minus observed rate is {d.high_value * 100:+.1f} points for "
                f"{d.high_group} and {d.low_value * 100:+.1f} for {d.low_group}")
    return (f"{rate} is {d.value * 100:.1f} points higher for {d.high_group} "
            f"({_pct(d.high_value)}) than for {d.low_group} ({_pct(d.low_value)})")


def metrics(res: FairnessResult) -> dict[str, float]:
    """Flat headline metrics: overall rates and each grouping's disparities with intervals."""
    out: dict[str, float] = {"rows": float(res.n), "accuracy": res.overall["accuracy"],
                             "selection_rate": res.overall["selection_rate"],
                             "base_rate": res.overall["base_rate"]}
    for g in res.groupings:
        for name in HEADLINE:
            d = g.disparities.get(name)
            if d is None:
                continue
            out[f"{g.key}.{name}"] = d.value
            if name in ("demographic_parity_difference", "equalized_odds_difference"):
                out[f"{g.key}.{name}.ci_low"] = d.ci_low
                out[f"{g.key}.{name}.ci_high"] = d.ci_high
    return out


READING = (
    "What was measured: the model's decisions (the favourable class = {positive}) compared "
    "across groups of each sensitive attribute{inter}, with Fairlearn's definitions.\n"
    "• Selection rate: share of a group given the favourable outcome. Demographic parity "
    "difference = largest minus smallest selection rate (0 = equal); ratio = smallest / "
    "largest (1 = equal; below 0.8 fails the four-fifths rule).\n"
    "• True positive rate (TPR): of those who truly deserve the favourable outcome, the share "
    "who get it. Equal opportunity difference = spread of TPR.\n"
    "• False positive rate (FPR): of those who do not deserve it, the share who get it anyway. "
    "Equalized odds difference = the larger of the TPR and FPR spreads (0 = errors fall on "
    "every group alike).\n"
    "• Precision and accuracy by group: how trustworthy a favourable decision is, and how "
    "often the model is right, for each group.\n"
    "• Calibration by group (when scores exist): mean predicted probability against the "
    "observed rate; calibration difference = spread of that gap across groups.\n"
    "How to read it: every disparity has a {level:.0%} bootstrap interval ({n_boot} "
    "resamples). A max − min gap is never negative, so whether it is real is judged by a test "
    "of equal rates across groups: p < {alpha:g} means distinguishable from zero; otherwise "
    "the gap may be noise and its finding is at most low. Groups with fewer than "
    "{min_size} rows (in the rate's denominator) are listed but not compared. Severity: gap "
    "≥ {low:g} low, ≥ {medium:g} medium, ≥ {high:g} high. Large gaps can have legitimate "
    "causes (different base rates); the numbers show where to look, not why.")


def fairness_section(res: FairnessResult, p: FairnessParams, *, check: str, title: str,
                     positive: str, params: dict[str, Any]) -> Section:
    """The full report section of an assessment."""
    found = findings(res, p)
    figs = []
    if res.groupings:
        figs.append(group_rates_figure(res, p.min_group_size))
        figs.append(disparity_figure(res, p.gap_low, p.gap_medium, p.gap_high, p.four_fifths))
    inter = " and their intersection" if any(len(g.grouping.features) > 1
                                             for g in res.groupings) else ""
    reading = READING.format(positive=positive, inter=inter, level=res.ci_level,
                             n_boot=res.n_boot, alpha=p.alpha, min_size=p.min_group_size,
                             low=p.gap_low, medium=p.gap_medium, high=p.gap_high)
    return Section(check=check, title=title, summary=summary(res, found), reading=reading,
                   metrics=metrics(res), findings=found, figures=figs, tables=tables(res, p),
                   params=params)


def summary(res: FairnessResult, found: list[Finding]) -> str:
    """One or two sentences with the largest gaps."""
    if not res.groupings:
        return "No grouping could be assessed."
    parts = []
    for name, label in (("demographic_parity_difference", "demographic parity difference"),
                        ("equalized_odds_difference", "equalized odds difference")):
        cands = [(g, g.disparities[name]) for g in res.groupings
                 if math.isfinite(g.disparities[name].value)]
        if not cands:
            continue
        g, d = max(cands, key=lambda gd: gd[1].value)
        parts.append(f"largest {label} {d.value:.3f} by {g.name} ({_ci(d)}; "
                     f"{SHORT[d.rate]} {_pct(d.high_value)} for {d.high_group} vs "
                     f"{_pct(d.low_value)} for {d.low_group})")
    flagged = sum(1 for f in found if f.severity.rank >= Severity.MEDIUM.rank)
    head = (f"{res.n} rows, accuracy {res.overall['accuracy']:.1%}; "
            + ("; ".join(parts) if parts else "no disparity measurable") + ".")
    return head + (f" {flagged} finding(s) of medium or higher severity." if flagged else
                   " No disparity reaches medium severity.")
