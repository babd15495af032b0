"""Findings of a fairness assessment: pure functions of the measured result and the params.

Data problems (missing values, too many groups, small groups) are fixed rules; every disparity
whose spec carries a :class:`~audit.fairness.specs.FindingPolicy` is judged by that policy, in
the order of :data:`~audit.fairness.specs.DISPARITIES`, so a new disparity with a policy needs
no code here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from audit.fairness.groups import MISSING
from audit.fairness.metrics import Disparity, FairnessResult, GroupingResult
from audit.fairness.params import FairnessParams
from audit.fairness.specs import RATES, FindingPolicy, SeverityRule
from audit.fairness.text import all_groups_text, ci_text, left_out_text, pct, scope_text, slug
from audit.policy import Category, kind
from audit.result import Finding, Severity

MISSING_SENSITIVE = kind("fairness.missing-sensitive.{column}", Category.COVERAGE,
                         "Rows without a value of a sensitive column (assessed as a group "
                         "of their own).")
TOO_MANY_GROUPS = kind("fairness.too-many-groups.{grouping}", Category.COVERAGE,
                       "A sensitive column has more groups than max_groups: not assessed.")
NOT_ASSESSABLE = kind("fairness.not-assessable.{grouping}", Category.COVERAGE,
                      "Fewer than two groups are large enough to compare: no disparity is "
                      "measured.")
MITIGATION_RESULT = kind("mitigation.{method}", Category.COVERAGE,
                         "What one mitigation method achieved (audit mitigate): its best gap "
                         "and accuracy.")
SMALL_GROUPS = kind("fairness.small-groups.{grouping}", Category.COVERAGE,
                    "Groups below min_group_size are shown but left out of the disparities.")


def _gap(value: float, p: FairnessParams) -> Severity | None:
    if not math.isfinite(value):
        return None
    if value >= p.gap_high:
        return Severity.HIGH
    if value >= p.gap_medium:
        return Severity.MEDIUM
    if value >= p.gap_low:
        return Severity.LOW
    return None


def _ratio(value: float, p: FairnessParams) -> Severity | None:
    if not math.isfinite(value) or value >= p.four_fifths:
        return None
    return Severity.HIGH if value < p.ratio_high else Severity.MEDIUM


def _calibration(value: float, p: FairnessParams) -> Severity | None:
    return Severity.MEDIUM if math.isfinite(value) and value >= p.calibration_medium else None


RULES: dict[SeverityRule, Callable[[float, FairnessParams], Severity | None]] = {
    "gap": _gap, "ratio": _ratio, "calibration": _calibration}
"""Severity of a disparity's value under each rule (``None``: no finding)."""


def significance(d: Disparity, alpha: float) -> tuple[bool, str]:
    """Whether the test of equal rates rejects at ``alpha``, and that in words."""
    if d.p_value < alpha:
        return True, f"distinguishable from zero (p={d.p_value:.2g} < {alpha:g})"
    return False, (f"not statistically distinguishable from zero (p={d.p_value:.2g} ≥ "
                   f"{alpha:g}); it may be sampling noise")


def _cap(sev: Severity, significant: bool) -> Severity:
    """A gap that may be noise is at most ``low``."""
    return sev if significant or sev.rank <= Severity.LOW.rank else Severity.LOW


def evidence(g: GroupingResult, d: Disparity, alpha: float) -> dict[str, Any]:
    """The numbers behind a disparity finding."""
    return {"grouping": g.name, "metric": d.name, "value": d.value, "ci_low": d.ci_low,
            "ci_high": d.ci_high, "p_value": d.p_value, "significant": d.p_value < alpha,
            "rate": d.rate, "highest_group": d.high_group, "highest": d.high_value,
            "lowest_group": d.low_group, "lowest": d.low_value, "groups_compared": d.groups_used,
            "groups_total": d.groups_total, "left_out": dict(d.left_out),
            "all_groups": d.all_groups, "all_groups_ci_low": d.all_ci_low,
            "all_groups_ci_high": d.all_ci_high}


def coverage_sentence(d: Disparity, min_group_size: int) -> str:
    """The sentence a finding's detail ends with when ``d`` leaves groups out (else empty):
    which, why, and the value over all groups beside it."""
    if not d.partial:
        return ""
    return (f" Computed {scope_text(d)}; {left_out_text(d, min_group_size)}; "
            f"{all_groups_text(d)}.")


def policy_finding(g: GroupingResult, d: Disparity, policy: FindingPolicy,
                   p: FairnessParams) -> Finding | None:
    """The finding ``policy`` raises for disparity ``d`` of grouping ``g``, if any.

    Template fields: ``value`` (the disparity), ``grouping`` (its display name), ``ci`` (the
    interval in words), ``sig`` (significance in words), ``rate`` (the deciding rate's name),
    ``high``/``low`` (the extreme groups' rates as percentages), ``d`` (the
    :class:`~audit.fairness.metrics.Disparity`), ``p`` (the params) and ``disparities`` (all of
    the grouping's, by name).
    """
    sev = RULES[policy.rule](d.value, p)
    if sev is None:
        return None
    if policy.max_severity is not None:
        sev = min(sev, policy.max_severity, key=lambda s: s.rank)
    sig, sig_text = significance(d, p.alpha)
    fields = {"value": d.value, "grouping": g.name, "ci": ci_text(d), "sig": sig_text,
              "rate": RATES.get(d.rate, "mean score − observed rate"),
              "high": pct(d.high_value), "low": pct(d.low_value), "d": d, "p": p,
              "disparities": g.disparities}
    title = policy.title.format(**fields)
    if d.partial:  # a value over some groups says so where it is read first
        title += f" ({scope_text(d)}; {d.all_groups:.3f} over all)"
    return policy.kind(_cap(sev, sig), title,
                       policy.detail.format(**fields) + coverage_sentence(d, p.min_group_size),
                       grouping=slug(g.key),
                       evidence=evidence(g, d, p.alpha), recommendation=policy.recommendation)


