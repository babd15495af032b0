"""The explainers the ``saliency`` check can run, declared by their class attributes.

A new method is a class (see :class:`~audit.saliency.base.Explainer`) added to
:data:`EXPLAINERS`; the check, its settings, tables, figures and findings read everything else
(name, title, modalities, default, target layer) off the class.
"""

from __future__ import annotations

from audit.saliency.attention import AttentionGradient, AttentionRollout
from audit.saliency.base import Explainer, Modality
from audit.saliency.gradcam import GradCAM, GradCAMPlusPlus, XGradCAM
from audit.saliency.gradients import IntegratedGradientsExplainer, SmoothGrad
from audit.saliency.lime import LimeImage, LimeTabular

# Report order within each modality (and the order of the default lists): CAMs first on images;
# LIME first on tabular data, where it is the reference attribution. Attention methods run
# only on models with global self-attention (``Explainer.unavailable``).
EXPLAINERS: tuple[type[Explainer], ...] = (
    GradCAM, GradCAMPlusPlus, XGradCAM, AttentionGradient, AttentionRollout, LimeTabular,
    IntegratedGradientsExplainer, SmoothGrad, LimeImage,
)


def explainer_names() -> list[str]:
    """Every selectable method name, once each, in registry order."""
    return list(dict.fromkeys(cls.name for cls in EXPLAINERS))


def default_methods(kind: Modality) -> list[str]:
    """The names run on ``kind`` data when the user does not choose."""
    return [cls.name for cls in EXPLAINERS if kind in cls.default_for]


def explainer_for(name: str, kind: Modality) -> type[Explainer] | None:
    """The class that runs method ``name`` on ``kind`` data, ``None`` when it does not apply."""
    return next((c for c in EXPLAINERS if c.name == name and kind in c.modalities), None)


def title_of(name: str) -> str:
    """The display title of method ``name`` (the name itself when it is unknown)."""
    return next((c.title for c in EXPLAINERS if c.name == name), name)
