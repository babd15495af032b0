"""Findings of the certified check: pure functions of a :class:`CertifiedEvaluation` and the
check's settings (no model, no noise), each rule on its own."""

from __future__ import annotations

from audit.certified.evaluation import CertifiedEvaluation
from audit.certified.params import CertifiedParams, key
from audit.policy import Category, kind
from audit.result import Finding, Severity

__all__ = ["abstentions", "certified_findings", "noise_gap"]

ABSTENTIONS = kind("certified.abstentions.sigma_{sigma}", Category.DEFECT,
                   "The smoothed classifier the card describes abstains on many samples at "
                   "this sigma: they get no certificate.")
NOISE_GAP = kind("certified.noise-gap.sigma_{sigma}", Category.DEFECT,
                 "Smoothing at this sigma costs accuracy beyond noise_gap: the model was not "
                 "trained for this noise.")


def certified_findings(ev: CertifiedEvaluation, p: CertifiedParams) -> list[Finding]:
    """Every finding, in report order."""
    return [*abstentions(ev, p), *noise_gap(ev, p)]


def abstentions(ev: CertifiedEvaluation, p: CertifiedParams) -> list[Finding]:
    """Per sigma: CERTIFY abstaining on more than ``abstain_medium`` (medium) or
    ``abstain_high`` (high) of the samples."""
    out: list[Finding] = []
    for s in ev.sigmas:
        a = s.abstentions
        if a.value <= p.abstain_medium:
            continue
        out.append(ABSTENTIONS(
            Severity.HIGH if a.value > p.abstain_high else Severity.MEDIUM, sigma=key(s.sigma),
            title=f"The smoothed classifier abstains on {a.value:.0%} of the samples at "
                  f"sigma {s.sigma:g}",
            detail=(f"CERTIFY could not bound the top class's probability above 1/2 on "
                    f"{a.k} of {a.n} samples ({a.text()}); they get no certificate and count "
                    "as wrong at every radius."),
            evidence={"sigma": s.sigma, "abstentions": a.k, "samples": a.n,
                      "rate": a.value, "ci_low": a.ci_low, "ci_high": a.ci_high},
            recommendation=f"Train the model under this noise (audit harden MODEL --method "
                           f"smoothing --sigma {s.sigma:g}) or certify at a smaller sigma."))
    return out


def noise_gap(ev: CertifiedEvaluation, p: CertifiedParams) -> list[Finding]:
    """Per sigma: the smoothed classifier's accuracy more than ``noise_gap`` below the base
    model's on the same samples (the model was not trained for this noise)."""
    out: list[Finding] = []
    base = ev.base_accuracy
    for s in ev.sigmas:
        sm = s.smoothed_accuracy
        gap = base.value - sm.value
        if gap <= p.noise_gap:
            continue
        out.append(NOISE_GAP(
            Severity.MEDIUM, sigma=key(s.sigma),
            title=f"Smoothing at sigma {s.sigma:g} costs {gap * 100:.0f} points of accuracy",
            detail=(f"The smoothed classifier's accuracy is {sm.text()} against the base "
                    f"model's {base.text()} on the same {sm.n} samples."),
            evidence={"sigma": s.sigma, "smoothed_accuracy": sm.value,
                      "base_accuracy": base.value, "gap": gap},
            recommendation=f"Train with Gaussian data augmentation at this noise level "
                           f"(audit harden MODEL --method smoothing --sigma {s.sigma:g})."))
    return out
