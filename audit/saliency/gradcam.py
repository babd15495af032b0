"""Class activation maps: Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al.
2018). Each takes exactly one forward and one backward pass per batch.

Grad-CAM is captum's ``LayerGradCam``; Grad-CAM++ weights the same layer activations and
gradients (taken with captum's ``compute_layer_gradients_and_eval``, the helper ``LayerGradCam``
itself uses) with the closed-form ``alpha`` of the paper, as pytorch-grad-cam does. Maps are
upsampled bilinearly to the input size and scaled to [0, 1].
"""

from __future__ import annotations

from typing import ClassVar

import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from audit.saliency import batches, normalize_maps


class _CAM:
    """A CAM variant over ``layer`` (a module of ``model``); subclasses give :meth:`_cam`."""

    name: ClassVar[str]
    title: ClassVar[str]

    def __init__(self, model: nn.Module, layer: nn.Module, batch_size: int = 128) -> None:
        self.model = model
        self.layer = layer
        self.batch_size = batch_size

    def _cam(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Low-resolution maps ``(N, 1, h, w)`` at the layer."""
        raise NotImplementedError

    def explain(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(N, H, W)`` maps in [0, 1] (see :class:`audit.saliency.Explainer`)."""
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        out = []
        for s in batches(len(x), self.batch_size):
            xb = x[s].to(device)
            tb = target[s].to(device)
            with torch.enable_grad():
                cam = self._cam(xb, tb).detach()
            up = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]),
                                              interpolate_mode="bilinear")
            out.append(up[:, 0].cpu())
        return normalize_maps(torch.cat(out))


class GradCAM(_CAM):
    """Grad-CAM: activations weighted by their spatially averaged gradients, then ReLU."""

    name = "gradcam"
    title = "Grad-CAM"

    def _cam(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        attr: torch.Tensor = LayerGradCam(self.model, self.layer).attribute(
            x, target=target, relu_attributions=True)
        return attr


class GradCAMPlusPlus(_CAM):
    """Grad-CAM++: per-position weights ``alpha = g^2 / (2 g^2 + sum(A) g^3)`` on positive
    gradients, which credits several instances of a class instead of the strongest one."""

    name = "gradcam++"
    title = "Grad-CAM++"

    def _cam(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        grads_t, acts_t = compute_layer_gradients_and_eval(self.model, self.layer, x, target)
        grads, acts = grads_t[0], acts_t[0]
        g2 = grads.pow(2)
        g3 = g2 * grads
        sum_acts = acts.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_acts * g3 + 1e-7)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        weights = (alpha * grads.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
        return torch.relu((weights * acts).sum(dim=1, keepdim=True))
