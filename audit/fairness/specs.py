"""The fairness metrics as data: the per-group rates and every disparity with how it is shown.

A disparity's spec carries everything the report needs to know about it (its short name, whether
it is a headline number, whether it is drawn, its guide text and the policy that turns it into a
finding), so the section, the charts and the finding rules iterate the disparities and read
attributes: a new disparity over the existing rates is one entry of :data:`DISPARITIES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from audit.policy import Category, FindingKind, kind
from audit.result import Severity

RATES: dict[str, str] = {
    "selection_rate": "selection rate",
    "true_positive_rate": "true positive rate",
    "false_positive_rate": "false positive rate",
    "precision": "precision",
    "accuracy": "accuracy",
}
"""Per-group rates, by key, with their display names."""

CALIBRATION = "calibration_in_the_large"

DENOMINATORS: dict[str, str] = {
    "selection_rate": "members",
    "true_positive_rate": "actual positives",
    "false_positive_rate": "actual negatives",
    "precision": "predicted positives",
    "accuracy": "members",
    CALIBRATION: "members",
}
"""What each rate is a share of (what ``min_group_size`` is compared to)."""

SHORT: dict[str, str] = {"selection_rate": "selection rate", "true_positive_rate": "TPR",
                         "false_positive_rate": "FPR", "precision": "precision",
                         "accuracy": "accuracy", CALIBRATION: "calibration"}
"""Short display names of the rates."""

SeverityRule = Literal["gap", "ratio", "calibration"]


@dataclass(frozen=True)
class FindingPolicy:
    """How a disparity becomes a finding ``fairness.SLUG.GROUPING``.

    ``rule`` names the thresholds of the check's params that decide the severity: ``gap``
    (``gap_low``/``gap_medium``/``gap_high`` on a difference), ``ratio`` (``four_fifths`` and
    ``ratio_high`` on a ratio) or ``calibration`` (``calibration_medium``). The texts are
    :meth:`str.format` templates; the fields are listed in
    :func:`audit.fairness.findings.policy_finding` (``{value:.3f}``, ``{grouping}``, ``{ci}``,
    ``{sig}``, ``{rate}``, ``{high}``/``{low}`` and ``{d}``, ``{p}``, ``{disparities}``).
    """

    rule: SeverityRule
    slug: str
    title: str
    detail: str
    recommendation: str
    max_severity: Severity | None = None
    """A ceiling (e.g. accuracy gaps, partly explained by base rates, stay at most medium)."""
    meaning: str = ""
    """One line for the severity policy's table."""

    @property
    def kind(self) -> FindingKind:
        """The policy kind of the findings it raises (a defect: the groups are named)."""
        return kind(f"fairness.{self.slug}.{{grouping}}", Category.DEFECT, self.meaning)


@dataclass(frozen=True)
class DisparitySpec:
    """A disparity: ``kind`` of the rates across groups (worst case over several rates), and
    how the report shows it."""

    name: str
    rates: tuple[str, ...]
    kind: Literal["difference", "ratio"]
    title: str
    short: str
    """Label in the disparity chart."""
    headline: bool = False
    """Listed in the section's metrics and first in the disparity table."""
    summary: bool = False
    """Named in the section summary (the largest value), its interval in the metrics."""
    table: bool = True
    """A row of the disparity table."""
    plot: bool = True
    """Drawn in the disparity chart (differences left, ratios right)."""
    guide: tuple[str, str] | None = None
    """(what it measures, how to read it) for the metric guide."""
    policy: FindingPolicy | None = None
    """The finding it raises when large; ``None``: none of its own."""


_SIG = "({ci}), {sig}."

DEMOGRAPHIC_PARITY = FindingPolicy(
    "gap", "demographic-parity", "Demographic parity difference {value:.3f} by {grouping}",
    "The model selects groups of {grouping} at different rates: {rate} {high} for "
    "{d.high_group} against {low} for {d.low_group}. The gap is {value:.3f} " + _SIG,
    "Check whether the gap is justified by the task; if not, mitigate (audit mitigate: "
    "reweighing, a fairness penalty in training, or group thresholds) and weigh the accuracy "
    "cost.", meaning="Selection rates differ across the groups of a sensitive attribute "
    "(high at a difference of gap_high; at most low when it may be noise).")
FOUR_FIFTHS = FindingPolicy(
    "ratio", "four-fifths", "Four-fifths rule fails for {grouping}: ratio {value:.2f}",
    "{d.low_group} is selected at {low}, {value:.0%} of the rate of {d.high_group} ({high}); "
    "the four-fifths rule asks for at least {p.four_fifths:.0%}. Ratio {value:.3f} " + _SIG,
    "Under US employment guidance a ratio below 0.8 is evidence of adverse impact; review the "
    "decision rule for this group.", meaning="One group's selection rate is below four "
    "fifths of another's (high below ratio_high).")
