"""Turn a :class:`~audit.fairness.metrics.FairnessResult` into a report section: findings with
severities from configurable thresholds, per-group tables, charts, and a plain-language reading.

Shared by the ``fairness`` check (a model on data) and ``audit fairness`` (a predictions file).
"""

from __future__ import annotations

import math
from typing import Any

from audit.fairness.findings import findings
from audit.fairness.metrics import Disparity, FairnessResult, GroupingResult
from audit.fairness.params import QUICK, FairnessParams
from audit.fairness.plots import disparity_figure, group_rates_figure
from audit.fairness.specs import CALIBRATION, DENOMINATORS, DISPARITIES, RATES, SHORT
from audit.fairness.text import (
    all_groups_text,
    ci_text,
    left_out_text,
    pct,
    rounded,
    scope_text,
    slug,
)
from audit.result import Finding, Section, Severity, Table

__all__ = ["QUICK", "FairnessParams", "fairness_section", "findings", "metrics", "plain_reading",
           "summary", "tables"]

RATE_GUIDE: list[tuple[str, str, str]] = [
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
]


def tables(res: FairnessResult, p: FairnessParams) -> list[Table]:
    """Per-group tables (one per grouping), the disparity table and the metric guide."""
    out = [_group_table(g, p) for g in res.groupings]
    rows: list[list[Any]] = []
    for g in res.groupings:
        # headline disparities first, then the other tabled ones, each in spec order
        tabled = [d for d in g.disparities.values() if d.spec.table]
        for d in sorted(tabled, key=lambda d: not d.spec.headline):
            ci = (f"{d.ci_low:.3f}–{d.ci_high:.3f}" if math.isfinite(d.ci_low)
                  and math.isfinite(d.ci_high) else "–")
            rows.append([g.name, d.name, rounded(d.value, 3), ci, float(f"{d.p_value:.2g}"),
                         "yes" if d.p_value < p.alpha else "no", *_coverage_cells(d),
                         plain_reading(d)])
    out.append(Table(
        id="disparities", title="Disparities across groups",
        columns=["grouping", "metric", "value", "95% CI", "p-value", "≠ 0", "groups compared",
                 "over all groups", "reading"],
        rows=rows,
        caption=(f"Differences are max − min over groups, ratios min / max (Fairlearn's "
                 f"definitions); {res.ci_level:.0%} percentile bootstrap intervals from "
                 f"{res.n_boot} resamples of the rows. The p-value tests that the rates are "
                 f"equal across the compared groups (chi-square; Cochran's Q for calibration); "
                 f"below {p.alpha:g} the gap is distinguishable from zero (≠ 0: yes). Groups "
                 f"with fewer than {p.min_group_size} rows in a rate's denominator are left "
                 "out of the value; 'over all groups' is then the value over every group, as "
                 "Fairlearn computes it (with its interval), to compare.")))
    guide: list[list[Any]] = [list(r) for r in RATE_GUIDE]
    guide += [[s.name, *s.guide] for s in DISPARITIES if s.guide is not None]
    out.append(Table(id="metric-guide", title="How to read each metric",
                     columns=["metric", "what it measures", "how to read it"], rows=guide))
    return out


def _coverage_cells(d: Disparity) -> list[str]:
    """The table's groups-compared and over-all-groups cells of a disparity."""
    if not d.partial:
        return [f"all {d.groups_total}", "same"]
    value = f"{d.all_groups:.3f}" if math.isfinite(d.all_groups) else "–"
    lo, hi = d.all_ci_low, d.all_ci_high
    ci = f" ({lo:.3f}–{hi:.3f})" if math.isfinite(lo) and math.isfinite(hi) else ""
    return [f"{d.groups_compared} of {d.groups_total}; left out: {', '.join(d.left_out)}",
            value + ci]


