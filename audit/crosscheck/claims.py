"""Card claims against measured values: every number in the card's ``metrics`` is compared
with the interval this audit measured, or said why it cannot be.

A claim resolves to a section metric with its 95% interval (``NAME_ci_low``/``NAME_ci_high``):
by the same name (``robust_accuracy_linf_0.1``, ``certified_accuracy_l2_0.5``,
``smoothed_accuracy_sigma_0.25``), ``test_accuracy`` to the performance check's accuracy, and
``test_<attack>_accuracy_<norm>_<eps>`` (harden's PGD numbers) to the robust accuracy at that
eps, which this audit measures with a stronger suite. Claims about training (``val_*``,
``train_*``, ``*_seconds``, ``best_epoch``) are listed as not checked. A claim outside the
interval in the unfavourable direction (an accuracy above it, an abstention rate below it) is
a ``crosscheck.claim`` finding: high beyond ``TOLERANCE`` outside the interval, else medium.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from audit.crosscheck import Audited, CrossCheck, CrossResult, register, row
from audit.policy import Category, kind
from audit.result import Cell, Finding, Severity, Table

CLAIM = kind("crosscheck.claim.{key}", Category.CLAIM,
             "A number the card claims lies outside the interval this audit measured on the "
             "card's own test data, in the unfavourable direction.")

TOLERANCE = 0.02
"""A claim further than this outside the measured interval is high, closer is medium."""

_TRAINING = re.compile(r"^(val_|train_|validation_|best_)|_seconds$|_epoch$")
_ATTACK = re.compile(r"^test_[a-z]+\d*_accuracy_(?P<norm>linf|l2)_(?P<eps>[0-9.e-]+)$")
_LOWER_IS_BETTER = ("abstention", "error", "ece", "loss", "nll", "brier", "gap", "difference")


@dataclass
class Measured:
    """The metric a claim is about, with its interval."""

    section: str
    metric: str
    value: float
    low: float
    high: float


def _lower_is_better(key: str) -> bool:
    return any(w in key for w in _LOWER_IS_BETTER)


def _lookup(audited: Audited, metric: str, only: str | None = None) -> Measured | None:
    for s in audited.sections:
        if s.status in ("skipped", "error") or (only is not None and s.check != only):
            continue
        v = s.metrics.get(metric)
        if v is not None and math.isfinite(v):
            lo = s.metrics.get(f"{metric}_ci_low", math.nan)
            hi = s.metrics.get(f"{metric}_ci_high", math.nan)
            return Measured(s.check, metric, float(v), float(lo), float(hi))
    return None


def resolve(audited: Audited, key: str) -> Measured | None:
    """The measured metric the card's ``key`` is a claim about, when this audit has it."""
    if key == "test_accuracy":
        return _lookup(audited, "accuracy", "performance")
    m = _ATTACK.match(key)
    if m is not None:
        eps = m["eps"].rstrip("0").rstrip(".") if "." in m["eps"] else m["eps"]
        return _lookup(audited, f"robust_accuracy_{m['norm']}_{eps}", "robustness")
    return _lookup(audited, key)


def _same_data(audited: Audited) -> bool:
    """Whether the audit ran on the data the card's test metrics are about."""
    dataset = audited.card.get("dataset")
    name = str(audited.data.get("name", ""))
    return bool(dataset) and name in (f"{dataset}/test", str(dataset))


def judge(key: str, claimed: float, m: Measured) -> tuple[str, Severity | None]:
    """(status in words, severity of the finding or ``None``) of one resolved claim."""
    if not (math.isfinite(m.low) and math.isfinite(m.high)):
        close = abs(claimed - m.value) <= TOLERANCE
        return ("consistent (no interval; within the tolerance)" if close else
                "differs (no interval to judge it against)"), None
    lower_better = _lower_is_better(key)
    over = claimed - m.high if not lower_better else m.low - claimed  # the card is too kind
    under = m.low - claimed if not lower_better else claimed - m.high
    if over > 0:
        sev = Severity.HIGH if over > TOLERANCE else Severity.MEDIUM
        return "contradicted: the card overstates it", sev
    if under > 0:
        return "better than the card says (outside the interval)", None
    return "consistent: within the interval", None


@register
class CardClaims(CrossCheck):
    """Every numeric claim of the card against the interval this audit measured."""

    name = "claims"
    title = "Card claims against this audit"

    def run(self, audited: Audited) -> CrossResult | None:
        metrics = audited.card.get("metrics") or {}
        claims = {k: float(v) for k, v in metrics.items()
                  if isinstance(v, int | float) and not isinstance(v, bool)
                  and not k.endswith(("_ci_low", "_ci_high"))}
        if not claims:
            return None
        same = _same_data(audited)
        rows: list[list[Cell]] = []
        findings: list[Finding] = []
        counts = {"consistent": 0, "contradicted": 0, "unchecked": 0, "training": 0}
        for key, claimed in claims.items():
            m = None if _TRAINING.search(key) else resolve(audited, key)
            if m is None:
                why = ("about training, not the audit data" if _TRAINING.search(key) else
                       "not measured by the checks that ran")
                rows.append(row(key, claimed, None, "", f"not checked: {why}"))
                counts["training" if _TRAINING.search(key) else "unchecked"] += 1
                continue
            ci = f"{m.low:.4g}-{m.high:.4g}" if math.isfinite(m.low) else ""
            if not same:
                rows.append(row(key, claimed, round(m.value, 4), ci,
                                f"not compared: the claim is about "
                                f"{audited.card.get('dataset')}/test, this audit used "
                                f"{audited.data.get('name')}"))
                counts["unchecked"] += 1
                continue
            status, sev = judge(key, claimed, m)
            rows.append(row(key, claimed, round(m.value, 4), ci, status))
            counts["contradicted" if sev else "consistent"] += 1
            if sev is not None:
                findings.append(_finding(key, claimed, m, sev, audited))
        table = Table(id="crosscheck-claims", title=self.title,
                      columns=["card metric", "claimed", "measured", "95% CI", "verdict"],
                      rows=rows, caption=("Each numeric claim of the card, the metric of this "
                                          "audit it is about, and whether the claim lies "
                                          "within the measured interval."))
        summary = (f"Card claims: {counts['consistent']} consistent with this audit, "
                   f"{counts['contradicted']} contradicted, {counts['unchecked']} not "
                   f"checkable here, {counts['training']} about training.")
        return CrossResult(findings=findings, table=table, summary=summary)


def _finding(key: str, claimed: float, m: Measured, sev: Severity, audited: Audited) -> Finding:
    name = str(audited.card.get("name", "the model"))
    attack = ("; this audit's attack suite is stronger than the attack the claim was measured "
              "with, so the card's number is an overestimate" if _ATTACK.match(key) else "")
    return CLAIM(
        sev, f"The card's {key} = {claimed:.4g} is not what this audit measures "
             f"({m.value:.4g})",
        f"The card of {name} claims {key} = {claimed:.4g}; on {audited.data.get('name')} the "
        f"{m.section} check measures {m.metric} = {m.value:.4g} (95% CI {m.low:.4g}-"
        f"{m.high:.4g}), so the claim lies outside the interval{attack}.",
        key=key, evidence={"card_key": key, "claimed": claimed, "section": m.section,
                           "metric": m.metric, "measured": m.value, "ci_low": m.low,
                           "ci_high": m.high},
        recommendation="Correct the card to the measured value (with its interval), or find "
                       "out how the claim was measured (other data, weaker attacks).")
