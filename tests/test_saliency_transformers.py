"""Grad-CAM on transformer and channels-last outputs with no configuration, and the attention
explainers, on variants the library was not written for (tests/transformer_models.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from audit.errors import UsageError
from audit.saliency.attention import (
    AttentionCapture,
    AttentionGradient,
    AttentionRollout,
)
from audit.saliency.gradcam import GradCAM
from audit.saliency.grids import Layout, layout_of, token_grid
from audit.saliency.layers import find_target_layer
from tests.transformer_models import ChannelsLast, TinyViT, TorchEncoderViT, Windowed

COLOURS = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])


def squares(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """16x16 noise with one 4x4 square anywhere; its colour is the class, its place the mask."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 + 0.2 * torch.rand(n, 3, 16, 16, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    masks = torch.zeros(n, 16, 16, dtype=torch.bool)
    for i, (r, c) in enumerate(torch.randint(0, 13, (n, 2), generator=g).tolist()):
        x[i, :, r:r + 4, c:c + 4] = COLOURS[y[i]].view(3, 1, 1)
        masks[i, r:r + 4, c:c + 4] = True
    return x, y, masks


def trained(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    x, y, _ = squares(3000, seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(4):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 100):
            b = perm[i:i + 100]
            opt.zero_grad()
            F.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    return model.eval()


def energy(maps: torch.Tensor, masks: torch.Tensor) -> float:
    return float(((maps * masks).sum((1, 2)) / maps.sum((1, 2)).clamp(min=1e-9)).mean())


def test_token_grids_and_layouts() -> None:
    assert token_grid(65, (32, 32)) == (1, (8, 8))  # class token + 8x8, not 5x13
    assert token_grid(198, (224, 224)) == (2, (14, 14))  # DeiT: class + distillation tokens
    assert token_grid(201, (224, 224)) == (5, (14, 14))  # class + 4 register tokens
    assert token_grid(49, (224, 224)) == (0, (7, 7))  # Swin's last stage
    assert token_grid(128, (16, 32)) == (0, (8, 16))  # a wide image keeps its aspect
    assert token_grid(3, (224, 224)) is None  # 1x3, or 1x2 after a prefix: no plausible grid
    assert layout_of((768, 7, 7), (224, 224)) == Layout("nchw", (7, 7))
    assert layout_of((7, 7, 768), (224, 224)) == Layout("nhwc", (7, 7))
    assert layout_of((12, 4, 4), (8, 8)) == Layout("nchw", (4, 4))  # ambiguous: channels first
    assert layout_of((64, 1), (32, 32)) is None  # a pooled (C, 1) head, not 64 tokens
    t = torch.arange(2 * 65 * 3, dtype=torch.float32).reshape(2, 65, 3)
    grid = Layout("tokens", (8, 8), 1).to_map(t)
    assert grid.shape == (2, 3, 8, 8) and torch.equal(grid[1, 2, 0, 1], t[1, 2, 2])


@pytest.mark.parametrize(("make", "name", "kind", "prefix"), [
    (lambda: TinyViT(prefix=1), "blocks.1.norm1", "tokens", 1),  # fused qkv: not the qkv
    (lambda: TinyViT(prefix=2), "blocks.1.norm1", "tokens", 2),
    (lambda: TinyViT(prefix=0, fused=False), "norm", "tokens", 0),
    (TorchEncoderViT, "encoder", "tokens", 0),
    (ChannelsLast, "mix", "nhwc", 0),
    (Windowed, "norm", "nhwc", 0),
])
def test_layer_search_finds_the_grid(make: object, name: str, kind: str, prefix: int) -> None:
    torch.manual_seed(0)
    model = make().eval()  # type: ignore[operator]
    x = torch.rand(3, 3, 16, 16)
    li = find_target_layer(model, x[:1])
    assert li is not None and li.name == name
    assert li.layout is not None and li.layout.kind == kind and li.layout.prefix == prefix
    assert li.layout.grid == (4, 4) and li.reached
    maps = GradCAM(model, li.module, layout=li.layout).explain(x, torch.tensor([0, 1, 2]))
    assert maps.shape == (3, 16, 16) and torch.isfinite(maps).all()


def test_layer_override_refuses_a_grid_the_gradient_does_not_reach() -> None:
    model = TinyViT(prefix=1).eval()
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(UsageError, match="gradient does not reach"):
        find_target_layer(model, x, "norm")  # patch tokens after the last attention
    chosen = find_target_layer(model, x, "blocks.0")
    assert chosen is not None and chosen.layout == Layout("tokens", (4, 4), 1)


@pytest.mark.parametrize("make", [lambda: TinyViT(prefix=1), lambda: TinyViT(fused=False),
                                  TorchEncoderViT])
def test_capture_sees_every_layer_and_changes_nothing(make: object) -> None:
    torch.manual_seed(0)
    model = make().eval()  # type: ignore[operator]
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    plain = model(x)
    capture = AttentionCapture(4)
    with capture:
        captured = model(x)
    torch.testing.assert_close(captured, plain, atol=1e-5, rtol=1e-5)
    t = 16 + int(getattr(model, "prefix", 0))
    assert [tuple(m.shape) for m in capture.maps] == [(4, 4, t, t)] * 2  # 2 layers, 4 heads
    for m in capture.maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:-1]))


def test_capture_matches_multihead_attention_weights() -> None:
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.rand(2, 9, 16)
    _, reference = mha(x, x, x, need_weights=True, average_attn_weights=False)
    capture = AttentionCapture(2)
    with capture:
        _, weights = mha(x, x, x, need_weights=False)
    assert weights is None  # the caller gets what it asked for
    torch.testing.assert_close(capture.maps[0], reference)


