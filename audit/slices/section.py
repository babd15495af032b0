"""Turn a :class:`SlicesEvaluation` into the report section: metrics, tables, figures, a
summary and the reading."""

from __future__ import annotations

from dataclasses import asdict

from audit.result import Cell, Section, Table
from audit.slices.evaluation import SlicesEvaluation
from audit.slices.figures import gallery_figures, proxies_figure, slices_figure
from audit.slices.findings import slices_findings
from audit.slices.params import SlicesParams
from audit.slices.search import SliceResult
from audit.stats import p_text

__all__ = ["metrics", "slices_section"]


def slices_section(ev: SlicesEvaluation, p: SlicesParams, *, check: str, title: str,
                   model: str) -> Section:
    """The whole section of the ``slices`` check."""
    shown = _shown(ev, p)
    figures = [slices_figure(ev, shown)] if shown else []
    figures += gallery_figures(ev.galleries)
    if ev.proxies:
        figures.append(proxies_figure(ev, p.strong_auc, p.reliance))
    tables = [slices_table(shown, p)] if shown else []
    if ev.bias:
        tables.append(bias_table(ev))
    if ev.proxies:
        tables.append(proxies_table(ev, p))
    return Section(check=check, title=title, summary=summary(ev), reading=reading(ev, p),
                   metrics=metrics(ev), findings=slices_findings(ev, p, model),
                   figures=figures, tables=tables, params=asdict(p))


def _shown(ev: SlicesEvaluation, p: SlicesParams) -> list[SliceResult]:
    rules = ev.search.slices if ev.search is not None else []
    both = sorted([*rules, *ev.clusters], key=lambda s: (not s.confirmed, -s.gap))
    return both[: p.shown]


def metrics(ev: SlicesEvaluation) -> dict[str, float]:
    """Counts of slices searched, carried and confirmed, the worst confirmed gap, and the
    proxies the model relies on."""
    out: dict[str, float] = {"samples": float(ev.samples), "error_rate": ev.error_rate,
                             "confirmed_slices": float(len(ev.confirmed))}
    if ev.search is not None:
        out.update(rules_searched=float(ev.search.candidates),
                   rules_carried=float(ev.search.carried))
    if ev.clusters:
        out["clusters"] = float(len(ev.clusters))
    worst = max(ev.confirmed, key=lambda s: s.gap, default=None)
    if worst is not None:
        out.update(worst_slice_gap=worst.gap, worst_slice_gap_ci_low=worst.ci_low,
                   worst_slice_gap_ci_high=worst.ci_high)
    if ev.proxies:
        out["strong_proxies"] = float(sum(x.strong for x in ev.proxies))
        out["relied_on_proxies"] = float(sum(x.relied_on() for x in ev.proxies))
    return out


def slices_table(shown: list[SliceResult], p: SlicesParams) -> Table:
    """The weakest slices, confirmed first."""
    rows: list[list[Cell]] = [
        [s.rule, s.size, f"{s.rate:.1%}", f"{s.rest_rate:.1%}",
         f"{s.gap:+.1%} ({s.ci_low:+.1%} to {s.ci_high:+.1%})", p_text(s.p_adjusted),
         "yes" if s.confirmed else "no",
         f"{s.discovery_rate:.1%} of {s.discovery_size}" if s.conditions else "–"]
        for s in shown]
    return Table(id="slices", title="Weakest slices", rows=rows,
                 columns=["slice", "rows", "error", "error elsewhere", "gap (95% CI)",
                          "adjusted p", "confirmed", "error when found"],
                 caption="Rules are searched on one half of the rows (every conjunction of up "
                         f"to {p.max_conditions} conditions with enough support, counted at "
                         f"once) and the best {p.carry} are tested on the other half, so their "
                         "numbers here are not inflated by the search; embedding clusters are "
                         "found without the errors and tested on all rows. Adjusted p: "
                         f"Benjamini-Hochberg; confirmed when below {p.alpha:g}. Gap: "
                         "Newcombe's 95% interval of the difference of two error rates.")


