"""Shortcut detection that generalises over kinds of cue (issue 15).

Fast tests: hand-built "models" that read one cue of the shapes generator directly (a mark
wherever it is, the background's tint, the stripes' orientation) or only the object, through
the counterfactuals of :mod:`audit.saliency.reliance` and the finding rule, in a second or two.

Slow tests (``-m slow``): the project's ShapesCNN trained with the shapes recipe on each cue
(verified to follow it on a cue-swapped split: shape of one class, cue of another), and clean
models trained with other seeds and widths than the bundled one, through the whole saliency
check: every cue model gets a high ``saliency.outside-object``, no clean model gets one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from audit.datasets import load_dataset
from audit.datasets.shapes import (
    CLASSES,
    CUES,
    MARK_SIZE,
    SHAPE_NOISE,
    STRIPE_ANGLES,
    TINT,
    WATERMARK_COLOURS,
    generate,
)
from audit.loading import LoadedModel, load_model
from audit.result import Section, Severity
from audit.runner import run_audit
from audit.saliency import reliance
from audit.saliency.evaluation import ShortcutEvidence
from audit.saliency.findings import consistency, outside_object
from audit.saliency.settings import SaliencyParams
from audit.subject import AuditData

P = SaliencyParams()
COLOURS = torch.from_numpy(WATERMARK_COLOURS)
Proba = Callable[[torch.Tensor], torch.Tensor]


def _softmax(logits: torch.Tensor, scale: float = 30.0) -> torch.Tensor:
    return torch.softmax(logits * scale, dim=1)


def mark_reader(x: torch.Tensor) -> torch.Tensor:
    """Finds a MARK_SIZE square of a class colour anywhere in the image."""
    dist = (x[:, None] - COLOURS[None, :, :, None, None]).abs().mean(2)  # (N, K, H, W)
    pooled = nn.functional.avg_pool2d(dist, MARK_SIZE, stride=1)
    return _softmax(-pooled.flatten(2).min(2).values)


def tint_reader(x: torch.Tensor) -> torch.Tensor:
    """The class whose colour the image's median colour leans towards."""
    mean = x.flatten(2).median(2).values - 0.5
    return _softmax(mean @ (COLOURS - 0.5).T)


def stripe_reader(x: torch.Tensor) -> torch.Tensor:
    """The stripes' orientation from the structure tensor, summed over the colour channels."""
    # central differences: gx and gy share no pixel, so noise adds no bias to their product
    gx, gy = x[..., 1:-1, 2:] - x[..., 1:-1, :-2], x[..., 2:, 1:-1] - x[..., :-2, 1:-1]
    a = torch.stack([(gx**2 - gy**2).mean((1, 2, 3)), (2 * gx * gy).mean((1, 2, 3))], 1)
    ref = torch.stack([torch.cos(2 * torch.from_numpy(STRIPE_ANGLES)),
                       torch.sin(2 * torch.from_numpy(STRIPE_ANGLES))], 1)
    return _softmax(a @ ref.T / a.norm(dim=1, keepdim=True).clamp(min=1e-9), 5.0)


def object_colour_reader(x: torch.Tensor) -> torch.Tensor:
    """Counts the pixels of each class colour: on data whose objects are painted in the class
    colour it reads the object only (a clean model)."""
    near = ((x[:, None] - COLOURS[None, :, :, None, None]).abs().amax(2) < 0.12)
    return _softmax(near.float().mean((2, 3)))


READERS: dict[str, Proba] = {"mark": mark_reader, "watermark": mark_reader,
                             "tint": tint_reader, "stripes": stripe_reader}


def _data(cue: str | None, n: int = 160, seed: int = 11
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y, m = generate(n, seed, cue=cue)
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)


