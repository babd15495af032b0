"""Turn a :class:`CertifiedEvaluation` into the report section: metrics (every rate with its
Clopper-Pearson 95% interval), tables, the figure, a summary and the reading."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from audit.certified.evaluation import CertifiedEvaluation
from audit.certified.figures import curve_figure, radius_grid
from audit.certified.findings import certified_findings
from audit.certified.params import CertifiedParams, key
from audit.certified.smoothing import ABSTAIN
from audit.result import Section, Table
from audit.stats import outcomes_block

__all__ = ["certified_section", "metrics", "outcomes", "reading", "summary"]


def certified_section(ev: CertifiedEvaluation, p: CertifiedParams, *, check: str,
                      title: str) -> Section:
    """The whole section of the ``certified`` check."""
    return Section(check=check, title=title, summary=summary(ev), reading=reading(ev, p),
                   metrics=metrics(ev), findings=certified_findings(ev, p),
                   figures=[curve_figure(ev)] if ev.sigmas else [],
                   tables=[radius_table(ev), curve_table(ev, p), classifier_table(ev)],
                   params=asdict(p), outcomes=outcomes(ev))


def metrics(ev: CertifiedEvaluation) -> dict[str, float]:
    """Per sigma ``s`` and radius ``r``: ``certified_accuracy_sigma_<s>_l2_<r>``,
    ``smoothed_accuracy_sigma_<s>``, ``abstention_rate_sigma_<s>`` (CERTIFY) and
    ``predict_abstention_rate_sigma_<s>`` (each with ``_ci_low``/``_ci_high``),
    ``max_certifiable_radius_sigma_<s>``; ``certified_accuracy_l2_<r>`` is the best sigma's at
    ``r`` (``best_sigma_l2_<r>`` names it); ``base_accuracy`` (no noise) on the same samples."""
    out: dict[str, float] = {"samples": float(ev.samples), **ev.base_accuracy.metrics(
        "base_accuracy")}
    for s in ev.sigmas:
        sk = f"sigma_{key(s.sigma)}"
        out.update(s.smoothed_accuracy.metrics(f"smoothed_accuracy_{sk}"))
        out.update(s.abstentions.metrics(f"abstention_rate_{sk}"))
        out.update(s.predict_abstentions.metrics(f"predict_abstention_rate_{sk}"))
        for r in ev.radii:
            out.update(s.certified_accuracy(r).metrics(f"certified_accuracy_{sk}_l2_{key(r)}"))
        out[f"max_certifiable_radius_{sk}"] = s.max_radius
    if ev.sigmas:
        for r in ev.radii:
            best = ev.best(r)
            out.update(best.certified_accuracy(r).metrics(f"certified_accuracy_l2_{key(r)}"))
            out[f"best_sigma_l2_{key(r)}"] = best.sigma
    out["model_evaluations"] = float(sum(s.forwards for s in ev.sigmas))
    return out


def outcomes(ev: CertifiedEvaluation) -> dict[str, Any]:
    """Per-sample successes of every rate in :func:`metrics` (base, smoothed and certified
    accuracies, abstentions), so that two models certified on the same samples are compared
    with a paired test; empty when the evaluation does not know its samples."""
    if ev.indices is None or not ev.data_sha256:
        return {}
    rates: dict[str, np.ndarray] = {"base_accuracy": ev.base_correct}
    for s in ev.sigmas:
        sk = f"sigma_{key(s.sigma)}"
        rates[f"smoothed_accuracy_{sk}"] = s.predict == s.y
        rates[f"abstention_rate_{sk}"] = s.prediction == ABSTAIN
        rates[f"predict_abstention_rate_{sk}"] = s.predict == ABSTAIN
        for r in ev.radii:
            rates[f"certified_accuracy_{sk}_l2_{key(r)}"] = s.certified(r)
    for r in ev.radii if ev.sigmas else []:
        rates[f"certified_accuracy_l2_{key(r)}"] = ev.best(r).certified(r)
    return outcomes_block(ev.data_sha256, ev.data_size, ev.indices, rates)


def radius_table(ev: CertifiedEvaluation) -> Table:
    """Certified accuracy with its interval at each reported radius, per sigma."""
    rows: list[list[str | int | float | bool | None]] = []
    for s in ev.sigmas:
        for r in ev.radii:
            a = s.certified_accuracy(r)
            rows.append([s.sigma, r, round(a.value, 4), round(a.ci_low, 4), round(a.ci_high, 4),
                         a.k, a.n, r <= s.max_radius])
    return Table(id="certified-radii", title="Certified accuracy at the reported radii",
                 columns=["sigma", "L2 radius", "certified accuracy", "95% CI low",
                          "95% CI high", "certified", "samples", "within budget"],
                 rows=rows,
                 caption="Share of samples certified with the true class at L2 radius at "
                         "least r (input units); abstentions count as wrong. 'within budget' "
                         "is false where r exceeds the largest radius the sampling budget can "
                         "certify (the accuracy there is 0 by construction).")


def curve_table(ev: CertifiedEvaluation, p: CertifiedParams) -> Table:
    """The whole curve: certified accuracy (and interval) on a grid of radii, per sigma."""
    grid = radius_grid(ev, p.curve_points)
    rows: list[list[str | int | float | bool | None]] = []
    for s in ev.sigmas:
        for r in grid:
            a = s.certified_accuracy(float(r))
            rows.append([s.sigma, round(float(r), 4), round(a.value, 4), round(a.ci_low, 4),
                         round(a.ci_high, 4)])
    return Table(id="certified-curve", title="Certified accuracy against L2 radius",
                 columns=["sigma", "L2 radius", "certified accuracy", "95% CI low",
                          "95% CI high"], rows=rows,
                 caption="The curve of the figure, on an even grid of radii.")


def classifier_table(ev: CertifiedEvaluation) -> Table:
    """Per sigma: the smoothed classifier's accuracy, abstentions, radii and cost."""
    rows: list[list[str | int | float | bool | None]] = []
    for s in ev.sigmas:
        acc, ab, pab = s.smoothed_accuracy, s.abstentions, s.predict_abstentions
        rows.append([s.sigma, round(acc.value, 4), round(acc.ci_low, 4), round(acc.ci_high, 4),
                     ab.k, round(ab.value, 4), round(ab.ci_low, 4), round(ab.ci_high, 4),
                     pab.k, round(s.median_radius(), 4), round(s.max_radius, 4), s.n0, s.n,
                     s.alpha, s.forwards, round(s.seconds, 2)])
    return Table(id="certified-smoothed", title="The smoothed classifier per sigma",
                 columns=["sigma", "smoothed accuracy", "95% CI low", "95% CI high",
                          "CERTIFY abstentions", "abstention rate", "abstention CI low",
                          "abstention CI high", "PREDICT abstentions", "median radius",
                          "max radius", "n0", "n", "alpha", "model evaluations", "time (s)"],
                 rows=rows,
                 caption="Smoothed accuracy: PREDICT (abstentions count as wrong). Median "
                         "radius: over the samples certified correct. Max radius: sigma * "
                         "Phi^-1 of the lower bound when all n draws agree.")