def bias_table(ev: SlicesEvaluation) -> Table:
    """Representation, label base rate and missingness per group in the training data."""
    rows: list[list[Cell]] = []
    for g in ev.bias:
        rows.append([g.column, g.group, g.n_train, f"{g.train_share:.1%}",
                     f"{g.audit_share:.1%}", "yes" if g.under_represented else "no",
                     f"{g.train_base_rate:.1%}",
                     f"{g.base_rate_gap:+.1%} ({g.base_rate_gap_low:+.1%} to "
                     f"{g.base_rate_gap_high:+.1%})" if g.tested else "– (too small)",
                     f"{g.missing_train:.1%} vs {g.missing_rest:.1%}"])
    label = ev.bias[0].label if ev.bias else ""
    return Table(id="slices-training-bias", title="Training data by group",
                 columns=["attribute", "group", "training rows", "share of training",
                          "share of audited", "under-represented", f"rate of {label}",
                          "gap to the rest (95% CI)", "rows with a missing value vs rest"],
                 rows=rows,
                 caption=f"Training data: {ev.train}. Under-represented: the training share "
                         "is under four fifths of the audited share, beyond noise. The "
                         "label rate's gap to the rest of the training rows has Newcombe's "
                         "interval.")


def proxies_table(ev: SlicesEvaluation, p: SlicesParams) -> Table:
    """How well each feature predicts each sensitive attribute, and the model's reliance."""
    order = sorted(ev.proxies, key=lambda x: (x.sensitive, -x.auc))
    rows: list[list[Cell]] = [
        [x.sensitive, x.feature, round(x.mutual_information, 4),
         f"{x.auc:.3f} ({x.auc_ci_low:.3f}-{x.auc_ci_high:.3f})",
         "yes" if x.strong else "no",
         "–" if x.reliance is None else f"{x.reliance:.1%}",
         "yes" if x.relied_on(p.reliance) else "no"] for x in order]
    return Table(id="slices-proxies", title="Proxies of the sensitive attributes",
                 columns=["sensitive", "feature", "normalised MI", "held-out AUC (95% CI)",
                          "strong proxy", "predictions changed when shuffled", "relied on"],
                 rows=rows,
                 caption=f"Normalised MI: I(feature; attribute) / H(attribute). Strong: AUC "
                         f"at least {p.strong_auc:g} with the interval above 0.5. Relied on: "
                         f"a strong proxy whose shuffling changes more than {p.reliance:.0%} "
                         "of the model's predictions on the audited data.")


def summary(ev: SlicesEvaluation) -> str:
    """One paragraph: the worst confirmed slices and the proxies."""
    parts = [f"Overall error {ev.error_rate:.1%} on {ev.samples} samples."]
    conf = ev.confirmed
    if conf:
        worst = ", ".join(f"{s.rule} ({s.rate:.1%})" for s in conf[:3])
        parts.append(f"{len(conf)} confirmed weak slice(s); worst: {worst}.")
    else:
        parts.append("No weak slice confirmed.")
    relied = [x for x in ev.proxies if x.relied_on()]
    if relied:
        parts.append("Proxies the model relies on: " + ", ".join(
            f"{x.feature} for {x.sensitive}" for x in relied[:4]) + ".")
    return " ".join([*parts, *ev.notes])


def reading(ev: SlicesEvaluation, p: SlicesParams) -> str:
    """How to read the section."""
    return (
        "A slice is a part of the data nobody named, on which the model errs more. For tables "
        "and for images with object masks (their size, position, brightness, contrast), "
        "rules of up to "
        f"{p.max_conditions} conditions (quantile bins of numeric columns, category values) "
        "are searched on one half of the rows and the best are confirmed on the other half, "
        "so the error rates and intervals shown are measured on rows the search never saw "
        f"and the share of false confirmations stays below {p.alpha:g} "
        "(Benjamini-Hochberg). For images, the model's own embeddings are also clustered "
        "(k-means), and each cluster's error rate is tested against the rest; a gallery shows "
        "members of the worst with Grad-CAM overlays of the predicted class. For tabular "
        "models the training data is audited too: each sensitive group's share against the "
        "audited data, its label base rate and missing values, and every feature's power to "
        "predict a sensitive attribute (a proxy), beside how much the model's predictions "
        "change when that feature is shuffled.")
