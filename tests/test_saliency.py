"""Saliency methods, target-layer tracing and metrics on small models with known answers."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pytest
import torch
from torch import nn

from audit.errors import UsageError
from audit.saliency import (
    Explainer,
    GradCAM,
    GradCAMPlusPlus,
    IntegratedGradientsExplainer,
    LimeImage,
    LimeTabular,
    SmoothGrad,
    XGradCAM,
    find_target_layer,
    normalize_maps,
    spatial_layers,
)
from audit.saliency.featvis import ActivationMaximisation
from audit.saliency.lime import grid_segments
from audit.saliency.metrics import (
    curve_auc,
    faithfulness,
    perturbation_curves,
    random_maps,
    randomize_parameters,
    saliency_ranks,
)

# ----------------------------------------------------------------------------------- models


class CamNet(nn.Module):
    """conv -> ReLU (the CAM layer) -> global average pool -> linear: Grad-CAM equals CAM."""

    def __init__(self, channels: int = 3, k: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, k, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(k, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


class Block(nn.Module):
    """A residual block that reuses one ReLU module twice (as torchvision's BasicBlock does)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.relu(self.conv1(x))) + x)


class ResNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.layer1 = nn.Sequential(Block(4), Block(4))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer1(self.stem(x)))


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.ModuleDict({
            "a": nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
            "b": nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1)), nn.ReLU(),
                               nn.MaxPool2d(2)),
        })
        self.fc = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body["b"](self.body["a"](x)).flatten(1))


class RegionModel(nn.Module):
    """Class 1's logit is ``4 * mean(region A) + 2 * mean(region B)``; class 0's is 0."""

    def __init__(self, a: tuple[slice, slice], b: tuple[slice, slice]) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean(1)
        one = 4 * g[:, self.a[0], self.a[1]].mean((1, 2)) + 2 * g[:, self.b[0], self.b[1]].mean(
            (1, 2))
        return torch.stack([torch.zeros_like(one), one * 8 - 4], 1) + self.dummy


M = TypeVar("M", bound=nn.Module)


def _seed_model(model: M, seed: int = 0) -> M:
    torch.manual_seed(seed)
    for p in model.parameters():
        nn.init.normal_(p, std=0.5)
    return model.eval()


# ------------------------------------------------------------------------------- protocol


def test_all_image_methods_follow_the_protocol() -> None:
    model = _seed_model(CamNet())
    x = torch.rand(5, 3, 12, 12)
    t = torch.tensor([0, 1, 2, 0, 1])
    explainers = [GradCAM(model, model.act), GradCAMPlusPlus(model, model.act),
                  XGradCAM(model, model.act), IntegratedGradientsExplainer(model, 0.5, steps=8),
                  SmoothGrad(model, 0.1, 4), LimeImage(model, samples=60, cells=4)]
    for e in explainers:
        assert isinstance(e, Explainer)
        maps = e.explain(x, t)
        assert maps.shape == (5, 12, 12), e.name
        assert maps.min() >= 0 and maps.max() <= 1 + 1e-6, e.name
        assert torch.isfinite(maps).all()


def test_explanations_do_not_depend_on_batching() -> None:
    model = _seed_model(CamNet())
    x = torch.rand(6, 3, 10, 10)
    t = torch.tensor([0, 1, 2, 2, 1, 0])
    for e_big, e_small in [(GradCAM(model, model.act, batch_size=6),
                            GradCAM(model, model.act, batch_size=2)),
                           (IntegratedGradientsExplainer(model, 0.0, 16, batch_size=6),
                            IntegratedGradientsExplainer(model, 0.0, 16, batch_size=1))]:
        assert torch.allclose(e_big.explain(x, t), e_small.explain(x, t), atol=1e-5)


# -------------------------------------------------------------------------------- Grad-CAM


def test_gradcam_equals_class_activation_map_on_gap_linear_model() -> None:
    """With GAP + linear after the layer, Grad-CAM = ReLU(sum_k w_ck A_k) (Zhou et al.'s CAM)."""
    model = _seed_model(CamNet(), 1)
    x = torch.rand(4, 3, 8, 8)
    t = torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        acts = model.act(model.conv(x))
        cam = torch.relu(torch.einsum("nkhw,nk->nhw", acts, model.fc.weight[t]))
    expected = normalize_maps(cam)  # layer and input have the same size: no upsampling
    assert torch.allclose(GradCAM(model, model.act).explain(x, t), expected, atol=1e-5)


def test_gradcam_plus_plus_matches_closed_form_with_constant_gradients() -> None:
    """On GAP + linear, dy_c/dA_k = w_ck / (h w) everywhere, so the alpha of Grad-CAM++ has a
    closed form: alpha_k = g^2 / (2 g^2 + sum(A_k) g^3)."""
    model = _seed_model(CamNet(), 2)
    x = torch.rand(3, 3, 8, 8)
    t = torch.tensor([2, 0, 1])
    with torch.no_grad():
        acts = model.act(model.conv(x))
        g = model.fc.weight[t] / 64.0  # (n, k)
        s = acts.sum((2, 3))
        alpha = g**2 / (2 * g**2 + s * g**3 + 1e-7)
        w = 64.0 * alpha * g.clamp(min=0)
        cam = torch.relu(torch.einsum("nkhw,nk->nhw", acts, w))
    got = GradCAMPlusPlus(model, model.act).explain(x, t)
    assert torch.allclose(got, normalize_maps(cam), atol=1e-4)


