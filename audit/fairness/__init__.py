"""Fairness: group metrics with bootstrap intervals (Fairlearn's definitions), intersectional
groups, findings, and bias mitigation (reweighing, a fairness penalty, group thresholds).

Library use::

    from audit.fairness import assess_fairness
    res = assess_fairness(y_true, y_pred, frame[["sex", "race"]], score=proba)
    res.groupings[0].disparities["demographic_parity_difference"].value

A new disparity over the existing rates is one :class:`DisparitySpec` in
:data:`audit.fairness.specs.DISPARITIES`: its flags and :class:`FindingPolicy` decide its place
in the table, the metrics, the chart and the findings.

Commands: ``audit run MODEL --sensitive COL[,COL]`` (the ``fairness`` check), ``audit fairness
predictions.csv ...`` (no model) and ``audit mitigate MODEL``.
"""

from typing import TYPE_CHECKING

from audit._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["Disparity", "FairnessResult", "GroupingResult", "assess_fairness"],
                    "audit.fairness.metrics"),
    **dict.fromkeys(["DISPARITIES", "RATES", "DisparitySpec", "FindingPolicy"],
                    "audit.fairness.specs"),
    "bootstrap_indices": "audit.fairness.stats",
    **dict.fromkeys(["FairnessPenalty", "GroupThresholds", "Reweighing", "train_with_penalty"],
                    "audit.fairness.mitigation"),
}
__all__ = [
    "DISPARITIES",
    "RATES",
    "Disparity",
    "DisparitySpec",
    "FairnessPenalty",
    "FairnessResult",
    "FindingPolicy",
    "GroupThresholds",
    "GroupingResult",
    "Reweighing",
    "assess_fairness",
    "bootstrap_indices",
    "train_with_penalty",
]
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from audit.fairness.metrics import Disparity, FairnessResult, GroupingResult, assess_fairness
    from audit.fairness.mitigation import (
        FairnessPenalty,
        GroupThresholds,
        Reweighing,
        train_with_penalty,
    )
    from audit.fairness.specs import DISPARITIES, RATES, DisparitySpec, FindingPolicy
    from audit.fairness.stats import bootstrap_indices
