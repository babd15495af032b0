"""The explainer contract: one abstract method and a shared post-processing in the base, a
``cam_weights`` hook per CAM variant, and the registry the check iterates."""

from __future__ import annotations

from typing import TypeVar

import pytest
import torch
from torch import nn

from audit.saliency import (
    EXPLAINERS,
    Explainer,
    GradCAM,
    GradCAMPlusPlus,
    LimeImage,
    LimeTabular,
    XGradCAM,
    normalize_maps,
    to_maps,
)
from audit.saliency.registry import default_methods, explainer_for, explainer_names

M = TypeVar("M", bound=nn.Module)


def _seeded(model: M, seed: int = 0) -> M:
    torch.manual_seed(seed)
    for p in model.parameters():
        nn.init.normal_(p, std=0.5)
    return model.eval()


def gap_net() -> nn.Sequential:
    """conv -> ReLU -> global average pool -> linear, three classes."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


class FlatNet(nn.Module):
    """conv -> ReLU (the CAM layer) -> flatten -> linear: the gradient of a logit with respect
    to the layer is that class's weights, different at every position."""

    def __init__(self, k: int = 4, side: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.k, self.side = k, side
        self.conv = nn.Conv2d(1, k, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(k * side * side, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).flatten(1))


class InputTimesGradient(Explainer):
    """A method written as the base class asks: the attributes and one method."""

    name = "input-x-gradient"
    title = "Input x Gradient"

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        xi = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.model(xi).gather(1, target[:, None]).sum(), xi)
        return (xi * grad).detach()


def test_one_method_is_enough_and_the_base_post_processes() -> None:
    model = _seeded(gap_net())
    x = torch.rand(3, 3, 8, 8)
    t = torch.tensor([0, 1, 2])
    e = InputTimesGradient(model)
    raw = e.attribute(x, t)
    assert torch.allclose(e.explain(x, t), normalize_maps(raw.abs().sum(1)))
    with pytest.raises(TypeError, match="abstract"):
        Explainer(model)  # type: ignore[abstract]


def test_default_post_processing_by_attribution_shape() -> None:
    x = torch.zeros(2, 3, 2, 2)
    signed = torch.tensor([-2.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2).repeat(2, 3, 1, 1)
    # input-shaped: magnitude summed over channels, so the negative pixel is the most salient
    assert to_maps(signed, x)[0].flatten().tolist() == [1.0, 0.5, 0.0, 0.0]
    # map-shaped: evidence for the class, so only its positive part counts
    assert to_maps(signed[:, 0], x)[0].flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    rows = torch.tensor([[-3.0, 1.5]])
    assert to_maps(rows, rows).tolist() == [[1.0, 0.5]]
    with pytest.raises(ValueError, match="expected the input's shape or the map shape"):
        to_maps(torch.zeros(2, 5), x)


def test_registry_declares_each_method_once_per_modality() -> None:
    for kind in ("image", "tabular"):
        names = [c.name for c in EXPLAINERS if kind in c.modalities]
        assert len(names) == len(set(names)), kind
    assert all(c.default_for <= c.modalities for c in EXPLAINERS)
    # the defaults, in report order, are the historic ones; XGrad-CAM is opt-in
    assert default_methods("image") == ["gradcam", "gradcam++", "attention-gradient",
                                        "integrated-gradients", "smoothgrad", "lime"]
    assert default_methods("tabular") == ["lime", "integrated-gradients"]
    assert "xgradcam" in explainer_names()
    assert explainer_for("lime", "image") is LimeImage
    assert explainer_for("lime", "tabular") is LimeTabular
    assert explainer_for("xgradcam", "tabular") is None
    assert [c.needs_layer for c in (GradCAM, GradCAMPlusPlus, XGradCAM, LimeImage)] == [
        True, True, True, False]


def test_gradcam_equals_captum_layer_gradcam() -> None:
    from captum.attr import LayerAttribution, LayerGradCam

    model = _seeded(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(64, 2)), 3)
    x = torch.rand(3, 1, 8, 8)
    t = torch.tensor([1, 0, 1])
    layer = model[2]  # a 4x4 map: the CAM is upsampled to 8x8
    ref = LayerGradCam(model, layer).attribute(x, target=t, relu_attributions=True)
    ref = LayerAttribution.interpolate(ref.detach(), (8, 8), interpolate_mode="bilinear")[:, 0]
    assert torch.allclose(GradCAM(model, layer).attribute(x, t), ref, atol=1e-6)


def test_xgradcam_matches_its_closed_form_where_gradients_vary() -> None:
    """On conv -> ReLU -> flatten -> linear, dy_c/dA_kij = W_c,kij, so XGrad-CAM's weights are
    w_k = sum_ij A_kij W_c,kij / sum_ij A_kij, which differ from Grad-CAM's mean gradient."""
    model = _seeded(FlatNet(), 6)
    x = torch.rand(4, 1, 6, 6)
    t = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        acts = model.act(model.conv(x))
        grads = model.fc.weight[t].view(4, model.k, 6, 6)
        w = (acts * grads).sum((2, 3)) / (acts.sum((2, 3)) + 1e-7)
        cam = torch.relu(torch.einsum("nkhw,nk->nhw", acts, w))
    got = XGradCAM(model, model.act).explain(x, t)
    assert torch.allclose(got, normalize_maps(cam), atol=1e-5)
    assert not torch.allclose(got, GradCAM(model, model.act).explain(x, t), atol=1e-2)


def test_ig_path_chunks_are_bounded_and_give_the_same_attributions() -> None:
    """Captum's internal batch: whole on small inputs, capped on large ones (never below the
    batch, captum's minimum); chunking does not change the attributions beyond rounding."""
    import audit.saliency.gradients as g

    assert g.internal_batch(torch.zeros(32, 1, 8, 8), 32) == 1024
    assert g.internal_batch(torch.zeros(32, 3, 64, 64), 32) == g.MAX_PATH_VALUES // 12288
    assert g.internal_batch(torch.zeros(32, 3, 224, 224), 32) == 32
    assert g.internal_batch(torch.zeros(0, 3), 32) == 1
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 3))
    x, t = torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    whole = g.IntegratedGradientsExplainer(model, steps=8).attribute(x, t)
    old = g.MAX_PATH_VALUES
    try:
        g.MAX_PATH_VALUES = 3 * 16 * 16 * 7  # 7 path points per chunk
        chunked = g.IntegratedGradientsExplainer(model, steps=8).attribute(x, t)
    finally:
        g.MAX_PATH_VALUES = old
    assert torch.allclose(whole, chunked, atol=1e-6)