def test_gradcam_upsamples_to_input_size() -> None:
    model = _seed_model(Nested())
    x = torch.rand(2, 1, 8, 8)
    layer = find_target_layer(model, x[:1])
    assert layer is not None and layer.shape == (4, 4, 4)
    maps = GradCAM(model, layer.module).explain(x, torch.tensor([0, 1]))
    assert maps.shape == (2, 8, 8)


# --------------------------------------------------------------------------------- layers


def test_auto_layer_sequential_nested_residual() -> None:
    seq = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    x = torch.rand(1, 1, 8, 8)
    found = find_target_layer(seq, x)
    assert found is not None and found.name == "3" and found.shape == (4, 6, 6)
    # the adaptive pooling head is never chosen, even though its 1x1 output comes later
    assert all(li.name != "4" for li in spatial_layers(seq, x))

    nested = find_target_layer(Nested(), x)
    assert nested is not None and nested.name == "body.b"  # outermost module of the last map

    res = ResNetLike()
    found = find_target_layer(res, x)
    # the block's output includes the skip addition; the reused ReLU is not a candidate
    assert found is not None and found.name == "layer1"
    assert "layer1.0.relu" not in [li.name for li in spatial_layers(res, x)]


def test_no_spatial_layer_and_overrides() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.rand(1, 1, 8, 8)
    assert find_target_layer(mlp, x) is None
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(),
                                              nn.Linear(72, 2)))
    assert find_target_layer(scripted, x) is None  # no hooks: Grad-CAM is skipped, no crash
    res = ResNetLike()
    chosen = find_target_layer(res, x, "layer1.0")
    assert chosen is not None and chosen.name == "layer1.0"
    with pytest.raises(UsageError, match="not a module"):
        find_target_layer(res, x, "layer9")
    with pytest.raises(UsageError, match="not a grid over the image"):
        find_target_layer(res, x, "head.2")
    with pytest.raises(UsageError, match="runs 2 times"):
        find_target_layer(res, x, "layer1.0.relu")


# ------------------------------------------------------------------------------- gradients


def test_integrated_gradients_completeness() -> None:
    """IG attributions sum to f(x) - f(baseline) for the explained logit."""
    model = _seed_model(CamNet(), 3)
    x = torch.rand(3, 3, 8, 8)
    t = torch.tensor([0, 1, 2])
    base = torch.full((3, 1, 1), 0.5)
    attr = IntegratedGradientsExplainer(model, base, steps=128).attribute(x, t)
    with torch.no_grad():
        diff = (model(x) - model(base.expand(3, 3, 8, 8).contiguous()))[torch.arange(3), t]
    assert torch.allclose(attr.sum((1, 2, 3)), diff, rtol=0.02, atol=1e-3)


def test_integrated_gradients_exact_on_linear_tabular_model() -> None:
    lin = nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 0, 0, 0], [3.0, 0, -2, 0.5]]))
        lin.bias.zero_()
    x = torch.randn(5, 4)
    base = torch.tensor([0.1, 0.2, 0.3, 0.4])
    attr = IntegratedGradientsExplainer(lin, base, steps=8).attribute(x, torch.ones(5).long())
    assert torch.allclose(attr, (x - base) * lin.weight[1], atol=1e-5)


def test_smoothgrad_without_noise_is_the_absolute_gradient() -> None:
    model = _seed_model(CamNet(), 4)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    t = torch.tensor([1, 2])
    model(x)[torch.arange(2), t].sum().backward()
    assert x.grad is not None
    expected = normalize_maps(x.grad.abs().sum(1))
    got = SmoothGrad(model, noise=0.0, samples=3).explain(x.detach(), t)
    assert torch.allclose(got, expected, atol=1e-5)


# ------------------------------------------------------------------------------------ LIME


