"""The ``slices`` check: where the model fails that nobody named, and what in the training
data may cause it.

The work is split as in every area: :mod:`~audit.slices.measure` measures a
:class:`~audit.slices.evaluation.SlicesEvaluation` (rule search, embedding clusters,
training-data bias and proxies), :mod:`~audit.slices.findings` judges it,
:mod:`~audit.slices.section` (with ``figures``) reports it.
"""

from __future__ import annotations

from audit.checks import Check, classifier_with_data, register
from audit.result import Section
from audit.slices.measure import check_train_spec, measure_slices
from audit.slices.params import SlicesParams
from audit.slices.section import slices_section
from audit.subject import Subject

__all__ = ["SlicesCheck", "SlicesParams"]


@register
class SlicesCheck(Check[SlicesParams]):
    """Weak slices found automatically (rules on columns or image attributes, confirmed on
    held-out rows; clusters of the model's embeddings), and the training data's bias behind
    them: group representation, base rates, missingness and proxies the model relies on."""

    name = "slices"
    title = "Weak slices and training-data bias"

    def applies(self, subject: Subject) -> str | None:
        reason = classifier_with_data(subject)
        if self.params.train_data is not None:
            check_train_spec(self.params.train_data)
        if reason is None and len(subject.data) < 100:
            return f"too few samples to search slices ({len(subject.data)}; at least 100)"
        return reason

    def run(self, subject: Subject) -> Section:
        ev = measure_slices(subject, self.params)
        return slices_section(ev, self.params, check=self.name, title=self.title,
                              model=str(subject.model_info.get("name", "MODEL")))
