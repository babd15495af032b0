"""Saliency metrics with known answers: tie-breaking of ranks, Spearman rows, localisation and
the counterfactuals of the outside-the-object test (no model needed)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr

from audit.saliency import reliance
from audit.saliency.evaluation import WindowMap
from audit.saliency.metrics import (
    describe_box,
    describe_position,
    energy_in_mask,
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


def _corner_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    n = 64
    x = torch.rand(n, 1, 16, 16, generator=gen) * 0.2
    masks = torch.zeros(n, 16, 16, dtype=torch.bool)
    masks[:, 6:12, 6:12] = True
    y = torch.randint(0, 2, (n,), generator=gen)
    x[:, :, 6:12, 6:12] += y.view(-1, 1, 1, 1) * 0.6  # object brightness = class
    x[:, :, 0:3, 0:3] += y.view(-1, 1, 1, 1) * 0.6  # corner watermark = class
    return x, masks, y


def _reader(region: tuple[slice, slice]) -> object:
    def proba(z: torch.Tensor) -> torch.Tensor:
        v = z[:, 0, region[0], region[1]].mean((1, 2))
        logit = (v - 0.4) * 20
        return torch.softmax(torch.stack([-logit, logit], 1), 1)
    return proba


def test_counterfactuals_separate_object_and_corner_models() -> None:
    """A model reading only the corner loses its predictions when only the object is kept and
    when the corner is occluded; a model reading the object does not."""
    x, masks, y = _corner_data()
    corner, obj = _reader((slice(0, 3), slice(0, 3))), _reader((slice(6, 12), slice(6, 12)))
    filled = reliance.fills(x, masks, y, 0.0, 1.0, torch.Generator().manual_seed(0))
    agree_obj = reliance.object_only(obj, x, masks, filled)  # type: ignore[arg-type]
    assert [f.name for f in agree_obj] == list(reliance.FILLS)
    assert all(f.agreement == 1.0 for f in agree_obj)
    agree_corner = {f.name: f.agreement for f in reliance.object_only(
        corner, x, masks, filled)}  # type: ignore[arg-type]
    assert max(agree_corner.values()) < 0.75
    assert agree_corner["other-background"] == 0.0  # the donor's corner says the other class
    fill = filled["dataset-mean"]
    change, used = reliance.window_change(corner, x, masks, fill, 0, 0, 4)  # type: ignore[arg-type]
    assert used == len(x) and change == pytest.approx(float((y == 1).float().mean()))
    assert reliance.window_change(obj, x, masks, fill, 0, 0, 4)[0] == 0.0  # type: ignore[arg-type]
    # a window mostly on the object is used only where half of it is background: nowhere here
    assert reliance.window_change(obj, x, masks, fill, 6, 6, 4)[1] == 0  # type: ignore[arg-type]


def test_window_map_names_the_corner_and_not_a_spread_change() -> None:
    x, masks, _ = _corner_data()
    corner = _reader((slice(0, 3), slice(0, 3)))
    fill = x.mean((0, 2, 3), keepdim=True).expand_as(x)
    wm = reliance.window_map(corner, x, masks, fill)  # type: ignore[arg-type]
    assert wm.size == 4 and wm.rows == [0, 2, 4, 6, 8, 10, 12] == wm.cols
    assert wm.change.shape == (7, 7) and float(wm.change[0, 0]) > 0.3
    hot = reliance.concentration(wm, 0.0, min_excess=0.3, max_area=0.25, min_share=0.5)
    assert hot.localised and hot.where == "top-left corner" and (hot.row, hot.col) == (0, 0)
    assert hot.region[0] == 0 and hot.region[1] == 0 and hot.area <= 0.25 and hot.share > 0.5
    assert float(wm.pixel_map()[1, 1]) == pytest.approx(float(wm.change.nan_to_num().max()))
    # the same change in every window: it is spread, no place is named
    flat = WindowMap(change=torch.full((7, 7), 0.6), images=torch.full((7, 7), 10),
                     rows=wm.rows, cols=wm.cols, size=4, image_shape=(16, 16))
    spread = reliance.concentration(flat, 0.0, min_excess=0.3, max_area=0.25, min_share=0.5)
    assert not spread.localised and spread.where == reliance.SPREAD and spread.area == 1.0
    # a strong window that is not stronger than random windows names no place either
    assert not reliance.concentration(wm, 0.5, min_excess=0.3, max_area=0.25,
                                      min_share=0.5).localised


def test_window_positions_cover_the_image() -> None:
    assert reliance.window_positions(32, 8, 4) == [0, 4, 8, 12, 16, 20, 24]
    assert reliance.window_positions(30, 7, 3) == [0, 3, 6, 9, 12, 15, 18, 21, 23]
    assert reliance.window_positions(5, 8, 4) == [0]


def test_positions_in_words() -> None:
    assert describe_position(0, 0, 4, 16, 16) == "top-left corner"
    assert describe_position(6, 6, 4, 16, 16) == "centre"
    assert describe_position(12, 6, 4, 16, 16) == "bottom edge"
    assert describe_box(10, 24, 22, 32, 32, 32) == "right edge"
    assert describe_box(0, 0, 4, 32, 32, 32) == "top edge"  # a band along the top