def test_lime_image_agrees_with_lime_package_on_planted_regions() -> None:
    from lime import lime_image

    seg = grid_segments(16, 16, cells=4)  # 4x4 segments of 4x4 pixels
    model = RegionModel((slice(4, 8), slice(8, 12)), (slice(12, 16), slice(0, 4))).eval()
    a_id, b_id = int(seg[4, 8]), int(seg[12, 0])
    x = torch.rand(3, 3, 16, 16)
    t = torch.ones(3, dtype=torch.long)
    ours = LimeImage(model, samples=400, cells=4, hide=torch.zeros(3, 1, 1), seed=0)
    maps = ours.explain(x, t)

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        tb = torch.from_numpy(batch.transpose(0, 3, 1, 2).copy()).float()
        with torch.no_grad():
            return torch.softmax(model(tb), 1).numpy()

    ref = lime_image.LimeImageExplainer(random_state=0)
    for i in range(3):
        w_ours = np.array([float(maps[i][seg == s][0]) for s in range(16)])
        exp = ref.explain_instance(x[i].permute(1, 2, 0).numpy().astype(np.float64),
                                   classifier_fn, labels=(1,), top_labels=None, hide_color=0,
                                   num_samples=400, segmentation_fn=lambda im: seg.numpy(),
                                   random_seed=0)
        w_ref = np.zeros(16)
        for f, v in exp.local_exp[1]:
            w_ref[f] = v
        assert list(np.argsort(-w_ours)[:2]) == [a_id, b_id]
        assert list(np.argsort(-w_ref)[:2]) == [a_id, b_id]
        assert np.corrcoef(w_ours, np.clip(w_ref, 0, None))[0, 1] > 0.95
    assert len(ours.last_scores) == 3 and min(ours.last_scores) > 0.5  # the surrogate fits


def test_lime_tabular_and_ig_find_the_features_that_matter() -> None:
    lin = nn.Linear(5, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0] * 5, [3.0, 0, -2.0, 0, 0]]))
        lin.bias.zero_()
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(300, 5, generator=gen)
    x = data[:6]
    t = torch.ones(6, dtype=torch.long)
    lime = LimeTabular(lin, data, [f"f{i}" for i in range(5)], samples=500, seed=0)
    w = lime.attribute(x, t)
    top = w.abs().mean(0).argsort(descending=True)[:2].tolist()
    assert sorted(top) == [0, 2]
    maps = lime.explain(x, t)
    assert maps.shape == (6, 5) and float(maps.max()) == pytest.approx(1.0)
    ig = IntegratedGradientsExplainer(lin, data.mean(0), steps=8).explain(x, t)
    assert set(ig.mean(0).argsort(descending=True)[:2].tolist()) == {0, 2}


# --------------------------------------------------------------------------------- metrics


def test_perturbation_curve_end_points_and_oracle_beats_random() -> None:
    model = RegionModel((slice(0, 4), slice(0, 4)), (slice(4, 8), slice(4, 8))).eval()
    x = torch.ones(4, 1, 8, 8)
    t = torch.ones(4, dtype=torch.long)
    base = torch.zeros(1, 1, 1)

    def proba(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(model(z), 1)

    gen = torch.Generator().manual_seed(0)
    ranks = saliency_ranks(random_maps((4, 8, 8), gen), gen)
    dele = perturbation_curves(proba, x, t, ranks, base, 8, "deletion")
    ins = perturbation_curves(proba, x, t, ranks, base, 8, "insertion")
    p_x, p_base = proba(x)[0, 1], proba(torch.zeros(1, 1, 8, 8))[0, 1]
    assert torch.allclose(dele[:, 0], p_x) and torch.allclose(dele[:, -1], p_base)
    assert torch.allclose(ins[:, 0], p_base) and torch.allclose(ins[:, -1], p_x)
    oracle = torch.zeros(4, 8, 8)
    oracle[:, 0:4, 0:4] = 1.0
    oracle[:, 4:8, 4:8] = 0.5
    good = faithfulness(proba, x, t, oracle, base, 8, gen)
    rand = faithfulness(proba, x, t, random_maps((4, 8, 8), gen), base, 8, gen)
    assert good.deletion_auc < rand.deletion_auc and good.insertion_auc > rand.insertion_auc
    assert float(curve_auc(torch.ones(1, 5))[0]) == pytest.approx(1.0)


def test_randomize_parameters_copies_and_is_seeded() -> None:
    model = _seed_model(CamNet())
    model.register_buffer("scale", torch.tensor([2.0]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r1, r2 = randomize_parameters(model, 1), randomize_parameters(model, 1)
    r3 = randomize_parameters(model, 2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # original untouched
    for (name, p), p1, p2, p3 in zip(model.named_parameters(), r1.parameters(), r2.parameters(),
                                     r3.parameters(), strict=True):
        assert not torch.equal(p, p1), name
        assert torch.equal(p1, p2) and not torch.equal(p1, p3)
    assert torch.equal(r1.get_buffer("scale"), model.get_buffer("scale"))  # buffers are kept


# --------------------------------------------------------------------------- feature vis


def test_feature_visualisation_excites_its_class_within_range() -> None:
    model = _seed_model(CamNet(channels=1, classes=3), 5)
    fv = ActivationMaximisation(model, (1, 12, 12), (0.0, 1.0), steps=40, seed=0)
    res = fv.visualise([0, 1, 2])
    assert res.images.shape == (3, 1, 12, 12)
    assert res.images.min() >= 0 and res.images.max() <= 1
    with torch.no_grad():
        flat = torch.softmax(model(torch.full((3, 1, 12, 12), 0.5)), 1)[torch.arange(3),
                                                                       torch.arange(3)]
    assert (res.probabilities > flat).all()
    again = fv.visualise([0, 1, 2])
    assert torch.equal(res.images, again.images)  # seeded
    assert all(p.grad is None for p in model.parameters())
