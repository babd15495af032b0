"""Judge a :class:`SlicesEvaluation`: confirmed weak slices, proxies the model relies on, and
training-data bias behind them (pure functions of the evaluation and the settings). Every
finding says what to do, and names the ``audit mitigate`` command that targets it."""

from __future__ import annotations

import re
import shlex

from audit.policy import Category, kind
from audit.result import Finding, Severity
from audit.slices.evaluation import SlicesEvaluation
from audit.slices.params import SlicesParams
from audit.slices.search import SliceResult
from audit.stats import p_text

__all__ = ["slices_findings"]

WEAK = kind("slices.weak.{slice}", Category.DEFECT,
            "A slice of the data nobody named, on which the model errs more than elsewhere, "
            "confirmed on rows the search did not see (or, for embedding clusters, over all "
            "clusters with Benjamini-Hochberg): low for a gap under gap_medium, medium above, "
            "high when its whole interval is above gap_high.")
PROXY = kind("slices.proxy.{feature}.{sensitive}", Category.EXPOSURE,
             "A feature predicts a sensitive attribute (held-out AUC at least strong_auc) and "
             "the model relies on it (permuting it changes more than `reliance` of its "
             "predictions): the model can treat groups differently without seeing the "
             "attribute (medium).")
REPRESENTATION = kind("slices.representation.{attribute}", Category.EXPOSURE,
                      "Groups of a sensitive attribute whose share of the training data is "
                      "under four fifths of their share of the audited data, beyond noise "
                      "(medium).")
BASE_RATE = kind("slices.base-rate.{attribute}", Category.EXPOSURE,
                 "Groups of a sensitive attribute whose label base rate in the training data "
                 "differs from the rest's beyond noise: a model fitted to it learns the gap "
                 "(low; medium when a gap passes 0.1).")
MISSING = kind("slices.missing.{attribute}", Category.EXPOSURE,
               "Groups of a sensitive attribute whose training rows miss values more often "
               "than the rest's, beyond noise (low).")