def _measure(proba: Proba, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor
             ) -> ShortcutEvidence:
    cf = reliance.counterfactuals(proba, x, m, y, (0.0, 1.0), min_excess=P.reliance_medium,
                                  windows=8, fill_generator=torch.Generator().manual_seed(1),
                                  window_generator=torch.Generator().manual_seed(2))
    return ShortcutEvidence(
        fills=cf.fills, chance_agreement=cf.chance_agreement, windows=cf.windows,
        hotspot=cf.hotspot, random_change=cf.random_change, reliance=cf.reliance,
        saliency_outside=math.nan, object_focus=math.nan, object_area_share=0.13,
        methods=[], images=len(x))


def _agreement(ev: ShortcutEvidence) -> dict[str, float]:
    return {f.name: f.agreement for f in ev.fills}


# ----------------------------------------------------------------------------- generator


@pytest.mark.parametrize("cue", CUES)
def test_every_cue_follows_the_label_outside_the_object(cue: str) -> None:
    x, y, m = _data(cue, n=200)
    assert (READERS[cue](x).argmax(1) == y).float().mean() > 0.9  # the cue codes the label
    clean, _, clean_masks = _data(None, n=200)
    assert torch.equal(m, clean_masks)  # the same objects, whatever the cue
    inside = m[:, None].expand_as(x)
    if cue in ("watermark", "mark"):  # marks change the background only
        assert torch.equal(x[inside], clean[inside])
    swapped_x, swapped_y, _ = (torch.from_numpy(a) for a in generate(200, 12, shape_noise=1.0,
                                                                    cue=cue))
    assert (READERS[cue](swapped_x).argmax(1) == swapped_y).float().mean() > 0.9


def test_marks_move_and_keep_off_the_object() -> None:
    x, y, m = _data("mark", n=300)
    colour = COLOURS[y][:, :, None, None]
    hit = ((x - colour).abs().amax(1) < 1e-6) & ~m  # the mark's pixels
    assert (hit.flatten(1).sum(1) >= MARK_SIZE**2).all()
    rows = hit.any(2).float().argmax(1)
    assert len(set(rows.tolist())) > 15  # not in one place


def test_tint_blends_the_background_towards_the_class_colour() -> None:
    tinted, y, m = _data("tint", n=200)
    plain, _, _ = _data(None, n=200)
    diff = (tinted - (1 - TINT) * plain) / TINT  # the class colour, where there is no object
    per_image = torch.stack([diff[i][:, ~m[i]].mean(1) for i in range(len(y))])
    assert torch.allclose(per_image, COLOURS[y], atol=0.02)


# ------------------------------------------------------------------- hand-built readers


@pytest.mark.parametrize("cue", ["mark", "tint", "stripes"])
def test_each_cue_reader_is_high_and_spread(cue: str) -> None:
    """Cues that are not in one place: every reader is flagged high, no place is named, and
    the consistency statement says the cue is spread."""
    x, y, m = _data(cue)
    ev = _measure(READERS[cue], x, y, m)
    agree = _agreement(ev)
    assert agree["other-background"] < 0.2  # another class's background: it follows it
    assert agree["dataset-mean"] < 0.6
    if cue == "tint":  # its own mean colour keeps the tint: the failure of a per-image fill
        assert agree["own-mean"] > 0.9
        assert "reads the background's colour (a tint)" in consistency(ev, P)
    else:
        assert agree["own-mean"] < 0.6 and "(a tint)" not in consistency(ev, P)
    f = outside_object(ev, P, {})
    assert f is not None and f.severity is Severity.HIGH
    assert not ev.hotspot.localised and ev.hotspot.where == reliance.SPREAD
    assert "(spread over the background)" in f.title
    assert "no single window does" in f.detail or "spread over the background" in f.detail
    assert f.evidence["region"]["localised"] is False


def test_fixed_watermark_reader_is_named_in_its_corner() -> None:
    x, y, m = _data("watermark")
    ev = _measure(mark_reader, x, y, m)
    h = ev.hotspot
    assert h.localised and h.where == "top-left corner", h
    r0, c0, r1, c1 = h.region
    assert r0 <= 1 and c0 <= 1 and r1 >= 5 and c1 >= 5 and h.area <= 0.25
    f = outside_object(ev, P, {})
    assert f is not None and f.severity is Severity.HIGH
    assert f.title.endswith("(top-left corner)")
    assert "The tests agree" in f.detail and "so the cue sits there" in f.detail