def summary(ev: CertifiedEvaluation) -> str:
    """Base and smoothed accuracy, certified accuracy at the reported radii, abstentions."""
    text = (f"Randomized smoothing on {ev.samples} samples (base model without noise: "
            f"{ev.base_accuracy.value:.1%}). ")
    for s in ev.sigmas:
        certs = ", ".join(f"r={r:g}: {s.certified_accuracy(r).value:.1%}" for r in ev.radii)
        text += (f"Sigma {s.sigma:g}: smoothed accuracy {s.smoothed_accuracy.text()}; "
                 f"certified accuracy {certs}; CERTIFY abstained on {s.abstentions.k} "
                 f"({s.abstentions.value:.1%}). ")
    return text.strip()


def reading(ev: CertifiedEvaluation, p: CertifiedParams) -> str:
    """How to read the numbers: what a certificate guarantees and how it was computed."""
    lo, hi = ev.bounds
    tabular = ("" if ev.kind == "image" else
               " Tabular inputs are perturbed in the encoded space the model reads (one-hot "
               "columns included), so a certificate covers changes to the encoded values.")
    source = ("the settings' sigmas" if p.sigmas is not None else
              "the card's robustness.smoothing_sigmas")
    return (
        "Randomized smoothing (Cohen, Rosenfeld & Kolter 2019) replaces the model f by the "
        "smoothed classifier g(x) = the class f most often returns on x + N(0, sigma^2 I). "
        "Sigma is in input units (the card's value range "
        f"{lo:g} to {hi:g}); noisy inputs are not clipped. If the top class's probability "
        "under the noise is at least pA > 1/2, g cannot change its prediction within L2 "
        "radius sigma * Phi^-1(pA): a guarantee, not an attack's upper bound. CERTIFY picks "
        f"the top class on n0 = {p.n0} noisy copies per sample, bounds pA below with a "
        f"one-sided Clopper-Pearson bound on n = {p.n} fresh copies, and abstains when the "
        f"bound is below 1/2; each certificate is wrong with probability at most alpha = "
        f"{p.alpha:g}. With n copies no radius above sigma * Phi^-1(alpha^(1/n)) can be "
        "certified (the 'max radius'). Certified accuracy at r is the share of samples "
        "certified with their true class at radius at least r (abstentions count as wrong); "
        "its 95% interval (Clopper-Pearson, over the sample of inputs) says how far the "
        "share on all data may differ. The smoothed accuracy is PREDICT's (the top two "
        f"counts of the n copies separated by a binomial test at level {p.alpha:g}, else "
        f"abstain). Sigmas come from {source}; the sample is a seeded subset of at most "
        f"{p.max_samples} inputs. The headline certified_accuracy_l2_<r> metrics take the "
        "best sigma at each radius, a choice made on this data, so they are slightly "
        "optimistic when several sigmas are certified." + tabular)
