"""Certified robustness by randomized smoothing (Cohen, Rosenfeld & Kolter 2019).

Methods: ``smoothing`` (:class:`~audit.certified.smoothing.Smoothing`: batched Monte Carlo
PREDICT and CERTIFY), ``stats`` (CERTIFY's one-sided Clopper-Pearson bound, PREDICT's
binomial test), ``training`` (:class:`~audit.certified.training.GaussianAugmentLoss`, the
Gaussian data augmentation that makes a model certifiable, and its trainer).

The check, in the shape of every area: ``params`` (settings), ``measure`` -> ``evaluation``
(the typed result), ``findings`` (pure rules), ``section`` with ``figures``, and the thin
``check``.
"""

from typing import TYPE_CHECKING

from audit._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["ABSTAIN", "Certificates", "Smoothing", "max_radius"],
                    "audit.certified.smoothing"),
    **dict.fromkeys(["lower_confidence_bound", "top_two_pvalue"], "audit.certified.stats"),
    **dict.fromkeys(["GaussianAugmentLoss", "SmoothingConfig", "smoothing_trainer"],
                    "audit.certified.training"),
}
__all__ = [
    "ABSTAIN",
    "Certificates",
    "GaussianAugmentLoss",
    "Smoothing",
    "SmoothingConfig",
    "lower_confidence_bound",
    "max_radius",
    "smoothing_trainer",
    "top_two_pvalue",
]
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from audit.certified.smoothing import ABSTAIN, Certificates, Smoothing, max_radius
    from audit.certified.stats import lower_confidence_bound, top_two_pvalue
    from audit.certified.training import GaussianAugmentLoss, SmoothingConfig, smoothing_trainer