def _group_table(g: GroupingResult, p: FairnessParams) -> Table:
    cols = ["group", "rows", "base rate", "selection rate", "95% CI", "TPR", "FPR",
            "precision", "accuracy"]
    if g.calibration:
        cols += ["mean score", "ECE"]
    cols.append("note")
    rows: list[list[Any]] = []
    for i, label in enumerate(g.labels):
        lo, hi = g.rate_ci["selection_rate"][i]
        ci = f"{lo:.3f}–{hi:.3f}" if math.isfinite(lo) and math.isfinite(hi) else "–"
        row: list[Any] = [label, int(g.rows[i]), rounded(g.base_rate[i], 3),
                          rounded(g.rates["selection_rate"][i], 3), ci,
                          rounded(g.rates["true_positive_rate"][i], 3),
                          rounded(g.rates["false_positive_rate"][i], 3),
                          rounded(g.rates["precision"][i], 3), rounded(g.rates["accuracy"][i], 3)]
        if g.calibration:
            row += [rounded(g.calibration["mean_score"][i], 3),
                    rounded(g.calibration["ece"][i], 3)]
        if g.rows[i] < p.min_group_size:
            note = f"too small (< {p.min_group_size}): not compared"
        else:
            thin = [f"{SHORT[k]} ({int(g.denominators[k][i])} {DENOMINATORS[k]})"
                    for k in RATES if not g.counted[k][i]]
            note = ("not compared: " + ", ".join(thin)) if thin else ""
        row.append(note)
        rows.append(row)
    return Table(id=f"groups-{slug(g.key)}", title=f"Per-group metrics by {g.name}",
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
                f"({pct(d.low_value)} vs {pct(d.high_value)})")
    if d.rate == CALIBRATION:
        return (f"mean score minus observed rate is {d.high_value * 100:+.1f} points for "
                f"{d.high_group} and {d.low_value * 100:+.1f} for {d.low_group}")
    return (f"{rate} is {d.value * 100:.1f} points higher for {d.high_group} "
            f"({pct(d.high_value)}) than for {d.low_group} ({pct(d.low_value)})")


def metrics(res: FairnessResult) -> dict[str, float]:
    """Flat headline metrics: overall rates and each grouping's disparities with intervals."""
    out: dict[str, float] = {"rows": float(res.n), "accuracy": res.overall["accuracy"],
                             "selection_rate": res.overall["selection_rate"],
                             "base_rate": res.overall["base_rate"]}
    for g in res.groupings:
        for d in g.disparities.values():
            if not d.spec.headline:
                continue
            out[f"{g.key}.{d.name}"] = d.value
            if d.spec.summary:
                out[f"{g.key}.{d.name}.ci_low"] = d.ci_low
                out[f"{g.key}.{d.name}.ci_high"] = d.ci_high
            if d.partial:  # the value over every group (Fairlearn's), beside ours
                out[f"{g.key}.{d.name}.all_groups"] = d.all_groups
                out[f"{g.key}.{d.name}.groups_left_out"] = float(len(d.left_out))
                if d.spec.summary:
                    out[f"{g.key}.{d.name}.all_groups.ci_low"] = d.all_ci_low
                    out[f"{g.key}.{d.name}.all_groups.ci_high"] = d.all_ci_high
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
    named = dict.fromkeys(d.name for g in res.groupings for d in g.disparities.values()
                          if d.spec.summary)
    for name in named:
        cands = [(g, g.disparities[name]) for g in res.groupings
                 if name in g.disparities and math.isfinite(g.disparities[name].value)]
        if not cands:
            continue
        g, d = max(cands, key=lambda gd: gd[1].value)
        scope = f" {scope_text(d)}" if d.partial else ""
        coverage = (f"; {left_out_text(d, res.min_group_size)}; {all_groups_text(d)}"
                    if d.partial else "")
        parts.append(f"largest {d.spec.title.lower()} {d.value:.3f} by {g.name}{scope} "
                     f"({ci_text(d)}; {SHORT[d.rate]} {pct(d.high_value)} for {d.high_group} "
                     f"vs {pct(d.low_value)} for {d.low_group}{coverage})")
    flagged = sum(1 for f in found if f.severity.rank >= Severity.MEDIUM.rank)
    head = (f"{res.n} rows, accuracy {res.overall['accuracy']:.1%}; "
            + ("; ".join(parts) if parts else "no disparity measurable") + ".")
    return head + (f" {flagged} finding(s) of medium or higher severity." if flagged else
                   " No disparity reaches medium severity.")
