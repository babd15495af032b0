"""Tables of the robustness check, each from a :class:`RobustnessEvaluation` alone."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from audit.result import Table
from audit.robustness.autoattack import AutoAttackResult
from audit.robustness.base import AttackResult
from audit.robustness.corruptions import CORRUPTIONS
from audit.robustness.evaluate import AttackStats, Curve
from audit.robustness.evaluation import Gallery, RobustnessEvaluation
from audit.robustness.ops import NORM_LABEL
from audit.robustness.params import RobustnessParams
from audit.stats import clopper_pearson, samples_for_halfwidth

__all__ = ["attack_table", "autoattack_disagreement", "autoattack_table", "corruption_table",
           "cost_table", "curve_table", "diagnostics_table", "gallery_table", "rate_interval",
           "skipped_table", "trust_table"]


def rate_interval(rate: float, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95% interval of a share ``rate`` of ``n`` samples."""
    if not math.isfinite(rate) or n <= 0:
        return (math.nan, math.nan)
    return clopper_pearson(round(rate * n), n)


def _ci_cells(rate: float, n: int) -> list[Any]:
    lo, hi = rate_interval(rate, n)
    return [_r(lo), _r(hi)]


def _needed(rate: float) -> int | None:
    """Samples for a +-1 point exact interval at ``rate``."""
    return samples_for_halfwidth(rate, 0.01) if math.isfinite(rate) else None


def _r(v: float | None) -> float | None:
    """Rounded to 4 digits; None for a missing or NaN value."""
    return None if v is None or math.isnan(v) else round(v, 4)


def curve_table(ev: RobustnessEvaluation) -> Table:
    rows: list[list[Any]] = [[NORM_LABEL[nm], e, round(c.robust_accuracy(e), 4),
             round(c.robust_accuracy(e, "minimal"), 4), c.attacked[e], c.confirmed[e],
             *_ci_cells(c.robust_accuracy(e), ev.samples), _needed(c.robust_accuracy(e))]
            for nm, c in ev.curves.items() for e in c.eps]
    return Table(
        id="robustness-curve", title="Robust accuracy by epsilon",
        columns=["norm", "eps", "robust accuracy (worst case)", "minimal attack only",
                 "samples attacked at eps", "broken by bounded attacks", "95% CI low",
                 "95% CI high", "samples for ±1 point"],
        rows=rows,
        caption="Worst case: no attack of the curve or of the suite found an adversarial "
                "within eps. Minimal attack only: FMN's smallest perturbation exceeds eps. "
                "The bounded attacks (APGD) run only on the samples near each eps that the "
                "curve still counts as robust. 95% CI: exact Clopper-Pearson interval of the "
                f"worst case on the {ev.samples} samples; samples for ±1 point: how many "
                "samples an exact interval of at most ±1 point at that rate needs.")


def _suite_row(r: AttackResult, norm: str) -> list[Any]:
    """Minimal-perturbation attacks: median of their unbounded norms; others: of successes."""
    found = r.info.get("minimal_norms")
    med_src = found[torch.isfinite(found)] if found is not None else r.norms[r.success]
    med = float(med_src.median()) if len(med_src) else None
    return [_named(r.name, r.stopped), r.kind, NORM_LABEL[norm], r.eps, len(r),
            round(r.success_rate, 4), _r(med), round(r.time, 2), r.evaluations]


def _named(name: str, stopped: str) -> str:
    """The attack's name, marked when its budget stopped it."""
    return f"{name} (stopped: {stopped} budget)" if stopped else name


def _escalated_row(r: AttackResult, norm: str) -> list[Any]:
    med = float(r.norms[r.success].median()) if bool(r.success.any()) else None
    return [_named(r.name, r.stopped), r.kind, NORM_LABEL[norm], r.eps, len(r),
            round(r.success_rate, 4), _r(med), round(r.time, 2), r.evaluations]


def _stats_row(st: AttackStats, norm: str, name: str, eps: str) -> list[Any]:
    return [_named(name, st.stopped), st.kind, NORM_LABEL[norm], eps, st.samples,
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
        m.unfinished += st.unfinished
        m.stopped = m.stopped or st.stopped
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
        columns=["corruption", "clean", *[f"severity {v}" for v in ev.severities], "mean",
                 "mean 95% CI low", "mean 95% CI high"],
        rows=[[CORRUPTIONS[k].title, clean, *[round(a, 4) for a in v],
               round(float(np.mean(v)), 4),
               *[_r(b) for b in clopper_pearson(float(np.mean(v)) * ev.samples, ev.samples)]]
              for k, v in ev.corruptions.items()],
        caption="Hendrycks & Dietterich (2019) corruptions with the CIFAR-10-C "
                "parameters, applied to every evaluated sample. Each accuracy is a share of "
                f"the {ev.samples} samples; its exact 95% interval is at most "
                f"±{_widest(ev) * 100:.1f} points (the figure draws them). Mean: over the "
                "severities, with an exact interval on the samples (each sample's share of "
                "correct severities is in [0, 1], so the binomial interval does not "
                "understate it).")


