"""The ``surrogate`` check: global tree and linear surrogates, fidelity against complexity, rules.

Steps: sample up to ``max_rows`` audit rows with the run seed; hold out ``holdout`` of them; add
perturbed copies of the fitting rows (``perturbed_ratio`` per row, at least ``min_fit_samples`` in
all; feature groups swapped between rows, see
:mod:`audit.surrogate.features`) labelled by the model; sweep tree depth and L1 strength; score
every surrogate on the held-out rows (agreement and R^2 of probabilities, bootstrap 95% CIs);
recommend the smallest surrogate within ``tolerance`` of its family's best; show its rules.

Findings: ``surrogate.unfaithful`` when no surrogate reaches ``min_fidelity_medium`` agreement
(its rules must not be read as the model's logic), ``surrogate.unfaithful.tree|linear`` when one
family falls short while the other is faithful, and ``surrogate.sensitive-feature`` when the
recommended tree splits on a sensitive column.
"""

from __future__ import annotations

from audit.checks import Check, register
from audit.result import Section
from audit.subject import Subject
from audit.surrogate.evaluate import evaluate
from audit.surrogate.findings import findings
from audit.surrogate.params import SurrogateParams
from audit.surrogate.section import build_section

__all__ = ["SurrogateCheck", "SurrogateParams"]


@register
class SurrogateCheck(Check[SurrogateParams]):
    """Decision-tree and sparse linear surrogates of the model: fidelity against complexity
    on held-out samples, readable rules."""

    name = "surrogate"
    title = "Global surrogate models"

    def applies(self, subject: Subject) -> str | None:
        if subject.card.task != "classification":
            return "surrogates are fitted to class predictions; the model is not a classifier"
        if len(subject.data) < 20:
            return f"the audit data has {len(subject.data)} samples; at least 20 are needed"
        return None

    def run(self, subject: Subject) -> Section:
        ev = evaluate(subject, self.params)
        return build_section(self, ev, findings(ev, self.params))
