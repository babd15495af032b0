"""Turn a :class:`RobustnessEvaluation` into the report section: metrics, findings, tables,
figures, a one-paragraph summary and the reading (how the numbers were measured)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from audit.result import Figure, Section, Table
from audit.robustness.evaluation import RobustnessEvaluation
from audit.robustness.figures import corruption_figure, curve_figure, gallery_figure
from audit.robustness.findings import robustness_findings
from audit.robustness.ops import NORM_LABEL
from audit.robustness.params import RobustnessParams, eps_key
from audit.robustness.tables import (
    attack_table,
    autoattack_disagreement,
    autoattack_table,
    corruption_table,
    cost_table,
    curve_table,
    diagnostics_table,
    gallery_table,
    rate_interval,
    skipped_table,
    trust_table,
)
from audit.stats import clopper_pearson, outcomes_block

__all__ = ["metrics", "outcomes", "rate_interval", "reading", "robustness_section",
           "summary"]


def robustness_section(ev: RobustnessEvaluation, p: RobustnessParams, *, check: str,
                       title: str) -> Section:
    """The whole section of the ``robustness`` check."""
    return Section(check=check, title=title, summary=summary(ev), reading=reading(ev, p),
                   metrics=metrics(ev), findings=robustness_findings(ev, p),
                   figures=_figures(ev), tables=_tables(ev, p), params=p.recorded(),
                   outcomes=outcomes(ev))


def _with_ci(out: dict[str, float], name: str, rate: float, n: int,
             k: float | None = None) -> None:
    """``name`` and its interval (``name_ci_low``, ``name_ci_high``); ``k`` a fractional
    count (a mean of per-sample scores in [0, 1] times n)."""
    out[name] = rate
    lo, hi = rate_interval(rate, n) if k is None else clopper_pearson(k, n)
    out[f"{name}_ci_low"], out[f"{name}_ci_high"] = lo, hi


def metrics(ev: RobustnessEvaluation) -> dict[str, float]:
    """Clean and robust accuracies with their exact 95% intervals (``_ci_low``,
    ``_ci_high``), median minimal perturbations, corruption accuracies (mean over severities,
    with an interval), robust accuracies of other protocols when measured, whether the
    evaluation is unreliable, and its cost."""
    n = ev.samples
    out: dict[str, float] = {}
    _with_ci(out, "clean_accuracy", ev.clean_accuracy, n)
    out["samples"] = float(n)
    for nm, c in ev.curves.items():
        for e in c.eps:
            _with_ci(out, f"robust_accuracy_{nm}_{eps_key(e)}", c.robust_accuracy(e), n)
        finite = c.worst[np.isfinite(c.worst)]
        out[f"median_min_perturbation_{nm}"] = float(np.median(c.worst)) \
            if len(finite) == len(c.worst) else math.nan
    for pr in ev.protocols:
        _with_ci(out, f"robust_accuracy_{pr.key}_{pr.norm}_{eps_key(pr.eps)}", pr.accuracy,
                 pr.samples)
    for name, accs in ev.corruptions.items():
        mean = float(np.mean(accs))
        # each sample's share of correct severities lies in [0, 1], so its variance is at most
        # mean (1 - mean): the binomial interval on n samples does not understate the mean's
        _with_ci(out, f"corruption_accuracy_{name}", mean, n, k=mean * n)
    out["unreliable"] = float(bool(ev.triggered))
    out["model_evaluations"] = float(ev.evaluations)
    return out


def outcomes(ev: RobustnessEvaluation) -> dict[str, Any]:
    """Per-sample successes of the clean accuracy and of every robust accuracy (and of other
    protocols' when recorded), for paired comparisons; empty when the evaluation does not
    know its samples."""
    if ev.correct is None or ev.indices is None or not ev.data_sha256:
        return {}
    rates: dict[str, np.ndarray] = {"clean_accuracy": ev.correct}
    for nm, c in ev.curves.items():
        for e in c.eps:
            rates[f"robust_accuracy_{nm}_{eps_key(e)}"] = c.worst > e
    for pr in ev.protocols:
        if pr.correct is not None and len(pr.correct) == len(ev.indices):
            rates[f"robust_accuracy_{pr.key}_{pr.norm}_{eps_key(pr.eps)}"] = pr.correct
    return outcomes_block(ev.data_sha256, ev.data_size, ev.indices, rates)


def _tables(ev: RobustnessEvaluation, p: RobustnessParams) -> list[Table]:
    tables = [trust_table(ev, p), curve_table(ev), attack_table(ev)]
    if ev.autoattack:
        tables.append(autoattack_table(ev))
    if ev.diagnostics:
        tables.append(diagnostics_table(ev))
    if ev.corruptions:
        tables.append(corruption_table(ev))
    tables.append(cost_table(ev))
    if ev.skipped:
        tables.append(skipped_table(ev))
    if ev.gallery is not None and not ev.gallery.image:
        tables.append(gallery_table(ev.gallery))
    return tables


def _figures(ev: RobustnessEvaluation) -> list[Figure]:
    figures = []
    if ev.curves:
        figures.append(curve_figure(ev.curves, ev.clean_accuracy))
    if ev.gallery is not None and ev.gallery.image:
        figures.append(gallery_figure(ev.gallery, ev.bounds))
    if ev.corruptions:
        figures.append(corruption_figure(ev.corruptions, ev.severities, ev.clean_accuracy,
                                         ev.samples))
    return figures


def summary(ev: RobustnessEvaluation) -> str:
    """Clean accuracy, the headline robust accuracies and whether the evaluation is reliable."""
    parts = [f"{NORM_LABEL[nm]} eps {ev.headline[nm]:g}: "
             f"{_rate_ci(c.robust_accuracy(ev.headline[nm]), ev.samples)}"
             for nm, c in ev.curves.items()]
    attacks = sum(len(v) for v in ev.suites.values()) + sum(
        len({st.name for st in c.stats.values()}) for c in ev.curves.values()) + sum(
        len(v) for v in ev.escalated.values())
    text = (f"Clean accuracy {_rate_ci(ev.clean_accuracy, ev.samples)} on {ev.samples} "
            "samples; worst-case robust "
            f"accuracy {'; '.join(parts)} (over {attacks} attack runs). ")
    text += _autoattack_summary(ev)
    triggered = ev.triggered
    if not triggered:
        return text + "No gradient-masking diagnostic triggered."
    text += ("The evaluation is unreliable: " + ", ".join(
        sorted({d.title.lower() for d in triggered})) + ".")
    if ev.escalated:
        text += (" Escalated attacks ran on every sample still counted robust (DLR "
                 "loss at every eps; gradient-free at " + ", ".join(
                     f"{NORM_LABEL[nm]} eps {ev.headline[nm]:g}" for nm in ev.escalated)
                 + ").")
    return text


def _autoattack_summary(ev: RobustnessEvaluation) -> str:
    """AutoAttack's robust accuracies and how they compare (empty when it did not run)."""
    parts = []
    for res in ev.autoattack:
        diff = autoattack_disagreement(ev, res)
        more = (f", {diff[0]} sample{'' if diff[0] == 1 else 's'} broken that this tool's "
                "worst case counts as robust" if diff is not None and diff[0] else "")
        parts.append(f"{NORM_LABEL[res.norm]} eps {res.eps:g}: "
                     f"{_rate_ci(res.robust_accuracy, res.samples)}{more}")
    return f"AutoAttack (standard): {'; '.join(parts)}. " if parts else ""


def _autoattack_reading(ev: RobustnessEvaluation) -> str:
    """How the AutoAttack numbers were measured (empty when it did not run)."""
    if not ev.autoattack:
        return ""
    seeds = ", ".join(str(s) for s in sorted({res.seed for res in ev.autoattack}))
    return (
        " AutoAttack: with protocol = \"autoattack\" the standard protocol of Croce & Hein "
        "(2020) also ran on every evaluated sample, as RobustBench runs it: APGD-CE, APGD-T, "
        "FAB-T and Square with 5000 queries, each on the samples the earlier ones left "
        f"robust, seeded with the run's seed ({seeds}); this tool's implementation draws "
        "its random numbers as the reference code does, so pyautoattack's "
        "run_standard_evaluation with that seed on the same samples gives the same robust "
        "accuracy (metrics robust_accuracy_autoattack_<norm>_<eps>). It is reported beside "
        "this tool's worst case, not merged into it: where AutoAttack broke samples the "
        "worst case counts as robust, the lower number is the one to cite.")


def _rate_ci(rate: float, n: int) -> str:
    """``62.2% (95% CI 57.0-67.2%)``."""
    lo, hi = rate_interval(rate, n)
    return f"{rate:.1%} (95% CI {lo:.1%}–{hi:.1%})" if math.isfinite(lo) else f"{rate:.1%}"


def reading(ev: RobustnessEvaluation, p: RobustnessParams) -> str:
    """How to read the numbers: what robust accuracy means and how it was measured."""
    tabular = ("" if ev.kind == "image" else
               " Tabular inputs are perturbed as continuous values in the encoded space "
               "(one-hot columns can take fractional values), so the numbers bound what an "
               "attacker who controls the encoded features can do, not only valid records.")
    lo, hi = ev.bounds
    units = (f"given as fractions of the range and multiplied by its width {hi - lo:g}"
             if ev.eps_units == "range" else "in the card's units")
    return (
        "Robust accuracy at eps is the share of samples for which no attack found an "
        "input within eps (L-inf: largest change of one value; L2: Euclidean length, in "
        f"the card's value range {lo:g} to {hi:g}; epsilons {units}) that changes the "
        "prediction; misclassified samples count as not robust. Each attack may use "
        f"{p.attack_evaluations} forward passes per sample in one call and "
        f"{p.attack_seconds:g} s in all; one that reaches either stops, keeps the "
        "adversarials it had seen and is marked in the attack table. Every attack-based number "
        "is an upper bound on the true robust accuracy. Curves: FMN, a minimal-"
        f"perturbation attack ({p.minimal_steps} steps), gives each sample the smallest "
        "adversarial perturbation it finds, which draws the whole curve at once (dashed); "
        f"then APGD-CE ({p.bounded_restarts_ce} random restarts) and APGD-DLR "
        f"({p.bounded_restarts_dlr}) of {p.bounded_steps} steps each attack every sample "
        "at the largest reported eps below its perturbation (samples they cannot break "
        "there are not attacked again at smaller eps), and the suite of attacks on "
        f"{p.suite_samples} samples at the headline eps adds its finds (solid: per-sample "
        "worst case over all attacks). The attack table lists each attack's success rate "
        "on the suite samples (correctly classified), median perturbation of its "
        "successes, time and model evaluations (per-sample forward passes). The "
        "diagnostics test the attacks themselves: if one triggers (single-step beats "
        "iterative, iterations do not raise the loss, unbounded attacks do not reach 0% "
        "accuracy, black-box beats white-box, flat or noisy loss), the model may be "
        "masking gradients and the numbers are likely overstated. Corruptions: accuracy "
        "under Gaussian noise, blur, contrast and brightness at severities 1-5 "
        "(Hendrycks & Dietterich). Intervals: every rate (clean, robust, corruption "
        "accuracy) carries an exact Clopper-Pearson 95% interval (metrics ending in _ci_low "
        "and _ci_high; the band around the solid curve). It covers the sampling noise of "
        "which samples were drawn, not the strength of the attacks: a stronger attack can "
        "only lower the robust accuracy. The per-sample outcomes of the clean and robust "
        "accuracies are recorded in the result (outcomes), so that audit diff can compare "
        "two models on the same samples with McNemar's exact test."
        + _autoattack_reading(ev) + tabular)