def _key(text: str) -> str:
    """A stable id part from a rule or group: lower-case words joined by dashes."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")[:80] or "slice"


def _shell(text: str) -> str:
    """``text`` as one shell word: in double quotes when that is safe (rules quote their
    values with single quotes), else POSIX-quoted."""
    return f'"{text}"' if not set(text) & set('"$`\\!') else shlex.quote(text)


def _weak(s: SliceResult, same: list[str], ev: SlicesEvaluation, p: SlicesParams,
          model: str) -> Finding:
    sev = Severity.HIGH if s.ci_low >= p.gap_high else \
        Severity.MEDIUM if s.gap >= p.gap_medium else Severity.LOW
    how = ("confirmed on the held-out half" if s.conditions else
           "Benjamini-Hochberg over the clusters")
    target = (f" Target it: audit mitigate {model} --methods reweighing-slice "
              f"--slice {_shell(s.rule)}." if s.conditions and ev.kind == "tabular" else "")
    also = (f" Much the same rows: {'; '.join(same[:4])}" + (" ..." if len(same) > 4 else "")
            + ".") if same else ""
    return WEAK(
        sev, slice=_key(s.rule),
        title=f"Weak slice: {s.rule} (error {s.rate:.1%} vs {s.rest_rate:.1%})",
        detail=(f"{s.size} rows; error rate {s.rate:.1%} against {s.rest_rate:.1%} elsewhere, "
                f"a gap of {s.gap:+.1%} (95% CI {s.ci_low:+.1%} to {s.ci_high:+.1%}), "
                f"{how} (adjusted {p_text(s.p_adjusted)}).{also}"),
        evidence={"rule": s.rule, "size": s.size, "rate": s.rate, "rest_rate": s.rest_rate,
                  "gap": s.gap, "ci_low": s.ci_low, "ci_high": s.ci_high, "same_rows": same},
        recommendation=("Collect or label more data like this slice, check its labels, or "
                        "reweigh it in training." + target))


def _proxies(ev: SlicesEvaluation, p: SlicesParams, model: str) -> list[Finding]:
    out = []
    for x in ev.proxies:
        if not x.relied_on(p.reliance):
            continue
        out.append(PROXY(
            Severity.MEDIUM, feature=_key(x.feature), sensitive=_key(x.sensitive),
            title=f"{x.feature} is a proxy for {x.sensitive} the model relies on",
            detail=(f"{x.feature} predicts {x.sensitive} with held-out AUC {x.auc:.3f} (95% CI "
                    f"{x.auc_ci_low:.3f}-{x.auc_ci_high:.3f}; normalised mutual information "
                    f"{x.mutual_information:.3f}), and permuting it changes "
                    f"{x.reliance or 0:.1%} of the model's predictions."),
            evidence={"auc": x.auc, "mutual_information": x.mutual_information,
                      "reliance": x.reliance},
            recommendation=(f"Check whether {x.feature} is needed for the task; drop it, or "
                            f"decorrelate it from {x.sensitive} (audit mitigate {model} "
                            "--methods correlation-remover), then compare the fairness gaps.")))
    return out


def _groups(items: list[str]) -> str:
    return "; ".join(items[:6]) + (f"; and {len(items) - 6} more" if len(items) > 6 else "")


def _bias(ev: SlicesEvaluation, model: str) -> list[Finding]:
    """One finding per attribute and kind of bias, listing its groups."""
    out = []
    for column in dict.fromkeys(g.column for g in ev.bias):
        groups = [g for g in ev.bias if g.column == column and g.tested]
        key = _key(column)
        under = [g for g in groups if g.under_represented]
        if under:
            out.append(REPRESENTATION(
                Severity.MEDIUM, attribute=key,
                title=f"Under-represented in the training data: {column} "
                      + ", ".join(g.group for g in under[:3]),
                detail="Share of training rows against share of the audited data: " + _groups(
                    [f"{g.group} {g.train_share:.1%} vs {g.audit_share:.1%}" for g in under])
                + ".",
                evidence={g.group: [g.train_share, g.audit_share] for g in under},
                recommendation=f"Collect more training data of these groups, or reweigh them "
                               f"(audit mitigate {model} --methods reweighing)."))
        rates = [g for g in groups if g.base_rate_differs]
        if rates:
            label = rates[0].label
            out.append(BASE_RATE(
                Severity.MEDIUM if any(abs(g.base_rate_gap) > 0.1 for g in rates)
                else Severity.LOW, attribute=key,
                title=f"Training labels differ by {column}: {label} rate "
                      + ", ".join(f"{g.group} {g.train_base_rate:.1%}" for g in rates[:3]),
                detail=f"Rate of {label} in the training data against the rest of its rows "
                       "(95% CI of the gap): " + _groups(
                           [f"{g.group} {g.train_base_rate:.1%} ({g.base_rate_gap_low:+.1%} "
                            f"to {g.base_rate_gap_high:+.1%})" for g in rates]) + ".",
                evidence={g.group: g.base_rate_gap for g in rates},
                recommendation="Check whether the gaps are real or come from how the labels "
                               f"were collected; reweighing (audit mitigate {model} --methods "
                               "reweighing) removes them from the training loss."))
        missing = [g for g in groups if g.missing_differs]
        if missing:
            out.append(MISSING(
                Severity.LOW, attribute=key,
                title=f"Missing values differ by {column}",
                detail="Training rows with a missing value, group against the rest: " + _groups(
                    [f"{g.group} {g.missing_train:.1%} vs {g.missing_rest:.1%}"
                     + (f" (in {', '.join(c.column for c in g.missing_columns[:3])})"
                        if g.missing_columns else "") for g in missing]) + ".",
                evidence={g.group: [g.missing_train, g.missing_rest] for g in missing},
                recommendation="Find out why; impute with care, since the missingness itself "
                               "can act as a proxy for the group."))
    return out


def slices_findings(ev: SlicesEvaluation, p: SlicesParams, model: str) -> list[Finding]:
    """Every finding of the slices check; ``model`` names the model in commands."""
    model = shlex.quote(model)
    return [*(_weak(s, same, ev, p, model) for s, same in ev.distinct(p.overlap, p.findings)),
            *_proxies(ev, p, model), *_bias(ev, model)]