def test_rollout_and_gradient_rules_by_hand() -> None:
    """Rollout: R = prod_l norm((mean_h A_l + I)/2); Chefer: R <- R + mean_h (dA * A)^+ R."""
    g = torch.Generator().manual_seed(0)
    probs = [torch.rand(1, 2, 3, 3, generator=g).softmax(-1) for _ in range(2)]
    grads = [torch.randn(1, 2, 3, 3, generator=g) for _ in range(2)]
    eye = torch.eye(3)
    expect = eye
    for p in probs:
        a = (p[0].mean(0) + eye) / 2
        expect = (a / a.sum(-1, keepdim=True)) @ expect
    rollout = AttentionRollout(torch.nn.Identity()).relevance(probs, grads)
    torch.testing.assert_close(rollout[0], expect)
    expect = eye.clone()
    for p, d in zip(probs, grads, strict=True):
        expect = expect + (d[0] * p[0]).clamp(min=0).mean(0) @ expect
    chefer = AttentionGradient(torch.nn.Identity()).relevance(probs, grads)
    torch.testing.assert_close(chefer[0], expect)


def test_attention_methods_say_why_they_do_not_apply() -> None:
    x = torch.rand(1, 3, 16, 16)
    for model in (Windowed().eval(), ChannelsLast().eval()):
        for method in (AttentionGradient, AttentionRollout):
            why = method.unavailable(model, x)
            assert why is not None and "no global self-attention" in why
    assert AttentionGradient.unavailable(TinyViT().eval(), x) is None
    assert AttentionRollout.unavailable(TorchEncoderViT().eval(), x) is None


@pytest.mark.parametrize("seed", [0, 1])
def test_trained_transformers_are_explained_on_the_object(seed: int) -> None:
    """Models that decide by a small square's colour: the attention maps put several times the
    square's share of the image on it; the same architecture untrained does not."""
    x, y, masks = squares(60, 100 + seed)
    area = float(masks.float().mean())  # 1/16 of the image
    for make in (lambda: TinyViT(prefix=1), lambda: TinyViT(prefix=0, fused=False),
                 TorchEncoderViT):
        torch.manual_seed(seed)
        model = trained(make(), seed)  # type: ignore[no-untyped-call]
        assert float((model(x).argmax(1) == y).float().mean()) > 0.9
        untrained = make().eval()  # type: ignore[no-untyped-call]
        grad_e = energy(AttentionGradient(model).explain(x, y), masks)
        roll_e = energy(AttentionRollout(model).explain(x, y), masks)
        blind = energy(AttentionGradient(untrained).explain(x, y), masks)
        assert max(grad_e, roll_e) > 2.5 * area, (make, grad_e, roll_e)
        assert grad_e > 1.5 * area and blind < 1.5 * area, (make, grad_e, blind)
        li = find_target_layer(model, x[:1])
        assert li is not None
        cam = GradCAM(model, li.module, layout=li.layout).explain(x, y)
        assert cam.shape == (60, 16, 16)


HF_EXPECTED = [  # builder, layout kind, prefix tokens, attention explainers apply
    ("tiny_vit", {}, "tokens", 1, True),
    ("tiny_deit", {}, "tokens", 2, True),
    ("tiny_deit", {"teacher": True}, "tokens", 2, True),
    ("tiny_swin", {}, "tokens", 0, True),  # its last stage's window covers the whole grid
    ("tiny_convnext", {}, "nchw", 0, False),
    ("tiny_resnet", {}, "nchw", 0, False),
]


@pytest.mark.parametrize(("builder", "kwargs", "kind", "prefix", "attention"), HF_EXPECTED)
def test_hugging_face_models_need_no_configuration(
        tmp_path: object, builder: str, kwargs: dict[str, object], kind: str, prefix: int,
        attention: bool) -> None:
    pytest.importorskip("transformers")
    from pathlib import Path

    from audit.loading import load_model
    from tests import hf_models

    folder = getattr(hf_models, builder)(Path(str(tmp_path)) / builder, **kwargs)
    loaded = load_model(folder)
    assert loaded.card is not None
    x = torch.rand(2, *loaded.card.input.shape)
    li = find_target_layer(loaded.model, x[:1])
    assert li is not None and li.layout is not None and li.reached
    assert (li.layout.kind, li.layout.prefix) == (kind, prefix), li.name
    maps = GradCAM(loaded.model, li.module, layout=li.layout).explain(x, torch.tensor([0, 1]))
    assert maps.shape == (2, *x.shape[2:]) and float(maps.amax()) > 0
    assert (AttentionGradient.unavailable(loaded.model, x[:1]) is None) is attention
    if attention:
        grad = AttentionGradient(loaded.model).explain(x, torch.tensor([0, 1]))
        assert grad.shape == (2, *x.shape[2:]) and torch.isfinite(grad).all()


def test_capture_equals_hugging_face_attentions(tmp_path: object) -> None:
    """The probabilities the mode computes from a fused attention call are those the eager
    implementation returns with ``output_attentions=True``."""
    pytest.importorskip("transformers")
    from pathlib import Path

    from transformers import ViTForImageClassification

    from tests import hf_models

    folder = hf_models.tiny_vit(Path(str(tmp_path)) / "vit")
    sdpa = ViTForImageClassification.from_pretrained(folder, attn_implementation="sdpa").eval()
    eager = ViTForImageClassification.from_pretrained(folder,
                                                      attn_implementation="eager").eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        reference = eager(pixel_values=x, output_attentions=True).attentions
    capture = AttentionCapture(3)
    with torch.no_grad(), capture:
        logits = sdpa(pixel_values=x).logits
    assert len(capture.maps) == len(reference) == 2
    for ours, theirs in zip(capture.maps, reference, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits, eager(pixel_values=x).logits, atol=1e-5, rtol=1e-4)