def findings(res: FairnessResult, p: FairnessParams) -> list[Finding]:
    """Findings of one assessment (stable ids ``fairness.KIND.GROUPING``)."""
    out: list[Finding] = []
    for col, n_missing in res.missing.items():
        if n_missing:
            out.append(MISSING_SENSITIVE(
                Severity.LOW, column=slug(col),
                title=f"{n_missing} row(s) have no value for {col}",
                detail=(f"{n_missing} of {res.n} rows ({n_missing / res.n:.1%}) have a missing "
                        f"{col}; they are assessed as the group {MISSING} rather than dropped."),
                evidence={"column": col, "missing": n_missing, "rows": res.n},
                recommendation="Find out why the attribute is missing: if it is missing more "
                               "often for one group, the audit under-counts that group."))
    for name, count in res.skipped.items():
        out.append(TOO_MANY_GROUPS(
            Severity.MEDIUM, grouping=slug(name),
            title=f"{name} has {count} groups; not assessed",
            detail=(f"{name} splits the data into {count} groups, more than max_groups="
                    f"{p.max_groups}; most would be too small to compare."),
            evidence={"grouping": name, "groups": count, "max_groups": p.max_groups},
            recommendation="Bin the column into a few meaningful ranges (e.g. age bands) and "
                           "assess again, or raise [checks.fairness] max_groups."))
    for g in res.groupings:
        out.extend(grouping_findings(g, p))
    return out


def grouping_findings(g: GroupingResult, p: FairnessParams) -> list[Finding]:
    """Small groups, then either "not assessable" or each disparity's policy finding."""
    out: list[Finding] = []
    small = _small_groups(g, p)
    if small is not None:
        out.append(small)
    compared = g.groups_compared()
    if compared < 2:
        out.append(NOT_ASSESSABLE(
            Severity.MEDIUM, grouping=slug(g.key),
            title=f"{g.name}: fewer than two groups large enough to compare",
            detail=(f"Only {compared} group(s) of {g.name} have at least "
                    f"{p.min_group_size} rows, so no disparity can be measured."
                    + _all_groups_values(g)),
            evidence={"grouping": g.name, "groups": len(g.labels),
                      "min_group_size": p.min_group_size},
            recommendation="Audit on more data, or lower [checks.fairness] min_group_size "
                           "knowing the numbers will be noisy."))
        return out
    for d in g.disparities.values():
        found = None if d.spec.policy is None else policy_finding(g, d, d.spec.policy, p)
        if found is not None:
            out.append(found)
    return out


def _all_groups_values(g: GroupingResult) -> str:
    """The headline disparities over all groups (Fairlearn's values) in one sentence, for
    those computed over fewer groups; empty when there are none."""
    parts = [f"{d.spec.title.lower()} {d.all_groups:.3f}" for d in g.disparities.values()
             if d.spec.headline and d.partial and math.isfinite(d.all_groups)]
    return (" Over all groups, as Fairlearn computes them: " + ", ".join(parts) + ".") \
        if parts else ""


def _small_groups(g: GroupingResult, p: FairnessParams) -> Finding | None:
    """Groups left out of the disparities: too few rows, or too few in a headline rate's
    denominator (e.g. actual positives for the TPR); with the values over all groups."""
    small = g.small_groups(p.min_group_size)
    partial = [d for d in g.disparities.values() if d.spec.headline and d.partial]
    left_out = {lab: why for d in partial for lab, why in d.left_out.items()}
    if not small and not left_out:
        return None
    rows = dict(zip(g.labels, (int(n) for n in g.rows), strict=True))
    sizes = {lab: rows[lab] for lab in g.labels if lab in small or lab in left_out}
    if small and set(sizes) == set(small):
        shown = ", ".join(f"{k} ({v})" for k, v in list(sizes.items())[:8])
        title = f"{len(small)} group(s) of {g.name} too small to compare"
        detail = (f"{shown}{' …' if len(sizes) > 8 else ''} have fewer than min_group_size="
                  f"{p.min_group_size} rows: their rates are shown in the table but do not "
                  "enter the disparities, whose intervals would be too wide to judge.")
    else:
        shown = ", ".join(f"{k} ({left_out.get(k, f'{v} rows')})"
                          for k, v in list(sizes.items())[:8])
        title = f"{len(sizes)} group(s) of {g.name} left out of some disparities"
        detail = (f"{shown}{' …' if len(sizes) > 8 else ''}: fewer than min_group_size="
                  f"{p.min_group_size} rows in a rate's denominator, so those rates are shown "
                  "in the table but do not enter the disparities.")
    compared = [f"{d.spec.title.lower()} {d.value:.3f} {scope_text(d)} against "
                f"{d.all_groups:.3f} over all {d.groups_total}" for d in partial
                if math.isfinite(d.all_groups) and math.isfinite(d.value)]
    if compared:
        detail += (" Without them against with them (as Fairlearn computes it): "
                   + "; ".join(compared) + ".")
    return SMALL_GROUPS(
        Severity.LOW, grouping=slug(g.key), title=title, detail=detail,
        evidence={"grouping": g.name, "groups": sizes, "min_group_size": p.min_group_size,
                  "left_out": left_out,
                  "all_groups": {d.name: d.all_groups for d in partial},
                  "compared_groups": {d.name: d.value for d in partial}},
        recommendation="Collect more data for these groups before relying on the model "
                       "for them, or merge groups where that is meaningful.")
