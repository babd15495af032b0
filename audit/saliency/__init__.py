"""Saliency: explain a model's decisions and measure how far the explanations can be trusted.

One base class, :class:`Explainer`: a method declares itself with class attributes (``name``,
``title``, ``modalities``, ``default_for``, ``needs_layer``) and writes ``attribute(x, target)``;
the base's ``explain(x, target) -> Tensor`` gives, for a batch of inputs and the class to
explain for each, a non-negative importance map scaled to [0, 1] per sample: ``(N, H, W)`` for
images ``(N, C, H, W)`` and ``(N, F)`` for tabular rows ``(N, F)``. Class activation maps share
:class:`CAM` and write only ``cam_weights``. ``registry`` lists the methods the check runs;
``metrics`` scores maps (faithfulness, sanity, localisation); ``check`` is the ``saliency``
audit check (measure -> findings -> section -> figures).
"""

from __future__ import annotations

from audit.saliency.base import (
    ExplainContext,
    Explainer,
    batches,
    channel_sum_abs,
    map_shape,
    normalize_maps,
    to_maps,
)
from audit.saliency.gradcam import CAM, GradCAM, GradCAMPlusPlus, XGradCAM
from audit.saliency.gradients import IntegratedGradientsExplainer, SmoothGrad
from audit.saliency.layers import LayerInfo, find_target_layer, spatial_layers
from audit.saliency.lime import LimeImage, LimeTabular
from audit.saliency.registry import EXPLAINERS

__all__ = [
    "CAM", "EXPLAINERS", "ExplainContext", "Explainer", "GradCAM", "GradCAMPlusPlus",
    "IntegratedGradientsExplainer", "LayerInfo", "LimeImage", "LimeTabular", "SmoothGrad",
    "XGradCAM", "batches", "channel_sum_abs", "find_target_layer", "map_shape",
    "normalize_maps", "spatial_layers", "to_maps",
]
