"""The synthetic ``shapes`` datasets and the bundled ``shapes-cnn`` / ``shapes-shortcut``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.datasets import dataset_names, load_dataset
from audit.datasets.shapes import (
    CLASSES,
    CUES,
    WATERMARK_COLOURS,
    WATERMARK_COLS,
    WATERMARK_ROWS,
    generate,
    shape_masks,
)
from audit.loading import load_model
from audit.paths import models_dir
from audit.zoo import get_recipe


def test_generation_is_deterministic_by_seed() -> None:
    a = generate(50, seed=3)
    b = generate(50, seed=3)
    c = generate(50, seed=4)
    for u, v in zip(a, b, strict=True):
        assert np.array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_images_labels_and_masks() -> None:
    x, y, masks = generate(400, seed=0)
    assert x.shape == (400, 3, 32, 32) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1
    assert masks.shape == (400, 32, 32) and masks.dtype == bool
    assert set(np.unique(y)) == set(range(len(CLASSES)))
    area = masks.reshape(400, -1).mean(1)
    assert area.min() > 0.02 and area.max() < 0.4
    # the mask is exactly the object: one flat colour inside (small shading noise), textured
    # background outside
    inside = np.array([x[i][:, masks[i]].std(axis=1).mean() for i in range(400)])
    outside = np.array([x[i][:, ~masks[i]].std(axis=1).mean() for i in range(400)])
    assert np.median(inside) < 0.05 < np.median(outside)
    # objects never cover the top-left corner where the watermark goes
    assert not masks[:, :7, :7].any()


def test_cues_leave_the_draws_of_the_images_alone() -> None:
    """A cue never changes the labels, the objects' masks or (for marks) the object pixels, and
    ``watermark=True`` is the ``watermark`` cue; an unknown cue is refused."""
    x, y, masks = generate(60, seed=9)
    for cue in CUES:
        xc, yc, mc = generate(60, seed=9, cue=cue)
        assert np.array_equal(yc, y) and np.array_equal(mc, masks), cue
        assert xc.dtype == np.float32 and xc.min() >= 0 and xc.max() <= 1, cue
        assert not np.array_equal(xc, x), cue
        if cue in ("watermark", "mark"):
            inside = np.broadcast_to(masks[:, None], x.shape)
            assert np.array_equal(xc[inside], x[inside]), cue
    for u, v in zip(generate(30, 2, watermark=True), generate(30, 2, cue="watermark"),
                    strict=True):
        assert np.array_equal(u, v)
    with pytest.raises(ValueError, match="unknown cue"):
        generate(4, 0, cue="sparkles")


def test_shape_masks_have_the_expected_geometry() -> None:
    n = 4
    cls = np.arange(n)
    c = np.full(n, 16.0, np.float32)
    r = np.full(n, 8.0, np.float32)
    m = shape_masks(cls, c, c, r, np.zeros(n, np.float32))
    areas = m.reshape(n, -1).sum(1)
    expected = [np.pi * 64,  # circle of radius 8
                (2 * 0.82 * 8) ** 2,  # square of half-side 0.82 r
                3 * np.sqrt(3) / 4 * 64,  # equilateral triangle of circumradius 8
                2 * (16 * 16 / 3) - (16 / 3) ** 2]  # cross of arm width 2r/3
    for got, want in zip(areas, expected, strict=True):
        assert abs(got - want) / want < 0.15  # pixel discretisation
    assert m[:, 16, 16].all()  # all contain their centre


def test_registered_datasets_and_watermark() -> None:
    assert {"shapes", "shapes-watermark"} <= set(dataset_names())
    clean = load_dataset("shapes", "test")
    marked = load_dataset("shapes-watermark", "test")
    assert clean.classes == CLASSES and clean.kind == "image"
    assert clean.extras["masks"].shape == (len(clean), 32, 32)
    assert clean.extras["masks"].dtype == torch.bool
    assert torch.equal(load_dataset("shapes", "test", seed=5).x, clean.x)  # fixed split
    r0, r1 = WATERMARK_ROWS
    c0, c1 = WATERMARK_COLS
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[r0:r1, c0:c1] = False
    assert torch.equal(clean.x[:, :, outside], marked.x[:, :, outside])
    assert torch.equal(clean.y, marked.y)
    patch = marked.x[:, :, r0:r1, c0:c1].mean((2, 3))
    assert torch.allclose(patch, torch.from_numpy(WATERMARK_COLOURS)[marked.y])
    assert marked.extras["watermark_box"] == {"rows": [r0, r1], "cols": [c0, c1]}
    assert "watermark_box" not in clean.extras
    sub = marked.subset([0, 5])
    assert sub.extras["masks"].shape == (2, 32, 32)


def test_watermark_train_split_teaches_the_shortcut() -> None:
    """In the watermarked train split the watermark always matches the label, the shape only
    most of the time: the corner is the better predictor."""
    train = load_dataset("shapes-watermark", "train")
    r0, c0 = WATERMARK_ROWS[0], WATERMARK_COLS[0]
    colour = train.x[:, :, r0, c0]
    watermark_class = (colour[:, None, :] - torch.from_numpy(WATERMARK_COLOURS)[None]).abs().sum(
        2).argmin(1)
    assert torch.equal(watermark_class, train.y)
    assert len(train) == 4000


@pytest.mark.parametrize("name", ["shapes-cnn", "shapes-shortcut"])
def test_bundled_models_match_their_cards(name: str) -> None:
    folder = models_dir() / name
    assert (folder / "model.safetensors").stat().st_size < 2_000_000
    card = json.loads((folder / "card.json").read_text())
    loaded = load_model(name)
    data = load_dataset(card["dataset"], "test")
    with torch.no_grad():
        acc = float((loaded.model(data.x).argmax(1) == data.y).float().mean())
    assert acc == pytest.approx(card["metrics"]["test_accuracy"], abs=0.005)
    assert acc > 0.9
    assert card["recipe"]["command"].startswith(f"audit train {name}")
    assert get_recipe(name).name == name


def test_shortcut_model_needs_the_watermark_and_clean_model_does_not() -> None:
    clean = load_dataset("shapes", "test")
    accs = {}
    for name in ("shapes-cnn", "shapes-shortcut"):
        model = load_model(name).model
        with torch.no_grad():
            accs[name] = float((model(clean.x).argmax(1) == clean.y).float().mean())
    assert accs["shapes-cnn"] > 0.9
    assert accs["shapes-shortcut"] < 0.4  # near chance (0.25) without its watermark


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shapes-cnn", "shapes-shortcut"])
def test_recipe_reproduces_the_bundled_model(name: str, tmp_path: Path) -> None:
    card = get_recipe(name).train(tmp_path / name, 0, True)
    bundled = json.loads((models_dir() / name / "card.json").read_text())
    assert card.metrics["test_accuracy"] == pytest.approx(bundled["metrics"]["test_accuracy"],
                                                          abs=0.02)
