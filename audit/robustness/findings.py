"""Findings of the robustness check: pure functions of a :class:`RobustnessEvaluation` and the
check's settings (no model, no attack), each rule on its own."""

from __future__ import annotations

import numpy as np

from audit.result import Finding, Severity
from audit.robustness.corruptions import CORRUPTIONS
from audit.robustness.evaluation import RobustnessEvaluation
from audit.robustness.ops import NORM_LABEL
from audit.robustness.params import RobustnessParams, eps_key

__all__ = ["below_card", "corruption", "fragile", "robustness_findings", "unreliable"]


def robustness_findings(ev: RobustnessEvaluation, p: RobustnessParams) -> list[Finding]:
    """Every finding, in report order."""
    return [*unreliable(ev, p), *fragile(ev, p), *below_card(ev, p), *corruption(ev, p)]


def unreliable(ev: RobustnessEvaluation, p: RobustnessParams) -> list[Finding]:
    """One finding when any gradient-masking diagnostic triggered."""
    triggered = ev.triggered
    if not triggered:
        return []
    return [Finding(
        id="robustness.unreliable", severity=Severity.parse(p.unreliable_severity),
        title="Robustness evaluation unreliable: " + ", ".join(
            f"{d.title.lower()} ({NORM_LABEL.get(d.norm, d.norm)})" for d in triggered),
        detail=" ".join(d.detail for d in triggered),
        evidence={"diagnostics": [d.to_dict() for d in triggered]},
        recommendation=(
            "Do not rely on these robust accuracies: the attacks show signs of "
            "gradient masking. Evaluate with adaptive attacks: replace "
            "non-differentiable preprocessing by a differentiable approximation "
            "(BPDA), attack the logit margin or DLR loss instead of a saturated "
            "cross-entropy, average gradients over randomness (EOT), and raise steps "
            "and restarts until the robust accuracy stops falling."))]


def _fragile_severity(ratio: float, p: RobustnessParams) -> Severity | None:
    if ratio < p.fragile_high:
        return Severity.HIGH
    if ratio < p.fragile_medium:
        return Severity.MEDIUM
    return Severity.LOW if ratio < p.fragile_low else None


def fragile(ev: RobustnessEvaluation, p: RobustnessParams) -> list[Finding]:
    """Per norm: robust accuracy at the headline eps well below the clean accuracy."""
    out: list[Finding] = []
    clean = ev.clean_accuracy
    for nm, c in ev.curves.items():
        e = ev.headline[nm]
        acc = c.robust_accuracy(e)
        sev = _fragile_severity(acc / clean if clean > 0 else 0.0, p)
        if sev is None:
            continue
        out.append(Finding(
            id=f"robustness.fragile.{nm}", severity=sev,
            title=f"{NORM_LABEL[nm]} robust accuracy {acc:.1%} at eps {e:g} "
                  f"(clean {clean:.1%})",
            detail=(f"Attacks within {NORM_LABEL[nm]} eps {e:g} change the prediction "
                    f"of {1 - acc / max(clean, 1e-12):.0%} of the correctly "
                    f"classified samples; robust accuracy is {acc:.1%} against clean "
                    f"{clean:.1%}. Median smallest perturbation found: "
                    f"{np.median(c.worst):.3g}."),
            evidence={"norm": nm, "eps": e, "robust_accuracy": acc, "clean_accuracy": clean,
                      "curve": {eps_key(x): c.robust_accuracy(x) for x in c.eps}},
            recommendation="If inputs can be manipulated, harden the model with "
                           "adversarial training (audit harden: PGD-AT or TRADES) at "
                           "this epsilon and audit it again."))
    return out


def below_card(ev: RobustnessEvaluation, p: RobustnessParams) -> list[Finding]:
    """Measured robust accuracy more than ``card_gap`` below a ``robust_accuracy_<norm>_<eps>``
    the card claims."""
    out: list[Finding] = []
    for key, claimed in ev.card_metrics.items():
        if not key.startswith("robust_accuracy_") or not isinstance(claimed, int | float):
            continue
        for nm, c in ev.curves.items():
            for e in c.eps:
                if key != f"robust_accuracy_{nm}_{eps_key(e)}":
                    continue
                acc = c.robust_accuracy(e)
                if claimed - acc <= p.card_gap:
                    continue
                out.append(Finding(
                    id=f"robustness.below-card.{nm}.{eps_key(e)}", severity=Severity.HIGH,
                    title=f"{NORM_LABEL[nm]} robust accuracy at eps {e:g} is "
                          f"{acc:.1%}, below the card's {claimed:.1%}",
                    detail=(f"The card claims {claimed:.1%} but the attack suite "
                            f"brings it to {acc:.1%} ({(claimed - acc) * 100:.1f} "
                            "points lower)."),
                    evidence={"claimed": float(claimed), "measured": acc},
                    recommendation="Correct the card, or check how the claim was "
                                   "measured (weaker attacks, other data)."))
    return out


def corruption(ev: RobustnessEvaluation, p: RobustnessParams) -> list[Finding]:
    """Per corruption: accuracy at the judged severity more than ``corruption_medium``
    (medium) or ``corruption_high`` (high) below the clean accuracy."""
    out: list[Finding] = []
    sev_list = ev.severities
    judged = min(max(p.corruption_severity, 1), 5)
    clean = ev.clean_accuracy
    for name, accs in ev.corruptions.items():
        at = judged if judged in sev_list else sev_list[len(sev_list) // 2]
        acc = accs[sev_list.index(at)]
        drop = clean - acc
        if drop <= p.corruption_medium:
            continue
        title = CORRUPTIONS[name].title
        out.append(Finding(
            id=f"robustness.corruption.{name}",
            severity=Severity.HIGH if drop > p.corruption_high else Severity.MEDIUM,
            title=f"{title} at severity {at} drops accuracy to {acc:.1%}",
            detail=(f"Accuracy falls from {clean:.1%} to {acc:.1%} under "
                    f"{title.lower()} at severity {at} (by "
                    "severity: " + ", ".join(f"{a:.1%}" for a in accs) + ")."),
            evidence={"corruption": name, "severity": at, "accuracy": acc,
                      "clean_accuracy": clean, "by_severity": accs},
            recommendation="Augment training with this corruption (or normalise "
                           "inputs against it) and check the data pipeline that "
                           "feeds the model in production."))
    return out
