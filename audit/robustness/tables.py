"""Tables of the robustness check, each from a :class:`RobustnessEvaluation` alone."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from audit.result import Table
from audit.robustness.base import AttackResult
from audit.robustness.corruptions import CORRUPTIONS
from audit.robustness.evaluate import AttackStats, Curve
from audit.robustness.evaluation import Gallery, RobustnessEvaluation
from audit.robustness.ops import NORM_LABEL

__all__ = ["attack_table", "corruption_table", "cost_table", "curve_table",
           "diagnostics_table", "gallery_table", "skipped_table"]


def _r(v: float | None) -> float | None:
    """Rounded to 4 digits; None for a missing or NaN value."""
    return None if v is None or math.isnan(v) else round(v, 4)


def curve_table(ev: RobustnessEvaluation) -> Table:
    rows: list[list[Any]] = [[NORM_LABEL[nm], e, round(c.robust_accuracy(e), 4),
             round(c.robust_accuracy(e, "minimal"), 4), c.attacked[e], c.confirmed[e]]
            for nm, c in ev.curves.items() for e in c.eps]
    return Table(
        id="robustness-curve", title="Robust accuracy by epsilon",
        columns=["norm", "eps", "robust accuracy (worst case)", "minimal attack only",
                 "samples attacked at eps", "broken by bounded attacks"],
        rows=rows,
        caption="Worst case: no attack of the curve or of the suite found an adversarial "
                "within eps. Minimal attack only: FMN's smallest perturbation exceeds eps. "
                "The bounded attacks (APGD) run only on the samples near each eps that the "
                "curve still counts as robust.")


def _suite_row(r: AttackResult, norm: str) -> list[Any]:
    """Minimal-perturbation attacks: median of their unbounded norms; others: of successes."""
    found = r.info.get("minimal_norms")
    med_src = found[torch.isfinite(found)] if found is not None else r.norms[r.success]
    med = float(med_src.median()) if len(med_src) else None
    return [r.name, r.kind, NORM_LABEL[norm], r.eps, len(r), round(r.success_rate, 4),
            _r(med), round(r.time, 2), r.evaluations]


def _escalated_row(r: AttackResult, norm: str) -> list[Any]:
    med = float(r.norms[r.success].median()) if bool(r.success.any()) else None
    return [r.name, r.kind, NORM_LABEL[norm], r.eps, len(r), round(r.success_rate, 4), _r(med),
            round(r.time, 2), r.evaluations]


def _stats_row(st: AttackStats, norm: str, name: str, eps: str) -> list[Any]:
    return [name, st.kind, NORM_LABEL[norm], eps, st.samples,
            round(st.success_rate, 4) if st.samples else None, _r(st.median_norm),
            round(st.time, 2), st.evaluations]


def _curve_stats(c: Curve) -> list[AttackStats]:
    """The curve's attacks, totals joined per name (one APGD row over every eps)."""
    merged: dict[str, AttackStats] = {}
    for st in c.stats.values():
        m = merged.setdefault(st.name, AttackStats(st.name, st.kind, st.norm, None,
                                                   role=st.role))
        m.samples += st.samples
        m.successes += st.successes
        m.time += st.time
        m.evaluations += st.evaluations
        m.norms += st.norms
    return list(merged.values())


def attack_table(ev: RobustnessEvaluation) -> Table:
    """Suite rows, escalation rows, then the curve's attacks."""
    rows = [_suite_row(r, nm) for nm, res in ev.suites.items() for r in res]
    rows += [_stats_row(st, nm, st.name, "each eps") for nm, st in ev.escalation_stats]
    rows += [_escalated_row(r, nm) for nm, esc in ev.escalated.items() for r in esc]
    rows += [_stats_row(m, nm, f"{m.name} (curve)",
                        "none" if m.role == "minimal-norm" else "each eps")
             for nm, c in ev.curves.items() for m in _curve_stats(c)]
    return Table(
        id="robustness-attacks", title="Attacks",
        columns=["attack", "kind", "norm", "eps", "samples", "success rate",
                 "median norm", "time (s)", "model evaluations"],
        rows=rows,
        caption="Suite rows: every attack on the same correctly classified samples at the "
                "headline eps (minimal-perturbation attacks: success within eps; median "
                "norm of their unbounded minimal perturbations). Curve rows: FMN on every "
                "correctly classified sample, APGD on the samples attacked at each eps.")


def diagnostics_table(ev: RobustnessEvaluation) -> Table:
    return Table(
        id="robustness-diagnostics", title="Gradient-masking diagnostics",
        columns=["diagnostic", "norm", "value", "threshold", "triggered", "detail"],
        rows=[[d.title, NORM_LABEL.get(d.norm, d.norm), _r(d.value), d.threshold,
               ("yes" if d.triggered else "no") if d.evaluated else "not judged", d.detail]
              for d in ev.diagnostics],
        caption="Each row tests the evaluation itself; a triggered row means the "
                "attacks may be fooled and the robust accuracy is likely overstated.")


def corruption_table(ev: RobustnessEvaluation) -> Table:
    clean = round(ev.clean_accuracy, 4)
    return Table(
        id="robustness-corruptions", title="Accuracy under common corruptions",
        columns=["corruption", "clean", *[f"severity {v}" for v in ev.severities], "mean"],
        rows=[[CORRUPTIONS[k].title, clean, *[round(a, 4) for a in v],
               round(float(np.mean(v)), 4)] for k, v in ev.corruptions.items()],
        caption="Hendrycks & Dietterich (2019) corruptions with the CIFAR-10-C "
                "parameters, applied to every evaluated sample.")


def cost_table(ev: RobustnessEvaluation) -> Table:
    return Table(
        id="robustness-cost", title="Cost of this check",
        columns=["stage", "model evaluations", "time (s)"],
        rows=[[st.name, st.evaluations, round(st.seconds, 2)] for st in ev.stages],
        caption="Model evaluations are per-sample forward passes (a forward and backward "
                "pass counts once).")


def skipped_table(ev: RobustnessEvaluation) -> Table:
    return Table(id="robustness-skipped", title="Attacks and corruptions not run",
                 columns=["what", "reason"], rows=[[a, r] for a, r in ev.skipped])


def gallery_table(g: Gallery) -> Table:
    """Tabular inputs: the three largest feature changes of each adversarial example."""
    rows: list[list[Any]] = []
    for j in range(len(g)):
        clean, adv = g.clean[j].flatten(), g.adv[j].flatten()
        d = adv - clean
        top = torch.argsort(d.abs(), descending=True)[:3].tolist()
        changes = "; ".join(f"{g.features[i]} {float(clean[i]):.3g}→{float(adv[i]):.3g}"
                            for i in top if d[i] != 0)
        c_lab, c_conf = g.label(g.proba_clean[j])
        a_lab, a_conf = g.label(g.proba_adv[j])
        rows.append([f"{c_lab} ({c_conf:.0%})", f"{a_lab} ({a_conf:.0%})", g.attacks[j],
                     changes])
    return Table(id="robustness-gallery", title="Adversarial examples (largest changes)",
                 columns=["clean prediction", "adversarial prediction", "attack",
                          "largest feature changes"], rows=rows)
