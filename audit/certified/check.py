"""The ``certified`` check: randomized smoothing's certified L2 robustness (Cohen et al. 2019).

It runs only when the noise levels are known: ``[checks.certified] sigmas`` in ``audit.toml``
or the card's ``robustness.smoothing_sigmas`` (written by ``audit harden --method smoothing``);
otherwise it is skipped with the reason, so the audits of models not trained for smoothing do
not change. Budget of the default run: CERTIFY with n0 = 100 selection and n = 1000
estimation draws per sample (alpha 0.001) on at most 500 samples per sigma; ``--quick``: 100
samples, n0 = 50, n = 400 (sigma 0.25 then certifies up to radius 0.53).

The work is split as in every area: :mod:`~audit.certified.measure` measures a
:class:`~audit.certified.evaluation.CertifiedEvaluation`, :mod:`~audit.certified.findings`
judges it, :mod:`~audit.certified.section` (with ``figures``) reports it.
"""

from __future__ import annotations

from audit.certified.measure import measure_certified
from audit.certified.params import CARD_KEY, CertifiedParams, sigmas_of
from audit.certified.section import certified_section
from audit.checks import Check, classifier_with_data, register
from audit.errors import DataError
from audit.result import Section
from audit.subject import Subject

__all__ = ["CertifiedCheck", "CertifiedParams"]


@register
class CertifiedCheck(Check[CertifiedParams]):
    """Certified accuracy vs L2 radius of the Gaussian-smoothed classifier (CERTIFY,
    Clopper-Pearson bounds), at the card's or the settings' sigmas."""

    name = "certified"
    title = "Certified robustness (randomized smoothing)"

    def applies(self, subject: Subject) -> str | None:
        reason = classifier_with_data(subject)
        if reason is not None:
            return reason
        if not sigmas_of(self.params, subject):
            # an input only the user can give: asked for by name, the run stops (exit 2)
            raise DataError(f"no smoothing noise level known: the card has no robustness."
                            f"{CARD_KEY} and [checks.certified] sigmas is not set (train one "
                            "with audit harden MODEL --method smoothing --sigma 0.25)")
        return None

    def run(self, subject: Subject) -> Section:
        ev = measure_certified(subject, self.params)
        return certified_section(ev, self.params, check=self.name, title=self.title)
