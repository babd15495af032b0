"""Findings of the robustness check: pure functions of a :class:`RobustnessEvaluation` and the
check's settings (no model, no attack), each rule on its own."""

from __future__ import annotations

import numpy as np

from audit.policy import CHECK_BUDGET, Category, FindingKind, kind
from audit.result import Finding, Severity
from audit.robustness.corruptions import CORRUPTIONS
from audit.robustness.evaluate import Curve
from audit.robustness.evaluation import RobustnessEvaluation
from audit.robustness.ops import NORM_LABEL, Norm
from audit.robustness.params import RobustnessParams, eps_key
from audit.robustness.tables import rate_interval

__all__ = ["corruption", "fragile", "robustness_findings", "unreliable"]

UNRELIABLE = kind("robustness.unreliable", Category.COVERAGE,
                  "Gradient-masking diagnostics triggered: the robust accuracies may be "
                  "overstated (unreliable_severity, high by default).")
THREAT = kind("robustness.threat.{norm}", Category.DEFECT,
              "Robust accuracy falls well below the clean accuracy at an eps within the "
              "card's threat model (robustness.threat_model, or the harden recipe's eps).")
FRAGILE = kind("robustness.fragile.{norm}", Category.EXPOSURE,
               "Robust accuracy falls at an eps the card does not claim to withstand (medium "
               "at most): it matters wherever inputs can be manipulated.")
STRESS = kind("robustness.stress-test.{norm}", Category.EXPOSURE,
              "The same on tabular inputs with one-hot columns, whose perturbed rows are not "
              "valid records: a stress test of the encoded input space (low at most).")
LOW_CAP = FindingKind("robustness.stress-test-cap", Category.METHOD, "")
"""Bounds (info to low) of a stress test's severity: its perturbed rows are not records."""
CORRUPTION = kind("robustness.corruption.{corruption}", Category.EXPOSURE,
                  "A common corruption (noise, blur, contrast, brightness) at the judged "
                  "severity lowers accuracy (medium beyond corruption_medium).")


def robustness_findings(ev: RobustnessEvaluation, p: RobustnessParams) -> list[Finding]:
    """Every finding, in report order."""
    return [*budget(ev, p), *unreliable(ev, p), *fragile(ev, p), *corruption(ev, p)]


def budget(ev: RobustnessEvaluation, p: RobustnessParams) -> list[Finding]:
    """One finding listing every attack its budget stopped."""
    stops = ev.stops()
    if not stops:
        return []
    listed = "; ".join(
        f"{s.attack} ({NORM_LABEL.get(s.norm, s.norm)}) by its "
        f"{'evaluation' if s.reason == 'evaluations' else 'time'} budget on "
        f"{s.unfinished} of {s.samples} samples" for s in stops)
    return [CHECK_BUDGET(
        Severity.MEDIUM, check="robustness",
        title=f"{len(stops)} attack{'s' if len(stops) > 1 else ''} stopped at the budget",
        detail=(f"Stopped: {listed}. Each attack may use {p.attack_evaluations} forward "
                f"passes per sample in one call and {p.attack_seconds:g} s in all. A stopped "
                "attack keeps the adversarials it had seen, so the robust accuracies are "
                "upper bounds that stronger, finished attacks could lower."),
        evidence={"stops": [vars(s) for s in stops],
                  "attack_evaluations": p.attack_evaluations,
                  "attack_seconds": p.attack_seconds},
        recommendation=("Raise attack_evaluations or attack_seconds in [checks.robustness] "
                        "(or drop --quick), or run on a GPU, and audit again."))]