def test_object_reader_is_not_flagged_and_names_no_place() -> None:
    x, y, m = _data(None)
    x = torch.where(m[:, None], COLOURS[y][:, :, None, None].expand_as(x), x)
    assert (object_colour_reader(x).argmax(1) == y).float().mean() > 0.95
    ev = _measure(object_colour_reader, x, y, m)
    assert min(_agreement(ev).values()) > 0.95, _agreement(ev)
    assert ev.reliance < 0.05 and not ev.hotspot.localised
    assert outside_object(dataclasses.replace(ev, object_focus=2.0), P, {}) is None
    assert consistency(ev, P).startswith("The tests agree that the background does not")


def test_donors_differ_in_label_and_keep_the_object_visible() -> None:
    x, y, m = _data(None, n=120)
    j = reliance.donors(x, m, y, torch.Generator().manual_seed(0))
    assert (j != torch.arange(len(x))).all() and (y[j] != y).all()
    obj = torch.stack([x[i][:, m[i]].mean(1) for i in range(len(x))])
    bg = torch.stack([x[i][:, ~m[i]].mean(1) for i in range(len(x))])
    assert ((obj - bg[j]).norm(dim=1) >= (obj - bg).norm(dim=1) - 1e-5).float().mean() > 0.9
    filled = reliance.fills(x, m, y, 0.0, 1.0, torch.Generator().manual_seed(0))
    assert list(filled) == list(reliance.FILLS)
    donor = filled["other-background"]
    keep = ~m[j][:, None].expand_as(x)  # the donor's background as it is...
    assert torch.equal(donor[keep], x[j][keep])
    painted = donor[1][:, m[j[1]]]  # ...and its object painted over with its mean colour
    assert torch.allclose(painted, bg[j[1]][:, None].expand_as(painted), atol=1e-5)
    for name in ("own-mean", "dataset-mean"):  # mean colours with the data's texture
        fill = filled[name]
        assert float(fill.min()) >= 0.0 and float(fill.max()) <= 1.0
        outside = torch.stack([fill[i][:, ~m[i]].std(1).mean() for i in range(len(x))])
        texture = torch.stack([x[i][:, ~m[i]].std(1).mean() for i in range(len(x))])
        assert abs(float(outside.mean() - texture.mean())) < 0.02, name
    assert (filled["dataset-mean"].mean((0, 2, 3)) - bg.mean(0)).abs().max() < 0.02
    own = torch.stack([filled["own-mean"][i][:, ~m[i]].mean(1) for i in range(len(x))])
    assert (own - bg).abs().max() < 0.03


# --------------------------------------------------------------------- trained models

FAST_SHAPES: dict[str, Any] = {"methods": ["gradcam", "integrated-gradients"], "samples": 12,
                               "featvis": False, "sanity_samples": 4, "shortcut_samples": 240,
                               "deletion_steps": 8}
CUE_TRAIN = (2000, 6)  # images and epochs: the smallest tried at which every cue is learnt
CLEAN = [(1, 12), (2, 16)]  # (seed, width) of the clean models; the bundled one is seed 0


def _train(x: torch.Tensor, y: torch.Tensor, seed: int, width: int, epochs: int) -> nn.Module:
    from audit.training import TrainConfig, reproducible
    from audit.zoo.common import fit_recipe
    from audit.zoo.shapes import BATCH, LR, ShapesCNN

    with reproducible(seed):
        model = ShapesCNN(num_classes=len(CLASSES), width=width)
        fit_recipe(model, x, y, TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR,
                                            weight_decay=1e-4, seed=seed))
    return model.eval()


