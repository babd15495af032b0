"""The ``drift`` check: how the current data (``--data``) differs from a labelled reference
(``--reference``), in its columns, in the model's representation and predictions, and in the
accuracy estimated without labels.

Runs only when reference data is given (``audit run --reference REF``, ``audit drift``); the
current data may lack labels. The work is split as in every area: :mod:`~audit.drift.measure`
measures a :class:`~audit.drift.evaluation.DriftEvaluation`, :mod:`~audit.drift.findings`
judges it, :mod:`~audit.drift.section` (with ``figures``) reports it.
"""

from __future__ import annotations

from audit.checks import Check, register
from audit.drift.measure import measure_drift
from audit.drift.params import DriftParams
from audit.drift.section import drift_section
from audit.errors import DataError
from audit.result import Section
from audit.subject import Subject

__all__ = ["DriftCheck", "DriftParams"]


@register
class DriftCheck(Check[DriftParams]):
    """Data drift per column (KS, chi-square, PSI with Benjamini-Hochberg and the detectable
    effect), a domain-classifier two-sample test, MMD on the model's embeddings, prediction
    drift, and accuracy estimated without labels (CBPE), against reference data."""

    name = "drift"
    title = "Drift against reference data"
    needs_labels = False

    def applies(self, subject: Subject) -> str | None:
        if subject.reference is None:
            raise DataError("the drift check needs reference data: pass --reference REF (data "
                            "the model is known to work on, with labels)")
        if len(subject.reference) < 10 or len(subject.data) < 10:
            return (f"too few samples to test drift ({len(subject.reference)} reference, "
                    f"{len(subject.data)} current; at least 10 each)")
        return None

    def run(self, subject: Subject) -> Section:
        ev = measure_drift(subject, self.params)
        return drift_section(ev, self.params, check=self.name, title=self.title)
