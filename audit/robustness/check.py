"""The ``robustness`` check: robust accuracy curves, attack suite, gradient-masking
diagnostics, common corruptions, and a gallery of adversarial examples.

Budget of the default run (documented in the reading): robust accuracy curves in L-inf and
L2 from FMN (30 steps) on every sample, confirmed at each reported epsilon by APGD-CE (8
random restarts) and APGD-DLR (1) of 10 steps each on the samples near that epsilon; an
attack suite of 14 attacks on 32 samples at the headline epsilon of each norm; diagnostics;
4 corruptions at 5 severities on every sample. At most ``max_samples`` samples (a seeded
random subset). ``--quick`` shrinks every budget (200 samples, 16 in the suite).

The work is split as in every area: :mod:`~audit.robustness.measure` measures a
:class:`~audit.robustness.evaluation.RobustnessEvaluation`,
:mod:`~audit.robustness.findings` judges it, :mod:`~audit.robustness.section` (with
``tables`` and ``figures``) reports it; the attacks run are :mod:`~audit.robustness.suite`.
"""

from __future__ import annotations

from audit.checks import Check, classifier_with_data, register
from audit.result import Section
from audit.robustness.measure import measure_robustness
from audit.robustness.params import RobustnessParams, default_eps, eps_key
from audit.robustness.section import robustness_section
from audit.subject import Subject

__all__ = ["RobustnessCheck", "RobustnessParams", "default_eps", "eps_key"]


@register
class RobustnessCheck(Check[RobustnessParams]):
    """Robust accuracy vs epsilon (L-inf, L2) over an attack suite, gradient-masking
    diagnostics, common corruptions."""

    name = "robustness"
    title = "Adversarial robustness and corruptions"

    def applies(self, subject: Subject) -> str | None:
        return classifier_with_data(subject)

    def run(self, subject: Subject) -> Section:
        ev = measure_robustness(subject, self.params)
        return robustness_section(ev, self.params, check=self.name, title=self.title)
