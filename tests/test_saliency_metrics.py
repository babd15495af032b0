"""Saliency metrics with known answers: tie-breaking of ranks, Spearman rows, localisation and
the counterfactuals of the outside-the-object test (no model needed)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr

from audit.saliency.metrics import (
    describe_position,
    energy_in_mask,
    hotspot_window,
    object_only_agreement,
    occlusion_change,
    pointing_game,
    saliency_ranks,
    spearman_rows,
)


def test_ranks_break_ties_randomly_and_order_descending() -> None:
    maps = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 0.5]])
    gen = torch.Generator().manual_seed(0)
    ranks = torch.stack([saliency_ranks(maps, gen)[0] for _ in range(50)])
    assert (ranks[:, 4] == 0).all() and (ranks[:, 5] == 1).all()
    firsts = {int(r[:4].argmin()) for r in ranks}
    assert len(firsts) > 1  # the tied zeros are not always taken in raster order


def test_spearman_rows_matches_scipy() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 6, 6, generator=gen), torch.rand(5, 6, 6, generator=gen)
    b[1] = a[1] * 2 + 1
    b[2, :, :3] = a[2, :, :3]
    rho = spearman_rows(a, b)
    for i in range(5):
        assert float(rho[i]) == pytest.approx(spearmanr(a[i].flatten(), b[i].flatten())[0])
    assert float(rho[1]) == pytest.approx(1.0)
    assert torch.isnan(spearman_rows(a[:1], torch.zeros(1, 6, 6)))[0]


def test_localisation_known_answers() -> None:
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, 0:2, 0:2] = True
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0] = 1.0  # peak on the object, all energy inside
    maps[1, 3, 3] = 1.0  # peak far away
    maps[1, 1, 1] = 1.0 / 3
    assert pointing_game(maps, masks, tolerance=0).tolist() == [True, False]
    energy = energy_in_mask(maps, masks)
    assert energy[0] == pytest.approx(1.0) and energy[1] == pytest.approx(0.25)
    assert pointing_game(maps[1:].roll(-1, 1), masks[1:], tolerance=1).tolist() == [False]


def test_counterfactuals_separate_object_and_corner_models() -> None:
    """A model reading only the corner loses its predictions when only the object is kept and
    when the corner is occluded; a model reading the object does not."""
    gen = torch.Generator().manual_seed(0)
    n = 64
    x = torch.rand(n, 1, 16, 16, generator=gen) * 0.2
    masks = torch.zeros(n, 16, 16, dtype=torch.bool)
    masks[:, 6:12, 6:12] = True
    y = torch.randint(0, 2, (n,), generator=gen)
    x[:, :, 6:12, 6:12] += y.view(-1, 1, 1, 1) * 0.6  # object brightness = class
    x[:, :, 0:3, 0:3] += y.view(-1, 1, 1, 1) * 0.6  # corner watermark = class

    def make(region: tuple[slice, slice]) -> object:
        def proba(z: torch.Tensor) -> torch.Tensor:
            v = z[:, 0, region[0], region[1]].mean((1, 2))
            logit = (v - 0.4) * 20
            return torch.softmax(torch.stack([-logit, logit], 1), 1)
        return proba

    corner, obj = make((slice(0, 3), slice(0, 3))), make((slice(6, 12), slice(6, 12)))
    assert object_only_agreement(obj, x, masks)[0] == 1.0  # type: ignore[arg-type]
    assert object_only_agreement(corner, x, masks)[0] < 0.75  # type: ignore[arg-type]
    change, used = occlusion_change(corner, x, masks, 0, 0, 4)  # type: ignore[arg-type]
    assert used == n and change == pytest.approx(float((y == 1).float().mean()))
    assert occlusion_change(obj, x, masks, 0, 0, 4)[0] == 0.0  # type: ignore[arg-type]
    heat = torch.zeros(16, 16)
    heat[0:3, 0:3] = 1.0
    assert hotspot_window(heat, 4) == (0, 0)
    assert describe_position(0, 0, 4, 16, 16) == "top-left corner"
    assert describe_position(6, 6, 4, 16, 16) == "centre"
    assert describe_position(12, 6, 4, 16, 16) == "bottom edge"
