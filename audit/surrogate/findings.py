"""The surrogate check's finding rules: pure functions of a :class:`SurrogateEvaluation` and the
check's settings (unit-tested on hand-built evaluations)."""

from __future__ import annotations

from audit.policy import Category, kind
from audit.result import Finding, Severity
from audit.surrogate.evaluate import FAMILY_TITLE, SurrogateEvaluation, describe
from audit.surrogate.params import SurrogateParams
from audit.surrogate.sweep import Family, Sweep, SweepPoint

UNFAITHFUL = kind("surrogate.unfaithful", Category.METHOD,
                  "No global surrogate reproduces the model well enough to read as its logic: "
                  "a limit of the method (low), not a defect of the model.")
UNFAITHFUL_FAMILY = kind("surrogate.unfaithful.{family}", Category.METHOD,
                         "One surrogate family falls short while the other is faithful.")
SENSITIVE_FEATURE = kind("surrogate.sensitive-feature", Category.DEFECT,
                         "The faithful surrogates split on a sensitive column: the model's "
                         "predictions depend on it.")


def findings(ev: SurrogateEvaluation, p: SurrogateParams) -> list[Finding]:
    """Every finding of the check, in report order."""
    return fidelity_findings(ev, p) + sensitive_findings(ev, p)


def fidelity_findings(ev: SurrogateEvaluation, p: SurrogateParams) -> list[Finding]:
    """``surrogate.unfaithful`` when no family reaches ``min_fidelity_medium``; else
    ``surrogate.unfaithful.<family>`` for a family that falls short of it."""
    tree, linear, baseline, n_hold = ev.tree, ev.linear, ev.baseline, ev.counts["rows_holdout"]
    out: list[Finding] = []
    best: dict[Family, SweepPoint] = {s.family: s.best for s in (tree, linear)}
    faithful = {f: b.agreement >= p.min_fidelity_medium for f, b in best.items()}
    if not any(faithful.values()):
        top = max(best.values(), key=lambda b: b.agreement)
        sev = Severity.LOW if top.agreement < p.min_fidelity_high else Severity.INFO
        out.append(UNFAITHFUL(
            sev,
            title=f"No surrogate is faithful: best agreement {top.agreement:.1%}",
            detail=(f"The most faithful surrogate, a {describe(top)}, agrees with the "
                    f"model on {top.agreement:.1%} of {n_hold} held-out samples (95% CI "
                    f"{top.fidelity.agreement_ci[0]:.1%}-{top.fidelity.agreement_ci[1]:.1%}"
                    f"), below the {p.min_fidelity_medium:.0%} needed to read its rules as "
                    f"the model's logic; a constant guess agrees on {baseline:.1%}."),
            evidence={"best_tree_agreement": best["tree"].agreement,
                      "best_linear_agreement": best["linear"].agreement,
                      "baseline_agreement": baseline,
                      "threshold": p.min_fidelity_medium},
            recommendation=("Do not use these rules to explain the model. Use local "
                            "explanations (saliency) instead, allow deeper trees "
                            "(tree_depths), or for images more regions (grid).")))
        return out
    for fam, ok in faithful.items():
        if ok:
            continue
        other: Family = "linear" if fam == "tree" else "tree"
        b = best[fam]
        out.append(UNFAITHFUL_FAMILY(
            Severity.INFO, family=fam,
            title=f"The {FAMILY_TITLE[fam]} surrogate is not faithful "
                  f"({b.agreement:.1%} agreement)",
            detail=(f"The best {describe(b)} agrees with the model on {b.agreement:.1%} "
                    f"of {n_hold} held-out samples (threshold {p.min_fidelity_medium:.0%}; "
                    f"constant guess {baseline:.1%}), while the {FAMILY_TITLE[other]} "
                    f"reaches {best[other].agreement:.1%}: the model is not "
                    f"{'additive in its features' if fam == 'linear' else 'a shallow tree'}"
                    "."),
            evidence={"family": fam, "best_agreement": b.agreement,
                      "other_best_agreement": best[other].agreement,
                      "threshold": p.min_fidelity_medium},
            recommendation=(f"Do not read the {FAMILY_TITLE[fam]}'s "
                            f"{'weights' if fam == 'linear' else 'rules'} as the model's "
                            f"logic; use the {FAMILY_TITLE[other]} instead.")))
    return out


def sensitive_findings(ev: SurrogateEvaluation, p: SurrogateParams) -> list[Finding]:
    """``surrogate.sensitive-feature`` when the recommended surrogates use sensitive columns:
    medium at ``sensitive_share_medium`` of their importance or weight, else low."""
    sensitive, tree_share, linear_share = ev.sensitive, ev.tree_share, ev.linear_share
    rt, rl = ev.tree.shown, ev.linear.shown
    cols = [c for c in sensitive if c in tree_share or c in linear_share]
    if not cols:
        return []
    t_total, l_total = sum(tree_share.values()), sum(linear_share.values())
    sev = Severity.MEDIUM if max(t_total, l_total) >= p.sensitive_share_medium \
        else Severity.LOW
    parts = []
    if tree_share:
        parts.append(f"the {_which(ev.tree)} {describe(rt)} ({rt.agreement:.1%} agreement) "
                     f"splits on {', '.join(tree_share)} ({t_total:.1%} of its importance)")
    if linear_share:
        parts.append(f"the {_which(ev.linear)} {describe(rl)} ({rl.agreement:.1%} agreement) puts "
                     f"{l_total:.1%} of its total |weight| on {', '.join(linear_share)}")
    return [SENSITIVE_FEATURE(
        sev,
        title=f"The surrogates use sensitive column(s) {', '.join(cols)}",
        detail="; ".join(parts).capitalize()[:1] + "; ".join(parts)[1:]
               + ": the model's predictions depend on these columns.",
        evidence={"columns": cols, "tree_importance_share": tree_share,
                  "linear_weight_share": linear_share,
                  "threshold": p.sensitive_share_medium},
        recommendation=("Check whether this dependence is acceptable for the intended use; "
                        "the fairness check measures its effect on groups."))]


def _which(sweep: Sweep) -> str:
    """How the finding names the point it describes."""
    return "recommended" if sweep.recommendation is not None else "most faithful"