def _widest(ev: RobustnessEvaluation) -> float:
    """The largest half-width of the per-severity corruption intervals."""
    widths = [max(a - lo, hi - a) for v in ev.corruptions.values() for a in v
              for lo, hi in [rate_interval(a, ev.samples)] if math.isfinite(lo)]
    return max(widths, default=0.0)


def autoattack_disagreement(ev: RobustnessEvaluation, res: AutoAttackResult
                            ) -> tuple[int, int] | None:
    """(samples AutoAttack broke that this tool's worst case counts as robust, samples this
    tool broke that AutoAttack left robust) at the result's eps; None without that curve."""
    c = ev.curves.get(res.norm)
    if c is None or len(c.worst) != len(res.robust):
        return None
    ours = c.worst > res.eps
    return int((ours & ~res.robust).sum()), int((~ours & res.robust).sum())


def _samples(k: int) -> str:
    return f"{k} sample" if k == 1 else f"{k} samples"


def autoattack_table(ev: RobustnessEvaluation) -> Table:
    """One row per stage of AutoAttack's standard protocol (after the clean pass): samples
    attacked (still robust) and broken, robust accuracy after the stage with its interval."""
    rows: list[list[Any]] = []
    notes: list[str] = []
    for res in ev.autoattack:
        label, n = NORM_LABEL[res.norm], res.samples
        left = res.clean_correct
        rows.append([label, res.eps, "clean (misclassified)", n, n - left, _r(left / n),
                     *_ci_cells(left / n, n), None, n])
        for st in res.stages:
            left -= st.broken
            rows.append([label, res.eps, st.attack, st.attacked, st.broken, _r(left / n),
                         *_ci_cells(left / n, n), round(st.time, 2), st.evaluations])
        diff = autoattack_disagreement(ev, res)
        if diff is not None:
            notes.append(f"{label} eps {res.eps:g}: AutoAttack broke {_samples(diff[0])} "
                         f"this tool's worst case counts as robust, this tool broke "
                         f"{_samples(diff[1])} that AutoAttack left robust")
    seeds = sorted({res.seed for res in ev.autoattack})
    return Table(
        id="robustness-autoattack", title="AutoAttack (standard protocol)",
        columns=["norm", "eps", "stage", "samples attacked", "broken",
                 "robust accuracy after", "95% CI low", "95% CI high", "time (s)",
                 "model evaluations"],
        rows=rows,
        caption="AutoAttack's standard protocol (Croce & Hein 2020; version='standard' of "
                "the reference): APGD-CE (100 iterations), APGD-T (100 iterations per "
                "target, the 9 most likely other classes or all of them with fewer "
                "classes), FAB-T (9 targets, 100 iterations), Square (5000 queries), each "
                "on the samples every earlier stage left robust, seed "
                f"{', '.join(map(str, seeds))}. The last row of each eps is the protocol's "
                "robust accuracy, comparable with leaderboard entries; it is not merged "
                "into this tool's worst case." + (" " + "; ".join(notes) + "." if notes
                                                   else ""))


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


def _pct(rate: float, n: int) -> str:
    """``62.2% (95% CI 57.0–67.2%)``."""
    lo, hi = rate_interval(rate, n)
    if not math.isfinite(lo):
        return f"{rate:.1%}"
    return f"{rate:.1%} (95% CI {lo:.1%}–{hi:.1%})"


def _half(rate: float, n: int) -> float:
    lo, hi = rate_interval(rate, n)
    return max(rate - lo, hi - rate) if math.isfinite(lo) else math.nan


def _interval_answer(ev: RobustnessEvaluation) -> str:
    n = ev.samples
    heads = [(f"{NORM_LABEL[nm]} eps {ev.headline[nm]:g}", c.robust_accuracy(ev.headline[nm]))
             for nm, c in ev.curves.items()]
    rates = [("clean accuracy", ev.clean_accuracy), *heads]
    said = "; ".join(f"{name} {_pct(r, n)}" for name, r in rates)
    widest = max((_half(r, n) for _, r in rates if math.isfinite(_half(r, n))), default=0.0)
    need = ", ".join(f"{name} {samples_for_halfwidth(r, 0.01):,}" for name, r in rates
                     if math.isfinite(r))
    return (f"{said}. Exact (Clopper-Pearson) 95% intervals: with {n} samples a rate here "
            f"is known to within about ±{widest * 100:.1f} points. For ±1 point at the "
            f"observed rates you would need about: {need} samples.")