EQUALIZED_ODDS = FindingPolicy(
    "gap", "equalized-odds", "Equalized odds difference {value:.3f} by {grouping}",
    "Errors fall unevenly on groups of {grouping}: the TPR difference is "
    "{disparities[equal_opportunity_difference].value:.3f} and the FPR difference "
    "{disparities[false_positive_rate_difference].value:.3f}; the larger, {rate}, is {high} "
    "for {d.high_group} against {low} for {d.low_group}. Gap {value:.3f} " + _SIG,
    "Group-specific thresholds (audit mitigate, post-processing) can equalize error rates; "
    "retraining with an equalized-odds penalty is the alternative.",
    meaning="True or false positive rates differ across the groups of a sensitive attribute.")
ACCURACY_GAP = FindingPolicy(
    "gap", "accuracy-gap", "Accuracy differs by {value:.3f} across {grouping}",
    "Accuracy {high} for {d.high_group} against {low} for {d.low_group}; gap {value:.3f} "
    "({ci}), {sig}. Part of such a gap can come from different base rates.",
    "Look at the group with the lowest accuracy: more or better data for it usually helps "
    "more than changing the model.", max_severity=Severity.MEDIUM,
    meaning="Accuracy differs across groups (medium at most: base rates explain part of it).")
CALIBRATION_GAP = FindingPolicy(
    "calibration", "calibration",
    "Scores are calibrated differently across {grouping} ({value:.3f})",
    "Mean score minus observed rate is {d.high_value:+.3f} for {d.high_group} and "
    "{d.low_value:+.3f} for {d.low_group}; spread {value:.3f} " + _SIG,
    "Do not compare raw scores across these groups; recalibrate per group (or globally) on "
    "held-out data before using scores.",
    meaning="The scores mean different things for different groups (calibration spread).")

DISPARITIES: tuple[DisparitySpec, ...] = (
    DisparitySpec(
        "demographic_parity_difference", ("selection_rate",), "difference",
        "Demographic parity difference", "demographic parity diff.", headline=True,
        summary=True, policy=DEMOGRAPHIC_PARITY,
        guide=("Largest minus smallest selection rate across groups.",
               "0 means every group is selected equally often.")),
    DisparitySpec(
        "demographic_parity_ratio", ("selection_rate",), "ratio", "Demographic parity ratio",
        "DP ratio", headline=True, policy=FOUR_FIFTHS,
        guide=("Smallest divided by largest selection rate.",
               "1 is parity; below 0.8 fails the four-fifths rule of US hiring guidance.")),
    DisparitySpec(
        "equal_opportunity_difference", ("true_positive_rate",), "difference",
        "Equal opportunity difference", "equal opportunity diff.", headline=True,
        guide=("Largest minus smallest true positive rate.",
               "0 means deserving members of every group are found equally often.")),
    DisparitySpec(
        "equal_opportunity_ratio", ("true_positive_rate",), "ratio", "Equal opportunity ratio",
        "EOpp ratio", table=False),
    DisparitySpec(
        "false_positive_rate_difference", ("false_positive_rate",), "difference",
        "False positive rate difference", "FPR diff."),
    DisparitySpec(
        "equalized_odds_difference", ("true_positive_rate", "false_positive_rate"),
        "difference", "Equalized odds difference", "equalized odds diff.", headline=True,
        summary=True, policy=EQUALIZED_ODDS,
        guide=("The larger of the TPR difference and the FPR difference.",
               "0 means the model's errors fall on every group alike.")),
    DisparitySpec(
        "equalized_odds_ratio", ("true_positive_rate", "false_positive_rate"), "ratio",
        "Equalized odds ratio", "EO ratio", headline=True,
        guide=("The smaller of the TPR ratio and the FPR ratio.", "1 is parity.")),
    DisparitySpec(
        "precision_difference", ("precision",), "difference", "Precision difference",
        "precision diff.", plot=False),
    DisparitySpec(
        "accuracy_score_difference", ("accuracy",), "difference", "Accuracy difference",
        "accuracy diff.", headline=True, policy=ACCURACY_GAP,
        guide=("Largest minus smallest accuracy.",
               "0 means the model is equally accurate for every group.")),
    DisparitySpec(
        "calibration_difference", (CALIBRATION,), "difference", "Calibration difference",
        "calibration diff.", headline=True, policy=CALIBRATION_GAP,
        guide=("Spread (max − min) of the groups' mean score minus observed rate.",
               "0 means the scores mean the same thing for every group.")),
)
"""Every disparity, in report order (table, chart, findings and metrics follow it)."""

SPECS: dict[str, DisparitySpec] = {s.name: s for s in DISPARITIES}

POLICY_KINDS = tuple(s.policy.kind for s in DISPARITIES if s.policy is not None)
"""The policy kinds of the disparity findings (declared on import, for the policy table)."""
