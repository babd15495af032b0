"""The bundled small Vision Transformer ``shapes-vit`` (:mod:`audit.zoo.vit`)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

from audit.datasets import load_dataset
from audit.loading import load_model
from audit.paths import models_dir
from audit.zoo import get_recipe, recipes
from audit.zoo.common import accuracy
from audit.zoo.vit import Attention, Block, ShapesViT, train_vit


def test_output_and_token_shapes() -> None:
    torch.manual_seed(0)
    model = ShapesViT().eval()
    x = torch.rand(3, 3, 32, 32)
    assert model.patch_embed(x).shape == (3, 64, 64)
    assert model.tokens(x).shape == (3, 1 + 64, 64)
    seen: list[tuple[int, ...]] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
             for b in model.blocks]
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    assert out.shape == (3, 4)
    assert seen == [(3, 65, 64)] * 4
    block = model.blocks[0]
    assert isinstance(block, Block) and isinstance(block.attn, Attention)
    assert isinstance(block.attn.qkv, nn.Linear) and block.attn.qkv.out_features == 3 * 64
    assert isinstance(block.attn.proj, nn.Linear)
    assert {"norm1", "attn", "norm2", "mlp"} <= dict(block.named_children()).keys()


def test_other_sizes() -> None:
    model = ShapesViT(image_size=16, patch=8, dim=32, depth=2, heads=2, num_classes=3,
                      in_chans=1)
    assert model(torch.rand(2, 1, 16, 16)).shape == (2, 3)
    assert model.tokens(torch.rand(2, 1, 16, 16)).shape == (2, 1 + 4, 32)
    with pytest.raises(ValueError):
        ShapesViT(dim=30, heads=4)


def test_every_module_runs_once_per_forward() -> None:
    model = ShapesViT().eval()
    calls: Counter[str] = Counter()
    hooks = [m.register_forward_hook(lambda _m, _i, _o, name=name: calls.update([name]))
             for name, m in model.named_modules() if name]
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    names = [name for name, m in model.named_modules()
             if name and not isinstance(m, nn.ModuleList)]  # a ModuleList is never called
    assert set(calls) == set(names)
    assert all(calls[n] == 1 for n in names), {n: c for n, c in calls.items() if c != 1}
    # no module is reachable under two names (shared modules would be called twice)
    assert len({id(m) for _, m in model.named_modules()}) == len(list(model.modules()))


def test_training_is_deterministic_for_a_seed() -> None:
    kwargs = {"dim": 32, "depth": 2, "heads": 2}
    a, card_a = train_vit("shapes", seed=3, epochs=1, limit=192, arch_kwargs=kwargs)
    b, card_b = train_vit("shapes", seed=3, epochs=1, limit=192, arch_kwargs=kwargs)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert card_a.metrics["test_accuracy"] == card_b.metrics["test_accuracy"]
    assert card_a.arch == "audit.zoo.vit:ShapesViT"
    c, _ = train_vit("shapes", seed=4, epochs=1, limit=192, arch_kwargs=kwargs)
    assert not all(torch.equal(sa[k], c.state_dict()[k]) for k in sa)


def test_recipe_is_registered() -> None:
    assert "shapes-vit" in recipes()
    assert get_recipe("shapes-vit").name == "shapes-vit"


def test_bundled_model_matches_its_card() -> None:
    folder = models_dir() / "shapes-vit"
    assert (folder / "model.safetensors").stat().st_size < 2_000_000
    loaded = load_model("shapes-vit")
    card = loaded.card
    assert card is not None and card.arch == "audit.zoo.vit:ShapesViT"
    assert isinstance(loaded.model, ShapesViT)
    assert card.verdict.get("expected") == "pass" and card.arch_kwargs["conv_stem"] is True
    assert card.recipe["command"].startswith("audit train shapes-vit")
    data = load_dataset("shapes", "test")
    acc = accuracy(loaded.model, data.x, data.y)  # the card's split; floats differ by CPU type
    assert acc == pytest.approx(card.metrics["test_accuracy"], abs=0.01)
    assert card.metrics["test_accuracy"] > 0.9


@pytest.mark.slow
def test_vit_learns_the_watermark_shortcut() -> None:
    # measured (seed 0, 5 epochs, ~65 s on one thread): 1.0 on shapes-watermark/test, 0.24
    # (chance) on clean shapes/test, i.e. it reads the corner, not the shape
    model, card = train_vit("shapes-watermark", seed=0, epochs=5)
    clean = load_dataset("shapes", "test")
    clean_acc = accuracy(model, clean.x, clean.y)
    assert card.metrics["test_accuracy"] > 0.9  # the watermarked split: the corner agrees
    assert clean_acc < 0.4  # near chance (0.25) without its watermark


@pytest.mark.slow
def test_the_saliency_audit_catches_a_vit_shortcut_through_the_transformer_path() -> None:
    """The shortcut test on a transformer: a ViT trained on the watermark is flagged
    (saliency.outside-object), its Grad-CAM layer read as tokens and the attention maps scored;
    the bundled clean shapes-vit is not flagged."""
    from pathlib import Path

    from audit.loading import LoadedModel
    from audit.runner import run_audit

    model, card = train_vit("shapes-watermark", seed=1, epochs=5)
    shortcut = LoadedModel(model=model, card=card, path=Path("<vit in memory>"),
                           format="module", sha256="0" * 64, arch=card.arch)
    for subject, data, flagged in ((shortcut, "shapes-watermark", True),
                                   ("shapes-vit", "shapes", False)):
        result = run_audit(subject, data=data, checks=["saliency"], quick=True, seed=0)
        sec = result.sections[0]
        ids = {f.id for f in sec.findings}
        assert ("saliency.outside-object" in ids) is flagged, (flagged, ids)
        assert "read as a 8x8 grid of tokens after 1 leading token" in sec.summary
        assert "attention-gradient.gain_over_random" in sec.metrics
