"""The ``saliency`` check: explain the model with several methods and measure the explanations.

Images: the registered explainers (by default Grad-CAM and Grad-CAM++ on the automatically
chosen or ``--layer`` target layer, Integrated Gradients, SmoothGrad and LIME) explain the
predicted class of a seeded sample of the audit data. Every method is scored for faithfulness
(deletion/insertion against a random order) and sanity (rank correlation with the maps of a
randomised model); on data with object masks, for localisation (pointing game, energy in the
object) and the model's reliance on evidence outside the object (saliency outside the masks
plus counterfactual fills and an occlusion map: :mod:`~audit.saliency.reliance`). A feature
visualisation per class shows what the model responds to.

Tabular rows: LIME (tabular) and Integrated Gradients give per-feature attributions, a
feature-importance table and plot, and the same faithfulness and sanity metrics over features.

Measurement lives in :mod:`~audit.saliency.measure` (and ``tabular``), the finding rules in
:mod:`~audit.saliency.findings`, the text in :mod:`~audit.saliency.section`, the drawing in
:mod:`~audit.saliency.figures`; this module only wires them.
"""

from __future__ import annotations

from typing import ClassVar

from audit.checks import Check, register
from audit.result import Section
from audit.saliency.figures import image_figures, tabular_figures
from audit.saliency.findings import image_findings, selection_findings, tabular_findings
from audit.saliency.measure import (
    AllStopped,
    image_sample,
    measure_image,
    select_image,
    validate,
)
from audit.saliency.section import image_section, tabular_section
from audit.saliency.settings import SaliencyParams
from audit.saliency.tabular import measure_tabular, select_tabular
from audit.subject import Subject

__all__ = ["SaliencyCheck", "SaliencyParams"]


@register
class SaliencyCheck(Check[SaliencyParams]):
    """Grad-CAM, Grad-CAM++, LIME, Integrated Gradients, SmoothGrad; faithfulness, sanity
    and localisation metrics; shortcut detection; feature visualisation."""

    name = "saliency"
    title = "Explanations (saliency)"
    # Run in a fresh process (audit.isolation): LIME (scikit-learn, scikit-image), captum and
    # the featvis/CAM autograd loops are the heaviest native code of an audit, and a saliency
    # run once ended in a segmentation fault (issue 20); isolated, a crash is an errored
    # section and the other checks are still reported. AUDIT_ISOLATE=none turns it off.
    isolate: ClassVar[bool] = True

    def applies(self, subject: Subject) -> str | None:
        x = subject.data.x
        if subject.data.kind == "image" and x.ndim != 4:
            return (f"saliency maps need images shaped (C, H, W); the data has per-sample shape "
                    f"{tuple(x.shape[1:])}")
        if subject.data.kind == "tabular" and x.ndim != 2:
            return f"tabular explanations need rows (F,); got {tuple(x.shape[1:])}"
        return None

    def run(self, subject: Subject) -> Section:
        try:
            return self._run(subject)
        except AllStopped as stop:
            return self.section(status="error",
                                findings=selection_findings(stop.selection, incomplete=True),
                                error="every explainer stopped at its budget",
                                summary="Every explanation method stopped at its budget "
                                        "before finishing; nothing was scored.")

    def _run(self, subject: Subject) -> Section:
        p: SaliencyParams = self.params
        validate(p)
        if subject.data.kind == "tabular":
            sel = select_tabular(p)
            if not sel.methods:
                return self.section(status="skipped", findings=selection_findings(sel),
                                    summary="No saliency method applies to tabular data.")
            tab = measure_tabular(subject, p, sel)
            return tabular_section(tab, p, tabular_findings(tab, p), tabular_figures(tab),
                                   check=self.name, title=self.title)
        sample = image_sample(subject, p)
        sel = select_image(subject, p, sample.x)
        if not sel.methods:
            return self.section(status="skipped", findings=selection_findings(sel),
                                summary="No applicable saliency method.")
        ev = measure_image(subject, p, sample, sel)
        return image_section(ev, p, image_findings(ev, p), image_figures(ev),
                             check=self.name, title=self.title)