def _protocol_answer(ev: RobustnessEvaluation, p: RobustnessParams) -> str:
    suite = sum(len(v) for v in ev.suites.values())
    norms = ", ".join(NORM_LABEL[nm] for nm in ev.curves) or "no norm"
    ours = (f"This tool's own suite ({norms}): FMN minimal perturbations and APGD-CE "
            f"({p.bounded_restarts_ce} restarts) / APGD-DLR ({p.bounded_restarts_dlr}) on "
            f"every sample at every eps, plus {suite} attack runs on up to "
            f"{p.suite_samples} samples at the headline eps, worst case per sample. ")
    if ev.protocols:
        other = ("AutoAttack's standard protocol also ran (rows below): those numbers are "
                 "comparable with leaderboard (RobustBench) entries. ")
    else:
        other = ("It is not AutoAttack's standard protocol, so the numbers are not directly "
                 "comparable with leaderboard (RobustBench) entries (--protocol autoattack "
                 "adds them). ")
    return (ours + other + "Every attack-based number is an upper bound: a stronger attack "
            "can only lower it.")


def _diagnostics_answer(ev: RobustnessEvaluation) -> str:
    if not ev.diagnostics:
        return ("Not run (no correctly classified sample for the suite): nothing checks "
                "whether the attacks were fooled.")
    triggered = ev.triggered
    if not triggered:
        judged = sum(d.evaluated for d in ev.diagnostics)
        return (f"No gradient-masking diagnostic triggered ({judged} of "
                f"{len(ev.diagnostics)} judged): nothing suggests the attacks were fooled.")
    names = ", ".join(sorted({d.title.lower() for d in triggered}))
    esc = (" Escalated attacks (DLR loss, gradient-free) ran and their finds are included."
           if ev.escalated else "")
    return (f"Unreliable: {names}. The model may be masking gradients, so the robust "
            f"accuracies are likely overstated (see the robustness.unreliable finding).{esc}")


def _bottom_line(ev: RobustnessEvaluation) -> str:
    if ev.triggered:
        return ("Do not cite these robust accuracies as the model's robustness: the "
                "diagnostics say the attacks may be fooled. Cite the clean accuracy with its "
                "interval, and re-evaluate with adaptive attacks.")
    heads = [f"{NORM_LABEL[nm]} eps {ev.headline[nm]:g}: "
             f"{_pct(c.robust_accuracy(ev.headline[nm]), ev.samples)}"
             for nm, c in ev.curves.items()]
    if not heads:
        return "No robust accuracy was measured (no epsilon)."
    lower = [f"{pr.title} {NORM_LABEL[pr.norm]} eps {pr.eps:g}: "
             f"{_pct(pr.accuracy, pr.samples)}" for pr in ev.protocols
             if pr.accuracy < ev.curves[pr.norm].robust_accuracy(pr.eps)] \
        if ev.protocols else []
    cite = ("Cite as " + "; ".join(heads) + f" on {ev.samples} samples, against this suite. "
            "The true robust accuracy on data like this may be lower than the interval "
            "(stronger attacks), not higher.")
    if lower:
        cite += (" Another protocol found more adversarial examples: cite the lower number, "
                 + "; ".join(lower) + ".")
    return cite


def trust_table(ev: RobustnessEvaluation, p: RobustnessParams) -> Table:
    """The "how far to trust these numbers" box: interval and sample count, attack protocol,
    the diagnostics' verdict, and (only when measured) another protocol's robust accuracy
    and certified lower bounds, in plain language."""
    rows: list[list[Any]] = [
        ["Sampling interval", _interval_answer(ev)],
        ["Samples", f"{ev.samples} samples" + (f" of the {ev.data_size} rows of the data "
                                               "(a seeded random subset)"
                                               if ev.data_size > ev.samples else "")
         + "; misclassified samples count as not robust."],
        ["Attack protocol", _protocol_answer(ev, p)],
        ["Gradient-masking diagnostics", _diagnostics_answer(ev)],
    ]
    for pr in ev.protocols:
        c = ev.curves.get(pr.norm)
        ours = (f"; this suite: {_pct(c.robust_accuracy(pr.eps), ev.samples)}"
                if c is not None and pr.eps in c.eps else "")
        rows.append([pr.title, f"{NORM_LABEL[pr.norm]} eps {pr.eps:g}: "
                               f"{_pct(pr.accuracy, pr.samples)} on {pr.samples} samples{ours}."])
    for cb in ev.certified:
        rows.append(["Certified lower bound",
                     f"L2 radius {cb.radius:g}: {_pct(cb.accuracy, cb.samples)} of "
                     f"{cb.samples} samples certified correct (randomized smoothing, sigma "
                     f"{cb.sigma:g}; each certificate holds with probability at least "
                     f"{1 - cb.alpha:g}). A guarantee for the smoothed classifier, unlike "
                     "the attack numbers above, which are upper bounds."])
    rows.append(["Bottom line", _bottom_line(ev)])
    return Table(
        id="robustness-trust", title="How far to trust these numbers", columns=["", "answer"],
        rows=rows,
        caption="Intervals cover the sampling noise (which samples were drawn); they do not "
                "cover the attacks' strength. Other protocols and certified bounds are shown "
                "when they were measured.")