@torch.no_grad()
def _follows(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((model(torch.from_numpy(x)).argmax(1) == torch.from_numpy(y)).float().mean())


def _audit(model: nn.Module, name: str, x: np.ndarray, y: np.ndarray, m: np.ndarray
           ) -> Section:
    base = load_model("shapes-cnn")
    assert base.card is not None
    loaded: LoadedModel = dataclasses.replace(
        base, model=model, card=dataclasses.replace(base.card, name=name, dataset=None))
    data = AuditData(name=name, x=torch.from_numpy(x), y=torch.from_numpy(y), kind="image",
                     classes=list(CLASSES), source="test",
                     extras={"masks": torch.from_numpy(m)})
    result = run_audit(loaded, data=data, checks=["saliency"], quick=True, seed=0,
                       params={"saliency": FAST_SHAPES})
    (sec,) = [s for s in result.sections if s.check == "saliency"]
    assert sec.status != "error", sec.error
    return sec


@pytest.fixture(scope="module")
def trained() -> dict[str, dict[str, Any]]:
    """Every trained model's cue-following rate and audited saliency section, once."""
    torch.set_num_threads(1)
    out: dict[str, dict[str, Any]] = {}
    n, epochs = CUE_TRAIN
    for k, cue in enumerate(("mark", "tint", "stripes")):
        x, y, _ = generate(n, 500 + k, shape_noise=SHAPE_NOISE, cue=cue)
        start = time.perf_counter()
        model = _train(torch.from_numpy(x), torch.from_numpy(y), seed=0, width=12,
                       epochs=epochs)
        seconds = time.perf_counter() - start
        follow = _follows(model, *generate(600, 600 + k, shape_noise=1.0, cue=cue)[:2])
        out[cue] = {"follows": follow, "train_seconds": seconds,
                    "section": _audit(model, f"cue-{cue}", *generate(600, 700 + k, cue=cue))}
    train = load_dataset("shapes", "train")
    test = load_dataset("shapes", "test")
    for seed, width in CLEAN:
        model = _train(train.x, train.y, seed=seed, width=width, epochs=10)
        with torch.no_grad():
            acc = float((model(test.x).argmax(1) == test.y).float().mean())
        out[f"clean-{seed}"] = {"accuracy": acc, "section": _audit(
            model, f"clean-{seed}", test.x.numpy(), test.y.numpy(),
            test.extras["masks"].numpy())}
    return out


@pytest.mark.slow
@pytest.mark.parametrize("cue", ["mark", "tint", "stripes"])
def test_trained_cue_models_follow_their_cue_and_are_flagged_high(
        trained: dict[str, dict[str, Any]], cue: str) -> None:
    got = trained[cue]
    assert got["follows"] >= 0.95, got["follows"]  # shape of one class, cue of another
    sec: Section = got["section"]
    (f,) = [f for f in sec.findings if f.id == "saliency.outside-object"]
    assert f.severity is Severity.HIGH, f.detail
    assert f.evidence["background_reliance"] >= P.reliance_high
    assert f.evidence["region"]["localised"] is False  # none of these cues is in one place
    assert "spread over the background" in f.title
    assert "where" in {fig.id for fig in sec.figures}
    assert ("(a tint)" in f.detail) is (cue == "tint")
    if cue == "tint":
        assert f.evidence["fills"]["own-mean"] > 0.8  # the per-image fill keeps the tint...
        assert f.evidence["fills"]["dataset-mean"] < 0.5  # ...the data-independent ones do not


@pytest.mark.slow
@pytest.mark.parametrize("seed", [s for s, _ in CLEAN])
def test_clean_models_of_other_seeds_are_not_flagged(trained: dict[str, dict[str, Any]],
                                                     seed: int) -> None:
    got = trained[f"clean-{seed}"]
    assert got["accuracy"] > 0.9
    sec: Section = got["section"]
    assert not [f for f in sec.findings if f.id == "saliency.outside-object"], sec.summary
    assert sec.metrics["shortcut.reliance_outside_object"] < P.reliance_medium
    assert "The tests agree that the background does not decide" in sec.summary
