"""Findings of the certified check: pure functions of a :class:`CertifiedEvaluation` and the
check's settings (no model, no noise), each rule on its own."""

from __future__ import annotations

import re

from audit.certified.evaluation import CertifiedEvaluation, Rate, SigmaCertification
from audit.certified.params import CertifiedParams, key
from audit.result import Finding, Severity

__all__ = ["abstentions", "below_card", "certified_findings", "noise_gap"]

# certified_accuracy_sigma_0.25_l2_0.5 (one sigma) or certified_accuracy_l2_0.5 (best sigma)
_CLAIM = re.compile(r"^certified_accuracy_(?:sigma_(?P<sigma>[^_]+)_)?l2_(?P<radius>[^_]+)$")


def certified_findings(ev: CertifiedEvaluation, p: CertifiedParams) -> list[Finding]:
    """Every finding, in report order."""
    return [*below_card(ev, p), *abstentions(ev, p), *noise_gap(ev, p)]


def _claimed(ev: CertifiedEvaluation) -> list[tuple[str, float, SigmaCertification, float]]:
    """(card key, claimed value, the measurement it is about, radius) for every card metric
    naming a certified accuracy that was measured."""
    out = []
    by_sigma = {key(s.sigma): s for s in ev.sigmas}
    for name, claimed in ev.card_metrics.items():
        m = _CLAIM.match(name)
        if m is None or not isinstance(claimed, int | float) or isinstance(claimed, bool):
            continue
        try:
            radius = float(m["radius"])
        except ValueError:
            continue
        if m["sigma"] is None:
            if ev.sigmas:
                out.append((name, float(claimed), ev.best(radius), radius))
        elif m["sigma"] in by_sigma:
            out.append((name, float(claimed), by_sigma[m["sigma"]], radius))
    return out


def below_card(ev: CertifiedEvaluation, p: CertifiedParams) -> list[Finding]:
    """A certified accuracy the card claims above the upper end of the measured 95% interval
    (a claim inside the interval is consistent with the measurement)."""
    out: list[Finding] = []
    for name, claimed, s, radius in _claimed(ev):
        r: Rate = s.certified_accuracy(radius)
        if claimed <= r.ci_high:
            continue
        out.append(Finding(
            id=f"certified.below-card.sigma_{key(s.sigma)}.l2_{key(radius)}",
            severity=Severity.HIGH,
            title=f"Certified accuracy at L2 radius {radius:g} (sigma {s.sigma:g}) is "
                  f"{r.value:.1%}, below the card's {claimed:.1%}",
            detail=(f"The card claims {claimed:.1%} ({name}) but CERTIFY on {r.n} samples "
                    f"gives {r.text()}: the claim is above the interval."),
            evidence={"card_key": name, "claimed": claimed, "measured": r.value,
                      "ci_low": r.ci_low, "ci_high": r.ci_high, "sigma": s.sigma,
                      "radius": radius},
            recommendation="Correct the card, or check how the claim was measured (other "
                           "data, a larger alpha, another sigma)."))
    return out


def abstentions(ev: CertifiedEvaluation, p: CertifiedParams) -> list[Finding]:
    """Per sigma: CERTIFY abstaining on more than ``abstain_medium`` (medium) or
    ``abstain_high`` (high) of the samples."""
    out: list[Finding] = []
    for s in ev.sigmas:
        a = s.abstentions
        if a.value <= p.abstain_medium:
            continue
        out.append(Finding(
            id=f"certified.abstentions.sigma_{key(s.sigma)}",
            severity=Severity.HIGH if a.value > p.abstain_high else Severity.MEDIUM,
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
        out.append(Finding(
            id=f"certified.noise-gap.sigma_{key(s.sigma)}", severity=Severity.MEDIUM,
            title=f"Smoothing at sigma {s.sigma:g} costs {gap * 100:.0f} points of accuracy",
            detail=(f"The smoothed classifier's accuracy is {sm.text()} against the base "
                    f"model's {base.text()} on the same {sm.n} samples."),
            evidence={"sigma": s.sigma, "smoothed_accuracy": sm.value,
                      "base_accuracy": base.value, "gap": gap},
            recommendation=f"Train with Gaussian data augmentation at this noise level "
                           f"(audit harden MODEL --method smoothing --sigma {s.sigma:g})."))
    return out
