"""Turn a :class:`RobustnessEvaluation` into the report section: metrics, findings, tables,
figures, a one-paragraph summary and the reading (how the numbers were measured)."""

from __future__ import annotations

import math

import numpy as np

from audit.result import Figure, Section, Table
from audit.robustness.evaluation import RobustnessEvaluation
from audit.robustness.figures import corruption_figure, curve_figure, gallery_figure
from audit.robustness.findings import robustness_findings
from audit.robustness.ops import NORM_LABEL
from audit.robustness.params import RobustnessParams, eps_key
from audit.robustness.tables import (
    attack_table,
    corruption_table,
    cost_table,
    curve_table,
    diagnostics_table,
    gallery_table,
    skipped_table,
)

__all__ = ["metrics", "reading", "robustness_section", "summary"]


def robustness_section(ev: RobustnessEvaluation, p: RobustnessParams, *, check: str,
                       title: str) -> Section:
    """The whole section of the ``robustness`` check."""
    return Section(check=check, title=title, summary=summary(ev), reading=reading(ev, p),
                   metrics=metrics(ev), findings=robustness_findings(ev, p),
                   figures=_figures(ev), tables=_tables(ev), params=p.recorded())


def metrics(ev: RobustnessEvaluation) -> dict[str, float]:
    """Clean and robust accuracies, median minimal perturbations, corruption accuracies,
    whether the evaluation is unreliable, and its cost."""
    out: dict[str, float] = {"clean_accuracy": ev.clean_accuracy, "samples": float(ev.samples)}
    for nm, c in ev.curves.items():
        for e in c.eps:
            out[f"robust_accuracy_{nm}_{eps_key(e)}"] = c.robust_accuracy(e)
        finite = c.worst[np.isfinite(c.worst)]
        out[f"median_min_perturbation_{nm}"] = float(np.median(c.worst)) \
            if len(finite) == len(c.worst) else math.nan
    for name, accs in ev.corruptions.items():
        out[f"corruption_accuracy_{name}"] = float(np.mean(accs))
    out["unreliable"] = float(bool(ev.triggered))
    out["model_evaluations"] = float(ev.evaluations)
    return out


def _tables(ev: RobustnessEvaluation) -> list[Table]:
    tables = [curve_table(ev), attack_table(ev)]
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
        figures.append(corruption_figure(ev.corruptions, ev.severities, ev.clean_accuracy))
    return figures


def summary(ev: RobustnessEvaluation) -> str:
    """Clean accuracy, the headline robust accuracies and whether the evaluation is reliable."""
    parts = [f"{NORM_LABEL[nm]} eps {ev.headline[nm]:g}: "
             f"{c.robust_accuracy(ev.headline[nm]):.1%}" for nm, c in ev.curves.items()]
    attacks = sum(len(v) for v in ev.suites.values()) + sum(
        len({st.name for st in c.stats.values()}) for c in ev.curves.values()) + sum(
        len(v) for v in ev.escalated.values())
    text = (f"Clean accuracy {ev.clean_accuracy:.1%} on {ev.samples} samples; worst-case robust "
            f"accuracy {'; '.join(parts)} (over {attacks} attack runs). ")
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


def reading(ev: RobustnessEvaluation, p: RobustnessParams) -> str:
    """How to read the numbers: what robust accuracy means and how it was measured."""
    tabular = ("" if ev.kind == "image" else
               " Tabular inputs are perturbed as continuous values in the encoded space "
               "(one-hot columns can take fractional values), so the numbers bound what an "
               "attacker who controls the encoded features can do, not only valid records.")
    lo, hi = ev.bounds
    return (
        "Robust accuracy at eps is the share of samples for which no attack found an "
        "input within eps (L-inf: largest change of one value; L2: Euclidean length, in "
        f"the card's value range {lo:g} to {hi:g}) that changes the "
        "prediction; misclassified samples count as not robust. Every attack-based number "
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
        "(Hendrycks & Dietterich)." + tabular)