def unreliable(ev: RobustnessEvaluation, p: RobustnessParams) -> list[Finding]:
    """One finding when any gradient-masking diagnostic triggered."""
    triggered = ev.triggered
    if not triggered:
        return []
    return [UNRELIABLE(
        UNRELIABLE.clamp(Severity.parse(p.unreliable_severity)),
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


def _drop_severity(ratio: float, p: RobustnessParams) -> Severity | None:
    """Severity of robust/clean accuracy ``ratio`` before the kind's bounds apply."""
    if ratio < p.fragile_medium:
        return Severity.HIGH
    return Severity.LOW if ratio < p.fragile_low else None


Step = tuple[float, float, Severity]


def _steps(c: Curve, clean: float, p: RobustnessParams) -> list[Step]:
    """(eps, robust accuracy, severity) at every reported eps where the drop counts."""
    out = []
    for e in c.eps:
        acc = c.robust_accuracy(e)
        sev = _drop_severity(acc / clean if clean > 0 else 0.0, p)
        if sev is not None:
            out.append((e, acc, sev))
    return out


def fragile(ev: RobustnessEvaluation, p: RobustnessParams) -> list[Finding]:
    """Per norm, judged at every reported eps: robust accuracy well below the clean accuracy.

    Epsilons within the card's threat model (:attr:`ModelCard.threat_model`) make a
    ``robustness.threat`` defect (high below ``fragile_medium`` of the clean accuracy, low
    below ``fragile_low``); larger ones, or any eps when the card claims nothing, a
    ``robustness.fragile`` exposure (medium at most); on tabular inputs with one-hot columns
    a ``robustness.stress-test`` instead, since the perturbed rows are not valid records."""
    out: list[Finding] = []
    for nm, c in ev.curves.items():
        claimed = ev.threat.get(nm)
        steps = _steps(c, ev.clean_accuracy, p)
        inside = [s for s in steps if claimed is not None and s[0] <= claimed * (1 + 1e-9)]
        beyond = [s for s in steps if s not in inside]
        for kind_, part in ((THREAT, inside), (STRESS if ev.stress_test else FRAGILE, beyond)):
            if part:
                out.append(_fragile_finding(kind_, nm, part, c, ev, claimed))
    return out


def _fragile_finding(kind_: FindingKind, nm: Norm, steps: list[Step], c: Curve,
                     ev: RobustnessEvaluation, claimed: float | None) -> Finding:
    clean, n = ev.clean_accuracy, ev.samples
    cap = kind_ if kind_ is not STRESS else LOW_CAP  # not valid records: a stress test
    sev = max((cap.clamp(s) for _, _, s in steps), key=lambda s: s.rank)
    e_first, acc_first = next((e, a) for e, a, s in steps if cap.clamp(s) == sev)
    e_top, acc_top, _ = steps[-1]
    lo, hi = rate_interval(acc_top, n)
    per_eps = "; ".join(f"eps {e:g}: {a:.1%}" for e, a, _ in steps)
    scope = (f"within the card's threat model ({NORM_LABEL[nm]} eps up to {claimed:g})"
             if kind_ is THREAT else
             f"beyond the card's threat model (eps {claimed:g})" if claimed is not None else
             "(the card claims no robustness to this norm)")
    detail = (f"{NORM_LABEL[nm]} robust accuracy at each reported eps {scope}, against clean "
              f"{clean:.1%} on {n} samples: {per_eps}. At eps {e_top:g} it is {acc_top:.1%} "
              f"(95% CI {lo:.1%}-{hi:.1%}); the median smallest perturbation found is "
              f"{np.median(c.worst):.3g}.")
    if kind_ is STRESS:
        detail += (" The attacks move one-hot columns to fractional values, so the perturbed "
                   "rows are not valid records: read this as a stress test of the encoded "
                   "input space, not as what an attacker can do with real records.")
    rec = ("The card claims this robustness: harden further (audit harden at this eps, more "
           "epochs) or narrow robustness.threat_model in the card." if kind_ is THREAT else
           "If inputs can be manipulated, harden the model with adversarial training (audit "
           "harden: PGD-AT or TRADES) at the eps you need, state it in the card's "
           "robustness.threat_model, and audit it again.")
    since = f"; {acc_first:.1%} already at eps {e_first:g}" if e_first != e_top else ""
    return kind_(sev, f"{NORM_LABEL[nm]} robust accuracy falls to {acc_top:.1%} at eps "
                      f"{e_top:g} (clean {clean:.1%}{since})",
                 detail, norm=nm,
                 evidence={"norm": nm, "threat_eps": claimed, "clean_accuracy": clean,
                           "samples": n, "eps": e_top, "robust_accuracy": acc_top,
                           "ci_low": lo, "ci_high": hi, "first_eps": e_first,
                           "per_eps": {eps_key(e): {"robust_accuracy": a, "severity": s.value}
                                       for e, a, s in steps},
                           "curve": {eps_key(x): c.robust_accuracy(x) for x in c.eps}},
                 recommendation=rec)


def corruption(ev: RobustnessEvaluation, p: RobustnessParams) -> list[Finding]:
    """Per corruption: accuracy at the judged severity more than ``corruption_low`` (low)
    or ``corruption_medium`` (medium) below the clean accuracy."""
    out: list[Finding] = []
    sev_list = ev.severities
    judged = min(max(p.corruption_severity, 1), 5)
    clean = ev.clean_accuracy
    for name, accs in ev.corruptions.items():
        at = judged if judged in sev_list else sev_list[len(sev_list) // 2]
        acc = accs[sev_list.index(at)]
        drop = clean - acc
        if drop <= p.corruption_low:
            continue
        title = CORRUPTIONS[name].title
        out.append(CORRUPTION(
            Severity.MEDIUM if drop > p.corruption_medium else Severity.LOW, corruption=name,
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
