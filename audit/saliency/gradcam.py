"""Class activation maps: one base, one hook per variant (pytorch-grad-cam's ``get_cam_weights``).

:class:`CAM` takes one forward and one backward pass per batch (captum's
``compute_layer_gradients_and_eval``, the helper ``LayerGradCam`` uses), asks the variant's
:meth:`~CAM.cam_weights` how to weight the layer's activations, and returns
``ReLU(sum_k w_k A_k)`` upsampled bilinearly to the input size. Variants: Grad-CAM (Selvaraju et
al. 2017), Grad-CAM++ (Chattopadhay et al. 2018), XGrad-CAM (Fu et al. 2020). The layer's
output and its gradients go through the layer's :class:`~audit.saliency.grids.Layout` first, so
channels-last maps and transformer tokens (pytorch-grad-cam's ``reshape_transform``) are read
as ``(N, C, h, w)`` without configuration.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar, Self

import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import LayerAttribution
from torch import nn

from audit.saliency.base import ExplainContext, Explainer, Modality, batches, model_device
from audit.saliency.grids import Layout


class CAM(Explainer):
    """A class activation map over ``layer`` (a module of ``model`` whose output is a grid in
    ``layout``, channels-first when not given); subclasses write :meth:`cam_weights`."""

    modalities: ClassVar[frozenset[Modality]] = frozenset({"image"})
    default_for: ClassVar[frozenset[Modality]] = frozenset({"image"})
    needs_layer: ClassVar[bool] = True

    def __init__(self, model: nn.Module, layer: nn.Module, batch_size: int = 128,
                 layout: Layout | None = None) -> None:
        super().__init__(model)
        self.layer = layer
        self.batch_size = batch_size
        self.layout = layout

    @classmethod
    def build(cls, model: nn.Module, ctx: ExplainContext) -> Self:
        if ctx.layer is None:
            raise ValueError(f"{cls.title} needs a target layer")
        # by name: the sanity check builds the CAM again on a randomised copy of the model
        return cls(model, dict(model.named_modules())[ctx.layer], batch_size=ctx.batch_size,
                   layout=ctx.layer_layout)

    @abstractmethod
    def cam_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        """Weights of the layer's ``activations`` ``(N, K, h, w)`` given the explained logit's
        ``gradients`` with respect to them: ``(N, K, 1, 1)`` per channel, or per position."""

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``ReLU(sum_k w_k A_k)`` as ``(N, H, W)`` maps at the input's resolution."""
        device = model_device(self.model)
        out = []
        for s in batches(len(x), self.batch_size):
            with torch.enable_grad():
                grads, acts = compute_layer_gradients_and_eval(
                    self.model, self.layer, x[s].to(device), target[s].to(device))
                a, g = acts[0], grads[0]
                if self.layout is not None:
                    a, g = self.layout.to_map(a), self.layout.to_map(g)
                weights = self.cam_weights(a, g)
                cam = torch.relu(torch.sum(weights * a, dim=1, keepdim=True)).detach()
            up = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]),
                                              interpolate_mode="bilinear")
            out.append(up[:, 0])
        return torch.cat(out).cpu()  # one copy, after the loop


class GradCAM(CAM):
    """Grad-CAM: each channel weighted by its spatially averaged gradient (= captum's
    ``LayerGradCam`` with ``relu_attributions``)."""

    name = "gradcam"
    title = "Grad-CAM"

    def cam_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        return torch.mean(gradients, dim=(2, 3), keepdim=True)


class GradCAMPlusPlus(CAM):
    """Grad-CAM++: per-position weights ``alpha = g^2 / (2 g^2 + sum(A) g^3)`` on positive
    gradients, which credits several instances of a class instead of the strongest one."""

    name = "gradcam++"
    title = "Grad-CAM++"

    def cam_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        g2 = gradients.pow(2)
        g3 = g2 * gradients
        sum_acts = activations.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_acts * g3 + 1e-7)
        alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
        return (alpha * gradients.clamp(min=0)).sum(dim=(2, 3), keepdim=True)


class XGradCAM(CAM):
    """XGrad-CAM: gradients averaged with the channel's normalised activations as weights,
    ``w_k = sum_ij A_kij g_kij / sum_ij A_kij`` (the axiom-based weighting of Fu et al.)."""

    name = "xgradcam"
    title = "XGrad-CAM"
    default_for: ClassVar[frozenset[Modality]] = frozenset()  # opt-in via the methods setting

    def cam_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        total = activations.sum(dim=(2, 3), keepdim=True)
        return (gradients * activations / (total + 1e-7)).sum(dim=(2, 3), keepdim=True)
